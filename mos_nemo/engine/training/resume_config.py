"""What a resumed launch may change, and the per-launch copies of the config in ``run.dir``.

A checkpoint stores the config it was trained with. On resume, each setting that differs is either free
(it does not change what the remaining steps compute: where and how often to save, when to stop this launch,
the parallel layout, ``mixing.exclude`` which is meant to change mid-run) or breaks exact continuation
(lr, max_steps, seq_length, batch sizes, datasets, the model, ...). The latter are refused unless
``checkpoint.allow_changes`` names them (a key or a whole section, e.g. ``optim``).

Every launch's config is kept: ``config.yaml`` for the first launch, ``config.<n>.yaml`` for the n-th.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mos_nemo.config import MosConfig
from mos_nemo.errors import MosConfigError

# Keys (or sections, ending in '.') whose change keeps the remaining steps' computation the same.
FREE = ("checkpoint.", "train.stop_after", "train.nonfinite_limit", "train.time_limit", "parallel.", "run.dir", "run.take_over_lock",
        "data.cache_dir", "mixing.exclude", "validation.every")

# Keys whose change a checkpoint can never follow, and why: checkpoint.allow_changes refuses them.
NEVER = {
    "datasets": "the checkpoint's blend state (per-dataset cursors, counts, mixture weights, the scorer's inputs) "
                "belongs to its dataset list; to drop a dataset mid-run use mixing.exclude",
    "model.config": "the checkpoint's weights have the shapes of its model",
    "model.tokenizer": "the checkpoint's embeddings are indexed by its tokenizer's token ids",
    "mixing.scorer": "the checkpoint holds the state of its kind of scorer",
    "mixing.hidden": "the checkpoint's scorer MLP has its hidden width",
}


def never_resumable(names: list[str]) -> dict[str, str]:
    """``{name: why}`` for each allow_changes entry that names (or contains) a key no resume can change."""
    found = {}
    for name in names:
        for key, why in NEVER.items():
            if _covered(name, [key]) or _covered(key, [name]):
                found.setdefault(name, f"{key}: {why}")
    return found


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optim.lr": 0.01, ...}``; lists (datasets) are compared whole."""
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): tree}


def config_tree(config: MosConfig) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)


def changed_settings(saved_yaml: str, config: MosConfig) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, new value)}`` for every setting that differs."""
    saved = flatten(OmegaConf.to_container(OmegaConf.create(saved_yaml), resolve=False))
    new = flatten(config_tree(config))
    return {key: (saved.get(key), new.get(key)) for key in sorted(set(saved) | set(new))
            if saved.get(key) != new.get(key)}


def _covered(key: str, names: list[str]) -> bool:
    return any(key == name or key.startswith(name.rstrip(".") + ".") for name in names)


def check_resume_changes(changes: dict[str, tuple[Any, Any]], allowed: list[str], checkpoint: Path) -> None:
    """Raise MosConfigError naming every change that breaks exact continuation and is not allowed."""
    impossible = {k: v for k, v in changes.items() if _covered(k, list(NEVER))}
    if impossible:
        shown = "; ".join(f"{key}: {old!r} -> {new!r} ({next(w for n, w in NEVER.items() if _covered(key, [n]))})"
                          for key, (old, new) in impossible.items())
        raise MosConfigError(
            f"resuming from {checkpoint} with settings that no checkpoint can follow changed: {shown}. Put them "
            "back, or start a new run with checkpoint.resume=none (or another run.dir)")
    refused = {k: v for k, v in changes.items() if not _covered(k, list(FREE)) and not _covered(k, allowed)}
    if not refused:
        return
    shown = "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in refused.items())
    keys = ",".join(refused)
    raise MosConfigError(
        f"resuming from {checkpoint} with settings changed since it was saved: {shown}. These change what "
        f"the remaining steps compute (the run would no longer continue exactly). Put them back, or accept the "
        f"change with checkpoint.allow_changes=[{keys}], or start afresh with checkpoint.resume=none")


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())


def launch_config_path(run_dir: str | Path) -> Path:
    """``config.yaml`` for a run's first launch, ``config.<n>.yaml`` (n = 2, 3, ...) for later ones."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        return run_dir / "config.yaml"
    taken = [int(m.group(1)) for p in run_dir.glob("config.*.yaml") if (m := re.fullmatch(r"config\.(\d+)\.yaml", p.name))]
    return run_dir / f"config.{max(taken, default=1) + 1}.yaml"
