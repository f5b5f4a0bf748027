"""train.time_limit's durations and their config check; the Slurm end time read from the environment."""

import time

import pytest

from mos_nemo.config import compose_config
from mos_nemo.config_checks import validate
from mos_nemo.engine.training.deadline import Deadline, parse_duration, slurm_end_time
from mos_nemo.errors import MosConfigError


@pytest.mark.parametrize("text, seconds", [("3h50m", 13800), ("90m", 5400), ("1d2h", 93600), ("45s", 45),
                                           ("3600", 3600), ("01:30:00", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["3x", "h", "", "3h 50m", "-5m"])
def test_a_bad_time_limit_is_a_config_error_naming_the_key(text):
    config = compose_config("tiny_cpu", [f"train.time_limit='{text}'"])
    with pytest.raises(MosConfigError, match="train.time_limit="):
        validate(config, world_size=1, check_paths=False)


def test_the_earlier_of_time_limit_and_slurm_end_wins(monkeypatch):
    soon = int(time.time()) + 80
    monkeypatch.setenv("SLURM_JOB_END_TIME", str(soon))
    assert slurm_end_time() == soon
    deadline = Deadline.find("3h")
    assert deadline.end == soon and "Slurm" in deadline.source
    assert deadline.too_close()  # 80 s left, and no save measured yet (one is assumed to take 60 s)
    deadline.save_took(1.0)
    assert not deadline.too_close()
    monkeypatch.delenv("SLURM_JOB_END_TIME")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert Deadline.find(None) is None
    assert Deadline.find("2h").source == "train.time_limit=2h"
