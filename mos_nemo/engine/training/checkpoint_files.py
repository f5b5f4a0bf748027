"""The files of a checkpoint folder: which folders are complete, and a manifest to check them at load.

``verdict.json`` says whether the checkpoint is good: written (by rank 0) once the first step trained
from its weights has ended. A finite loss and gradient norm confirm it; a non-finite one shows that the weights it
holds are poisoned (the update saved with it exploded), and ``checkpoint.resume=auto`` then passes over it.

``manifest.json`` lists every file of a checkpoint with its size and, unless the save was a signal save
(which must finish within torchrun's grace period), its CRC-32. Ranks share the hashing and the checking:
rank r handles the files ``sorted(files)[r::world_size]``, so neither costs more than one rank's share.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Optional

import torch.distributed as dist

MANIFEST = "manifest.json"
META = "meta.json"
VERDICT = "verdict.json"
LATEST = "latest"
PARTIAL = ".partial"
_CHUNK = 1 << 24


def crc32(path: Path) -> int:
    value = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            value = zlib.crc32(chunk, value)
    return value


def _files(folder: Path) -> list[str]:
    skip = {MANIFEST, META, VERDICT}
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name not in skip)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(part: dict) -> dict:
    rank, world = _world()
    if world == 1:
        return part
    parts: list = [None] * world
    dist.all_gather_object(parts, part)
    merged: dict = {}
    for item in parts:
        merged.update(item)
    return merged


def write_manifest(folder: Path, with_checksums: bool) -> None:
    """Collective: every rank sizes (and hashes) its share of the files; rank 0 writes the manifest."""
    rank, world = _world()
    names = _files(folder)
    mine = {name: [(folder / name).stat().st_size, crc32(folder / name) if with_checksums else None]
            for name in names[rank::world]}
    entries = _gather(mine)
    if rank == 0:
        (folder / MANIFEST).write_text(json.dumps({"files": entries}, indent=0, sort_keys=True))


def _entry(value) -> Optional[tuple[int, Optional[int]]]:
    """A manifest entry ``[size, crc32 or null]``, or None if it is not one."""
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int)):
        return None
    if value[1] is not None and not isinstance(value[1], int):
        return None
    return value[0], value[1]


def read_manifest(folder: Path, with_checksums: bool) -> tuple[dict, list[str]]:
    """``({name: (size, crc32 or None)}, problems)``: a manifest that is missing, does not parse, has an entry
    that does not parse, or lacks CRCs that the save recorded (``with_checksums``) is a problem, not silence."""
    try:
        entries = json.loads((folder / MANIFEST).read_text())["files"]
        if not isinstance(entries, dict):
            raise TypeError("'files' is not an object")
    except FileNotFoundError:
        return {}, [f"it has no {MANIFEST}, so its files cannot be checked"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return {}, [f"{MANIFEST} is unreadable ({type(error).__name__}: {error})"]
    parsed, problems = {}, []
    for name, value in sorted(entries.items()):
        entry = _entry(value)
        if entry is None:
            problems.append(f"{MANIFEST} entry {name!r} is {value!r}, not [size, crc32 or null]")
        elif with_checksums and entry[1] is None:
            problems.append(f"{MANIFEST} has no CRC-32 for {name} although this save recorded them")
        else:
            parsed[name] = entry
    return parsed, problems


def verify_manifest(folder: Path, with_checksums: bool = False) -> list[str]:
    """Collective: what is wrong with ``folder``'s files (empty list if nothing), the same on every rank.
    ``with_checksums``: the save recorded CRC-32s (meta.json says so), so each entry must have one."""
    rank, world = _world()
    problems: dict[str, str] = {}
    entries, unreadable = read_manifest(folder, with_checksums)
    if unreadable:
        return unreadable
    for name in sorted(entries)[rank::world]:
        size, checksum = entries[name]
        path = folder / name
        if not path.is_file():
            problems[name] = f"{name} is missing"
        elif path.stat().st_size != size:
            problems[name] = f"{name} has {path.stat().st_size} bytes, {size} when saved (truncated or rewritten)"
        elif checksum is not None and crc32(path) != checksum:
            problems[name] = f"{name} has a different CRC-32 than when saved (its bytes changed)"
    return [problems[name] for name in sorted(_gather(problems))] if world > 1 else list(problems.values())


def step_folders(root: Path) -> list[Path]:
    """Every ``step_N`` folder (complete or not, no ``.partial``), oldest first."""
    return sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(PARTIAL))


def is_complete(folder: Path) -> bool:
    return (folder / META).is_file()


def write_verdict(folder: Path, good: bool, by_step: int, loss: float) -> None:
    """Record that step ``by_step``, trained from ``folder``'s weights, was finite (good) or not (loss ``loss``). Atomic (write + rename): a full disk leaves no half-written verdict."""
    if not folder.is_dir():  # pruned meanwhile
        return
    temporary = folder / f"{VERDICT}.tmp"
    temporary.write_text(json.dumps({"good": good, "by_step": by_step, "loss": str(loss)}))
    temporary.replace(folder / VERDICT)


def verdict(folder: Path) -> Optional[bool]:
    """True: the step after it was finite; False: it was not; None: not known yet."""
    try:
        return bool(json.loads((folder / VERDICT).read_text())["good"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def newest_good(root: Path) -> Optional[Path]:
    """The newest complete checkpoint confirmed good by a finite step after it, or None."""
    good = [p for p in step_folders(root) if is_complete(p) and verdict(p) is True]
    return good[-1] if good else None


def previous_complete(folder: Path) -> Optional[Path]:
    """The newest complete checkpoint older than ``folder`` in the same checkpoints/ folder."""
    older = [p for p in step_folders(folder.parent) if p.name < folder.name and is_complete(p)]
    return older[-1] if older else None

