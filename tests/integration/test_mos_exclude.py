"""`mixing.exclude`: an excluded dataset is never drawn, from the start or after a resume that excludes it."""

import subprocess
import sys
from pathlib import Path

import pytest

from mos_nemo.logs import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
MOS = ["mixing.strategy=mos", "mixing.reward=cossim", "mixing.reward_batch=4", "mixing.update_every=2",
       "train.max_steps=8", "checkpoint.every=0"]


def train(run_dir: Path, *overrides: str) -> None:
    command = [sys.executable, "mos_nemo/train.py", "--config-name", "tiny_cpu", f"run.dir={run_dir}", *MOS,
               *overrides]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


@pytest.mark.slow
def test_excluded_dataset_is_never_drawn_in_sample_mode(tmp_path):
    train(tmp_path, "mixing.exclude=[chat]", "mixing.mode=sample")
    steps = read_jsonl(tmp_path / "train.jsonl")
    assert len(steps) == 8
    assert all(record["counts"].get("chat", 0) == 0 for record in steps)
    assert sum(record["counts"]["reverse"] for record in steps) > 0
    for record in read_jsonl(tmp_path / "mixture.jsonl"):
        assert record["weights"]["chat"] == 0.0
        assert abs(sum(record["weights"].values()) - 1.0) < 1e-12


@pytest.mark.slow
def test_a_resume_can_exclude_a_dataset_mid_run(tmp_path):
    train(tmp_path, "train.stop_after=4")
    before = read_jsonl(tmp_path / "train.jsonl")
    assert len(before) == 4 and "arith" in {record["dataset"] for record in before}
    train(tmp_path, "mixing.exclude=[arith]")
    after = read_jsonl(tmp_path / "train.jsonl")[4:]
    assert [record["step"] for record in after] == [5, 6, 7, 8]
    assert "arith" not in {record["dataset"] for record in after}
    mixture = {record["step"]: record for record in read_jsonl(tmp_path / "mixture.jsonl")}
    assert mixture[4]["weights"]["arith"] > 0  # written before the resume
    assert mixture[6]["weights"]["arith"] == 0.0 and mixture[8]["weights"]["arith"] == 0.0


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["mixing.exclude=[nope]"], "mixing.exclude"),
        (["mixing.exclude=[arith,reverse,chat]"], "excludes every dataset"),
        (["mixing.exclude=[arith]", "mixing.target=arith"], "mixing.target"),
    ],
)
def test_bad_exclusions_name_the_key(overrides, fragment):
    from mos_nemo.config import compose_config
    from mos_nemo.config_checks import validate

    config = compose_config("tiny_cpu", overrides)
    with pytest.raises(ValueError, match=fragment):
        validate(config, world_size=1)
