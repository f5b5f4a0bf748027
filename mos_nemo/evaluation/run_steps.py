"""Small steps of eval/run_all.sh that are easier in Python than in bash.

Usage:
  python -m mos_nemo.evaluation.run_steps prepare-mtbench OUT JUDGE [QUESTION_IDS]
      fetch MT-bench data and lay out OUT/mtbench/data/ for FastChat; prints the question file
  python -m mos_nemo.evaluation.run_steps judgments-complete OUT JUDGE MODEL_ID
      exit 0 if every question and turn already has a valid newest judgment (no regrading needed)
  python -m mos_nemo.evaluation.run_steps write-config OUT KEY=VALUE ...
      record the run's settings in OUT/run_config.json (read by eval/aggregate.py)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mos_nemo.errors import MosError, MosValueError
from mos_nemo.evaluation.mtbench_data import load_questions, mtbench_data_dir, prepare_judge_workdir, read_jsonl
from mos_nemo.evaluation.mtbench_scores import is_complete


def prepare_mtbench(out: Path, judge: str, question_ids: str = "") -> Path:
    ids = [int(x) for x in question_ids.replace(",", " ").split()] if question_ids.strip() else None
    data_dir = mtbench_data_dir()
    bench = prepare_judge_workdir(out / "mtbench", data_dir, load_questions(data_dir, ids), judge)
    return bench / "question.jsonl"


def judgments_complete(out: Path, judge: str, model_id: str) -> bool:
    bench = out / "mtbench" / "data" / "mt_bench"
    judgments = bench / "model_judgment" / f"{judge}_single.jsonl"
    return is_complete(judgments, model_id, read_jsonl(bench / "question.jsonl"))


def write_config(out: Path, pairs: list[str]) -> dict:
    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise MosValueError(f"write-config: {pair!r} is not KEY=VALUE")
        config[key] = value
    (out / "run_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["prepare-mtbench"] and len(argv) in (3, 4):
            print(prepare_mtbench(Path(argv[1]), argv[2], argv[3] if len(argv) == 4 else ""))
        elif argv[:1] == ["judgments-complete"] and len(argv) == 4:
            return 0 if judgments_complete(Path(argv[1]), argv[2], argv[3]) else 1
        elif argv[:1] == ["write-config"] and len(argv) >= 2:
            write_config(Path(argv[1]), argv[2:])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except MosError as err:
        print(f"run_steps: ERROR: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
