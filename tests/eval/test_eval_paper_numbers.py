"""MMLU numbers are the paper's plain means over subjects. Oracle: paper Table 1 itself, whose every row
satisfies mu_MU = (5 Math + 9 Med. + 43 Others) / 57 to 0.01 and mu_BOTH = (mu_MU + 10 mu_MB) / 2. We build
lm-eval result files whose per-subject accuracies average, per group, to a row's group accuracies while
the subjects have unequal sizes (so sample weighting would give other numbers), run eval/aggregate.py on
them and compare with the row's mu_MU and mu_BOTH."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from eval_fixtures import REPO

from mos_nemo.evaluation import mmlu_groups

# Paper Table 1 (EMNLP 2024), rows as printed: mu_BOTH, mu_MU, Math, Med., Others, mu_MB.
TABLE1 = {
    "Qwen1.5-0.5B PROP.": (32.82, 30.95, 23.40, 31.30, 31.76, 3.47),
    "Qwen1.5-0.5B MOS+COSSIM+EMA": (35.13, 32.45, 22.27, 31.56, 33.82, 3.78),
    "Gemma-2B TEMP.": (41.86, 36.16, 21.03, 37.92, 37.55, 4.76),
    "Gemma-2B MOS+DIFF+EMA": (45.10, 34.61, 20.83, 34.64, 36.20, 5.56),
    "Llama-3-8B PROP.": (60.97, 56.78, 26.61, 62.03, 59.19, 6.52),
    "Llama-3-8B MOS+DIFF": (63.00, 57.93, 31.08, 62.65, 60.07, 6.81),
    "Llama-3-8B MOS+DIFF+EMA": (63.26, 58.34, 32.81, 62.21, 60.49, 6.82),
}


def _write_mmlu(out: Path, group_acc: dict[str, float]) -> dict[str, tuple[float, int]]:
    """lm-eval-shaped MMLU results: per group, accuracies spread +-d around the group's value (their plain
    mean is the value) and sample counts growing with the spread, so weighting by counts shifts the mean."""
    per_subject = {}
    for group, subjects in mmlu_groups.GROUPS.items():
        k = len(subjects)
        offsets = [(i - (k - 1) / 2) * 0.01 for i in range(k)]  # sum to zero
        for i, subject in enumerate(subjects):
            per_subject[subject] = (group_acc[group] / 100 + offsets[i], 100 + 40 * i)
    results = {
        "results": {f"mmlu_{s}": {"acc,none": a, "acc_stderr,none": 0.01, "alias": s} for s, (a, _) in per_subject.items()},
        "n-samples": {f"mmlu_{s}": {"original": n, "effective": n} for s, (_, n) in per_subject.items()},
        "n-shot": {f"mmlu_{s}": 0 for s in per_subject},
        "config": {"model": "hf", "model_args": "pretrained=x,dtype=float32", "limit": None},
    }
    folder = out / "lm_eval" / "mmlu" / "x"
    folder.mkdir(parents=True)
    (folder / "results_2026-01-01T00-00-00.json").write_text(json.dumps(results))
    return per_subject


def _write_mtbench(out: Path, score: float) -> None:
    bench = out / "mtbench" / "data" / "mt_bench"
    (bench / "model_judgment").mkdir(parents=True)
    (bench / "question.jsonl").write_text(json.dumps({"question_id": 81, "category": "writing",
                                                      "turns": ["a", "b"]}) + "\n")  # fmt: skip
    rows = [{"question_id": 81, "model": "m", "score": score, "turn": t, "tstamp": 1.0} for t in (1, 2)]
    (bench / "model_judgment" / "gpt-4_single.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "run_config.json").write_text(json.dumps({"model_id": "m", "judge_model": "gpt-4", "name": "row"}))


@pytest.mark.parametrize("row", sorted(TABLE1))
def test_aggregate_reproduces_paper_table1_rows(row, tmp_path):
    mu_both, mu_mu, math, med, others, mu_mb = TABLE1[row]
    per_subject = _write_mmlu(tmp_path, {"math": math, "med": med, "others": others})
    _write_mtbench(tmp_path, mu_mb)
    done = subprocess.run([sys.executable, str(REPO / "eval" / "aggregate.py"), str(tmp_path)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    t1 = summary["table1"]
    assert (t1["Math"], t1["Med."], t1["Others"]) == pytest.approx((math, med, others), abs=1e-9)
    assert t1["mu_MU"] == pytest.approx(mu_mu, abs=0.01)  # the paper's own mu_MU, from its group means
    # the paper averaged unrounded numbers: mu_MB's rounding (+-0.005) moves 10 mu_MB / 2 by up to 0.025
    assert t1["mu_BOTH"] == pytest.approx(mu_both, abs=0.035)
    # the sample-weighted figure differs (it is kept as an extra field, not reported in the table)
    weighted = summary["mmlu"]["overall_sample_weighted"]
    total = sum(n for _, n in per_subject.values())
    assert weighted == pytest.approx(100 * sum(a * n for a, n in per_subject.values()) / total, abs=1e-9)
    assert abs(weighted - mu_mu) > 0.05
    # the printed table shows the plain mean; mu_BOTH rests on 1 of MT-bench's 80 questions here: partial (†)
    assert f"| row | {t1['mu_BOTH']:.2f}† | {t1['mu_MU']:.2f} |" in done.stdout


def test_aggregate_prints_plain_subject_means_for_unequal_subjects(tmp_path):
    """Two subjects of very different sizes: plain mean 50, sample-weighted mean 90.9."""
    folder = tmp_path / "lm_eval" / "mmlu" / "x"
    folder.mkdir(parents=True)
    results = {
        "results": {"mmlu_abstract_algebra": {"acc,none": 1.0, "acc_stderr,none": 0.0},
                    "mmlu_college_mathematics": {"acc,none": 0.0, "acc_stderr,none": 0.0}},
        "n-samples": {"mmlu_abstract_algebra": {"original": 100, "effective": 100},
                      "mmlu_college_mathematics": {"original": 10, "effective": 10}},
        "config": {"model": "hf", "model_args": "pretrained=x", "limit": None},
    }  # fmt: skip
    (folder / "results_2026-01-01T00-00-00.json").write_text(json.dumps(results))
    done = subprocess.run([sys.executable, str(REPO / "eval" / "aggregate.py"), str(tmp_path)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table1 = next(line for line in done.stdout.splitlines() if line.startswith(f"| {tmp_path.name} |"))
    # 2 of MMLU's 57 subjects: partial (†)
    assert re.match(rf"\| {tmp_path.name} \| – \| 50\.00† \| 50\.00† \| – \| – \|", table1), table1
    assert "90.91" in done.stdout  # the sample-weighted figure is shown as an extra, labelled line
