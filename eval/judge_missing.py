#!/usr/bin/env python
"""Grade only the MT-bench (question, turn) pairs that have no valid judgment yet, with FastChat's own
single-answer grading (the matches and judges of `fastchat.llm_judge.gen_judgment --mode single`).

FastChat's gen_judgment regrades every question of a model on each run; after an outage that costs the
whole judge bill again. This script builds the same matches and plays only those in --todo, appending to
the same `data/mt_bench/model_judgment/<judge>_single.jsonl`. Run it inside FastChat's judge virtualenv,
from the folder holding `data/` (eval/run_all.sh does both).

Usage: python eval/judge_missing.py --judge-model gpt-4 --model MODEL_ID --todo TODO.json [--parallel N]
TODO.json: [[question_id, turn], ...] (written by `python -m mos_nemo.evaluation.run_steps judgments-todo`).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor

from fastchat.llm_judge.common import (NEED_REF_CATS, check_data, load_judge_prompts, load_model_answers,
                                       load_questions, play_a_match_single)
from fastchat.llm_judge.gen_judgment import make_judge_single, make_match_single


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judge-model", default="gpt-4")
    parser.add_argument("--model", required=True)
    parser.add_argument("--todo", required=True)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--bench-name", default="mt_bench")
    args = parser.parse_args()
    todo = {(int(q), int(t)) for q, t in json.load(open(args.todo))}
    bench = f"data/{args.bench_name}"
    questions = [q for q in load_questions(f"{bench}/question.jsonl", None, None) if (q["question_id"], 1) in todo
                 or (q["question_id"], 2) in todo]  # fmt: skip
    answers, references = load_model_answers(f"{bench}/model_answer"), load_model_answers(f"{bench}/reference_answer")
    judges = make_judge_single(args.judge_model, load_judge_prompts("data/judge_prompts.jsonl"))
    check_data(questions, answers, references, [args.model], judges)
    with_ref = [q for q in questions if q["category"] in NEED_REF_CATS]
    plain = [q for q in questions if q["category"] not in NEED_REF_CATS]
    matches = (make_match_single(plain, [args.model], answers, judges["default"])
               + make_match_single(with_ref, [args.model], answers, judges["math"], ref_answers=references)
               + make_match_single(plain, [args.model], answers, judges["default-mt"], multi_turn=True)
               + make_match_single(with_ref, [args.model], answers, judges["math-mt"], ref_answers=references,
                                   multi_turn=True))  # fmt: skip
    matches = [m for m in matches if (m.question["question_id"], 2 if m.multi_turn else 1) in todo]
    output = f"{bench}/model_judgment/{args.judge_model}_single.jsonl"
    print(f"judge_missing: grading {len(matches)} (question, turn) pairs into {output}", flush=True)
    with ThreadPoolExecutor(max(1, args.parallel)) as pool:
        list(pool.map(lambda match: play_a_match_single(match, output_file=output), matches))


if __name__ == "__main__":
    main()
