"""Command line of ``mos_nemo.data.prepare`` (see the package docstring).

    python -m mos_nemo.data.prepare paper --out data/paper [--seed 1234] [--source-root DIR]
    python -m mos_nemo.data.prepare ifd --data data/paper/full --model /models/Qwen1.5-0.5B --out data/paper/ifd
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mos_nemo.errors import MosError


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mos_nemo.data.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    paper = commands.add_parser("paper", help="the paper's four training sets, a random 10%% of each")
    paper.add_argument("--out", required=True, help="output folder (NAME.jsonl, full/, manifest.json, stats.md)")
    paper.add_argument("--seed", type=int, default=1234, help="seed of every random draw")
    paper.add_argument("--fraction", type=float, default=0.1, help="fraction of each dataset kept (paper: 0.1)")
    paper.add_argument("--p3-per-subset", type=int, default=1000, help="random rows per P3 subset (paper: 1K)")
    paper.add_argument("--source-root", default=None, help="read the hub repositories from ROOT/owner/name "
                       "instead of downloading (default: $MOS_NEMO_HUB_ROOT if set)")
    paper.add_argument("--no-progress", action="store_true", help="no progress bars")
    paper.add_argument("--p3-separate", action="store_true", help="also write OUT/nlp/SUBSET.jsonl, one file per "
                       "P3 subset, to train on as separate datasets ({source: OUT/nlp, per_file: true})")
    ifd = commands.add_parser("ifd", help="Instruction-Following Difficulty and top-k%% selection (Table 3)")
    ifd.add_argument("--data", required=True, help="folder of NAME.jsonl to score (prepare paper's OUT/full)")
    ifd.add_argument("--model", required=True, help="local HF causal LM folder (paper: Qwen1.5-0.5B)")
    ifd.add_argument("--out", required=True, help="output folder (NAME.jsonl, scores/, manifest.json)")
    ifd.add_argument("--top", type=float, default=0.1, help="fraction kept per dataset (paper: 0.1)")
    ifd.add_argument("--batch-size", type=int, default=8)
    ifd.add_argument("--max-length", type=int, default=2048, help="tokens of prompt + response")
    ifd.add_argument("--keep-above-one", action="store_true", help="also select examples with IFD >= 1")
    ifd.add_argument("--names", nargs="*", default=None, help="only these datasets (default: every NAME.jsonl)")
    ifd.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    ifd.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "paper":
            from mos_nemo.data.prepare.paper import prepare_paper

            manifest = prepare_paper(args.out, seed=args.seed, fraction=args.fraction, per_subset=args.p3_per_subset,
                                     source_root=args.source_root, progress=not args.no_progress,
                                     separate_p3=args.p3_separate)
            print((Path(args.out) / "stats.md").read_text(), end="")
            for name, entry in manifest["datasets"].items():
                why = f" (first: {entry['first_dropped']})" if entry.get("first_dropped") else ""
                print(f"{name}: kept {entry['kept']} of {entry['read']} records, dropped {entry['dropped']}{why}; "
                      f"{entry['examples']} in the {args.fraction:g} sample")
            print(f"wrote {args.out}/{{math,medicine,general,nlp}}.jsonl and {args.out}/manifest.json")
            if manifest.get("p3_subsets"):
                print(f"wrote {len(manifest['p3_subsets'])} P3 subsets to {args.out}/nlp/SUBSET.jsonl "
                      f"(train on them with {{source: {args.out}/nlp, per_file: true}})")
        else:
            from mos_nemo.data.prepare.ifd import prepare_ifd

            manifest = prepare_ifd(args.data, args.model, args.out, top=args.top, batch_size=args.batch_size,
                                   max_length=args.max_length, keep_above_one=args.keep_above_one,
                                   names=args.names, device=args.device, progress=not args.no_progress)
            for name, entry in manifest["datasets"].items():
                print(f"{name}: {entry['selected']} of {entry['examples']} selected "
                      f"({entry['unscored']} unscored, {entry['above_one']} with IFD >= 1)")
    except MosError as error:
        print(f"mos_nemo.data.prepare: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
