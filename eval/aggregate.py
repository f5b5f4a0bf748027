#!/usr/bin/env python
"""Write OUT/summary.json and OUT/summary.md: paper Table 1 (mu_MU, Math, Med., Others, mu_MB, Turn 1,
Turn 2, mu_BOTH) and Table 4 (GSM8K, MATH, M-math, mu_ALL) for one eval/run_all.sh output folder.

Usage: eval/aggregate.py OUT [--gsm8k-filter strict-match|flexible-extract] [--require-mtbench]
Exits non-zero with one line if MT-bench gradings failed (score -1) or are missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mos_nemo.errors import MosError
from mos_nemo.evaluation.summary import summarize
from mos_nemo.evaluation.tables import render_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--gsm8k-filter", choices=["strict-match", "flexible-extract"], default="strict-match")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.out, args.gsm8k_filter)
    except MosError as err:
        print(f"aggregate: ERROR: {err}", file=sys.stderr)
        return 2
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "summary.md").write_text(render_run(summary))
    print(render_run(summary))
    mt = summary["mtbench"]
    if mt.get("evaluated") and (mt["n_failed"] or mt["missing"]):
        print(f"aggregate: ERROR: MT-bench has {mt['n_failed']} failed gradings (score -1: "
              f"{mt.get('n_unparsable', 0)} judge verdicts without a parsable [[rating]], "
              f"{mt.get('n_judge_errors', 0)} judge calls that failed) and {len(mt['missing'])} missing in "
              f"{mt['judgment_file']}; rerun eval/run_all.sh to regrade", file=sys.stderr)  # fmt: skip
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
