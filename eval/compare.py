#!/usr/bin/env python
"""Print several evaluation runs side by side in the layout of paper Table 1 (or Table 4), best value of
each column in bold and the second best underlined, as in the paper; optionally write every number of
both tables (with standard errors) as CSV and a bar chart of the runs as PNG.

Usage: eval/compare.py OUT1 OUT2 ... [--table 1|4] [--names NAME ...] [--csv FILE] [--png FILE]
Each OUT is a folder with a summary.json from eval/run_all.sh or eval/aggregate.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mos_nemo.errors import MosError
from mos_nemo.evaluation.comparison import write_bar_chart, write_csv
from mos_nemo.evaluation.tables import load_summary, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--table", type=int, choices=[1, 4], default=1)
    parser.add_argument("--names", nargs="*", help="row labels (default: each summary's name)")
    parser.add_argument("--csv", type=Path, help="write both tables' numbers and standard errors here")
    parser.add_argument("--png", type=Path, help="write a bar chart of the --table columns here")
    args = parser.parse_args(argv)
    try:
        summaries = [load_summary(run) for run in args.runs]
    except MosError as err:
        print(f"compare: ERROR: {err}", file=sys.stderr)
        return 2
    if args.names:
        if len(args.names) != len(summaries):
            print(f"compare: ERROR: --names has {len(args.names)} labels for {len(summaries)} runs", file=sys.stderr)
            return 2
        for summary, name in zip(summaries, args.names):
            summary["name"] = name
    print(render(summaries, args.table))
    if args.csv:
        write_csv(summaries, args.csv)
    if args.png:
        write_bar_chart(summaries, args.table, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
