"""The trainer's own deadline: it saves and exits 0 before ``train.time_limit``, without any signal, and the
next launch resumes from that save (the Slurm job's end: tests/unit/recipes/test_slurm_requeue.py).

The first launch measures a save (stop_after=2); the later ones predict their last save from it. The run
has far more steps than fit, so only the deadline can end those launches.
"""

import pytest

from mos_nemo.logs import read_jsonl
from tests.integration.reliability_runs import complete_checkpoints, launch

RUN = ["train.max_steps=5000", "checkpoint.every=0"]


def _stopped_at_a_saved_step(done, run_dir) -> int:
    assert done.returncode == 0, done.output[-3000:]
    stopped = [line for line in done.output.splitlines() if line.startswith("stopped after step")]
    assert len(stopped) == 1 and "before the deadline" in stopped[0], done.output[-3000:]
    last = read_jsonl(run_dir / "train.jsonl")[-1]["step"]
    assert stopped[0].startswith(f"stopped after step {last},")
    assert complete_checkpoints(run_dir)[-1] == f"step_{last:07d}"  # the step it stopped at is saved
    assert last < 5000
    return last


@pytest.mark.slow
@pytest.mark.distributed
def test_time_limit_stops_with_a_save_and_no_signal(tmp_path):
    run_dir = tmp_path / "run"
    first = launch(run_dir, *RUN, "train.stop_after=2")
    assert first.returncode == 0, first.output[-3000:]

    limited = launch(run_dir, *RUN, "train.time_limit=40s")
    assert "deadline: train.time_limit=40s is" in limited.output, limited.output[-3000:]
    after_limit = _stopped_at_a_saved_step(limited, run_dir)
    assert f"resumed from {run_dir / 'checkpoints' / 'step_0000002'} at step 2" in limited.output
    assert after_limit > 2
