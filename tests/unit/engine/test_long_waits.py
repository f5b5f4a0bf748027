"""One rank's slow one-off work (download, tokenise, HF export) must not time the others out: they wait in
a gloo barrier with a timeout of hours. Shown on two real gloo ranks whose default group times out after
3 s while rank 0 works for 8 s: the plain barrier fails, the long-wait barrier does not."""

import time
from datetime import timedelta

import pytest

from tests.distributed import run_distributed

WORK_S = 8.0


def _wait_while_rank0_works(barrier: str) -> str:
    import torch.distributed as dist

    from mos_nemo.engine.parallel import (LONG_WAIT_TIMEOUT, destroy_parallel, initialize_parallel,
                                          local_rank_zero_first, long_wait_group)

    dist.init_process_group("gloo", timeout=timedelta(seconds=3))  # a short default timeout, like NCCL's
    state = initialize_parallel(tp=1, pp=1, seed=0)
    assert dist.get_backend(long_wait_group()) == "gloo" and LONG_WAIT_TIMEOUT >= timedelta(hours=1)
    try:
        if barrier == "long":
            with local_rank_zero_first(state.rank, state.world_size):
                if state.rank == 0:
                    time.sleep(WORK_S)
        else:
            if state.rank == 0:
                time.sleep(WORK_S)
            dist.barrier()
        return "ok"
    except Exception as error:  # the timeout we provoke on purpose
        return f"failed: {type(error).__name__}"
    finally:
        destroy_parallel()


@pytest.mark.slow
@pytest.mark.distributed
def test_long_wait_barrier_outlasts_the_default_timeout():
    assert run_distributed(_wait_while_rank0_works, 2, "long", timeout_s=120) == ["ok", "ok"]
    waited = run_distributed(_wait_while_rank0_works, 2, "plain", timeout_s=120)
    assert waited[1].startswith("failed"), waited  # the control: the plain barrier does time out
