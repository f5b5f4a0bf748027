"""One SFT dataset entry of the training config (a Hydra structured-config dataclass)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from mos_nemo.errors import MosConfigError

FORMATS = ("auto", "instruction", "sharegpt", "messages", "prompt_completion")
HF_PREFIX = "hf://"


@dataclass
class DatasetConfig:
    """Where one training dataset comes from and how much of it to use."""

    name: str = ""
    """Unique dataset name, used in logs, mixing weights and checkpoints (required)."""
    source: str = ""
    """A local .jsonl/.json/.parquet file or folder of them, or `hf://owner/name` (HF hub id or local HF folder)."""
    split: str = "train"
    """HF split to load (hf:// sources only)."""
    subset: Optional[str] = None
    """HF config name, e.g. a P3 subset (hf:// sources only)."""
    format: str = "auto"
    """auto | instruction | sharegpt | messages | prompt_completion; auto detects from the first record."""
    fraction: Optional[float] = None
    """Keep this random fraction (0, 1] of the examples before tokenising (paper: 0.1)."""
    max_examples: Optional[int] = None
    """Keep at most this many examples (applied after `fraction`)."""
    seed: Optional[int] = None
    """Seed of the subsample; None uses the global data seed."""
    skip_bad_lines: bool = False
    """Skip (and count) malformed records instead of raising with the file and line."""
    per_file: bool = False
    """`source` is a folder or a glob whose every file becomes a dataset named after its stem (prefixed with
    `name_` when a name is given), with the other options of this entry (mos_nemo/data/expand.py)."""


def validate_dataset_config(config: DatasetConfig, index: int) -> None:
    """Raise MosConfigError naming `datasets[index].key` for any bad field."""
    where = f"datasets[{index}]"
    if not config.name or not config.name.strip():
        raise MosConfigError(f"{where}.name is empty: give every dataset a unique name, e.g. name: math")
    where = f"datasets[{index}] ({config.name!r})"
    if not config.source:
        raise MosConfigError(f"{where}.source is empty: give a .jsonl/.json/.parquet path or hf://owner/name")
    if config.format not in FORMATS:
        raise MosConfigError(f"{where}.format={config.format!r} is unknown: use one of {', '.join(FORMATS)}")
    if config.fraction is not None:
        if not (isinstance(config.fraction, (int, float)) and math.isfinite(config.fraction)
                and 0.0 < config.fraction <= 1.0):
            raise MosConfigError(f"{where}.fraction={config.fraction!r} must lie in (0, 1], e.g. 0.1")
    if config.max_examples is not None and config.max_examples < 1:
        raise MosConfigError(f"{where}.max_examples={config.max_examples!r} must be >= 1 (or null for all)")


def validate_dataset_configs(configs) -> None:
    """Validate every entry and reject duplicate names (weights and checkpoints are keyed by name)."""
    if len(configs) == 0:
        raise MosConfigError("datasets is empty: list at least one dataset (name, source, format)")
    seen: dict[str, int] = {}
    for index, config in enumerate(configs):
        validate_dataset_config(config, index)
        if config.name in seen:
            raise MosConfigError(
                f"datasets[{index}].name={config.name!r} duplicates datasets[{seen[config.name]}].name: "
                "dataset names must be unique (rename one)")
        seen[config.name] = index
