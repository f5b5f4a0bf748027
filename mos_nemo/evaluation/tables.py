"""Markdown tables in the layout of paper Table 1 (MMLU + MT-bench) and Table 4 (GSM8K, MATH, M-math).

As in the paper, the best value of each column is **bold** and the second best <u>underlined</u> when
several runs are compared; MMLU-type numbers are percent with two decimals, MT-bench scores two decimals.
A number computed from a benchmark evaluated on a subset (EVAL_LIMIT, some MMLU subjects or MATH subtasks,
some MT-bench questions) carries a dagger (†), and the footnote says which subset.
"""

from __future__ import annotations

import json
from pathlib import Path

from mos_nemo.errors import MosDataError
from mos_nemo.evaluation.summary import TABLE1_COLUMNS, TABLE4_COLUMNS

HEADERS = {
    1: ["μ_BOTH", "μ_MU", "Math", "Med.", "Others", "μ_MB", "Turn 1", "Turn 2"],
    4: ["μ_ALL", "GSM8K 5-shot", "MATH 5-shot", "M-math 0-shot"],
}
COLUMNS = {1: TABLE1_COLUMNS, 4: TABLE4_COLUMNS}
# The lm-eval benchmarks each column is computed from (for the partial-result mark).
SOURCES = {"mu_BOTH": {"mmlu"}, "mu_MU": {"mmlu"}, "Math": {"mmlu"}, "Med.": {"mmlu"}, "Others": {"mmlu"},
           "M-math": {"mmlu"}, "GSM8K": {"gsm8k"}, "MATH": {"hendrycks_math"},
           "mu_ALL": {"mmlu", "gsm8k", "hendrycks_math"}, "mu_MB": {"mtbench"}, "Turn 1": {"mtbench"},
           "Turn 2": {"mtbench"}}  # fmt: skip
SOURCES["mu_BOTH"] = SOURCES["mu_MU"] | SOURCES["mu_MB"]
PARTIAL = "†"
SECTION = {1: "table1", 4: "table4"}


def load_summary(run_dir: Path) -> dict:
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise MosDataError(f"{path} not found: run eval/run_all.sh (or eval/aggregate.py {run_dir}) first")
    return json.loads(path.read_text())


def _rank_marks(values: list[float | None]) -> list[str]:
    """'best', 'second' or '' per value; ties share a rank, missing values get none."""
    distinct = sorted({v for v in values if v is not None}, reverse=True)
    marks = {}
    if distinct:
        marks[distinct[0]] = "best"
    if len(distinct) > 1:
        marks[distinct[1]] = "second"
    return [marks.get(v, "") if v is not None else "" for v in values]


def _cell(value: float | None, mark: str, partial: bool = False) -> str:
    if value is None:
        return "–"
    text = f"{value:.2f}" + (PARTIAL if partial else "")
    return {"best": f"**{text}**", "second": f"<u>{text}</u>", "": text}[mark]


def render(summaries: list[dict], table: int = 1, mark_best: bool = True) -> str:
    """One markdown table, one row per run (its `name`), in the column order of paper Table `table`."""
    if table not in COLUMNS:
        raise MosDataError(f"--table {table}: the paper's layouts are Table 1 and Table 4")
    columns, section = COLUMNS[table], SECTION[table]
    rows = [[s[section].get(c) for c in columns] for s in summaries]
    marks = [[""] * len(columns) for _ in rows]
    if mark_best and len(summaries) > 1:
        for j in range(len(columns)):
            for i, mark in enumerate(_rank_marks([row[j] for row in rows])):
                marks[i][j] = mark
    lines = ["| run | " + " | ".join(HEADERS[table]) + " |", "|---|" + "---:|" * len(columns)]
    for summary, row, mark in zip(summaries, rows, marks):
        partial = set(summary.get("partial", []))
        cells = [_cell(v, m, bool(SOURCES.get(c, set()) & partial)) for c, v, m in zip(columns, row, mark)]
        lines.append(f"| {summary['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def partial_note(summary: dict) -> str:
    """'mmlu: 4 of 57 subjects; mtbench: 2 of 80 questions' (empty when every benchmark is complete)."""
    reasons = summary.get("partial_reasons") or {name: "lm-eval --limit" for name in summary.get("partial", [])}
    return "; ".join(f"{name}: {why}" for name, why in reasons.items())


def _state(summary: dict, bench: str) -> str:
    reason = (summary.get("partial_reasons") or {}).get(bench)
    return f"partial ({reason})" if reason else "complete"


def _pm(value: float | None, stderr: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" + ("" if stderr is None else f" ± {stderr:.2f}")


def render_uncertainty(summary: dict) -> list[str]:
    """Each accuracy with lm-eval's standard error, its sample count and whether it is partial."""
    lines = ["| number | value ± stderr | n | results |", "|---|---:|---:|---|"]
    mmlu, sections = summary["mmlu"], {"mmlu": summary["mmlu"], "gsm8k": summary["gsm8k"],
                                        "hendrycks_math": summary["math"]}  # fmt: skip
    rows = [("μ_MU (plain mean over subjects)", "mmlu", summary["table1"]["mu_MU"], mmlu.get("n"))]
    rows += [(label, "mmlu", summary["table1"][label], mmlu.get("groups", {}).get(key, {}).get("n"))
             for label, key in (("Math", "math"), ("Med.", "med"), ("Others", "others"))]  # fmt: skip
    rows += [("GSM8K", "gsm8k", summary["table4"]["GSM8K"], summary["gsm8k"].get("n")),
             ("MATH", "hendrycks_math", summary["table4"]["MATH"], summary["math"].get("n"))]  # fmt: skip
    for label, bench, value, n in rows:
        if value is None:
            continue
        key = label.split(" ")[0].replace("μ_MU", "mu_MU")
        state = _state(summary, bench)
        lines.append(f"| {label} | {_pm(value, summary['stderr'].get(key))} | {n} | {state} |")
    if mmlu.get("evaluated"):
        lines.append(f"| μ_MU sample-weighted (lm-eval's `mmlu` group) | {_pm(mmlu['overall_sample_weighted'], None)} "
                     f"| {mmlu['n']} | extra |")  # fmt: skip
    for name, other in summary.get("other_benchmarks", {}).items():
        unit = " %" if other["percent"] else ""
        lines.append(f"| {name} (`{other['metric']}`{unit}) | {_pm(other['value'], other['stderr'])} | {other['n']} | "
                     f"{_state(summary, name)} |")  # fmt: skip
    return lines


def render_mmlu_subjects(mmlu: dict) -> list[str]:
    lines = ["| subject | group | acc ± stderr | n |", "|---|---|---:|---:|"]
    for subject, row in mmlu["per_subject"].items():
        lines.append(f"| {subject} | {row['group']} | {_pm(row['acc'], row['stderr'])} | {row['n']} |")
    return lines


def render_mtbench_categories(mt: dict) -> list[str]:
    lines = ["| category | score | Turn 1 | Turn 2 | gradings |", "|---|---:|---:|---:|---:|"]
    for category, row in mt["per_category"].items():
        cells = [f"{row[k]:.2f}" if row[k] == row[k] else "–" for k in ("score", "turn1", "turn2")]  # nan: none
        lines.append(f"| {category} | " + " | ".join(cells) + f" | {row['n']} |")
    return lines


def render_run(summary: dict) -> str:
    """summary.md for one run: both tables, accuracies with standard errors, other lm-eval tasks, the MMLU
    subjects, the MT-bench categories and the grading counts."""
    parts = [f"# Evaluation of {summary['name']}", "", "## Table 1 layout (MMLU 0-shot, MT-bench)", "",
             render([summary], 1), "", "## Table 4 layout (GSM8K 5-shot, MATH 5-shot, MMLU math 0-shot)", "",
             render([summary], 4), ""]  # fmt: skip
    if summary.get("partial"):
        parts += [f"{PARTIAL} partial, evaluated on a subset ({partial_note(summary)}): not comparable with the "
                  "paper's or with full results.", ""]  # fmt: skip
    parts += ["## Accuracies (%) with lm-eval's standard errors", "", *render_uncertainty(summary), ""]
    mmlu = summary["mmlu"]
    if mmlu.get("evaluated"):
        sizes = ", ".join(f"{g}: {v['subjects']} subjects / {v['n']} questions" for g, v in mmlu["groups"].items())
        parts += [f"MMLU groups (paper Table 7), each the plain mean of its subjects' accuracies: {sizes}; "
                  f"all 57 subjects: {mmlu['complete']}.", "", "## MMLU per subject (%)", "",
                  *render_mmlu_subjects(mmlu), ""]  # fmt: skip
    mt = summary["mtbench"]
    if mt.get("evaluated"):
        parts += ["## MT-bench per category (1-10)", "", *render_mtbench_categories(mt), "",
                  f"MT-bench: {mt['n_questions']} questions, judge `{mt['judge']}`, {mt['n_graded']} gradings, "
                  f"{mt['n_failed']} failed ({mt.get('n_unparsable', 0)} verdicts without a parsable [[rating]], "
                  f"{mt.get('n_judge_errors', 0)} judge calls that failed), {len(mt['missing'])} missing.", ""]  # fmt: skip
    parts += ["Data: " + "; ".join(summary["data_licenses"]) + "."]
    return "\n".join(parts) + "\n"
