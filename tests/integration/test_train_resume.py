"""Resume continues exactly: train 2k steps == train k, stop, resume, train k more (same losses, same
mixture.jsonl), in one process group at DP=1 with the distributed optimizer and the MoS reward hook."""

import os

import pytest
import torch

from mos_nemo.config import compose_config
from mos_nemo.config_checks import validate
from mos_nemo.engine.training.loop import Trainer
from mos_nemo.engine.parallel import destroy_parallel, initialize_parallel
from mos_nemo.engine.training.optimizer_state import torch_optimizers
from mos_nemo.logs import read_jsonl

K = 4
OVERRIDES = [f"train.max_steps={2 * K}", "checkpoint.every=0", "mixing.strategy=mos", "mixing.update_every=2",
             "mixing.reward_batch=4", "mixing.inner_steps=20", "mixing.tau=1.0"]


def _trainer(run_dir, *extra) -> Trainer:
    config = compose_config("tiny_cpu", OVERRIDES + [f"run.dir={run_dir}", *extra])
    validate(config, world_size=1)
    return Trainer(config, PARALLEL[0])


def _train(run_dir, *extra):
    return _trainer(run_dir, *extra).run()


PARALLEL = []


@pytest.fixture(scope="module", autouse=True)
def process_group():
    # A one-process world on port 0: the OS picks a free port when the store binds (no race with others).
    single = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "0"}
    saved = {key: os.environ.get(key) for key in single}
    os.environ.update(single)
    try:
        PARALLEL.append(initialize_parallel(tp=1, pp=1, seed=0))
        yield
        destroy_parallel()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    assert _train(tmp_path / "whole") == 2 * K
    assert _train(tmp_path / "split", f"train.stop_after={K}") == K
    assert (tmp_path / "split" / "checkpoints" / f"step_{K:07d}" / "meta.json").is_file()
    assert _train(tmp_path / "split") == 2 * K

    whole = read_jsonl(tmp_path / "whole" / "train.jsonl")
    split = read_jsonl(tmp_path / "split" / "train.jsonl")
    assert [r["step"] for r in split] == list(range(1, 2 * K + 1))
    for key in ("loss", "dataset", "lr", "tokens", "grad_norm"):
        assert [r[key] for r in split] == [r[key] for r in whole], key
    mixture_whole = read_jsonl(tmp_path / "whole" / "mixture.jsonl")
    assert [r["step"] for r in mixture_whole] == [0, 2, 4, 6, 8]
    # byte for byte: mixture.jsonl holds no wall times
    assert (tmp_path / "split" / "mixture.jsonl").read_bytes() == (tmp_path / "whole" / "mixture.jsonl").read_bytes()
    # the learned weights moved away from the prior: the hook really ran in both runs
    assert mixture_whole[-1]["weights"] != mixture_whole[0]["weights"]


@pytest.mark.slow
def test_checkpoint_keep_prunes_all_but_the_newest(tmp_path):
    assert _train(tmp_path, "train.max_steps=4", "checkpoint.every=1", "checkpoint.keep=2") == 4
    folders = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert folders == ["step_0000003", "step_0000004"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_0000004"


@pytest.mark.slow
def test_packed_and_unpacked_batches_train_alike(tmp_path):
    """Packing (several examples per row, segment-aware attention) changes the layout, not the loss."""
    static = ["mixing.strategy=static", "train.max_steps=3", "checkpoint.save_final=false"]
    _train(tmp_path / "padded", *static, "train.pack=false")
    _train(tmp_path / "packed", *static, "train.pack=true")
    padded = read_jsonl(tmp_path / "padded" / "train.jsonl")
    packed = read_jsonl(tmp_path / "packed" / "train.jsonl")
    assert [r["dataset"] for r in packed] == [r["dataset"] for r in padded]
    assert [r["loss_tokens"] for r in packed] == [r["loss_tokens"] for r in padded]
    assert abs(packed[0]["loss"] - padded[0]["loss"]) < 1e-5  # same model, same batch
    for mine, theirs in zip(packed[1:], padded[1:]):  # after updates: summation order differs, 1e-4
        assert abs(mine["loss"] - theirs["loss"]) < 1e-4, mine["step"]


def _adam_moments(optimizer) -> list[torch.Tensor]:
    """Every parameter's exp_avg and exp_avg_sq, in the optimizer's own group and parameter order."""
    return [torch_optimizer.state[param][key].clone()
            for torch_optimizer in torch_optimizers(optimizer) for group in torch_optimizer.param_groups
            for param in group["params"] for key in ("exp_avg", "exp_avg_sq")]


@pytest.mark.slow
@pytest.mark.parametrize("distributed_optimizer", [True, False])
def test_resume_with_a_changed_lr_restores_the_optimizer_state(tmp_path, distributed_optimizer):
    """checkpoint.allow_changes=[optim.lr]: the Adam moments come back bit for bit and the new LR governs the
    remaining steps. megatron-core >= 0.17 pairs the saved param groups by their max_lr / min_lr too, so the
    old LR in the checkpoint must not make the load fail (KeyError / ValueError) or lose the moments."""
    run_dir = tmp_path / "run"
    layout = [f"parallel.distributed_optimizer={distributed_optimizer}", "train.max_steps=4"]
    first = _trainer(run_dir, *layout, "train.stop_after=2")
    assert first.run() == 2
    saved = _adam_moments(first.optimizer)
    assert saved and all(moment.abs().sum() > 0 for moment in saved)  # two steps have filled them

    changed = [*layout, "optim.lr=0.02", "checkpoint.allow_changes=[optim.lr]"]
    resumed = _trainer(run_dir, *changed)
    assert resumed._resume() == 2  # the load run() starts with
    loaded = _adam_moments(resumed.optimizer)
    assert len(loaded) == len(saved) and all(torch.equal(a, b) for a, b in zip(loaded, saved))

    assert _trainer(run_dir, *changed).run() == 4
    logged = {record["step"]: record["lr"] for record in read_jsonl(run_dir / "train.jsonl")}
    # Appendix C's schedule, 1 warm-up step of 4: step t > 1 takes 0.02 * (4 - t + 1) / 4
    assert [logged[3], logged[4]] == pytest.approx([0.02 * 2 / 4, 0.02 * 1 / 4])
