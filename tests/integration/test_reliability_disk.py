"""A disk that really fills: run.dir on a small tmpfs (CI runs as root; unmounted afterwards).

- the first save does not fit: it fails with "disk full" naming the disk, leaves no ``.partial`` folder,
  and once the disk is larger the same command trains (nothing of ours written on the full disk, lock,
  logs or TensorBoard, blocks it);
- a later save cannot fit beside the previous checkpoint: it is not started, the message says so, the
  previous checkpoint stays intact, and once space is freed the same command resumes from it.
"""

import subprocess
from pathlib import Path

import pytest

from mos_nemo.logs import read_jsonl
from tests.integration.reliability_runs import complete_checkpoints, launch, root_cause

RUN = ["train.max_steps=3", "checkpoint.every=1"]  # a tiny_cpu checkpoint is ~100 MB (two 50 MB shards)


@pytest.fixture
def small_disk(tmp_path: Path):
    """``(folder, resize)``: a tmpfs mounted on ``folder``; ``resize("400m")`` grows it (mount -o remount)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = []

    def resize(size: str) -> None:
        options = ["-o", f"remount,size={size}"] if mounted else ["-t", "tmpfs", "-o", f"size={size}", "tmpfs"]
        done = subprocess.run(["mount", *options, str(folder)], capture_output=True, text=True)
        if done.returncode != 0 and not mounted:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr
        mounted.append(size)

    yield folder, resize
    if mounted:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)


@pytest.mark.slow
@pytest.mark.distributed
def test_a_save_that_fills_the_disk_says_so_and_the_run_continues_once_space_is_freed(small_disk):
    folder, resize = small_disk
    resize("40m")  # the logs fit, a checkpoint does not
    run_dir = folder / "run"
    full = launch(run_dir, *RUN, nproc=2)
    assert full.returncode != 0, full.output[-3000:]
    message = root_cause(full.output)
    assert message.startswith("mos_nemo: disk full: checkpoint step_0000001 could not be written to "), message
    assert str(run_dir / "checkpoints") in full.output
    assert not list((run_dir / "checkpoints").glob("*")), list((run_dir / "checkpoints").glob("*"))

    resize("400m")
    again = launch(run_dir, *RUN, nproc=2)
    assert again.returncode == 0, again.output[-3000:]
    assert [r["step"] for r in read_jsonl(run_dir / "train.jsonl")] == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.distributed
def test_a_save_that_cannot_fit_is_not_started_and_the_previous_checkpoint_resumes(small_disk):
    folder, resize = small_disk
    resize("150m")  # one checkpoint fits, two do not
    run_dir = folder / "run"
    full = launch(run_dir, *RUN)
    assert full.returncode != 0, full.output[-3000:]
    assert "disk full: checkpoint step_0000002 needs about" in full.output, full.output[-3000:]
    assert "stopping with step_0000001 intact" in full.output
    assert complete_checkpoints(run_dir) == ["step_0000001"]
    assert not list((run_dir / "checkpoints").glob("*.partial"))

    resize("400m")
    again = launch(run_dir, *RUN)
    assert again.returncode == 0, again.output[-3000:]
    assert f"resumed from {run_dir / 'checkpoints' / 'step_0000001'} at step 1" in again.output
    assert [r["step"] for r in read_jsonl(run_dir / "train.jsonl")] == [1, 2, 3]
