"""Under torchrun with two ranks, our error is printed once (rank 0), is the root cause torchrun prints
last (also when rank 1 reaches the error first, as on a loaded machine), and the other rank at most points
to rank 0. An unwritable run.dir is caught before any work."""

import pytest

from tests.integration.reliability_runs import launch, root_cause


def _worker_lines(output: str, prefix: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]


@pytest.mark.slow
@pytest.mark.distributed
def test_config_error_is_printed_once_and_is_torchruns_root_cause(tmp_path):
    done = launch(tmp_path / "run", "mixing.tau=-1", nproc=2)
    assert done.returncode != 0
    cause = root_cause(done.output)
    assert cause.startswith("mos_nemo: mixing.tau=-1"), done.output[-3000:]
    assert len(_worker_lines(done.output, "mos_nemo: mixing.tau")) == 1  # rank 0 only
    # Rank 1 is quiet: at most its one-line pointer in torchrun's "Failures" list (absent when torchrun
    # stopped it before it reached the error), never a traceback or a second copy of the message.
    assert done.output.count("Traceback") == 1  # torchrun's own
    assert done.output.count("rank 1 stopped on the error reported by rank 0") <= 1


@pytest.mark.slow
@pytest.mark.distributed
def test_unwritable_run_dir_fails_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # run.dir below a regular file cannot be created, even by root
    run_dir = blocker / "run"
    done = launch(run_dir, nproc=2)
    assert done.returncode != 0
    cause = root_cause(done.output)
    assert cause.startswith(f"mos_nemo: run.dir='{run_dir}' is not writable"), done.output[-3000:]
    assert "datasets:" not in done.output and "settings that differ" not in done.output
    assert done.output.count("Traceback") == 1  # torchrun's own; none from the workers
