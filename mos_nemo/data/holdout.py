"""Held-out examples: ``validation.holdout`` examples of each dataset are kept out of training.

The split is drawn after tokenising (the cache holds whole datasets) from a generator keyed on
(``validation.seed``, "holdout", dataset name). It does not depend on ``run.seed``, so runs that differ only
in their seed are compared on the same held-out examples, and it does not depend on the other datasets.
Training, its blend, its epochs and MoS's reward batches see only the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mos_nemo.data.dataset import TokenizedDataset
from mos_nemo.data.rng import keyed_generator
from mos_nemo.errors import MosConfigError


def select_examples(dataset: TokenizedDataset, indices: Sequence[int]) -> TokenizedDataset:
    """A new in-memory dataset with the examples ``indices`` of ``dataset``, in that order."""
    examples = []
    for index in indices:
        item = dataset[int(index)]
        examples.append((item["input_ids"].numpy(), item["loss_mask"].numpy()))
    return TokenizedDataset.from_examples(dataset.name, examples, dataset.stats)


def split_holdout(dataset: TokenizedDataset, count: int, seed: int) -> tuple[TokenizedDataset, TokenizedDataset]:
    """(training part, held-out part) of ``dataset``: ``count`` examples drawn at random are held out.

    Both parts keep the source order of their examples.
    """
    if count >= len(dataset):
        raise MosConfigError(
            f"validation.holdout={count}: dataset {dataset.name!r} has only {len(dataset)} examples after "
            "loading; hold out fewer examples than that (at most half is sensible)")
    order = torch.randperm(len(dataset), generator=keyed_generator(seed, "holdout", dataset.name))  # [n]
    held = np.sort(order[:count].numpy())
    kept = np.sort(order[count:].numpy())
    return select_examples(dataset, kept), select_examples(dataset, held)
