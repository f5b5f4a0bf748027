"""Backend selection and the lm-eval call each backend gets (the vLLM path needs a GPU and the `vllm`
extra, so here only its command and settings are checked; the hf path runs in the pipeline tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mos_nemo.errors import MosConfigError
from mos_nemo.evaluation import lm_eval_command
from mos_nemo.evaluation.lm_results import settings_mismatch


def _env(**extra):
    return {"EVAL_DTYPE": "bfloat16", "EVAL_SEED": "7", **extra}


def test_vllm_backend_uses_batch_size_auto_and_its_seed(tmp_path):
    args, expected = lm_eval_command.command(_env(EVAL_BACKEND="vllm"), "gsm8k", "/m", tmp_path)
    assert args[:4] == ["--model", "vllm", "--model_args", "pretrained=/m,dtype=bfloat16,seed=7"]
    assert args[args.index("--batch_size") + 1] == "auto" and "--device" not in args
    assert args[args.index("--num_fewshot") + 1] == "5"
    assert expected == {"model": "vllm", "model_args": "pretrained=/m,dtype=bfloat16,seed=7", "limit": None,
                        "num_fewshot": 5}  # fmt: skip
    args, _ = lm_eval_command.command(_env(EVAL_BACKEND="vllm", EVAL_BATCH_SIZE="32"), "gsm8k", "/m", tmp_path)
    assert args[args.index("--batch_size") + 1] == "32"


def test_hf_and_server_backends_and_any_task(tmp_path):
    args, expected = lm_eval_command.command(_env(EVAL_DEVICE="cpu", EVAL_LIMIT="3", NUM_FEWSHOT="bbh=3"), "ifeval",
                                             "/m", tmp_path)  # fmt: skip
    assert args[:6] == ["--model", "hf", "--model_args", "pretrained=/m,dtype=bfloat16", "--device", "cpu"]
    assert args[args.index("--tasks") + 1] == "ifeval" and args[args.index("--num_fewshot") + 1] == "0"
    assert args[args.index("--batch_size") + 1] == "8" and args[-2:] == ["--limit", "3"]
    assert lm_eval_command.num_fewshot("bbh", "bbh=3") == 3 and lm_eval_command.num_fewshot("mmlu") == 0
    args, _ = lm_eval_command.command(_env(EVAL_BACKEND="local-completions", EVAL_BASE_URL="http://h:8/v1/"),
                                      "mmlu", "/m", tmp_path)  # fmt: skip
    assert args[3] == "model=/m,base_url=http://h:8/v1/completions,tokenizer=/m,tokenized_requests=False"
    with pytest.raises(MosConfigError, match="EVAL_BACKEND=tgi"):
        lm_eval_command.command(_env(EVAL_BACKEND="tgi"), "mmlu", "/m", tmp_path)
    with pytest.raises(MosConfigError, match="NUM_FEWSHOT"):
        lm_eval_command.num_fewshot("bbh", "bbh:3")


def test_reuse_needs_matching_model_args_limit_and_shots():
    results = {"config": {"model": "hf", "model_args": "pretrained=/m,dtype=float32", "limit": None},
               "n-shot": {"mmlu_anatomy": 0, "mmlu": 0}, "n-samples": {"mmlu_anatomy": {"original": 3, "effective": 3}}}
    same = {"model": "hf", "model_args": "dtype=float32,pretrained=/m", "limit": None, "num_fewshot": 0}
    assert settings_mismatch(results, same) is None
    assert "limit" in settings_mismatch(results, {**same, "limit": "2"})
    assert "model_args" in settings_mismatch(results, {**same, "model_args": "pretrained=/other,dtype=float32"})
    assert "model 'hf'" in settings_mismatch(results, {**same, "model": "vllm"})
    assert "n-shot" in settings_mismatch(results, {**same, "num_fewshot": 5})


def test_run_all_selects_vllm_for_lm_eval_and_mtbench(tmp_path, tiny_model):
    """EVAL_BACKEND=vllm reaches lm-eval as `--model vllm` with batch size auto, and MT-bench answers as the
    offline vLLM backend; without vLLM installed the MT-bench step fails with one line naming the extra."""
    from eval_fixtures import run_all

    out = tmp_path / "out"
    done = run_all(tiny_model, out, EVAL_BACKEND="vllm", BENCHMARKS="", MTBENCH="0")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_config"]["batch_size"] == "auto" and summary["run_config"]["mtbench_backend"] == "vllm"
    env = {**os.environ, "EVAL_BACKEND": "vllm", "EVAL_DTYPE": "auto"}
    done = subprocess.run([sys.executable, "-m", "mos_nemo.evaluation.lm_eval_command", "mmlu", str(tiny_model),
                           str(tmp_path / "bench")], env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bench" / "lm_eval_args.txt").read_text().splitlines()[:2] == ["--model", "vllm"]
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question_id": 81, "category": "writing", "turns": ["Hi"]}) + "\n")
    done = subprocess.run([sys.executable, "-m", "mos_nemo.evaluation.mtbench_answers", "--model", str(tiny_model),
                           "--model-id", "t", "--questions", str(questions), "--out", str(tmp_path / "a.jsonl"),
                           "--backend", "vllm"], capture_output=True, text=True)  # fmt: skip
    try:
        import vllm  # noqa: F401
    except ImportError:
        assert done.returncode == 2 and "pip install -e '.[vllm]'" in done.stderr
    else:  # a GPU machine with the extra: the offline backend answers
        assert done.returncode == 0, done.stderr[-2000:]
