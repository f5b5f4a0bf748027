"""An evaluation on a subset (4 of 57 MMLU subjects, 2 of 80 MT-bench questions, 2 of 7 MATH subtasks) is
marked partial, with the subset named, in every output: summary.json, summary.md, compare.py's table, CSV
and PNG legend; a complete benchmark (GSM8K here) is not."""

import csv
import json
import subprocess
import sys

from eval_fixtures import REPO
from test_eval_units import _judgment, _write_gsm8k, _write_results

from mos_nemo.evaluation.comparison import bar_label
from mos_nemo.evaluation.summary import TABLE1_COLUMNS


def _subset_run(out):
    _write_results(out, "mmlu", {f"mmlu_{s}": ("acc,none", 0.5, 4) for s in
                                 ("abstract_algebra", "college_mathematics", "anatomy", "astronomy")})
    _write_gsm8k(out, strict=0.4, flexible=0.6, n=10)
    _write_results(out, "hendrycks_math", {"hendrycks_math_algebra": ("exact_match,none", 0.3, 10),
                                           "hendrycks_math_geometry": ("exact_match,none", 0.0, 5)})
    bench = out / "mtbench" / "data" / "mt_bench"
    (bench / "model_judgment").mkdir(parents=True)
    (bench / "question.jsonl").write_text("".join(json.dumps({"question_id": q, "turns": ["a", "b"]}) + "\n"
                                                  for q in (81, 82)))
    (bench / "model_judgment" / "gpt-4_single.jsonl").write_text("".join(
        json.dumps(_judgment(q, t, 5, 1.0)) + "\n" for q in (81, 82) for t in (1, 2)))
    (out / "run_config.json").write_text(json.dumps({"model_id": "m", "judge_model": "gpt-4", "name": "subset"}))


def _run(*args):
    done = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_subset_is_marked_partial_everywhere(tmp_path):
    out = tmp_path / "subset"
    _subset_run(out)
    _run(REPO / "eval" / "aggregate.py", out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial_reasons"] == {"hendrycks_math": "2 of 7 subtasks", "mmlu": "4 of 57 subjects",
                                          "mtbench": "2 of 80 questions"}
    assert summary["partial"] == ["hendrycks_math", "mmlu", "mtbench"]

    md = (out / "summary.md").read_text()
    table1_row = next(line for line in md.splitlines() if line.startswith("| subset |"))
    assert table1_row.count("†") == len(TABLE1_COLUMNS)  # every Table 1 number rests on MMLU or MT-bench
    assert "mmlu: 4 of 57 subjects" in md and "mtbench: 2 of 80 questions" in md
    assert "| GSM8K | 40.00 | 10 | complete |" in md

    table = _run(REPO / "eval" / "compare.py", out, "--table", "4", "--csv", tmp_path / "runs.csv",
                 "--png", tmp_path / "runs.png")
    row4 = next(line for line in table.splitlines() if line.startswith("| subset |"))
    assert "40.00 |" in row4 and "40.00†" not in row4  # GSM8K is complete
    assert row4.count("†") == 3  # mu_ALL, MATH and M-math rest on subsets
    (record,) = csv.DictReader(open(tmp_path / "runs.csv"))
    assert record["partial"] == "hendrycks_math: 2 of 7 subtasks; mmlu: 4 of 57 subjects; mtbench: 2 of 80 questions"
    assert (tmp_path / "runs.png").stat().st_size > 0
    assert "partial: " in bar_label(summary, TABLE1_COLUMNS) and "4 of 57 subjects" in bar_label(summary, ["mu_MU"])
    assert bar_label(summary, ["GSM8K"]) == "subset"
