"""The held-out split (validation.holdout): disjoint, complete, deterministic, keyed on its own seed."""

import numpy as np
import pytest

from mos_nemo.data import DatasetStats, TokenizedDataset
from mos_nemo.data.holdout import split_holdout
from mos_nemo.errors import MosConfigError


def _dataset(name: str, n: int) -> TokenizedDataset:
    # example k is the tokens [k, k+1, ..., k+2+k%3]: each example is recognisable by its first token
    examples = [(np.arange(k, k + 3 + k % 3), np.arange(3 + k % 3) >= 1) for k in range(n)]
    return TokenizedDataset.from_examples(name, examples, DatasetStats(name=name, format="instruction",
                                                                       format_detected=False))


def _firsts(dataset: TokenizedDataset) -> list[int]:
    return [int(dataset[k]["input_ids"][0]) for k in range(len(dataset))]


def test_split_is_disjoint_complete_ordered_and_keeps_examples_whole():
    dataset = _dataset("gsm8k", 50)
    train, held = split_holdout(dataset, 7, seed=0)
    assert len(held) == 7 and len(train) == 43
    assert sorted(_firsts(train) + _firsts(held)) == list(range(50))
    assert _firsts(train) == sorted(_firsts(train)) and _firsts(held) == sorted(_firsts(held))
    for part in (train, held):
        for k in range(len(part)):
            first = int(part[k]["input_ids"][0])
            assert part[k]["input_ids"].tolist() == dataset[first]["input_ids"].tolist()
            assert part[k]["loss_mask"].tolist() == dataset[first]["loss_mask"].tolist()


def test_split_depends_on_its_seed_and_the_dataset_name_only():
    first = _firsts(split_holdout(_dataset("gsm8k", 50), 7, seed=0)[1])
    assert _firsts(split_holdout(_dataset("gsm8k", 50), 7, seed=0)[1]) == first  # deterministic
    assert _firsts(split_holdout(_dataset("gsm8k", 50), 7, seed=1)[1]) != first
    assert _firsts(split_holdout(_dataset("champ", 50), 7, seed=0)[1]) != first
    assert first != list(range(7))  # a random draw, not the head of the file


def test_holding_out_a_whole_dataset_is_an_error_naming_the_key_and_dataset():
    with pytest.raises(MosConfigError, match=r"validation.holdout=5: dataset 'tiny' has only 5 examples"):
        split_holdout(_dataset("tiny", 5), 5, seed=0)
