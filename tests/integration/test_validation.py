"""Held-out loss during training (validation.*) on a real tiny megatron-core run:
- the final held-out loss per dataset equals HF transformers' mean response-token NLL of the exported model
  on the held-out examples (1e-4), and no held-out example is ever in a training dataset;
- each held-out example's own NLL (validation_examples.jsonl) equals HF transformers' too (1e-4);
- a run stopped (train.stop_after) and resumed writes the same validation.jsonl and
  validation_examples.jsonl as an unbroken run;
- validation.every without held-out examples is refused before any work, naming the key."""

import json
from collections import Counter

import pytest
import torch

from tests.distributed import launch_training, run_distributed

VALIDATION = ["validation.holdout=3", "validation.every=2", "train.max_steps=4", "checkpoint.every=0"]


def _train_and_export(run_dir: str):
    from mos_nemo.config import compose_config
    from mos_nemo.engine.hf.weights import export_hf
    from mos_nemo.engine.parallel import destroy_parallel, initialize_parallel
    from mos_nemo.engine.training import build
    from mos_nemo.engine.training.loop import Trainer

    config = compose_config("tiny_cpu", [f"run.dir={run_dir}", *VALIDATION, "checkpoint.save_final=false"])
    parallel = initialize_parallel(config.parallel.tp, config.parallel.pp, config.run.seed)
    trainer = Trainer(config, parallel)
    trainer.run()
    export_hf(trainer.model[0].module, trainer.hf_config, f"{run_dir}/hf", tokenizer_dir=trainer.tokenizer_dir)
    held = {name: [[example["input_ids"].tolist(), example["loss_mask"].tolist()] for example in rows]
            for name, rows in zip(trainer.validation.names, trainer.validation.rows.examples)}
    as_lists = lambda datasets: {d.name: [d[k]["input_ids"].tolist() for k in range(len(d))] for d in datasets}  # noqa: E731
    trained = as_lists(trainer.datasets)
    whole = as_lists(build.load_datasets(config, trainer.tokenizer, parallel))
    destroy_parallel()
    return held, trained, whole


@pytest.mark.slow
def test_held_out_loss_matches_hf_transformers_and_held_out_examples_are_not_trained(tmp_path):
    import transformers

    held, trained, whole = run_distributed(_train_and_export, 1, str(tmp_path))[0]
    for name, examples in held.items():  # the held-out and training parts partition the dataset
        assert len(examples) == 3 and len(trained[name]) == len(whole[name]) - 3
        parts = Counter(tuple(ids) for ids, _ in examples) + Counter(tuple(ids) for ids in trained[name])
        assert parts == Counter(tuple(ids) for ids in whole[name])
    records = [json.loads(line) for line in (tmp_path / "validation.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2, 4]
    per_example = [json.loads(line) for line in (tmp_path / "validation_examples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in per_example] == [0, 2, 4]
    assert records[0]["loss"] != records[-1]["loss"]  # the model trained in between
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", torch_dtype=torch.float32).eval()
    expected = {}
    with torch.no_grad():
        for name, examples in held.items():
            losses = []
            for ids, mask in examples:
                logits = model(input_ids=torch.tensor([ids])).logits[0].double()  # [s, V]
                targets = torch.tensor(ids[1:])
                predicted = torch.tensor(mask[1:], dtype=torch.bool)  # token t+1 is a response token
                nll = torch.nn.functional.cross_entropy(logits[:-1], targets, reduction="none")  # [s-1]
                losses.append(float(nll[predicted].mean()))
            expected[name] = sum(losses) / len(losses)
            # each example's own NLL, in the held-out order (what a paired comparison of two runs needs)
            assert per_example[-1]["nll"][name] == pytest.approx(losses, abs=1e-4)
    final = records[-1]
    for name, value in expected.items():
        assert abs(final["loss"][name] - value) < 1e-4, (name, final["loss"][name], value)
    assert abs(final["mean"] - sum(expected.values()) / len(expected)) < 1e-4


@pytest.mark.slow
@pytest.mark.distributed
def test_stopped_and_resumed_run_writes_the_same_validation_log(tmp_path):
    launch_training(tmp_path / "whole", *VALIDATION)
    launch_training(tmp_path / "split", *VALIDATION, "train.stop_after=3")
    launch_training(tmp_path / "split", *VALIDATION)
    whole = (tmp_path / "whole" / "validation.jsonl").read_text()
    assert whole == (tmp_path / "split" / "validation.jsonl").read_text()
    examples = (tmp_path / "whole" / "validation_examples.jsonl").read_text()
    assert examples == (tmp_path / "split" / "validation_examples.jsonl").read_text()
    assert [json.loads(line)["step"] for line in whole.splitlines()] == [0, 2, 4]


def test_validation_every_without_holdout_is_refused_naming_the_key(tmp_path):
    import subprocess
    import sys

    from tests.distributed import ROOT

    done = subprocess.run([sys.executable, "mos_nemo/train.py", "--config-name", "tiny_cpu",
                           f"run.dir={tmp_path}", "validation.every=5"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0
    assert "validation.every=5" in done.stderr + done.stdout and "validation.holdout" in done.stderr + done.stdout
