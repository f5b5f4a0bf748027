"""Process group and megatron-core parallel-state set-up, on CPU (gloo) or GPU (nccl).

``initialize_parallel`` reads the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT). Without WORLD_SIZE it runs as a single process (world size 1) on a free local port.
Rank order is megatron's default "tp-cp-ep-dp-pp": TP ranks are adjacent, PP is the outermost dimension.
"""

from __future__ import annotations

import atexit
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from mos_nemo.engine.cpu import install_cpu_shims
from mos_nemo.errors import MosConfigError
from mos_nemo.known_notices import gloo_connection_lines_dropped

from megatron.core import parallel_state
from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

# Collectives of the training step: a hang still surfaces within the usual 10 minutes (NCCL's default).
STEP_TIMEOUT = timedelta(minutes=10)
# One-off waits while one rank downloads / tokenises datasets or writes a multi-GB HF export: an 8B
# export to a network file system takes well over NCCL's 10 minutes.
LONG_WAIT_TIMEOUT = timedelta(hours=4)
_long_wait_group = None
_long_wait_world = None  # the default group _long_wait_group was made in


def cuda_environment(environ, cuda_available: bool) -> dict[str, str]:
    """Variables megatron needs set before CUDA initialises: CUDA_DEVICE_MAX_CONNECTIONS=1 on GPU, so that
    the kernels of overlapped TP / DP communication are queued in issue order (megatron-core
    tensor_parallel/layers.py warns without it under sequence parallelism). A user's own value is kept."""
    if not cuda_available or "CUDA_DEVICE_MAX_CONNECTIONS" in environ:
        return {}
    return {"CUDA_DEVICE_MAX_CONNECTIONS": "1"}

@dataclass(frozen=True)
class ParallelState:
    """Where this process sits in the TP x PP x DP grid."""

    rank: int
    world_size: int
    tp: int
    pp: int
    dp: int
    tp_rank: int
    pp_rank: int
    dp_rank: int
    is_first_stage: bool
    is_last_stage: bool
    device: torch.device


def _init_process_group() -> None:
    """Join (or, alone, create) the default process group from the torchrun environment."""
    if dist.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    os.environ.update(cuda_environment(os.environ, torch.cuda.is_available()))  # before the CUDA context
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if "WORLD_SIZE" in os.environ:
        if os.environ.get("MASTER_PORT") == "0" and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torch 2.13's torchrun passes port 0 on to its workers, which then wait forever for a store.
            raise MosConfigError(
                "torchrun was started with --master-port 0, which hands its workers port 0 and hangs them; "
                "launch with `torchrun --standalone --nproc-per-node N ...` or a fixed --master-port."
            )
        dist.init_process_group(backend, timeout=STEP_TIMEOUT)
    else:
        # Alone: a store on port 0 (the OS picks a free one), and os.environ stays untouched so that
        # subprocesses started later do not mistake themselves for torchrun ranks.
        dist.init_process_group(backend, init_method="tcp://127.0.0.1:0", rank=0, world_size=1,
                                timeout=STEP_TIMEOUT)
    atexit.register(_destroy_process_group_at_exit)


def _check_layout(world_size: int, tp: int, pp: int) -> None:
    if tp < 1 or pp < 1:
        raise MosConfigError(f"parallel.tp={tp}, parallel.pp={pp}: both must be >= 1.")
    if world_size % (tp * pp) != 0:
        raise MosConfigError(
            f"parallel.tp={tp} x parallel.pp={pp} = {tp * pp} does not divide the world size {world_size}: "
            f"launch a multiple of {tp * pp} processes (torchrun --nproc-per-node) or change parallel.tp/pp."
        )


def initialize_parallel(tp: int, pp: int, seed: int, sequence_parallel: bool = False) -> ParallelState:
    """Create the process groups of a TP x PP x DP layout and seed megatron's RNG tracker.

    ``sequence_parallel`` only needs TP > 1; it is a model setting (see ``model.build_model``) and is
    checked here so that a bad layout fails before any model is built.
    """
    install_cpu_shims()
    with gloo_connection_lines_dropped():  # torch 2.9's gloo prints a line per rank and group it joins
        _init_process_group()
        _create_long_wait_group()
        world_size = dist.get_world_size()
        _check_layout(world_size, tp, pp)
        if sequence_parallel and tp == 1:
            raise MosConfigError(
                "parallel.sequence_parallel=true needs parallel.tp > 1 (it splits activations across TP ranks); "
                "set parallel.sequence_parallel=false or raise parallel.tp."
            )
        if parallel_state.model_parallel_is_initialized() and (
                parallel_state.get_tensor_model_parallel_world_size(),
                parallel_state.get_pipeline_model_parallel_world_size()) != (tp, pp):
            parallel_state.destroy_model_parallel()  # a different layout than the one left behind
        if not parallel_state.model_parallel_is_initialized():
            parallel_state.initialize_model_parallel(
                tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp
            )
    torch.manual_seed(seed)
    # On CPU the CUDA RNG states do not exist: the "inference" tracker keeps plain CPU generator states.
    model_parallel_cuda_manual_seed(seed, inference_rng_tracker=not torch.cuda.is_available(),
                                    force_reset_rng=True)
    return current_parallel_state()


def _create_long_wait_group() -> None:
    """A gloo group over all ranks with LONG_WAIT_TIMEOUT (every rank calls this once, in the same order).

    gloo, not NCCL: a rank waiting in it spins on a CPU socket, not on a GPU kernel that NCCL's watchdog
    kills after its timeout."""
    global _long_wait_group, _long_wait_world
    if _long_wait_group is None or _long_wait_world is not dist.group.WORLD:  # new default group: new one
        _long_wait_group = dist.new_group(backend="gloo", timeout=LONG_WAIT_TIMEOUT)
        _long_wait_world = dist.group.WORLD


def long_wait_group():
    """The gloo group of ``long_wait_barrier`` (None before ``initialize_parallel``)."""
    return _long_wait_group


def long_wait_barrier() -> None:
    """Barrier for waits on one rank's slow one-off work (downloads, tokenising, HF export)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier(group=_long_wait_group)


@contextmanager
def local_rank_zero_first(rank: int, world_size: int):
    """Local rank 0 of every node runs the block first (builds caches, atomically), then the other ranks,
    which then only read; right for node-local and for shared cache folders. Waits use long_wait_barrier."""
    first = int(os.environ.get("LOCAL_RANK", rank)) == 0
    if not first:
        long_wait_barrier()
    yield
    if first and world_size > 1:
        long_wait_barrier()


def current_parallel_state() -> ParallelState:
    """The layout of the already initialised process groups."""
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    return ParallelState(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        tp=parallel_state.get_tensor_model_parallel_world_size(),
        pp=parallel_state.get_pipeline_model_parallel_world_size(),
        dp=parallel_state.get_data_parallel_world_size(),
        tp_rank=parallel_state.get_tensor_model_parallel_rank(),
        pp_rank=parallel_state.get_pipeline_model_parallel_rank(),
        dp_rank=parallel_state.get_data_parallel_rank(),
        is_first_stage=parallel_state.is_pipeline_first_stage(),
        is_last_stage=parallel_state.is_pipeline_last_stage(),
        device=device,
    )


def destroy_parallel() -> None:
    """Tear down megatron's model-parallel groups (safe to call twice).

    The default process group stays up until the process exits: re-creating it in the same process races
    with ranks that still read the old rendezvous keys (a rank then dials a dead gloo port). So a process
    may run several layouts in a row (initialize_parallel, destroy_parallel, initialize_parallel, ...)
    as long as the world size stays the same.
    """
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()


def _destroy_process_group_at_exit() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
