#!/usr/bin/env python
"""Paper Table 5: per dataset, response-only PPL under the base model (theta_0), under the fine-tuned
model (theta), and Delta = PPL_theta / PPL_theta0 (paper Appendix A).

Usage: eval/ppl_table.py BASE FINETUNED --datasets NAME=FILE.jsonl [NAME=FILE ...]
       [--max-examples 256] [--max-length 2048] [--batch-size 4] [--dtype float32] [--json OUT.json]
BASE and FINETUNED are HF model folders; each FILE holds records in a training format
(messages, sharegpt, instruction or prompt_completion).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mos_nemo.errors import MosError
from mos_nemo.evaluation.perplexity import ppl_rows, render_table5


def _named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: write datasets as NAME=FILE, e.g. math=math.jsonl")
    return name, Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base")
    parser.add_argument("finetuned")
    parser.add_argument("--datasets", type=_named_path, nargs="+", required=True)
    parser.add_argument("--max-examples", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    try:
        rows = ppl_rows(args.base, args.finetuned, dict(args.datasets), args.max_examples, args.max_length,
                        args.batch_size, getattr(torch, args.dtype))  # fmt: skip
    except MosError as err:
        print(f"ppl_table: ERROR: {err}", file=sys.stderr)
        return 2
    print(render_table5(rows))
    if args.json:
        args.json.write_text(json.dumps([{**vars(r), "delta": r.delta} for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
