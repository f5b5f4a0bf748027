"""Evaluation without the hub: `python -m mos_nemo.evaluation.data_check DIR` tells a complete EVAL_DATA_DIR
(exit 0) from a partial one (1) and an unusable one (2, naming the file), and eval/run_all.sh runs that check
first and shows on the console where each step's log goes and lm-eval's progress."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from eval_fixtures import REPO, _write_hf_dataset, run_all

from mos_nemo.evaluation.data_check import MATH_SUBTASKS
from mos_nemo.evaluation.mmlu_groups import ALL_SUBJECTS


def _check(folder) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mos_nemo.evaluation.data_check", str(folder)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _spread(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def test_a_complete_data_dir_passes(tmp_path):
    """Benchmark-shaped folders with the published sizes (57 subjects, 14042 MMLU test rows, ...)."""
    mmlu_row = {"question": "q", "subject": "s", "choices": ["a", "b", "c", "d"], "answer": 0}
    _write_hf_dataset(tmp_path / "mmlu", {s: {"test": [mmlu_row] * n, "dev": [mmlu_row] * 5}
                                          for s, n in zip(ALL_SUBJECTS, _spread(14042, 57))})
    gsm = {"question": "q", "answer": "a\n#### 1"}
    _write_hf_dataset(tmp_path / "gsm8k", {"main": {"train": [gsm] * 5, "test": [gsm] * 1319}})
    maths = {"problem": "p", "level": "Level 1", "type": "t", "solution": "\\boxed{1}"}
    _write_hf_dataset(tmp_path / "hendrycks_math", {t: {"train": [maths] * 5, "test": [maths] * n}
                                                    for t, n in zip(MATH_SUBTASKS, _spread(5000, 7))})
    done = _check(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mmlu            complete  57/57 configs, 14042/14042 test rows" in done.stdout
    assert done.stdout.strip().endswith("is complete")


def test_the_test_fixtures_are_partial(bench_data):
    done = _check(bench_data)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "mmlu            partial   4/57 configs, 11/14042 test rows" in done.stdout
    assert "gsm8k           partial   1/1 configs, 3/1319 test rows" in done.stdout
    assert "marked partial" in done.stdout


def test_unusable_data_is_named(bench_data, tmp_path):
    broken = tmp_path / "data"
    shutil.copytree(bench_data, broken)
    for shard in (broken / "gsm8k" / "main").glob("train-*.parquet"):
        shard.unlink()  # 5-shot GSM8K draws its examples from train
    (next((broken / "mmlu" / "anatomy").glob("test-*.parquet"))).write_bytes(b"not parquet")
    done = _check(broken)
    assert done.returncode == 2 and f"{broken / 'gsm8k' / 'main'}: no train-*.parquet" in done.stdout
    assert "unreadable test parquet" in done.stdout and "not usable" in done.stderr
    assert _check(tmp_path / "empty").returncode == 2


@pytest.mark.slow
def test_run_all_checks_the_data_and_shows_logs_and_progress(tiny_model, bench_data, tmp_path):
    out = tmp_path / "out"
    done = run_all(tiny_model, out, EVAL_DATA_DIR=str(bench_data), BENCHMARKS="gsm8k", MTBENCH="0",
                   EVAL_BATCH_SIZE="4", EVAL_PROGRESS_SECONDS="1", LM_EVAL_EXTRA_ARGS="--gen_kwargs max_gen_toks=8")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"is partial, so are the results (log: {out}/logs/data_check.log)" in done.stderr
    assert f"gsm8k: lm-eval (hf): running (log: {out}/logs/lm_eval_gsm8k.log)" in done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("run_all: gsm8k: lm-eval (hf): ")
                and "%|" in line]
    assert progress and "100%|" in progress[-1], done.stderr[-3000:]
