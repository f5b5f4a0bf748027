"""Resume guards and messages on real runs: changed settings are refused unless allowed, every launch's
config is kept, a finished run has nothing to do, a layout change says what was restored, and a missing
dataset file is named by its dataset."""

import pytest
import yaml

from tests.integration.reliability_runs import launch, root_cause, steps_logged

RUN = ["train.max_steps=4", "checkpoint.every=0"]


@pytest.mark.slow
@pytest.mark.distributed
def test_changed_settings_are_refused_unless_allowed_and_every_config_is_kept(tmp_path):
    run_dir = tmp_path / "run"
    assert launch(run_dir, *RUN, "train.stop_after=2").returncode == 0

    refused = launch(run_dir, *RUN, "optim.lr=0.02", "train.seq_length=96")
    assert refused.returncode != 0
    cause = root_cause(refused.output)
    assert "optim.lr: 0.01 -> 0.02" in cause and "train.seq_length: 128 -> 96" in cause, cause
    assert "checkpoint.allow_changes=[optim.lr,train.seq_length]" in cause
    assert steps_logged(run_dir) == [1, 2]

    allowed = launch(run_dir, *RUN, "optim.lr=0.02", "checkpoint.allow_changes=[optim.lr]")
    assert allowed.returncode == 0, allowed.output[-3000:]
    changed = [line for line in allowed.output.splitlines() if line.startswith("settings changed since that checkpoint")]
    assert len(changed) == 1 and "optim.lr: 0.01 -> 0.02" in changed[0], allowed.output[-3000:]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["optim"]["lr"] == 0.01  # the first launch's
    assert yaml.safe_load((run_dir / "config.2.yaml").read_text())["optim"]["lr"] == 0.02
    assert steps_logged(run_dir) == [1, 2, 3, 4]

    again = launch(run_dir, *RUN, "optim.lr=0.02", "checkpoint.allow_changes=[optim.lr]")
    assert again.returncode == 0
    assert "nothing to do" in again.output and "already finished all 4 steps" in again.output
    assert steps_logged(run_dir) == [1, 2, 3, 4] and not (run_dir / "config.3.yaml").exists()


@pytest.mark.slow
@pytest.mark.distributed
def test_resume_under_another_layout_says_what_is_restored(tmp_path):
    run_dir = tmp_path / "run"
    assert launch(run_dir, *RUN, "train.stop_after=2").returncode == 0  # a periodic save: dp_reshardable
    refused = launch(run_dir, *RUN, "parallel.tp=2", nproc=2)
    cause = root_cause(refused.output)
    assert "step_0000002" in cause and "dp_reshardable" in cause and "checkpoint.format=fully_reshardable" in cause

    assert launch(run_dir, *RUN, "train.stop_after=3", "checkpoint.format=fully_reshardable").returncode == 0
    moved = launch(run_dir, *RUN, "parallel.tp=2", nproc=2)
    assert moved.returncode == 0, moved.output[-3000:]
    assert "restored model, optimizer, LR schedule, data order, mixing state; the per-rank RNG states" in moved.output
    assert "saved at tp=1 pp=1 dp=1" in moved.output and "start afresh from run.seed" in moved.output
    assert steps_logged(run_dir) == [1, 2, 3, 4]


@pytest.mark.slow
@pytest.mark.distributed
def test_missing_dataset_file_is_named_by_its_dataset(tmp_path):
    done = launch(tmp_path / "run", "train.max_steps=1",
                  f"datasets=[{{name: ghost, source: {tmp_path}/missing.jsonl, format: instruction}}]")
    assert done.returncode != 0
    assert root_cause(done.output).startswith(f"mos_nemo: dataset 'ghost': source '{tmp_path}/missing.jsonl'")
