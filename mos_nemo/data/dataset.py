"""A tokenised SFT dataset stored as flat memory-mappable arrays, and its on-disk cache.

Layout of a cache folder: `input_ids.npy` (int32, all examples concatenated), `loss_mask.npy` (bool),
`offsets.npy` (int64 [n + 1], example i is [offsets[i], offsets[i+1])) and `stats.json`. A folder is
written to a temporary name and renamed, so a crashed run never leaves a half-written cache behind.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mos_nemo.assets import shared_temporary_dir
from mos_nemo.errors import MosValueError


@dataclass
class DatasetStats:
    """What loading a dataset did: detected format, examples kept, and everything dropped (with reasons)."""

    name: str
    format: str
    format_detected: bool
    records_read: int = 0
    bad_lines_skipped: int = 0
    bad_records_skipped: int = 0
    records_subsampled: int = 0
    truncated: int = 0
    dropped_no_response_after_truncation: int = 0
    examples: int = 0
    tokens: int = 0
    response_tokens: int = 0
    cache_hit: bool = False
    first_skip_reason: str | None = None

    def describe(self) -> str:
        how = "detected" if self.format_detected else "configured"
        return (f"dataset {self.name!r}: format {self.format} ({how}), {self.examples} examples, "
                f"{self.tokens} tokens ({self.response_tokens} response); skipped {self.bad_lines_skipped} "
                f"bad lines and {self.bad_records_skipped} bad records, truncated {self.truncated}, dropped "
                f"{self.dropped_no_response_after_truncation} with no response token left after truncation"
                + (" [from cache]" if self.cache_hit else ""))


class TokenizedDataset:
    """Examples as (input_ids, loss_mask); loss_mask marks the response tokens to be predicted."""

    def __init__(self, name: str, input_ids: np.ndarray, loss_mask: np.ndarray, offsets: np.ndarray,
                 stats: DatasetStats):
        if len(input_ids) != len(loss_mask) or offsets[-1] != len(input_ids):
            raise MosValueError(f"dataset {name!r}: arrays disagree (ids {len(input_ids)}, mask "
                                f"{len(loss_mask)}, last offset {offsets[-1]})")
        self.name = name
        self.input_ids = input_ids  # [total] int32
        self.loss_mask = loss_mask  # [total] bool
        self.offsets = offsets  # [n + 1] int64
        self.stats = stats

    @classmethod
    def from_examples(cls, name: str, examples: list[tuple[np.ndarray, np.ndarray]],
                      stats: DatasetStats) -> "TokenizedDataset":
        lengths = np.array([len(ids) for ids, _ in examples], dtype=np.int64)
        offsets = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(lengths)])
        input_ids = np.concatenate([ids for ids, _ in examples]).astype(np.int32)
        loss_mask = np.concatenate([mask for _, mask in examples]).astype(bool)
        return cls(name, input_ids, loss_mask, offsets, stats)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """[n] int64 number of tokens of each example."""
        return np.diff(self.offsets)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"dataset {self.name!r} has {len(self)} examples, index {index} is out of range")
        index %= len(self)
        begin, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return {"input_ids": torch.from_numpy(np.asarray(self.input_ids[begin:end], dtype=np.int64)),  # [s_i]
                "loss_mask": torch.from_numpy(np.array(self.loss_mask[begin:end], dtype=bool))}  # [s_i]

    def __repr__(self) -> str:
        return f"TokenizedDataset({self.name!r}, examples={len(self)}, tokens={len(self.input_ids)})"


def save_cache(dataset: TokenizedDataset, folder: Path) -> None:
    """Write the dataset to `folder` atomically (temporary folder, then rename)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = shared_temporary_dir(folder)
    try:
        np.save(temporary / "input_ids.npy", np.asarray(dataset.input_ids, dtype=np.int32))
        np.save(temporary / "loss_mask.npy", np.asarray(dataset.loss_mask, dtype=bool))
        np.save(temporary / "offsets.npy", np.asarray(dataset.offsets, dtype=np.int64))
        (temporary / "stats.json").write_text(json.dumps(asdict(dataset.stats), indent=1))
        os.rename(temporary, folder)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)
        if not (folder / "stats.json").exists():  # not a lost race with another writer
            raise


def load_cache(folder: Path) -> TokenizedDataset | None:
    """The cached dataset in `folder` (memory-mapped), or None when there is none."""
    if not (folder / "stats.json").exists():
        return None
    try:
        stats = DatasetStats(**json.loads((folder / "stats.json").read_text()))
    except (TypeError, ValueError):  # written by another version of this code: rebuild it
        shutil.rmtree(folder, ignore_errors=True)
        return None
    stats.cache_hit = True
    return TokenizedDataset(stats.name, np.load(folder / "input_ids.npy", mmap_mode="r"),
                            np.load(folder / "loss_mask.npy", mmap_mode="r"),
                            np.load(folder / "offsets.npy"), stats)
