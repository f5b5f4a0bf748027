"""Small steps of eval/run_all.sh that are easier in Python than in bash.

Usage:
  python -m mos_nemo.evaluation.run_steps prepare-mtbench OUT JUDGE [QUESTION_IDS]
      fetch MT-bench data and lay out OUT/mtbench/data/ for FastChat; prints the question file
  python -m mos_nemo.evaluation.run_steps judgments-todo OUT JUDGE MODEL_ID TODO.json
      write the (question, turn) pairs without a valid newest judgment to TODO.json; exit 0 if there are
      none (nothing to grade), 1 otherwise
  python -m mos_nemo.evaluation.run_steps lm-results-match BENCH_DIR EXPECTED.json
      exit 0 if the newest lm-eval results in BENCH_DIR were made with the settings in EXPECTED.json
      (model, model_args, limit, n-shot); otherwise print why not and exit 1
  python -m mos_nemo.evaluation.run_steps write-config OUT KEY=VALUE ...
      record the run's settings in OUT/run_config.json (read by eval/aggregate.py)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mos_nemo.errors import MosError, MosValueError
from mos_nemo.evaluation.mtbench_data import load_questions, mtbench_data_dir, prepare_judge_workdir, read_jsonl
from mos_nemo.evaluation.lm_results import load_results, settings_mismatch
from mos_nemo.evaluation.mtbench_scores import pairs_to_grade


def prepare_mtbench(out: Path, judge: str, question_ids: str = "") -> Path:
    ids = [int(x) for x in question_ids.replace(",", " ").split()] if question_ids.strip() else None
    data_dir = mtbench_data_dir()
    bench = prepare_judge_workdir(out / "mtbench", data_dir, load_questions(data_dir, ids), judge)
    return bench / "question.jsonl"


def judgments_todo(out: Path, judge: str, model_id: str, todo_file: Path) -> list[tuple[int, int]]:
    bench = out / "mtbench" / "data" / "mt_bench"
    judgments = bench / "model_judgment" / f"{judge}_single.jsonl"
    todo = pairs_to_grade(judgments, model_id, read_jsonl(bench / "question.jsonl"))
    todo_file.write_text(json.dumps(todo) + "\n")
    return todo


def lm_results_match(bench_dir: Path, expected_file: Path) -> str | None:
    """Why the newest results in `bench_dir` cannot be reused (None when they can)."""
    results = load_results(bench_dir)
    if results is None:
        return "no results yet"
    return settings_mismatch(results, json.loads(expected_file.read_text()))


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
        elif argv[:1] == ["judgments-todo"] and len(argv) == 5:
            todo = judgments_todo(Path(argv[1]), argv[2], argv[3], Path(argv[4]))
            print(f"{len(todo)} (question, turn) pairs to grade")
            return 0 if not todo else 1
        elif argv[:1] == ["lm-results-match"] and len(argv) == 3:
            why = lm_results_match(Path(argv[1]), Path(argv[2]))
            print(why or "settings match")
            return 0 if why is None else 1
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
