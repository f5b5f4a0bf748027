"""Which versions wrote a checkpoint, and whether this environment's megatron-core can read it.

Every checkpoint we write (training ``step_N/``, ``convert import``'s model checkpoint) carries
``versions.json``: the megatron-core, torch, mos_nemo and Python versions that wrote it. Checkpoints from
before it have none and still load.

The rule (docs/versions.md, "Checkpoints across versions"), from megatron-core's own load code (0.16.1,
0.17.0, 0.18.0, 0.19.0 and 0.19.2 read for it): up to 0.18, ``dist_checkpointing.save`` writes the common
(non-tensor) state as ``common.pt`` next to the torch_dist shards, and ``load`` reads it from there and
nowhere else (``TorchCommonLoadStrategy.load_common``; 0.16.1 fails with "AttributeError: 'str' object has
no attribute 'iterdir'" when it is absent). From 0.19.0, ``save`` stores that state as a ShardedObject
``common_state`` inside the torch_dist shards and writes no ``common.pt``; its ``load`` reads ``common.pt``
when present (older checkpoints) and the ShardedObject otherwise. So a checkpoint without ``common.pt``
needs megatron-core >= 0.19; one with it loads under every supported release. The check looks at the
files, not only at ``versions.json``, so it also answers for checkpoints written before versions were
recorded.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Optional

from packaging.version import Version

from mos_nemo.errors import MosCheckpointError

VERSIONS_FILE = "versions.json"
DIST_METADATA = "metadata.json"  # megatron's marker of a dist_checkpointing folder
LEGACY_COMMON = "common.pt"  # the common state's file up to megatron-core 0.18
COMMON_IN_SHARDS = Version("0.19.0")  # the first release that writes no common.pt
_PACKAGES = ("megatron-core", "torch", "mos_nemo")


def installed_versions() -> dict[str, str]:
    """This environment's versions of what writes and reads checkpoints, as ``versions.json`` holds them."""
    versions = {name: importlib.metadata.version(name) for name in _PACKAGES}
    versions["Python"] = platform.python_version()
    return versions


def write_versions(folder: Path) -> None:
    """``folder/versions.json`` (rank 0 only: one file per checkpoint)."""
    (Path(folder) / VERSIONS_FILE).write_text(json.dumps(installed_versions(), indent=1, sort_keys=True))


def recorded_versions(folder: Path) -> Optional[dict[str, str]]:
    """The versions that wrote ``folder``, or None for a checkpoint written before they were recorded."""
    try:
        versions = json.loads((Path(folder) / VERSIONS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return versions if isinstance(versions, dict) else None


def describe(versions: dict[str, str]) -> str:
    """``megatron-core 0.19.2 (torch 2.9.1, mos_nemo 0.1.0, Python 3.12.1)``."""
    others = ", ".join(f"{name} {versions[name]}" for name in ("torch", "mos_nemo", "Python") if name in versions)
    return f"megatron-core {versions.get('megatron-core', 'unknown')}" + (f" ({others})" if others else "")


def needed_reader(dist_dir: Path) -> Optional[Version]:
    """The oldest megatron-core that reads the torch_dist folder ``dist_dir``, None when any supported one does."""
    dist_dir = Path(dist_dir)
    if (dist_dir / DIST_METADATA).is_file() and not (dist_dir / LEGACY_COMMON).is_file():
        return COMMON_IN_SHARDS
    return None


def _export_advice(checkpoint: Path) -> str:
    return ("export it to Hugging Face in the environment that wrote it and use that folder here: "
            f"`python -m mos_nemo.convert export --ckpt {checkpoint} --out DIR` run there (or train with "
            "checkpoint.export_hf=true)")


def check_readable(checkpoint: Path, dist_dir: Optional[Path] = None) -> None:
    """Raise MosCheckpointError, before megatron's own traceback, when this megatron-core cannot read the
    checkpoint ``checkpoint`` (its torch_dist files in ``dist_dir``, default the same folder). Reads only."""
    checkpoint = Path(checkpoint)
    needed = needed_reader(dist_dir if dist_dir is not None else checkpoint)
    reader = installed_versions()
    if needed is None or Version(reader["megatron-core"]) >= needed:
        return
    writer = recorded_versions(checkpoint)
    written = (describe(writer) if writer else
               f"megatron-core >= {needed} (it has no {LEGACY_COMMON}; written before checkpoints recorded "
               f"their versions in {VERSIONS_FILE})")
    raise MosCheckpointError(
        f"checkpoint {checkpoint} was written by {written}; this environment has {describe(reader)}, which "
        f"cannot read it: from megatron-core {needed} the common state is stored inside the torch_dist shards, "
        f"and megatron-core < {needed} reads it only from {LEGACY_COMMON}. Nothing in {checkpoint} was changed. "
        f"Load it with megatron-core >= {needed.major}.{needed.minor} (Python >= 3.12, e.g. in the container it was "
        f"trained in), or " + _export_advice(checkpoint))


def version_note(checkpoint: Path) -> str:
    """For an error while loading: a note naming the writing and the reading versions when they differ
    (empty when they are the same or the checkpoint did not record them)."""
    writer, reader = recorded_versions(checkpoint), installed_versions()
    if writer is None or all(writer.get(name) == reader[name] for name in ("megatron-core", "torch")):
        return ""
    return (f" (note: it was written by {describe(writer)} and is read here by {describe(reader)}; if that is "
            f"why it fails, load it with the versions that wrote it, or {_export_advice(checkpoint)})")
