"""The fast checkpoint format resumes exactly at DP=2: with the distributed optimizer each rank holds half of
the AdamW state, written by itself as ``dp_reshardable``; train 6 == train 3, stop, resume 3 (same losses)."""

import json

import pytest

from tests.integration.reliability_runs import launch

RUN = ["train.max_steps=6", "checkpoint.every=0"]


def _losses(run_dir):
    return [(r["step"], r["loss"], r["grad_norm"]) for r in map(json.loads, (run_dir / "train.jsonl").read_text().splitlines())]


@pytest.mark.slow
@pytest.mark.distributed
def test_dp_reshardable_resume_is_exact_at_dp2(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert launch(whole, *RUN, nproc=2).returncode == 0
    assert launch(split, *RUN, "train.stop_after=3", nproc=2).returncode == 0
    meta = json.loads((split / "checkpoints" / "step_0000003" / "meta.json").read_text())
    assert (meta["optimizer_format"], meta["dp"]) == ("dp_reshardable", 2)
    resumed = launch(split, *RUN, nproc=2)
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert _losses(split) == _losses(whole)
