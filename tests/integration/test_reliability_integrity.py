"""Checkpoint integrity and the non-finite guard, on real files written by real runs.

- random bytes in a shard (same size) are caught by the manifest's CRC-32 at load: our error names step_N,
  the file, and offers the previous complete checkpoint; that checkpoint then resumes;
- a checkpoint without meta.json (an interrupted save that ``latest`` still names) is named as incomplete;
- a loss that turns non-finite stops the run after ``train.nonfinite_limit`` steps with our error, and no
  non-finite checkpoint replaces the finite one (even with ``checkpoint.keep=1``).
"""

import os

import pytest

from tests.integration.reliability_runs import complete_checkpoints, launch, root_cause

RUN = ["train.max_steps=6", "checkpoint.every=2"]


@pytest.mark.slow
@pytest.mark.distributed
def test_corrupt_and_incomplete_checkpoints_raise_our_error_and_offer_the_previous_one(tmp_path):
    run_dir = tmp_path / "run"
    first = launch(run_dir, *RUN, "train.stop_after=4")
    assert first.returncode == 0, first.output[-3000:]
    assert complete_checkpoints(run_dir) == ["step_0000002", "step_0000004"]
    step4, step2 = run_dir / "checkpoints" / "step_0000004", run_dir / "checkpoints" / "step_0000002"

    shard = max(step4.glob("*.distcp"), key=lambda p: p.stat().st_size)
    with open(shard, "r+b") as handle:  # flip bytes in place: the size stays the same
        handle.seek(shard.stat().st_size // 2)
        handle.write(os.urandom(64))
    corrupt = launch(run_dir, *RUN)
    assert corrupt.returncode != 0, corrupt.output[-3000:]
    message = root_cause(corrupt.output)
    assert message.startswith("mos_nemo: checkpoint step_0000004"), corrupt.output[-3000:]
    assert shard.name in message and "CRC-32" in message
    assert f"checkpoint.resume={step2}" in message
    assert corrupt.output.count("Traceback") == 1  # torchrun's own (ChildFailedError); none from the worker

    (step4 / "meta.json").unlink()  # as if the save had been killed between the rename and meta.json
    incomplete = launch(run_dir, *RUN)
    assert incomplete.returncode != 0
    message = root_cause(incomplete.output)
    assert "step_0000004" in message and "never completely written" in message, incomplete.output[-3000:]
    assert f"checkpoint.resume={step2}" in message

    resumed = launch(run_dir, *RUN, f"checkpoint.resume={step2}")
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert complete_checkpoints(run_dir)[-1] == "step_0000006"


@pytest.mark.slow
@pytest.mark.distributed
def test_non_finite_loss_stops_the_run_and_keeps_the_finite_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    # An absurd learning rate: step 1 is finite, the weights then overflow and every later loss is not.
    done = launch(run_dir, "train.max_steps=8", "optim.lr=1e30", "optim.warmup_fraction=0", "checkpoint.every=1", "checkpoint.keep=1")
    assert done.returncode != 0, done.output[-3000:]
    message = root_cause(done.output)
    assert "not finite for 3 steps in a row (steps 2-4" in message  # train.nonfinite_limit's default, done.output[-3000:]
    assert "step_0000001" in message  # points at the last (finite) checkpoint
    assert complete_checkpoints(run_dir) == ["step_0000001"]
    assert "not saving a checkpoint" in done.output
