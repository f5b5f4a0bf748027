"""Two GPUs, two processes, NCCL: DP=2 with the distributed optimizer, so megatron overlaps the gradient
reduce-scatter with the backward pass and the parameter all-gather with the next forward (step.ddp_config);
its losses equal one GPU's within bf16 rounding, and a stop + resume equals an unbroken run. Then the stop flag
under NCCL: a SIGTERM to one rank mid-step stops both at the same micro-batch boundary (the flag's all-reduce
runs on the gloo group while NCCL kernels are in flight) and the resumed run matches the unbroken one.
Skipped without two GPUs; the rest of tests/gpu needs only one."""

import os
import signal

import pytest
import torch

from mos_nemo.logs import read_jsonl
from tests.integration.reliability_runs import complete_checkpoints, console, launch, start, wait_for_step

pytestmark = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs (NCCL between processes)")

BF16 = ["model.dtype=bf16", "parallel.distributed_optimizer=true", "optim.lr=1e-3", "optim.warmup_fraction=0.0"]
RUN = [*BF16, "train.max_steps=6", "checkpoint.every=0", "train.global_batch_size=8", "train.micro_batch_size=2"]
KEYS = ("loss", "grad_norm", "lr", "tokens", "dataset")


def _records(run_dir):
    return read_jsonl(run_dir / "train.jsonl")


@pytest.mark.slow
def test_dp2_with_overlapped_reduce_matches_one_gpu_and_resumes_exactly(tmp_path):
    one = launch(tmp_path / "one", *RUN, nproc=1, timeout=600)
    assert one.returncode == 0, one.output[-3000:]
    whole = launch(tmp_path / "whole", *RUN, nproc=2, timeout=600)
    assert whole.returncode == 0, whole.output[-3000:]
    for mine, single in zip(_records(tmp_path / "whole"), _records(tmp_path / "one")):
        assert mine["dataset"] == single["dataset"] and mine["tokens"] == single["tokens"]
        assert abs(mine["loss"] - single["loss"]) < 2e-2 * abs(single["loss"])  # bf16: another reduce order

    split = tmp_path / "split"
    assert launch(split, *RUN, "train.stop_after=3", nproc=2, timeout=600).returncode == 0
    resumed = launch(split, *RUN, nproc=2, timeout=600)
    assert resumed.returncode == 0, resumed.output[-3000:]
    for key in KEYS:  # the same layout on the same GPUs: the same kernels and reduction order
        assert [r[key] for r in _records(split)] == [r[key] for r in _records(tmp_path / "whole")], key


def _worker_pid(torchrun_pid: int, rank: int) -> int:
    for child in open(f"/proc/{torchrun_pid}/task/{torchrun_pid}/children").read().split():
        if f"RANK={rank}".encode() in open(f"/proc/{child}/environ", "rb").read().split(b"\0"):
            return int(child)
    raise AssertionError(f"torchrun {torchrun_pid} has no worker with RANK={rank}")


@pytest.mark.slow
def test_stop_flag_under_nccl_stops_both_ranks_mid_step_and_resumes_exactly(tmp_path):
    # 64 micro batches of one example per rank and step: a step is far longer than stopping
    settings = [*BF16, "train.max_steps=3", "checkpoint.every=0", "train.global_batch_size=128",
                "train.micro_batch_size=1"]
    reference = launch(tmp_path / "whole", *settings, nproc=2, timeout=600)
    assert reference.returncode == 0, reference.output[-3000:]

    run_dir = tmp_path / "run"
    process = start(run_dir, *settings, nproc=2)
    try:
        wait_for_step(run_dir, 1, process)
        os.kill(_worker_pid(process.pid, rank=1), signal.SIGTERM)  # one rank only: the flag must reach rank 0
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    output = console(run_dir)
    assert process.returncode == 0, output[-3000:]
    stopped = [line for line in output.splitlines() if line.startswith("stopped by a signal")]
    assert len(stopped) == 1 and stopped[0].startswith("stopped by a signal during step 2 (after micro-batch "), \
        output[-3000:]
    assert stopped[0] in (run_dir / "logs" / "rank_1.txt").read_text()  # both left at the same boundary
    assert complete_checkpoints(run_dir) == ["step_0000001"]

    resumed = launch(run_dir, *settings, nproc=2, timeout=600)
    assert resumed.returncode == 0, resumed.output[-3000:]
    for key in KEYS:
        assert [r[key] for r in _records(run_dir)] == [r[key] for r in _records(tmp_path / "whole")], key
