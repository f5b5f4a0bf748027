"""Training checkpoints: model and optimizer via megatron dist_checkpointing, the rest as small files.

Layout of ``run.dir/checkpoints/``::

    step_0000010/            model + optimizer shards (torch_dist), written by every rank
        trainer_state.pt     step, LR schedule, blend state, mixing state (rank 0)
        config.yaml          the resolved config the checkpoint was trained with (rank 0)
        hf_config.json, tokenizer/   the model's HF config and tokenizer, so `convert export` needs nothing else
        rng/rank_00000.pt    each rank's RNG states (python, numpy, torch, megatron's tracker)
        versions.json        the megatron-core, torch, mos_nemo and Python versions that wrote it (rank 0)
        manifest.json        size and CRC-32 of every file above, checked at load
        meta.json            step, layout and optimizer format; written last
        verdict.json         good or not, once the next step's loss from these weights is known
    latest                   the name of the newest complete checkpoint

Atomic by construction: everything is written into ``step_N.partial/`` and renamed to ``step_N/`` only
after every rank has finished, then ``latest`` is replaced (write + rename). A crash mid-save leaves a
``.partial`` folder that is never taken for the latest.

Two formats for the distributed optimizer's state: ``dp_reshardable`` (each rank writes its own shard, no
gather: fast, resumable with the same TP and PP and any DP) and ``fully_reshardable`` (gathered on DP rank
0 into per-parameter tensors: slower, resumable under any layout). ``checkpoint.format=auto`` writes
periodic and signal saves in the fast one and the final save in the reshardable one.

At 8B scale (docs/engine.md, "Saving at scale"): the reshardable gather is megatron's memory-efficient one
(over gloo, to DP rank 0 only; without it every DP rank would hold the whole fp32 optimizer state), every
DP rank writes a share of the replicated tensors (FullyParallelSaveStrategyWrapper; without it DP rank 0
writes every weight), and the waits on other ranks' writing are gloo barriers with a timeout of hours.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from mos_nemo.engine.cpu import device_mode
from mos_nemo.engine.parallel import ParallelState, long_wait_barrier
from mos_nemo.engine.training.checkpoint_files import (
    LATEST, META, PARTIAL, is_complete, newest_good, previous_complete, step_folders, verdict, verify_manifest,
    write_manifest)
from mos_nemo.engine.training.checkpoint_versions import check_readable, version_note, write_versions
from mos_nemo.engine.training.disk import agree_save_ok, check_free_space
from mos_nemo.engine.training.optimizer_state import OptimizerLoad, adopt_lr_bounds
from mos_nemo.engine.training.step import unwrap
from mos_nemo.errors import MosCheckpointError

from megatron.core import dist_checkpointing, parallel_state
from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelSaveStrategyWrapper
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
    """The checkpoint ``checkpoint.resume=auto`` takes: the newest one (named by ``latest``, else the newest
    complete one) unless a step trained from it showed a non-finite loss; then the newest not shown bad.

    A checkpoint saved at the end of a launch (signal, deadline, stop_after) has no later step yet, so
    "not shown bad" rather than "confirmed good": its first resumed step confirms or refutes it."""
    root = checkpoints_dir(run_dir)
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if candidate.is_dir() and verdict(candidate) is not False:
            return candidate
    usable = [p for p in step_folders(root) if is_complete(p) and verdict(p) is not False]
    return usable[-1] if usable else None


def newest_good_checkpoint(run_dir: str | Path) -> Optional[Path]:
    return newest_good(checkpoints_dir(run_dir))


def _sharded_state(model: list, optimizer, is_loading: bool, sharding: str) -> dict:
    model_state = unwrap(model[0]).sharded_state_dict()
    # mem_efficient: the fully_reshardable gather goes over gloo to DP rank 0 only (megatron 0.16
    # distrib_optimizer.sharded_param_state_fully_reshardable); loading is the same either way.
    metadata = {"distrib_optim_sharding_type": sharding, "distrib_optim_fully_reshardable_mem_efficient": True}
    optimizer_state = optimizer.sharded_state_dict(model_state, is_loading=is_loading, metadata=metadata)
    if not is_loading and optimizer_state.get("param_state", 0) is None:
        # memory-efficient save off DP rank 0: nothing to write. Dropped, else megatron warns on every such
        # save that this rank's common state (param_state=None) differs from rank 0's.
        del optimizer_state["param_state"]
    return {"model": model_state, "optimizer": optimizer_state}


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
    started = time.perf_counter()
    root = checkpoints_dir(run_dir)
    final = root / f"step_{step:07d}"
    partial = root / f"step_{step:07d}{PARTIAL}"
    check_free_space(root, step, parallel)
    failure = None
    try:
        if parallel.rank == 0:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)  # empty: dist_checkpointing refuses to write into a used folder
    except OSError as error:
        failure = error
    agree_save_ok(failure, root, step, parallel)  # also the barrier before the ranks write into it
    try:
        with device_mode():
            dist_checkpointing.save(_sharded_state(model, optimizer, False, sharding), str(partial),
                                    sharded_strategy=parallel_save_strategy())
        (partial / "rng").mkdir(exist_ok=True)
        torch.save(rng_state(), partial / "rng" / f"rank_{parallel.rank:05d}.pt")
        if parallel.rank == 0:
            torch.save(trainer_state, partial / "trainer_state.pt")
            write_versions(partial)
            if config_yaml is not None:
                (partial / "config.yaml").write_text(config_yaml)
            if hf_config is not None:
                from mos_nemo.engine.hf.model_checkpoint import write_model_description

                write_model_description(partial, hf_config, tokenizer_dir)
    except (Exception, CheckpointException) as error:  # noqa: BLE001 - said and cleaned up on every rank
        failure = error
    agree_save_ok(failure, root, step, parallel)
    try:
        write_manifest(partial, with_checksums=checksums)
        if parallel.rank == 0:
            meta = {"step": step, "tp": parallel.tp, "pp": parallel.pp, "dp": parallel.dp,
                    "world_size": parallel.world_size, "optimizer_format": sharding,
                    "save_seconds": round(time.perf_counter() - started, 3),  # predicts the next launch's save
                    "checksums": checksums}
            (partial / META).write_text(json.dumps(meta))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(partial, final)
            pointer = root / f"{LATEST}.tmp"
            pointer.write_text(final.name)
            os.replace(pointer, root / LATEST)
            _prune(root, keep)
    except OSError as error:
        failure = error
    agree_save_ok(failure, root, step, parallel)
    return final


def parallel_save_strategy() -> FullyParallelSaveStrategyWrapper:
    """megatron's default torch_dist writer, with every tensor replicated over data-parallel ranks (the model
    weights; all of a dp_reshardable save but each rank's own optimizer shard) written by one of them in
    turn, balanced by size, instead of all by DP rank 0. Only metadata is exchanged to decide who writes."""
    group = parallel_state.get_data_parallel_group(with_context_parallel=True)
    return FullyParallelSaveStrategyWrapper(get_default_save_sharded_strategy(), group)


def _prune(root: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints and, whatever ``keep`` says, the newest one confirmed good."""
    if keep <= 0:
        return
    good = newest_good(root)
    for old in step_folders(root)[:-keep]:
        if old != good:
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


def load_tolerant(sharded: dict, folder: Path, subset: bool = False, checkpoint: Optional[Path] = None) -> dict:
    """dist_checkpointing.load that ignores only Transformer Engine's ``_extra_state`` keys, either way:
    a local-spec checkpoint into a TE model (asked for, not stored) or a TE one into a local model.

    ``subset``: ``sharded`` asks for part of what the checkpoint holds (the model of a training checkpoint,
    without its optimizer), so keys stored but not asked for are expected; every key asked for must be there.
    ``checkpoint``: the folder the user named, holding ``versions.json`` (default ``folder``). A checkpoint
    this megatron-core cannot read is refused before megatron tries (checkpoint_versions.py); any other
    failure, when other versions wrote it, says so.
    """
    checkpoint = Path(checkpoint if checkpoint is not None else folder)
    check_readable(checkpoint, folder)
    try:  # megatron's naming: "missing" = stored but not asked for, "unexpected" = asked for but not stored.
        state, missing, unexpected = dist_checkpointing.load(sharded, str(folder), strict=StrictHandling.RETURN_ALL)
    except (Exception, CheckpointException) as error:  # noqa: BLE001 - re-raised, with the versions if they differ
        note = version_note(checkpoint)
        if not note:
            raise
        raise _fail(checkpoint, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                                f"{note}") from error
    other = sorted(k for k in (set() if subset else set(missing)) | set(unexpected) if not k.endswith(EXTRA_STATE))
    if other:
        raise _fail(folder, f"its keys do not match this model: {other[:5]}{' ...' if len(other) > 5 else ''}"
                            f" (another model shape or family?){version_note(checkpoint)}")
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
    problems = verify_manifest(folder, with_checksums=bool(meta.get("checksums", False)))
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
            adopt_lr_bounds(state["optimizer"], optimizer)
            optimizer.load_state_dict(state["optimizer"])
        trainer_state = torch.load(folder / "trainer_state.pt", weights_only=False)
    except MosCheckpointError as error:
        if folder.name in str(error):
            raise
        raise _fail(folder, str(error)) from None
    except (Exception, CheckpointException) as error:  # noqa: BLE001 - any read failure: name the checkpoint
        raise _fail(folder, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                            f"{version_note(folder)}") from error
    optimizer_load.finish()
    same_layout = same_model_layout and meta["world_size"] == parallel.world_size
    rng_file = folder / "rng" / f"rank_{parallel.rank:05d}.pt"
    trainer_state["rng_restored"] = same_layout and rng_file.is_file()
    if trainer_state["rng_restored"]:
        set_rng_state(torch.load(rng_file, weights_only=False))
    trainer_state["saved_layout"] = {k: meta[k] for k in ("tp", "pp", "dp")}
    trainer_state["save_seconds"] = meta.get("save_seconds")
    return trainer_state
