"""One clean console, and run.dir/log.txt equal to it: every MoS update once, the pad choice once, step lines
with weights to four decimals (CosSim's small moves show), step lines in log.txt, and progress lines for
the long silent phases (model build, theta0 pool scoring, the final save)."""

import re

import pytest

from tests.distributed import launch_training


@pytest.mark.slow
def test_console_and_log_txt_are_one_clean_record(tmp_path):
    run = tmp_path / "run"
    console = launch_training(run, "train.max_steps=4", "checkpoint.every=0", "mixing.strategy=mos",
                              "mixing.reward=diff", "mixing.update_every=2", "mixing.reference_pool=8")
    log = (run / "log.txt").read_text().splitlines()
    lines = console.splitlines()
    start = lines.index(log[0])  # anything before is the interpreter's start-up, before logging exists
    assert lines[start:] == log, "\n".join(lines[start:][-20:] + ["---"] + log[-20:])

    assert sum("padding with token id" in line for line in log) == 1
    updates = [line for line in log if "MoS update" in line]
    assert [u.split(":")[0] for u in updates] == ["step 2", "step 4"], updates  # once each, no INFO twin
    steps = [line for line in log if re.match(r"step \d+/4 \|", line)]
    assert len(steps) == 4
    assert all(re.search(r"weights arith=0\.\d{4} reverse=0\.\d{4} chat=0\.\d{4}$", s) for s in steps), steps
    assert not any("\r" in line or "it/s]" in line for line in log)  # no progress bars in the record

    def index(text):
        return next(i for i, line in enumerate(log) if text in line)

    assert index("building the model: llama, 2 layers") < index("datasets: arith=96")
    assert index("scoring the theta0 reference pool") < index("scored the theta0 reference pool") < index("step 1/4")
    assert index("saving checkpoint step 4 (final") < index("saved checkpoint")


@pytest.mark.slow
@pytest.mark.distributed
def test_a_torchrun_console_shows_only_log_txt_and_torchruns_banner(tmp_path):
    """Two ranks under torchrun, stopped after a save and resumed: every console line of both launches is in
    log.txt except torchrun's own banner (its launcher process, torch/distributed/run.py, before any rank
    starts). With torch 2.9 + megatron-core 0.19 gloo printed about 50 "[Gloo] Rank r is connected to n peer
    ranks" lines at start-up, and the resume two torch warnings about megatron's checkpoint load."""
    run = tmp_path / "run"
    settings = ("train.max_steps=2", "checkpoint.every=1", "mixing.strategy=static")
    consoles = [launch_training(run, *settings, "train.stop_after=1", nproc=2),
                launch_training(run, *settings, nproc=2)]
    log = set((run / "log.txt").read_text().splitlines())
    assert any(line.startswith("datasets:") and "resumed from" in line for line in log)
    assert not [line for line in log if line.startswith("WARNING")]  # a clean run and resume warn of nothing
    for console in consoles:
        stray = [line for line in console.splitlines() if line not in log and "torch/distributed/run.py" not in line]
        assert stray == [], "\n".join(stray[:20])
