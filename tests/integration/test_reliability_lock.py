"""Two launches into one run.dir: the second fails at once naming the holder; a stale lock is taken over."""

import json
import signal
import socket
import subprocess

import pytest

from tests.integration.reliability_runs import launch, start, steps_logged, wait_for_step


@pytest.mark.slow
@pytest.mark.distributed
def test_second_launch_into_a_locked_run_dir_fails_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    first = start(run_dir, "train.max_steps=400", "checkpoint.every=0")
    try:
        wait_for_step(run_dir, 1, first)
        holder = json.loads((run_dir / ".mos_nemo.lock").read_text())
        second = launch(run_dir, "train.max_steps=400", "checkpoint.every=0", timeout=120)
        assert second.returncode != 0
        assert "is in use by another launch" in second.output
        assert f"pid {holder['pid']} on host {socket.gethostname()}" in second.output, second.output[-3000:]
        # It stopped right after joining the process group, before building anything (on this shared 2-core
        # machine a bare launch already takes 20-30 s, so the proof is what it did not do, not a time bound).
        assert "datasets:" not in second.output and "settings that differ" not in second.output
        assert first.poll() is None  # the first launch is untouched
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    steps = steps_logged(run_dir)
    assert steps == list(range(1, len(steps) + 1))  # one writer: no interleaved records
    assert not (run_dir / ".mos_nemo.lock").exists()  # released on exit


@pytest.mark.slow
@pytest.mark.distributed
def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no process
    (run_dir / ".mos_nemo.lock").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": dead.pid, "started": "earlier"}))
    done = launch(run_dir, "train.max_steps=1")
    assert done.returncode == 0, done.output[-3000:]
    assert steps_logged(run_dir) == [1]
    assert not (run_dir / ".mos_nemo.lock").exists()
