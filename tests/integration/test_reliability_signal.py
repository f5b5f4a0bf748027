"""A SIGTERM that arrives in a long step still leaves a checkpoint before torchrun's SIGKILL.

torchrun forwards SIGTERM to its workers and SIGKILLs them ``--shutdown-timeout`` seconds later (a fixed 30 s
before torch 2.12). Here a step is long (a large global batch) and its MoS update longer than that grace
period; the signal arrives during the step's forward/backward. Each rank's share of the batch is one micro
batch, so there is no micro-batch boundary to stop at (test_reliability_mid_step.py covers those): the step
finishes, and the run must skip the pending update, save at once and exit; the resumed launch runs the skipped
update first (mixture.jsonl gets that step's record) and finishes.
"""

import json
import signal

import pytest
import torch

from tests.integration.reliability_runs import (
    complete_checkpoints, console, launch, shutdown_timeout_flags, start, steps_logged, wait_for_step)

GRACE_S = 15  # torchrun's --shutdown-timeout where it has one; the MoS update alone takes longer (about 20 s)
SLOW = ["train.max_steps=3", "checkpoint.every=0", "train.global_batch_size=48", "train.micro_batch_size=24",
        "mixing.strategy=mos",
        "mixing.update_every=2", "mixing.inner_steps=8000", "mixing.reward_batch=4"]


@pytest.mark.slow
@pytest.mark.distributed
def test_sigterm_in_a_long_step_saves_within_the_grace_period(tmp_path):
    run_dir = tmp_path / "run"
    process = start(run_dir, *SLOW, nproc=2, torchrun_flags=shutdown_timeout_flags(GRACE_S))
    try:
        wait_for_step(run_dir, 1, process)  # step 2 (train step, then its MoS update) starts now
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    output = console(run_dir)
    assert complete_checkpoints(run_dir) == ["step_0000002"], output[-4000:]
    folder = run_dir / "checkpoints" / "step_0000002"
    assert json.loads((folder / "meta.json").read_text())["optimizer_format"] == "dp_reshardable"
    state = torch.load(folder / "trainer_state.pt", weights_only=False)
    assert state["pending_update"] is True  # the update was skipped, not lost
    assert "MoS update" not in output

    resumed = launch(run_dir, *SLOW, nproc=2)
    assert resumed.returncode == 0, resumed.output[-4000:]
    mixture = [json.loads(line)["step"] for line in (run_dir / "mixture.jsonl").read_text().splitlines()]
    assert mixture == [0, 2]  # the skipped update ran first in the resumed launch
    assert steps_logged(run_dir) == [1, 2, 3]
