"""spawn_ranks: results come back in rank order, a failing rank's traceback reaches the caller."""

import os

import pytest
import torch.distributed as dist

from tests.distributed import run_distributed


def _rank_and_sum(offset: int) -> tuple:
    dist.init_process_group("gloo")  # the torchrun-style environment is all it needs
    gathered = [None, None]
    dist.all_gather_object(gathered, dist.get_rank() + offset)
    dist.destroy_process_group()
    return int(os.environ["RANK"]), sum(gathered)


def _fail_on_rank_one() -> None:
    if os.environ["RANK"] == "1":
        raise ValueError("rank one refuses")


@pytest.mark.distributed
def test_results_in_rank_order_over_a_real_group():
    assert run_distributed(_rank_and_sum, 2, 10) == [(0, 21), (1, 21)]


@pytest.mark.distributed
def test_a_failing_rank_raises_with_its_traceback():
    with pytest.raises(RuntimeError, match=r"rank 1 failed(.|\n)*ValueError: rank one refuses"):
        run_distributed(_fail_on_rank_one, 2)
