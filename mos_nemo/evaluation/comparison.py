"""Several runs' summaries as a CSV file and a bar chart (eval/compare.py --csv / --png)."""

from __future__ import annotations

import csv
from pathlib import Path

from mos_nemo.evaluation.summary import TABLE1_COLUMNS, TABLE4_COLUMNS
from mos_nemo.evaluation.tables import HEADERS, PARTIAL, SOURCES, partial_note


def csv_rows(summaries: list[dict]) -> tuple[list[str], list[list]]:
    """(header, one row per run): every Table 1 and Table 4 number, its stderr where lm-eval gave one,
    and the benchmarks that were run on a subset, with the subset (partial, e.g. "mmlu: 4 of 57 subjects")."""
    columns = list(dict.fromkeys(TABLE1_COLUMNS + TABLE4_COLUMNS))
    header = ["run"]
    for column in columns:
        header += [column, f"{column}_stderr"]
    header.append("partial")
    rows = []
    for summary in summaries:
        values = {**summary.get("table1", {}), **summary.get("table4", {})}
        row = [summary["name"]]
        for column in columns:
            row += [values.get(column), summary.get("stderr", {}).get(column)]
        row.append(partial_note(summary))
        rows.append(row)
    return header, rows


def write_csv(summaries: list[dict], path: Path) -> None:
    header, rows = csv_rows(summaries)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])


def _is_partial(summary: dict, column: str) -> bool:
    return bool(SOURCES.get(column, set()) & set(summary.get("partial", [])))


def bar_label(summary: dict, columns: list[str]) -> str:
    """The run's legend entry; a run with partial figures says which subsets (its bars are hatched)."""
    if not any(_is_partial(summary, c) for c in columns):
        return summary["name"]
    return f"{summary['name']} {PARTIAL} partial: {partial_note(summary)}"


def write_bar_chart(summaries: list[dict], table: int, path: Path) -> None:
    """Grouped bars: one group per column of paper Table `table`, one bar per run, stderr as error bars.
    MT-bench columns (1-10) are drawn x10 so they share the 0-100 axis, as mu_BOTH uses them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = TABLE1_COLUMNS if table == 1 else TABLE4_COLUMNS
    section = "table1" if table == 1 else "table4"
    labels = [h + (" ×10" if c in ("mu_MB", "Turn 1", "Turn 2") else "") for h, c in zip(HEADERS[table], columns)]
    width = 0.8 / max(1, len(summaries))
    figure, axes = plt.subplots(figsize=(1.2 * len(columns) + 2, 4))
    for i, summary in enumerate(summaries):
        scale = [10.0 if c in ("mu_MB", "Turn 1", "Turn 2") else 1.0 for c in columns]
        values = [summary[section].get(c) for c in columns]
        heights = [0.0 if v is None else v * k for v, k in zip(values, scale)]
        errors = [summary.get("stderr", {}).get(c) or 0.0 for c in columns]
        xs = [j + (i - (len(summaries) - 1) / 2) * width for j in range(len(columns))]
        axes.bar(xs, heights, width, yerr=errors, capsize=2, label=bar_label(summary, columns),
                 hatch=["//" if _is_partial(summary, c) else "" for c in columns])
    axes.set_xticks(range(len(columns)), labels)
    axes.set_ylabel("score (%; MT-bench ×10)")
    axes.set_title(f"Paper Table {table} layout")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, not on them
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
