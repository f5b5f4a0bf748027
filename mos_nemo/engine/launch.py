"""Run a function on N local ranks without torchrun (CLI convenience and tests): spawn + gloo/nccl env.

    results = spawn_ranks(my_module_level_fn, 2, arg1, arg2)   # [result of rank 0, result of rank 1]

Each child gets the torchrun environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so
``parallel.initialize_parallel`` joins the group exactly as under torchrun. ``fn`` must be importable
(module level) and its arguments and result picklable.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException


def _rank_entry(rank, fn, world_size, port, timeout_s, results, args):
    # As under torchrun: the parent hosts the rendezvous store and every rank connects as a client.
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCHELASTIC_USE_AGENT_STORE="True")
    # Ranks share the machine's cores; oversubscribed intra-op threads slow gloo runs down a lot.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    if timeout_s:
        # Watchdog: a hung collective prints every thread's stack, then the process exits.
        faulthandler.dump_traceback_later(timeout_s, exit=True)
    try:
        results.put((rank, fn(*args), None))
    except BaseException:  # noqa: BLE001 - reported to the parent, which re-raises
        results.put((rank, None, traceback.format_exc()))
        raise
    finally:
        faulthandler.cancel_dump_traceback_later()
        sys.stdout.flush()


def spawn_ranks(fn, world_size: int, *args, timeout_s: float | None = None) -> list:
    """``fn(*args)`` on ``world_size`` spawned ranks; returns their results in rank order.

    Raises RuntimeError with the failing rank's traceback if any rank fails (or hits ``timeout_s``).
    """
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    # Bound on port 0 and held while the ranks run: no window in which another process takes the port.
    store = dist.TCPStore("127.0.0.1", 0, world_size, is_master=True, wait_for_workers=False)
    processes = mp.start_processes(
        _rank_entry, args=(fn, world_size, store.port, timeout_s, results, args),
        nprocs=world_size, start_method="spawn", join=False,
    )
    collected, errors, crash = {}, {}, None
    finished = False
    while True:
        # Drain while waiting: a child blocks on a full pipe until the parent reads its result.
        while not results.empty():
            rank, value, error = results.get()
            (errors if error is not None else collected)[rank] = error or value
        if finished:
            break
        try:
            finished = processes.join(timeout=0.2)
        except ProcessException as exc:  # a rank raised or died (e.g. the watchdog fired)
            finished, crash = True, exc
    if errors:
        rank = min(errors)
        raise RuntimeError(f"rank {rank} failed:\n{errors[rank]}")
    if crash is not None:
        raise RuntimeError(f"a rank died without a result: {crash}")
    if len(collected) != world_size:
        raise RuntimeError(f"only ranks {sorted(collected)} of {world_size} reported a result")
    return [collected[rank] for rank in range(world_size)]
