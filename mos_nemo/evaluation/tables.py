"""Markdown tables in the layout of paper Table 1 (MMLU + MT-bench) and Table 4 (GSM8K, MATH, M-math).

As in the paper, the best value of each column is **bold** and the second best <u>underlined</u> when
several runs are compared; MMLU-type numbers are percent with two decimals, MT-bench scores two decimals.
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


def _cell(value: float | None, mark: str) -> str:
    if value is None:
        return "–"
    text = f"{value:.2f}"
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
        lines.append(f"| {summary['name']} | " + " | ".join(_cell(v, m) for v, m in zip(row, mark)) + " |")
    return "\n".join(lines)


def render_run(summary: dict) -> str:
    """summary.md for one run: both tables, the MMLU group sizes and the MT-bench grading counts."""
    parts = [f"# Evaluation of {summary['name']}", "", "## Table 1 layout (MMLU 0-shot, MT-bench)", "",
             render([summary], 1), "", "## Table 4 layout (GSM8K 5-shot, MATH 5-shot, MMLU math 0-shot)", "",
             render([summary], 4), ""]  # fmt: skip
    mmlu = summary["mmlu"]
    if mmlu.get("evaluated"):
        sizes = ", ".join(f"{g}: {v['subjects']} subjects / {v['n']} questions" for g, v in mmlu["groups"].items())
        parts += [f"MMLU groups (paper Table 7): {sizes}; all 57 subjects: {mmlu['complete']}.", ""]
    mt = summary["mtbench"]
    if mt.get("evaluated"):
        parts += [f"MT-bench: {mt['n_questions']} questions, judge `{mt['judge']}`, {mt['n_graded']} gradings, "
                  f"{mt['n_failed']} failed, {len(mt['missing'])} missing.", ""]  # fmt: skip
    parts += ["Data: " + "; ".join(summary["data_licenses"]) + "."]
    return "\n".join(parts) + "\n"
