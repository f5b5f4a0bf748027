"""`mixing.exclude`: an excluded dataset is never drawn, from the start or after a resume that excludes it."""

import pytest

from mos_nemo.logs import read_jsonl
from tests.distributed import train_in_one_group

MOS = ["mixing.strategy=mos", "mixing.reward=cossim", "mixing.reward_batch=4", "mixing.update_every=2",
       "train.max_steps=8", "checkpoint.every=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three launches in one process: excluded from the start; a run stopped at step 4, resumed excluding arith."""
    root = tmp_path_factory.mktemp("exclude")
    train_in_one_group([
        (root / "sample", [*MOS, "mixing.exclude=[chat]", "mixing.mode=sample"]),
        (root / "resumed", [*MOS, "train.stop_after=4"]),
        (root / "resumed", [*MOS, "mixing.exclude=[arith]"]),
    ], world_size=1)
    return root


@pytest.mark.slow
def test_excluded_dataset_is_never_drawn_in_sample_mode(runs):
    steps = read_jsonl(runs / "sample" / "train.jsonl")
    assert len(steps) == 8
    assert all(record["counts"].get("chat", 0) == 0 for record in steps)
    assert sum(record["counts"]["reverse"] for record in steps) > 0
    for record in read_jsonl(runs / "sample" / "mixture.jsonl"):
        assert record["weights"]["chat"] == 0.0
        assert abs(sum(record["weights"].values()) - 1.0) < 1e-12


@pytest.mark.slow
def test_a_resume_can_exclude_a_dataset_mid_run(runs):
    steps = read_jsonl(runs / "resumed" / "train.jsonl")
    before, after = steps[:4], steps[4:]
    assert "arith" in {record["dataset"] for record in before}
    assert [record["step"] for record in after] == [5, 6, 7, 8]
    assert "arith" not in {record["dataset"] for record in after}
    mixture = {record["step"]: record for record in read_jsonl(runs / "resumed" / "mixture.jsonl")}
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
