"""The mixer interface: what an online data mixer asks the engine for, and what it gives back.

A mixer turns signals about the datasets into sampling probabilities p [N]. It declares which signals it
needs (``needs``); the engine computes exactly those, parallel-invariantly, and calls ``update`` every
``mixing.update_every`` steps. Three signals exist:

- ``"embeddings"``: z [N, H], each dataset's pooled final hidden states (Eq. 7), from a scoring pass;
- ``"nll"``: per-example NLL [N, L] of the current model and of theta0 on the same examples (the theta0
  reference pool or a frozen theta0 model), from a scoring pass;
- ``"train_loss"``: each step's per-dataset training loss, handed to ``observe`` after every step (no
  scoring pass at all).

Availability (``mixing.exclude``) is common to every mixer: an excluded dataset has p = 0 exactly.
Everything a mixer needs to continue bit for bit goes in ``state_dict``. Mixers are pure PyTorch.
Add one: subclass ``Mixer`` in its own module and add one line to ``MIXERS`` in ``registry.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mos_nemo.errors import MosValueError

SIGNALS = ("embeddings", "nll", "train_loss")


@dataclass
class MixerInputs:
    """The scored signals of one update; only those the mixer ``needs`` are set."""

    step: int
    embeddings: torch.Tensor | None = None  # [N, H] float64, pooled per dataset (Eq. 7)
    nll: torch.Tensor | None = None  # [N, L] float64, current model's per-example NLL
    nll_ref: torch.Tensor | None = None  # [N, L] float64, theta0's NLL of the same examples
    mask: torch.Tensor | None = None  # [N, L] bool, True where dataset i has an example j
    scored: torch.Tensor | None = None  # [N] bool under mixing.reward_budget: the datasets scored now, the
    # others' rows being their latest scored ones (mixing/budget.py); None: every dataset was scored now


class Mixer(ABC):
    """Base of every mixer: availability, reporting fields, and the update/state contract.

    Subclasses set ``needs`` (a subset of SIGNALS) and implement ``update``, ``_compute_probabilities``,
    ``_state`` and ``_load_state``. After ``update``, ``rewards_raw`` holds the signal it acted on and
    ``rewards`` its smoothed form (or None), both [N] float64, for mixture.jsonl.
    """

    needs: tuple[str, ...] = ()
    strategy: str = ""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.availability = torch.ones(len(self.names), dtype=torch.float64)  # [N], 1 = usable
        self.rewards: torch.Tensor | None = None
        self.rewards_raw: torch.Tensor | None = None
        self.num_updates = 0
        self.num_skipped = 0

    # ---- the contract ----------------------------------------------------------------------------
    @property
    @abstractmethod
    def probabilities(self) -> torch.Tensor:
        """Current sampling distribution p [N] (float64, sums to 1, 0 for excluded datasets)."""

    @abstractmethod
    def update(self, inputs: MixerInputs) -> torch.Tensor:
        """One mixing update from the signals in ``needs``; returns the new p [N]."""

    def observe(self, step: int, dataset_losses: Sequence[float | None], weights: torch.Tensor) -> None:
        """After every training step: its per-dataset loss (None where absent) and the p it was drawn with.
        Only mixers that need ``"train_loss"`` use it."""

    @abstractmethod
    def state_dict(self) -> dict:
        """Everything needed to continue bit for bit."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...

    @abstractmethod
    def _availability_changed(self) -> None:
        """Recompute p after ``availability`` changed."""

    # ---- availability ----------------------------------------------------------------------------
    def set_available(self, dataset: int | str, available: bool) -> torch.Tensor:
        """Include or exclude a dataset at run time; returns the new p."""
        self.availability = changed_availability(self.names, self.availability, dataset, available)
        self._availability_changed()
        return self.probabilities

    def _check_state(self, state: dict) -> None:
        if state.get("strategy") != self.strategy:
            raise MosValueError(f"mixing state was saved by mixing.strategy={state.get('strategy')}, this run has "
                                f"{self.strategy}: resume with mixing.strategy={state.get('strategy')}")
        if list(state["names"]) != self.names:
            raise MosValueError(f"mixing state is for datasets {list(state['names'])}, this run has {self.names}: "
                                "resume with the same datasets")


def changed_availability(names: list[str], availability: torch.Tensor, dataset: int | str,
                         available: bool) -> torch.Tensor:
    """A copy of ``availability`` [N] with ``dataset`` (a name or an index) set; refuses to empty it."""
    index = dataset_index(names, dataset)
    new = availability.clone()
    new[index] = 1.0 if available else 0.0
    if not bool((new > 0).any()):
        raise MosValueError(f"excluding {names[index]!r} would leave no dataset available")
    return new


def dataset_index(names: list[str], dataset: int | str) -> int:
    """The index of ``dataset`` (a name or an index) in ``names``, or a clear error."""
    if isinstance(dataset, str):
        if dataset not in names:
            raise MosValueError(f"dataset {dataset!r} is unknown; known: {names}")
        return names.index(dataset)
    if isinstance(dataset, bool) or not isinstance(dataset, int) or not 0 <= dataset < len(names):
        raise MosValueError(f"dataset index {dataset!r} out of range [0, {len(names)})")
    return dataset


def available_uniform(availability: torch.Tensor) -> torch.Tensor:
    """u [N]: 1/K on the K available datasets, 0 elsewhere."""
    return availability / availability.sum()
