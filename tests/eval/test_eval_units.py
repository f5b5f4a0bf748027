"""The pieces of the evaluation: paper groups, judgment scoring, the table numbers, rendering, local lm-eval
tasks and response-only perplexity, each checked against numbers worked out by hand."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from eval_fixtures import REPO, build_tiny_llama, corpus_for_tokenizer

from mos_nemo.errors import MosDataError
from mos_nemo.evaluation import mmlu_groups
from mos_nemo.evaluation.local_tasks import stock_tasks_dir, write_task_dir
from mos_nemo.evaluation.mtbench_scores import check_complete, score_judgments
from mos_nemo.evaluation.perplexity import load_model, response_ppl
from mos_nemo.evaluation.summary import summarize
from mos_nemo.evaluation.tables import render


def test_paper_groups_partition_lm_evals_mmlu_subjects():
    stock = {p.stem[len("mmlu_") :] for p in (stock_tasks_dir() / "mmlu" / "default").glob("mmlu_*.yaml")}
    assert set(mmlu_groups.ALL_SUBJECTS) == stock
    sizes = [len(mmlu_groups.MATHEMATICS), len(mmlu_groups.MEDICINE), len(mmlu_groups.OTHERS)]
    assert sizes == [5, 9, 43] and len(set(mmlu_groups.ALL_SUBJECTS)) == 57
    assert mmlu_groups.group_of("college_medicine") == "med"
    with pytest.raises(ValueError, match="unknown MMLU subject"):
        mmlu_groups.group_of("astrology")


def test_plain_accuracy_is_the_mean_over_subjects():
    acc, k, stderr = mmlu_groups.plain_accuracy({"a": (0.5, 2), "b": (1.0, 6), "c": (0.0, 9)}, ["a", "b", "missing"],
                                                {"a": 0.3, "b": 0.4})  # fmt: skip
    assert (acc, k) == (pytest.approx(0.75), 2) and stderr == pytest.approx((0.09 + 0.16) ** 0.5 / 2)


def test_weighted_accuracy_weights_by_sample_count():
    acc, n = mmlu_groups.weighted_accuracy({"a": (0.5, 2), "b": (1.0, 6), "c": (0.0, 9)}, ["a", "b", "missing"])
    assert (acc, n) == (pytest.approx((1 + 6) / 8), 8)


def _judgment(qid, turn, score, tstamp, model="m"):
    return {"question_id": qid, "model": model, "judge": ["gpt-4", "single-v1"], "score": score, "turn": turn,
            "tstamp": tstamp, "user_prompt": "", "judgment": ""}  # fmt: skip


def test_judgments_newest_wins_failures_and_gaps_counted(tmp_path):
    rows = [_judgment(81, 1, 3, 1.0), _judgment(81, 1, 5, 2.0), _judgment(81, 2, -1, 1.0),
            _judgment(82, 1, 8, 1.0), _judgment(82, 2, 10, 1.0, model="other"),
            {**_judgment(83, 1, -1, 1.0), "judgment": "$ERROR$"}, _judgment(83, 2, -1, 1.0)]  # fmt: skip
    path = tmp_path / "gpt-4_single.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    questions = [{"question_id": 81, "turns": ["a", "b"]}, {"question_id": 82, "turns": ["c", "d"]},
                 {"question_id": 83, "turns": ["e", "f"]}]
    scores = score_judgments(path, "m", questions)
    assert scores.turn1 == pytest.approx((5 + 8) / 2) and math.isnan(scores.turn2)
    assert (scores.n_graded, scores.n_failed, scores.n_duplicates_dropped) == (2, 3, 1)
    assert (scores.n_unparsable, scores.n_judge_errors) == (2, 1)  # a verdict without [[rating]] vs a failed call
    assert scores.missing == ["question 82 turn 2"]
    with pytest.raises(MosDataError, match="3 gradings failed .score -1.: 2 judge verdicts without a parsable"):
        check_complete(scores, path)


def _write_results(out: Path, bench: str, tasks: dict[str, tuple[str, float, int]]) -> None:
    """A minimal lm-eval results file: {task: (metric key, value, n)}."""
    folder = out / "lm_eval" / bench / "model"
    folder.mkdir(parents=True)
    results = {
        "results": {t: {key: v} for t, (key, v, _) in tasks.items()},
        "n-samples": {t: {"original": n, "effective": n} for t, (_, _, n) in tasks.items()},
        "config": {"model": "hf", "model_args": {"dtype": "float32"}, "batch_size": "8", "random_seed": 0},
    }
    (folder / "results_2026-01-01T00-00-00.json").write_text(json.dumps(results))


def _write_gsm8k(out: Path, strict: float, flexible: float, n: int) -> None:
    """GSM8K results with both of lm-eval's filters (strict-match and flexible-extract)."""
    _write_results(out, "gsm8k", {"gsm8k": ("exact_match,strict-match", strict, n)})
    path = next((out / "lm_eval" / "gsm8k" / "model").glob("results_*.json"))
    data = json.loads(path.read_text())
    data["results"]["gsm8k"]["exact_match,flexible-extract"] = flexible
    path.write_text(json.dumps(data))


def test_summary_numbers_match_hand_computation(tmp_path):
    out = tmp_path / "run"
    _write_results(out, "mmlu", {
        "mmlu_abstract_algebra": ("acc,none", 0.5, 4),
        "mmlu_college_mathematics": ("acc,none", 0.0, 2),
        "mmlu_anatomy": ("acc,none", 0.25, 8),
        "mmlu_astronomy": ("acc,none", 1.0, 2),
    })  # fmt: skip
    _write_gsm8k(out, strict=0.4, flexible=0.6, n=10)
    _write_results(out, "hendrycks_math", {"hendrycks_math_algebra": ("exact_match,none", 0.3, 10),
                                           "hendrycks_math_geometry": ("exact_match,none", 0.0, 5)})  # fmt: skip
    bench = out / "mtbench" / "data" / "mt_bench"
    (bench / "model_judgment").mkdir(parents=True)
    (bench / "question.jsonl").write_text(json.dumps({"question_id": 81, "turns": ["a", "b"]}) + "\n")
    (bench / "model_judgment" / "gpt-4_single.jsonl").write_text(
        json.dumps(_judgment(81, 1, 6, 1.0)) + "\n" + json.dumps(_judgment(81, 2, 3, 1.0)) + "\n")
    (out / "run_config.json").write_text(json.dumps({"model_id": "m", "judge_model": "gpt-4", "name": "run"}))

    summary = summarize(out)
    t1, t4 = summary["table1"], summary["table4"]
    assert t1["Math"] == pytest.approx(100 * (0.5 + 0.0) / 2)  # plain mean over subjects, as the paper
    assert summary["mmlu"]["groups"]["math"]["acc_sample_weighted"] == pytest.approx(100 * 2 / 6)  # (0.5*4 + 0*2) / 6
    assert t1["Med."] == pytest.approx(25.0) and t1["Others"] == pytest.approx(100.0)
    assert t1["mu_MU"] == pytest.approx(100 * (0.5 + 0.0 + 0.25 + 1.0) / 4)
    assert summary["mmlu"]["overall_sample_weighted"] == pytest.approx(100 * (2 + 0 + 2 + 2) / 16)
    assert (t1["Turn 1"], t1["Turn 2"], t1["mu_MB"]) == (6.0, 3.0, 4.5)
    assert t1["mu_BOTH"] == pytest.approx((43.75 + 45) / 2)
    assert t4["GSM8K"] == pytest.approx(40.0) and t4["MATH"] == pytest.approx(100 * 3 / 15)
    assert t4["mu_ALL"] == pytest.approx((40 + 20 + 25) / 3)
    assert summary["gsm8k"]["by_filter"]["flexible-extract"] == pytest.approx(60.0)
    assert summarize(out, "flexible-extract")["table4"]["GSM8K"] == pytest.approx(60.0)
    assert not summary["mmlu"]["complete"]


def test_tables_mark_best_bold_and_second_underlined(tmp_path):
    runs = []
    for name, mu in (("a", 30.0), ("b", 32.0), ("c", 31.0)):
        summary = {"name": name, "table1": {"mu_BOTH": mu, "mu_MU": 50.0, "Math": None}, "table4": {}}
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
        runs.append(summary)
    lines = render(runs, 1).splitlines()
    assert lines[0].startswith("| run | μ_BOTH | μ_MU | Math | Med.")
    assert lines[2].startswith("| a | 30.00 | **50.00** | – |")  # ties share the best mark
    assert lines[3].startswith("| b | **32.00** |") and lines[4].startswith("| c | <u>31.00</u> |")
    done = subprocess.run([sys.executable, str(REPO / "eval" / "compare.py"), *(str(tmp_path / n) for n in "abc"),
                           "--csv", str(tmp_path / "runs.csv"), "--png", str(tmp_path / "runs.png")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == render(runs, 1)
    with open(tmp_path / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["a", "b", "c"]
    assert [r["mu_BOTH"] for r in rows] == ["30.0", "32.0", "31.0"] and rows[0]["Math"] == ""
    import matplotlib.image

    image = matplotlib.image.imread(tmp_path / "runs.png")  # [h, w, channels]: a real PNG with content
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0


def test_local_tasks_override_the_stock_tasks(bench_data, tmp_path):
    assert write_task_dir(bench_data, tmp_path) == ["mmlu", "gsm8k", "hendrycks_math"]
    group = yaml.safe_load((tmp_path / "_mmlu_local.yaml").read_text())
    assert group["group"] == "mmlu"
    assert sorted(group["task"]) == ["mmlu_abstract_algebra", "mmlu_anatomy", "mmlu_astronomy",
                                     "mmlu_high_school_statistics"]  # fmt: skip
    algebra = yaml.safe_load((tmp_path / "hendrycks_math_algebra.yaml").read_text())
    assert algebra["dataset_path"] == str(bench_data / "hendrycks_math")
    assert algebra["include"].endswith("hendrycks_math/hendrycks_math_algebra.yaml")
    (bench_data / "hendrycks_math" / "topology").mkdir()
    (bench_data / "hendrycks_math" / "topology" / "test-0.parquet").write_bytes(b"")
    try:
        with pytest.raises(MosDataError, match="topology"):
            write_task_dir(bench_data, tmp_path / "again")
    finally:
        (bench_data / "hendrycks_math" / "topology" / "test-0.parquet").unlink()
        (bench_data / "hendrycks_math" / "topology").rmdir()


def test_response_ppl_counts_only_assistant_tokens(tiny_model):
    model, tok = load_model(str(tiny_model), torch.float32, "cpu")
    convs = [
        [{"role": "user", "content": "What is 3+4?"}, {"role": "assistant", "content": "It is 7."}],
        [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi there, friend!"}],
    ]
    # By hand: prompt tokens, then the reply through its end-of-turn marker, then the trailing newline.
    expected = []
    for conv in convs:
        prompt = tok.apply_chat_template(conv[:1], tokenize=False, add_generation_prompt=True)
        reply = conv[1]["content"] + "<|im_end|>"
        p_ids, r_ids = tok(prompt, add_special_tokens=False).input_ids, tok(reply, add_special_tokens=False).input_ids
        ids = torch.tensor([p_ids + r_ids + tok("\n", add_special_tokens=False).input_ids])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # [s, v]
        nll = [-logprobs[len(p_ids) + k - 1, r_ids[k]].item() for k in range(len(r_ids))]
        expected.append(math.exp(sum(nll) / len(nll)))
    assert response_ppl(model, tok, convs, max_length=512, batch_size=1) == pytest.approx(expected, rel=1e-5)
    assert response_ppl(model, tok, convs, max_length=512, batch_size=2) == pytest.approx(expected, rel=1e-5)


def test_ppl_table_reports_the_ratio_of_average_ppls(tiny_model, tmp_path):
    other = build_tiny_llama(tmp_path / "other", corpus_for_tokenizer(), seed=1)
    data = tmp_path / "math.jsonl"
    records = [{"instruction": f"Add {i} and {i}.", "output": f"{2 * i}"} for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    done = subprocess.run([sys.executable, str(REPO / "eval" / "ppl_table.py"), str(tiny_model), str(other),
                           "--datasets", f"math={data}", "--json", str(tmp_path / "rows.json")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads((tmp_path / "rows.json").read_text())
    assert row["n_examples"] == 3 and row["delta"] == pytest.approx(row["ppl_finetuned"] / row["ppl_base"])
    assert row["ppl_base"] != pytest.approx(row["ppl_finetuned"])  # two different models
    assert done.stdout.splitlines()[0] == "| dataset | n | PPL_θ0 | PPL_θ | Δ |"
    assert f"| math | 3 | {row['ppl_base']:.2f} | {row['ppl_finetuned']:.2f} | {row['delta']:.2f} |" in done.stdout


def test_any_lm_eval_task_is_reported_with_its_main_metric(tmp_path):
    out = tmp_path / "run"
    _write_results(out, "ifeval", {"ifeval": ("prompt_level_strict_acc,none", 0.25, 8)})
    path = next((out / "lm_eval" / "ifeval" / "model").glob("results_*.json"))
    data = json.loads(path.read_text())
    row = data["results"]["ifeval"]
    row["prompt_level_strict_acc_stderr,none"] = 0.05
    row.update({"inst_level_strict_acc,none": 0.5, "inst_level_strict_acc_stderr,none": "N/A"})
    data["n-samples"]["ifeval"]["original"] = 541  # run with --limit 8: partial
    path.write_text(json.dumps(data))
    _write_results(out, "mmlu_anatomy", {"mmlu_anatomy": ("acc,none", 0.5, 4)})
    summary = summarize(out)
    assert summary["other_benchmarks"]["ifeval"] == {
        "evaluated": True, "metric": "prompt_level_strict_acc,none", "value": 25.0, "stderr": pytest.approx(5.0),
        "percent": True, "n": 8, "partial": True, "results_file": str(path)}  # fmt: skip
    assert summary["other_benchmarks"]["mmlu_anatomy"]["metric"] == "acc,none"  # first metric lm-eval wrote
    assert summary["partial"] == ["ifeval"]
    from mos_nemo.evaluation.tables import render_run

    md = render_run(summary)
    assert "| ifeval (`prompt_level_strict_acc,none` %) | 25.00 ± 5.00 | 8 | partial (lm-eval --limit) |" in md
