"""Training on the GPU in bf16: 20 steps lower the loss; stop + resume equals an unbroken run under the GPU
optimizer (TE's FusedAdam when TE imports, else megatron's torch fallback), with the distributed optimizer."""

import os

import pytest

from mos_nemo.config import compose_config
from mos_nemo.config_checks import validate
from mos_nemo.engine.training.loop import Trainer
from mos_nemo.logs import read_jsonl

BASE = ["model.dtype=bf16", "checkpoint.every=0", "train.global_batch_size=8", "train.micro_batch_size=4",
        "optim.lr=1e-3", "optim.warmup_fraction=0.0"]


def _train(state, run_dir, *extra):
    config = compose_config("tiny_cpu", BASE + [f"run.dir={run_dir}", *extra])
    validate(config, world_size=1)
    return Trainer(config, state).run()


@pytest.fixture(scope="module")
def state(single_process_group):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    return single_process_group


@pytest.mark.slow
def test_twenty_bf16_steps_lower_the_loss(state, tmp_path):
    assert _train(state, tmp_path, "train.max_steps=20") == 20
    losses = [r["loss"] for r in read_jsonl(tmp_path / "train.jsonl")]
    assert len(losses) == 20 and all(loss == loss for loss in losses)  # finite, no NaN
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


@pytest.mark.slow
def test_resume_is_exact_under_the_gpu_optimizer(state, tmp_path):
    common = ["train.max_steps=8", "parallel.distributed_optimizer=true", "mixing.strategy=mos",
              "mixing.update_every=2", "mixing.reward_batch=4"]
    assert _train(state, tmp_path / "whole", *common) == 8
    assert _train(state, tmp_path / "split", *common, "train.stop_after=4") == 4
    assert _train(state, tmp_path / "split", *common) == 8
    whole = read_jsonl(tmp_path / "whole" / "train.jsonl")
    split = read_jsonl(tmp_path / "split" / "train.jsonl")
    for key in ("loss", "lr", "tokens", "grad_norm"):
        assert [r[key] for r in split] == [r[key] for r in whole], key
    assert (tmp_path / "split" / "mixture.jsonl").read_bytes() == (tmp_path / "whole" / "mixture.jsonl").read_bytes()
