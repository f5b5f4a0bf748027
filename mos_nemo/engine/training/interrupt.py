"""Stopping on SIGTERM/SIGINT: the signal flag, where the ranks agree on it, and undoing an interrupted step.

torchrun SIGKILLs its workers ``--shutdown-timeout`` seconds after forwarding SIGTERM, so a signal must not
wait for a long step to end. With gradient accumulation and no pipeline parallelism (pp == 1), every rank
asks all the others before each micro batch after the first whether any of them was signalled (one 4-byte
all-reduce on a gloo group, so on GPU it costs no CUDA host sync). If one was, all ranks raise
``StepInterrupted`` at the same micro-batch boundary, before the last micro batch has started (that one's
backward starts the data-parallel gradient reduce): the step is abandoned, its partial gradients are
dropped, and ``StepSnapshot`` puts back what the step had touched (blend cursor, learning rate, RNG), so the
state saved is exactly the one after the previous step.

With pp > 1 the stages run interleaved schedules and only the first and last stage read micro batches, so
there is no common boundary to stop at: the flag is agreed after the step, as for a single micro batch.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist

from mos_nemo.engine.parallel import ParallelState, long_wait_group


class StopRequest:
    """Remembers SIGTERM/SIGINT so the run can save and exit at the next safe point."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self, parallel: ParallelState) -> bool:
        """True on every rank if any rank was signalled (ranks may see the signal at different steps)."""
        if parallel.world_size == 1:
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=parallel.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)


class StepInterrupted(Exception):
    """All ranks agreed to stop before micro batch ``done`` (0-based) of ``total``: the step is abandoned."""

    def __init__(self, done: int, total: int):
        super().__init__(f"after micro-batch {done} of {total}")
        self.done, self.total = done, total


def any_rank_flagged(flag: bool, world_size: int) -> bool:
    """True on every rank if ``flag`` is True on any rank; a CPU all-reduce over the gloo group of
    ``mos_nemo.engine.parallel`` (collective: every rank calls it at the same point)."""
    if world_size == 1:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32)  # on the CPU, whatever the training device
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=long_wait_group())
    return bool(value.item())


class MicroBatchFeed:
    """The data iterator handed to megatron's schedule: this rank's micro batches in order.

    With ``stop_requested`` given, before micro batch k (1 <= k < total) it agrees with every rank on the
    flag and raises ``StepInterrupted(k, total)`` if any rank was signalled. Every rank of a pp == 1 layout
    has the same number of micro batches, so all of them reach each boundary and leave at the same one.
    """

    def __init__(self, micro_batches: list[dict], stop_requested: Optional[Callable[[], bool]], world_size: int):
        self.micro_batches, self.stop_requested, self.world_size = micro_batches, stop_requested, world_size
        self.position = 0

    def __iter__(self) -> "MicroBatchFeed":
        return self

    def __next__(self) -> dict:
        k, total = self.position, len(self.micro_batches)
        if k >= total:
            raise StopIteration
        if self.stop_requested is not None and k > 0 and any_rank_flagged(self.stop_requested(), self.world_size):
            raise StepInterrupted(k, total)
        self.position += 1
        return self.micro_batches[k]


def _copied(value):
    """A copy that later draws cannot change: RNG tensors are cloned (megatron's tracker hands out its own)."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    return value


@dataclass
class StepSnapshot:
    """What one training step changes outside the model and optimizer state, taken before the step so an
    interrupted step can be undone: the blend (``draw`` advances its step and cursors), the learning rate
    of every parameter group, and every RNG (dropout in the aborted micro batches drew from them)."""

    blend: dict
    learning_rates: list[float]
    rng: dict

    @classmethod
    def take(cls, blend, optimizer, rng_state: Callable[[], dict]) -> "StepSnapshot":
        return cls(blend=blend.state_dict(), learning_rates=[group["lr"] for group in optimizer.param_groups],
                   rng=_copied(rng_state()))

    def restore(self, blend, optimizer, set_rng_state: Callable[[dict], None]) -> None:
        blend.load_state_dict(self.blend)
        for group, lr in zip(optimizer.param_groups, self.learning_rates):
            group["lr"] = lr
        set_rng_state(self.rng)
