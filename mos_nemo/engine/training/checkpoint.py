"""Training checkpoints: model and optimizer via megatron dist_checkpointing, the rest as small files.

Layout of ``run.dir/checkpoints/``::

    step_0000010/            model + optimizer shards (torch_dist), written by every rank
        trainer_state.pt     step, LR schedule, blend state, mixing state (rank 0)
        config.yaml          the resolved config the checkpoint was trained with (rank 0)
        hf_config.json, tokenizer/   the model's HF config and tokenizer, so `convert export` needs nothing else
        rng/rank_00000.pt    each rank's RNG states (python, numpy, torch, megatron's tracker)
        manifest.json        size and CRC-32 of every file above, checked at load
        meta.json            step, layout and optimizer format; written last
    latest                   the name of the newest complete checkpoint

Atomic by construction: everything is written into ``step_N.partial/`` and renamed to ``step_N/`` only
after every rank has finished, then ``latest`` is replaced (write + rename). A crash mid-save leaves a
``.partial`` folder that is never taken for the latest.

Two formats for the distributed optimizer's state: ``dp_reshardable`` (each rank writes its own shard, no
gather: fast, resumable with the same TP and PP and any DP) and ``fully_reshardable`` (gathered on DP rank
0 into per-parameter tensors: slower, resumable under any layout). ``checkpoint.format=auto`` writes
periodic and signal saves in the fast one and the final save in the reshardable one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

from mos_nemo.engine.cpu import device_mode
from mos_nemo.engine.parallel import ParallelState
from mos_nemo.engine.training.checkpoint_files import (
    LATEST, META, PARTIAL, is_complete, previous_complete, step_folders, verify_manifest, write_manifest)
from mos_nemo.engine.training.optimizer_state import OptimizerLoad
from mos_nemo.engine.training.step import unwrap
from mos_nemo.errors import MosCheckpointError

from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.validation import StrictHandling
from megatron.core.tensor_parallel.random import get_cuda_rng_tracker
from torch.distributed.checkpoint.api import CheckpointException  # a BaseException, not an Exception

FAST, RESHARDABLE = "dp_reshardable", "fully_reshardable"
EXTRA_STATE = "_extra_state"  # Transformer Engine's per-module metadata (fp8 scales); absent in the local spec


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def sharding_format(configured: str, final: bool) -> str:
    """The optimizer format of one save: ``auto`` is fast for periodic/signal saves, reshardable at the end."""
    if configured == "auto":
        return RESHARDABLE if final else FAST
    return str(configured)  # a plain str: megatron stores it in common.pt, which it loads with weights_only


def find_latest(run_dir: str | Path) -> Optional[Path]:
    """The newest checkpoint of a run (named by ``latest``, else the newest complete one), or None."""
    root = checkpoints_dir(run_dir)
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if candidate.is_dir():
            return candidate
    complete = [p for p in step_folders(root) if is_complete(p)]
    return complete[-1] if complete else None


def _sharded_state(model: list, optimizer, is_loading: bool, sharding: str) -> dict:
    model_state = unwrap(model[0]).sharded_state_dict()
    metadata = {"distrib_optim_sharding_type": sharding}
    return {"model": model_state,
            "optimizer": optimizer.sharded_state_dict(model_state, is_loading=is_loading, metadata=metadata)}


def rng_state() -> dict[str, Any]:
    """This rank's RNG states: python, numpy, torch, megatron's tracker (and CUDA's on GPU)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "tracker": get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back states taken by ``rng_state``."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    get_cuda_rng_tracker().set_states(state["tracker"])
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(run_dir: str | Path, step: int, model: list, optimizer, trainer_state: dict[str, Any],
                    parallel: ParallelState, keep: int = 0, sharding: str = RESHARDABLE,
                    checksums: bool = True, config_yaml: Optional[str] = None, hf_config=None,
                    tokenizer_dir=None) -> Path:
    """Write checkpoint ``step`` atomically (collective: every rank calls it); return its folder.

    ``hf_config`` and ``tokenizer_dir``: what an export of this checkpoint needs (model_checkpoint.py's layout).
    """
    root = checkpoints_dir(run_dir)
    final = root / f"step_{step:07d}"
    partial = root / f"step_{step:07d}{PARTIAL}"
    if parallel.rank == 0:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)  # empty: dist_checkpointing refuses to write into a used folder
    dist.barrier()
    with device_mode():
        dist_checkpointing.save(_sharded_state(model, optimizer, False, sharding), str(partial))
    (partial / "rng").mkdir(exist_ok=True)
    torch.save(rng_state(), partial / "rng" / f"rank_{parallel.rank:05d}.pt")
    if parallel.rank == 0:
        torch.save(trainer_state, partial / "trainer_state.pt")
        if config_yaml is not None:
            (partial / "config.yaml").write_text(config_yaml)
        if hf_config is not None:
            from mos_nemo.engine.hf.model_checkpoint import write_model_description

            write_model_description(partial, hf_config, tokenizer_dir)
    dist.barrier()
    write_manifest(partial, with_checksums=checksums)
    if parallel.rank == 0:
        meta = {"step": step, "tp": parallel.tp, "pp": parallel.pp, "dp": parallel.dp,
                "world_size": parallel.world_size, "optimizer_format": sharding}
        (partial / META).write_text(json.dumps(meta))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        pointer = root / f"{LATEST}.tmp"
        pointer.write_text(final.name)
        os.replace(pointer, root / LATEST)
        _prune(root, keep)
    dist.barrier()
    return final


def _prune(root: Path, keep: int) -> None:
    if keep <= 0:
        return
    for old in step_folders(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _fail(folder: Path, problem: str) -> MosCheckpointError:
    """Our error for a checkpoint that cannot be loaded: names it, says why, offers the previous one."""
    previous = previous_complete(folder) if folder.parent.is_dir() else None
    offer = (f"the previous complete checkpoint is {previous.name}: resume from it with "
             f"checkpoint.resume={previous}" if previous is not None else
             "there is no older complete checkpoint; start afresh with checkpoint.resume=none (or another run.dir)")
    return MosCheckpointError(f"checkpoint {folder.name} ({folder}) cannot be loaded: {problem}; {offer}")


def read_meta(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise _fail(folder, "no such folder")
    if not is_complete(folder):
        raise _fail(folder, f"no {META}, so it was never completely written (a save was interrupted)")
    try:
        return json.loads((folder / META).read_text())
    except ValueError as error:
        raise _fail(folder, f"{META} is unreadable ({error})") from None


def load_tolerant(sharded: dict, folder: Path, subset: bool = False) -> dict:
    """dist_checkpointing.load that ignores only Transformer Engine's ``_extra_state`` keys, either way:
    a local-spec checkpoint into a TE model (asked for, not stored) or a TE one into a local model.

    ``subset``: ``sharded`` asks for part of what the checkpoint holds (the model of a training checkpoint,
    without its optimizer), so keys stored but not asked for are expected; every key asked for must be there.
    """
    # megatron's naming: "missing" = stored but not asked for, "unexpected" = asked for but not stored.
    state, missing, unexpected = dist_checkpointing.load(sharded, str(folder), strict=StrictHandling.RETURN_ALL)
    other = sorted(k for k in (set() if subset else set(missing)) | set(unexpected) if not k.endswith(EXTRA_STATE))
    if other:
        raise _fail(folder, f"its keys do not match this model: {other[:5]}{' ...' if len(other) > 5 else ''}"
                            " (another model shape or family?)")
    return state


def apply_model_state(module: torch.nn.Module, state: dict) -> None:
    """``load_state_dict`` that tolerates only ``_extra_state`` keys missing or left over (TE <-> local)."""
    result = module.load_state_dict(state, strict=False)
    other = [k for k in [*result.missing_keys, *result.unexpected_keys] if not k.endswith(EXTRA_STATE)]
    if other:
        raise MosCheckpointError(f"model state does not match the model: {other[:5]}")


def load_checkpoint(folder: str | Path, model: list, optimizer, parallel: ParallelState) -> dict[str, Any]:
    """Restore model, optimizer and (same layout) RNG from ``folder`` (collective); return the trainer state
    with ``rng_restored`` added. Raises MosCheckpointError naming the folder for anything wrong with it."""
    folder = Path(folder)
    meta = read_meta(folder)
    problems = verify_manifest(folder)
    if problems:
        raise _fail(folder, "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""))
    sharding = meta.get("optimizer_format", RESHARDABLE)
    same_model_layout = (meta["tp"], meta["pp"]) == (parallel.tp, parallel.pp)
    if sharding == FAST and not same_model_layout:
        raise _fail(folder, f"it holds the optimizer in the {FAST} format, saved at tp={meta['tp']} "
                            f"pp={meta['pp']}; that format resumes only with the same tp and pp (any dp). Resume "
                            f"once with parallel.tp={meta['tp']} parallel.pp={meta['pp']} checkpoint.format={RESHARDABLE} "
                            f"train.stop_after={meta['step'] + 1}, then change the layout")
    optimizer_load = OptimizerLoad(optimizer)
    optimizer_load.prepare()
    try:
        with torch.no_grad(), device_mode(), optimizer_load.context():
            state = load_tolerant(_sharded_state(model, optimizer, True, sharding), folder)
            apply_model_state(unwrap(model[0]), state["model"])
            optimizer.load_state_dict(state["optimizer"])
        trainer_state = torch.load(folder / "trainer_state.pt", weights_only=False)
    except MosCheckpointError as error:
        if folder.name in str(error):
            raise
        raise _fail(folder, str(error)) from None
    except (Exception, CheckpointException) as error:  # noqa: BLE001 - any read failure: name the checkpoint
        raise _fail(folder, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from error
    optimizer_load.finish()
    same_layout = same_model_layout and meta["world_size"] == parallel.world_size
    rng_file = folder / "rng" / f"rank_{parallel.rank:05d}.pt"
    trainer_state["rng_restored"] = same_layout and rng_file.is_file()
    if trainer_state["rng_restored"]:
        set_rng_state(torch.load(rng_file, weights_only=False))
    trainer_state["saved_layout"] = {k: meta[k] for k in ("tp", "pp", "dp")}
    return trainer_state
