"""The pieces of a mid-step stop: a real SIGTERM to one of two gloo ranks stops both at the same micro-batch
boundary, never before the first micro batch or after the last has started; a step snapshot puts back the
blend, learning rates and RNG so the next draw is the one an uninterrupted run makes."""

import os
import signal

import pytest
import torch

from mos_nemo.data.blend import ReweightableBlend
from mos_nemo.engine.training.checkpoint import rng_state, set_rng_state
from mos_nemo.engine.training.interrupt import MicroBatchFeed, StepInterrupted, StepSnapshot, StopRequest
from tests.distributed import run_distributed

TOTAL = 6


def _consume_with_signal_on_rank_1(signal_after: int) -> tuple:
    """Each rank walks a feed of TOTAL micro batches; rank 1 SIGTERMs itself after taking ``signal_after``."""
    from mos_nemo.engine.parallel import destroy_parallel, initialize_parallel

    state = initialize_parallel(tp=1, pp=1, seed=0)
    stop = StopRequest()
    stop.install()
    taken = []
    try:
        feed = MicroBatchFeed([{"index": i} for i in range(TOTAL)], lambda: stop.requested, state.world_size)
        for batch in feed:
            taken.append(batch["index"])
            if state.rank == 1 and len(taken) == signal_after:
                os.kill(os.getpid(), signal.SIGTERM)
        return taken, None
    except StepInterrupted as interruption:
        return taken, (interruption.done, interruption.total)
    finally:
        stop.uninstall()
        destroy_parallel()


@pytest.mark.distributed
def test_a_signal_to_one_rank_stops_both_at_the_same_boundary():
    results = run_distributed(_consume_with_signal_on_rank_1, 2, 2)
    assert results == [([0, 1], (2, TOTAL)), ([0, 1], (2, TOTAL))]


@pytest.mark.distributed
def test_no_stop_once_the_last_micro_batch_has_started():
    results = run_distributed(_consume_with_signal_on_rank_1, 2, TOTAL)  # signalled during the last one
    assert results == [(list(range(TOTAL)), None)] * 2


def test_a_feed_without_a_flag_never_stops():
    feed = MicroBatchFeed([{"index": i} for i in range(3)], None, world_size=1)
    assert [batch["index"] for batch in feed] == [0, 1, 2]


def test_snapshot_restores_blend_lr_and_rng():
    blend = ReweightableBlend([5, 7], ["a", "b"], global_batch_size=4, weights=[0.3, 0.7], mode="sample", seed=3)
    blend.draw()
    weights = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))]
    optimizer = torch.optim.AdamW([{"params": [weights[0]], "lr": 0.1}, {"params": [weights[1]], "lr": 0.2}])
    snapshot = StepSnapshot.take(blend, optimizer, rng_state)
    expected_draw = blend.draw()  # the interrupted step's draw and dropout
    expected_noise = torch.rand(8)
    for group in optimizer.param_groups:
        group["lr"] = 9.0
    snapshot.restore(blend, optimizer, set_rng_state)
    again = blend.draw()
    assert torch.equal(again.dataset_ids, expected_draw.dataset_ids)
    assert torch.equal(again.example_ids, expected_draw.example_ids)
    assert blend.step == 2
    assert torch.equal(torch.rand(8), expected_noise)
    assert [group["lr"] for group in optimizer.param_groups] == [0.1, 0.2]
