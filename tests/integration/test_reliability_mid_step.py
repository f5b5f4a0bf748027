"""A SIGTERM in the middle of a long step stops at the next micro-batch boundary, not after the step.

A step here has many micro batches (micro batch 1, a large global batch) of long examples, so it takes far
longer than stopping. The signal arrives as step 2 starts: the run must abandon step 2 between two micro
batches, save step 1 and exit; the resumed run must then train exactly as an uninterrupted one. With two
data-parallel ranks and the signal sent to one of them only, both must leave at the same boundary.
"""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from mos_nemo.logs import read_jsonl
from tests.integration.reliability_runs import (
    complete_checkpoints, console, launch, start, wait_for_path, wait_for_step)

MICRO_BATCHES = 48  # per step at DP=1: a step lasts far longer than stopping (one micro batch + a save)


def _long_examples(path: Path) -> str:
    """A dataset of 24 examples of ~1000 tokens each; its datasets= override."""
    words = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega".split()
    with open(path, "w") as out:
        for i in range(24):
            text = " ".join(words[(i * 7 + j * j) % len(words)] for j in range(900))
            out.write(json.dumps({"instruction": f"Recite list {i}.", "output": text}) + "\n")
    return f"datasets=[{{name: long, source: {path}, format: instruction}}]"


def _settings(tmp_path: Path, *extra: str) -> list[str]:
    return ["train.max_steps=2", "train.micro_batch_size=1", f"train.global_batch_size={MICRO_BATCHES}",
            "train.seq_length=1024", _long_examples(tmp_path / "long.jsonl"), *extra]


def _worker_pid(torchrun_pid: int, rank: int) -> int:
    """The pid of torchrun's worker with RANK=rank (read from /proc)."""
    for child in Path(f"/proc/{torchrun_pid}/task/{torchrun_pid}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(child)
    raise AssertionError(f"torchrun {torchrun_pid} has no worker with RANK={rank}")


def _signal_during_step_2(run_dir: Path, process, pid, after_save: bool = False) -> float:
    """SIGTERM to ``pid()`` as soon as step 1 is logged (``after_save``: and its checkpoint is complete, so the
    signal falls in step 2, not in that save); the seconds from the signal to the launch's exit."""
    try:
        wait_for_step(run_dir, 1, process)
        if after_save:  # a signal during the save stops right after it (test_reliability_group_signal.py)
            wait_for_path(run_dir / "checkpoints" / "step_0000001" / "meta.json", process, run_dir)
            time.sleep(1.0)  # past the save's last agreement; step 2 (48 long micro batches) lasts far longer
        target = pid()
        signalled = time.monotonic()
        os.kill(target, signal.SIGTERM)
        process.wait(timeout=240)
        return time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
@pytest.mark.distributed
def test_sigterm_mid_step_saves_the_previous_step_and_resumes_exactly(tmp_path):
    settings = _settings(tmp_path, "checkpoint.every=0")
    whole = launch(tmp_path / "whole", *settings, timeout=600)
    assert whole.returncode == 0, whole.output[-3000:]
    reference = read_jsonl(tmp_path / "whole" / "train.jsonl")
    full_step = reference[1]["seconds"]  # step 2, measured in this test (step 1 also warms up)

    run_dir = tmp_path / "run"
    process = start(run_dir, *settings)
    exit_seconds = _signal_during_step_2(run_dir, process, lambda: process.pid)
    output = console(run_dir)
    stopped = [line for line in output.splitlines() if line.startswith("stopped by a signal")]
    assert len(stopped) == 1 and stopped[0].startswith("stopped by a signal during step 2 (after micro-batch "), \
        output[-3000:]
    assert f" of {MICRO_BATCHES}): saved step 1;" in stopped[0]
    assert exit_seconds < 0.5 * full_step, (exit_seconds, full_step, output[-3000:])
    assert [r["step"] for r in read_jsonl(run_dir / "train.jsonl")] == [1]
    assert complete_checkpoints(run_dir) == ["step_0000001"], output[-3000:]
    folder = run_dir / "checkpoints" / "step_0000001"
    assert json.loads((folder / "meta.json").read_text())["optimizer_format"] == "dp_reshardable"
    state = torch.load(folder / "trainer_state.pt", weights_only=False)
    assert state["step"] == 1 and state["blend"]["step"] == 1 and state["pending_update"] is False

    resumed = launch(run_dir, *settings, timeout=600)
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert "resumed from" in resumed.output and "at step 1" in resumed.output
    records = read_jsonl(run_dir / "train.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    for key in ("loss", "grad_norm", "lr", "tokens", "loss_tokens", "dataset"):
        assert [r[key] for r in records] == [r[key] for r in reference], key


@pytest.mark.slow
@pytest.mark.distributed
def test_sigterm_to_one_rank_stops_both_at_the_same_micro_batch(tmp_path):
    run_dir = tmp_path / "run"
    # checkpoint.every=1: step 1 is saved (with checksums) before the signal, and must not be saved again
    process = start(run_dir, *_settings(tmp_path, "checkpoint.every=1"), nproc=2)
    exit_seconds = _signal_during_step_2(run_dir, process, lambda: _worker_pid(process.pid, rank=1),
                                         after_save=True)
    output = console(run_dir)
    stopped = [line for line in output.splitlines() if line.startswith("stopped by a signal")]
    half = MICRO_BATCHES // 2
    assert len(stopped) == 1 and stopped[0].startswith("stopped by a signal during step 2 (after micro-batch "), \
        output[-3000:]
    assert stopped[0].endswith(f" of {half}): step 1 is already saved; resume with the same command")
    rank1 = (run_dir / "logs" / "rank_1.txt").read_text()
    assert stopped[0] in rank1, rank1[-2000:]  # the signalled rank left at the same boundary as rank 0
    records = read_jsonl(run_dir / "train.jsonl")
    assert [r["step"] for r in records] == [1]
    assert exit_seconds < 0.5 * records[0]["seconds"], (exit_seconds, records[0]["seconds"])
    assert complete_checkpoints(run_dir) == ["step_0000001"]
    manifest = json.loads((run_dir / "checkpoints" / "step_0000001" / "manifest.json").read_text())
    assert all(checksum is not None for _, checksum in manifest["files"].values())  # the periodic save's


@pytest.mark.slow
@pytest.mark.distributed
def test_with_pipeline_parallelism_the_step_in_flight_finishes(tmp_path):
    """pp > 1 has no common micro-batch boundary (the stages interleave): the signalled step finishes."""
    run_dir = tmp_path / "run"
    process = start(run_dir, "parallel.pp=2", "train.max_steps=4", "checkpoint.every=0",
                    "train.micro_batch_size=1", "train.global_batch_size=16", nproc=2)
    _signal_during_step_2(run_dir, process, lambda: process.pid)
    output = console(run_dir)
    assert "stopped by a signal after step 2; resume with the same command" in output, output[-3000:]
    assert [r["step"] for r in read_jsonl(run_dir / "train.jsonl")] == [1, 2]
    assert complete_checkpoints(run_dir) == ["step_0000002"]
