"""Training checkpoints: model and optimizer via megatron dist_checkpointing, the rest as small files.

Layout of ``run.dir/checkpoints/``::

    step_0000010/            model + optimizer shards (torch_dist), written by every rank
        trainer_state.pt     step, LR schedule, blend state, mixing state (rank 0)
        rng/rank_00000.pt    each rank's RNG states (python, numpy, torch, megatron's tracker)
        meta.json            step and the parallel layout it was saved with; written last
    latest                   the name of the newest complete checkpoint

Atomic by construction: everything is written into ``step_N.partial/`` and renamed to ``step_N/`` only
after every rank has finished, then ``latest`` is replaced (write + rename). A crash mid-save leaves a
``.partial`` folder that is never taken for the latest.

The model and distributed-optimizer state use the ``fully_reshardable`` format, so a run can resume with
other TP/PP sizes. Exact resume with torch's AdamW needs the optimizer state (with a per-parameter ``step``)
allocated before the load state dict is built, and a separate ``step`` tensor per parameter after loading:
megatron restores one shared tensor, which AdamW would then advance once per parameter (STACK.md).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist

from mos_nemo.engine.cpu import device_mode
from mos_nemo.engine.parallel import ParallelState
from mos_nemo.engine.training.step import unwrap
from mos_nemo.errors import MosCheckpointError

from megatron.core import dist_checkpointing
from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

LATEST = "latest"
PARTIAL = ".partial"
SHARDING = {"distrib_optim_sharding_type": "fully_reshardable"}


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def find_latest(run_dir: str | Path) -> Optional[Path]:
    """The newest complete checkpoint of a run (named by ``latest``), or None if there is none."""
    root = checkpoints_dir(run_dir)
    pointer = root / LATEST
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / "meta.json").is_file():
            return candidate
    complete = [p for p in root.glob("step_*") if not p.name.endswith(PARTIAL) and (p / "meta.json").is_file()]
    return max(complete, key=lambda p: p.name) if complete else None


def _torch_optimizers(optimizer) -> list[torch.optim.Optimizer]:
    """The torch optimizers inside megatron's (possibly chained) optimizer."""
    parts = getattr(optimizer, "chained_optimizers", [optimizer])
    return [part.optimizer for part in parts if getattr(part, "optimizer", None) is not None]


def _allocate_optimizer_state(optimizer) -> None:
    """Give every parameter its AdamW state (zeros, step 0) so the load state dict has a slot for each."""
    for torch_optimizer in _torch_optimizers(optimizer):
        for group in torch_optimizer.param_groups:
            for param in group["params"]:
                state = torch_optimizer.state[param]
                state.setdefault("exp_avg", torch.zeros_like(param.data))
                state.setdefault("exp_avg_sq", torch.zeros_like(param.data))
                state.setdefault("step", torch.tensor(0.0))


@contextmanager
def _keep_step_on_load(optimizer):
    """megatron's fully_reshardable load copies every state key of a parameter from the checkpoint, but the
    checkpoint has no per-parameter ``step`` (it travels in the param groups): keep the current one."""
    patched = []
    for part in getattr(optimizer, "chained_optimizers", [optimizer]):
        original = getattr(part, "_set_main_param_and_optimizer_states", None)
        if original is None:
            continue

        def set_states(model_param, tensors, part=part, original=original):
            group_index, group_order = part.model_param_group_index_map[model_param]
            main_param = part.optimizer.param_groups[group_index]["params"][group_order]
            step = part.optimizer.state[main_param].get("step")
            original(model_param, tensors if step is None else {**tensors, "step": step})

        part._set_main_param_and_optimizer_states = set_states
        patched.append(part)
    try:
        yield
    finally:
        for part in patched:
            del part._set_main_param_and_optimizer_states  # back to the class method


def _untie_step_tensors(optimizer) -> None:
    """One ``step`` tensor per parameter: AdamW increments it in place, once per parameter."""
    for torch_optimizer in _torch_optimizers(optimizer):
        for state in torch_optimizer.state.values():
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = state["step"].clone()


def _sharded_state(model: list, optimizer, is_loading: bool) -> dict:
    model_state = unwrap(model[0]).sharded_state_dict()
    return {
        "model": model_state,
        "optimizer": optimizer.sharded_state_dict(model_state, is_loading=is_loading, metadata=SHARDING),
    }


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "tracker": get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    get_cuda_rng_tracker().set_states(state["tracker"])
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(run_dir: str | Path, step: int, model: list, optimizer, trainer_state: dict[str, Any],
                    parallel: ParallelState, keep: int = 0) -> Path:
    """Write checkpoint ``step`` atomically (collective: every rank calls it); return its folder."""
    root = checkpoints_dir(run_dir)
    final = root / f"step_{step:07d}"
    partial = root / f"step_{step:07d}{PARTIAL}"
    if parallel.rank == 0:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)  # empty: dist_checkpointing refuses to write into a used folder
    dist.barrier()
    with device_mode():
        dist_checkpointing.save(_sharded_state(model, optimizer, is_loading=False), str(partial))
    (partial / "rng").mkdir(exist_ok=True)
    torch.save(_rng_state(), partial / "rng" / f"rank_{parallel.rank:05d}.pt")
    if parallel.rank == 0:
        torch.save(trainer_state, partial / "trainer_state.pt")
    dist.barrier()
    if parallel.rank == 0:
        meta = {"step": step, "tp": parallel.tp, "pp": parallel.pp, "dp": parallel.dp,
                "world_size": parallel.world_size}
        (partial / "meta.json").write_text(json.dumps(meta))
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
    complete = sorted(p for p in root.glob("step_*") if not p.name.endswith(PARTIAL))
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: str | Path, model: list, optimizer, parallel: ParallelState) -> dict[str, Any]:
    """Restore model, optimizer and RNG from ``folder`` (collective); return the trainer state."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise MosCheckpointError(f"checkpoint.resume={str(folder)!r}: no meta.json there, so it is not a "
                                 "complete checkpoint; give a checkpoints/step_N folder or resume=auto")
    meta = json.loads(meta_path.read_text())
    _allocate_optimizer_state(optimizer)
    with torch.no_grad(), device_mode(), _keep_step_on_load(optimizer):
        state = dist_checkpointing.load(_sharded_state(model, optimizer, is_loading=True), str(folder))
        unwrap(model[0]).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    _untie_step_tensors(optimizer)
    same_layout = (meta["tp"], meta["pp"], meta["world_size"]) == (parallel.tp, parallel.pp, parallel.world_size)
    rng_file = folder / "rng" / f"rank_{parallel.rank:05d}.pt"
    if same_layout and rng_file.is_file():
        _set_rng_state(torch.load(rng_file, weights_only=False))
    return torch.load(folder / "trainer_state.pt", weights_only=False)
