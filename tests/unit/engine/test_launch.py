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


@pytest.mark.slow  # starts a fresh interpreter
def test_torchrun_with_master_port_zero_fails_fast_instead_of_hanging():
    import subprocess
    import sys

    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "0", "TORCHELASTIC_USE_AGENT_STORE": "True"}  # what torchrun --master-port 0 sets
    code = "from mos_nemo.engine.parallel import initialize_parallel; initialize_parallel(tp=1, pp=1, seed=0)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "MosConfigError" in done.stderr and "--standalone" in done.stderr
