"""A save and the disk: will it fit, and what a failed save says and leaves behind.

Before a save, the free space of the checkpoints' disk is compared with the size of the previous
checkpoint (the best prediction of this one: same model, same format); a save that cannot fit is not
started. A save that fails anyway (the disk filled meanwhile, a quota, an I/O error) removes its
``.partial`` folder, so the space it took is free again and the previous checkpoint is untouched, and
says what happened, naming the disk: "disk full" when it is (ENOSPC anywhere in the error, or hardly any
space left; megatron's writer processes report it only as "unexpected pos ..."). Every rank learns of a
failure on any rank at the same point (an all-reduce), so none waits in a barrier for a rank that left.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from typing import Optional

from mos_nemo.engine.parallel import ParallelState
from mos_nemo.engine.training.checkpoint_files import MANIFEST, PARTIAL, is_complete, step_folders
from mos_nemo.engine.training.interrupt import any_rank_flagged
from mos_nemo.errors import MosCheckpointError

HEADROOM = 1.05  # a save may be a little larger than the previous one (the manifest, longer names)
NEARLY_FULL = 16 * 2**20  # bytes: after a failed save, less than this free means the disk was full


def _size(folder: Path) -> int:
    """Bytes of a complete checkpoint: from its manifest (no walk over shards), else by walking it."""
    try:
        return sum(int(size) for size, _ in json.loads((folder / MANIFEST).read_text())["files"].values())
    except (OSError, ValueError, KeyError, TypeError):
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _gib(size: float) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**28 else f"{size / 2**20:.1f} MiB"


def check_free_space(root: Path, step: int, parallel: ParallelState) -> None:
    """Collective: raise MosCheckpointError on every rank if step ``step``'s save cannot fit on ``root``'s disk."""
    previous = [p for p in step_folders(root) if is_complete(p)] if root.is_dir() else []
    problem = None
    if previous:
        need, free = _size(previous[-1]) * HEADROOM, shutil.disk_usage(root).free
        if free < need:
            problem = (f"disk full: checkpoint step_{step:07d} needs about {_gib(need)} (the size of "
                       f"{previous[-1].name}) but only {_gib(free)} are free on the disk of {root}; not "
                       f"saving, and stopping with {previous[-1].name} intact. Free space there (delete old "
                       "checkpoints, or set checkpoint.keep=N), then resume with the same command")
    if any_rank_flagged(problem is not None, parallel.world_size):
        raise MosCheckpointError(problem or f"disk full: another rank found no room for checkpoint step_{step:07d}")


def _is_disk_full(error: BaseException, root: Path) -> bool:
    seen: set[int] = set()
    pending: list = [error]
    while pending:
        item = pending.pop()
        if isinstance(item, tuple):  # torch.distributed.checkpoint's per-rank (exception, traceback)
            pending += [part for part in item if isinstance(part, BaseException)]
            continue
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(item) or "Disk quota exceeded" in str(item):
            return True
        pending += [item.__cause__, item.__context__, *getattr(item, "failures", {}).values()]
    try:
        return shutil.disk_usage(root).free < NEARLY_FULL
    except OSError:
        return False


def agree_save_ok(failure: Optional[BaseException], root: Path, step: int, parallel: ParallelState) -> None:
    """Collective: if the save failed on any rank, rank 0 removes its ``.partial`` folder and every rank raises
    MosCheckpointError saying why (disk full, or this rank's error), naming the checkpoint and the disk."""
    if not any_rank_flagged(failure is not None, parallel.world_size):
        return
    name, partial = f"step_{step:07d}", root / f"step_{step:07d}{PARTIAL}"
    full = _is_disk_full(failure, root) if failure is not None else _is_disk_full(RuntimeError(), root)
    if parallel.rank == 0:
        shutil.rmtree(partial, ignore_errors=True)
    previous = [p.name for p in step_folders(root) if is_complete(p) and p.name != name]
    kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "there is no earlier checkpoint"
    cause = (f"{type(failure).__name__}: {str(failure).splitlines()[-1][:300] if str(failure) else ''}"
             if failure is not None else "another rank failed (see its log)")
    what = "disk full" if full else "the save failed"
    raise MosCheckpointError(
        f"{what}: checkpoint {name} could not be written to {root} ({cause}); removed {partial.name}, {kept}. "
        + ("Free space on that disk (delete old checkpoints, or set checkpoint.keep=N), then resume with the "
           "same command" if full else "Fix the cause, then resume with the same command"))
