"""The numbers of paper Tables 1 and 4 for one evaluation folder (the OUT of eval/run_all.sh).

Table 1: mu_MU = MMLU 0-shot accuracy, the PLAIN mean of the per-subject accuracies, and Math / Med. /
Others the plain means over the subjects of each group of paper Table 7 (as the paper computes them:
mu_MU = (5 Math + 9 Med. + 43 Others) / 57; the sample-weighted figures, lm-eval's `mmlu` group
convention, are kept as extra fields); mu_MB, Turn 1, Turn 2 from MT-bench; mu_BOTH = (mu_MU + 10 * mu_MB)
/ 2 (paper Section 4.1, MT-bench upscaled to 1-100). Table 4: GSM8K 5-shot, MATH 5-shot (hendrycks_math,
weighted by subtask size, i.e. over all problems), M-math = the MMLU Mathematics group (plain mean),
mu_ALL = their mean. Accuracies are in percent, each with lm-eval's standard error. A number whose inputs
were not evaluated is None, and so is every average built on it. A benchmark evaluated on a subset is
partial, and so is every number built on it (`partial`: the benchmarks; `partial_reasons`: why): lm-eval's
--limit, fewer than MMLU's 57 subjects or MATH's 7 subtasks, fewer than MT-bench's 80 questions. Any other
lm-eval task in OUT/lm_eval/ is reported with its main metric.

Layout read: OUT/lm_eval/<benchmark>/**/results_*.json, OUT/mtbench/data/mt_bench/ (question.jsonl,
model_judgment/<judge>_single.jsonl) and OUT/run_config.json (written by run_all.sh).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from mos_nemo.evaluation import lm_results
from mos_nemo.evaluation.mmlu_groups import ALL_SUBJECTS, GROUPS, plain_accuracy, weighted_accuracy
from mos_nemo.evaluation.mtbench_data import LICENSE_NOTE, read_jsonl
from mos_nemo.errors import MosDataError
from mos_nemo.evaluation.mmlu_groups import group_of
from mos_nemo.evaluation.mtbench_scores import category_scores, score_judgments

MATH_SUBTASKS = 7  # algebra, counting_and_prob, geometry, intermediate_algebra, num_theory, prealgebra, precalc
MTBENCH_QUESTIONS = 80
TABLE1_COLUMNS = ["mu_BOTH", "mu_MU", "Math", "Med.", "Others", "mu_MB", "Turn 1", "Turn 2"]
TABLE4_COLUMNS = ["mu_ALL", "GSM8K", "MATH", "M-math"]
DATA_LICENSES = [
    "MMLU (Hendrycks et al., 2021): MIT, via lm-eval task `mmlu` (hub cais/mmlu or EVAL_DATA_DIR/mmlu)",
    "GSM8K (Cobbe et al., 2021): MIT, via lm-eval task `gsm8k` (hub openai/gsm8k or EVAL_DATA_DIR/gsm8k)",
    "MATH (Hendrycks et al., 2021): MIT, via lm-eval task `hendrycks_math` (hub EleutherAI/hendrycks_math "
    "or EVAL_DATA_DIR/hendrycks_math)",
    LICENSE_NOTE,
]


def _pct(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else 100.0 * value


def _mean_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)


def mmlu_section(results: dict | None) -> dict:
    """Per-subject accuracies and the paper's groups: plain means over subjects (and sample-weighted)."""
    if results is None:
        return {"evaluated": False}
    per_subject = lm_results.subtask_metrics(results, "mmlu_", "acc")
    stderrs = lm_results.subtask_stderrs(results, "mmlu_", "acc")
    groups = {}
    for name, subjects in GROUPS.items():
        acc, k, stderr = plain_accuracy(per_subject, subjects, stderrs)
        weighted, n = weighted_accuracy(per_subject, subjects)
        groups[name] = {"acc": _pct(acc), "stderr": _pct(stderr), "acc_sample_weighted": _pct(weighted),
                        "n": n, "subjects": k}  # fmt: skip
    overall, _, overall_stderr = plain_accuracy(per_subject, ALL_SUBJECTS, stderrs)
    weighted_all, n_all = weighted_accuracy(per_subject, ALL_SUBJECTS)
    lm_eval_overall = results["results"].get("mmlu", {}).get("acc,none")
    return {
        "evaluated": True,
        "overall": _pct(overall),
        "stderr": _pct(overall_stderr),
        "overall_sample_weighted": _pct(weighted_all),
        "n": n_all,
        "lm_eval_group_acc": _pct(lm_eval_overall),
        "groups": groups,
        "complete": len(per_subject) == len(ALL_SUBJECTS),
        "partial": lm_results.is_partial(results),
        "per_subject": {s: {"acc": _pct(acc), "stderr": _pct(stderrs.get(s)), "n": n, "group": group_of(s)}
                        for s, (acc, n) in sorted(per_subject.items())},  # fmt: skip
        "results_file": results["_path"],
    }


def gsm8k_section(results: dict | None, filter_name: str) -> dict:
    if results is None:
        return {"evaluated": False}
    filters = ("strict-match", "flexible-extract")
    scores = {f: lm_results.task_metric(results, "gsm8k", "exact_match", f) for f in filters}
    return {
        "evaluated": True,
        "exact_match": _pct(scores[filter_name][0]),
        "stderr": _pct(lm_results.task_stderr(results, "gsm8k", "exact_match", filter_name)),
        "filter": filter_name,
        "by_filter": {f: _pct(v) for f, (v, _) in scores.items()},
        "n": scores[filter_name][1],
        "partial": lm_results.is_partial(results),
        "results_file": results["_path"],
    }


def math_section(results: dict | None) -> dict:
    if results is None:
        return {"evaluated": False}
    per_subtask = lm_results.subtask_metrics(results, "hendrycks_math_", "exact_match")
    stderrs = lm_results.subtask_stderrs(results, "hendrycks_math_", "exact_match")
    acc, n = weighted_accuracy(per_subtask, list(per_subtask))
    # standard error of the size-weighted mean of independent subtasks: sqrt(sum (n_i / n)^2 se_i^2)
    known = all(stderrs.get(t) is not None for t in per_subtask) and n > 0
    stderr = sum((k / n * stderrs[t]) ** 2 for t, (_, k) in per_subtask.items()) ** 0.5 if known else None
    return {
        "evaluated": True,
        "exact_match": _pct(acc),
        "stderr": _pct(stderr),
        "n": n,
        "partial": lm_results.is_partial(results),
        "per_subtask": {t: {"exact_match": _pct(v), "n": k} for t, (v, k) in sorted(per_subtask.items())},
        "results_file": results["_path"],
    }


_NOT_FRACTIONS = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte")


def task_section(results: dict | None, bench: str) -> dict:
    """Any other lm-eval task or group: its main metric (lm_results.main_metric) with its stderr."""
    if results is None:
        return {"evaluated": False}
    chosen = lm_results.main_metric(results, bench)
    if chosen is None:
        raise MosDataError(f"{results['_path']}: no metric recorded for task {bench!r}")
    metric, filter_name = chosen
    value = float(results["results"][bench][f"{metric},{filter_name}"])
    stderr = lm_results.task_stderr(results, bench, metric, filter_name)
    scale = 1.0 if metric in _NOT_FRACTIONS or not 0.0 <= value <= 1.0 else 100.0
    counts = results.get("n-samples", {})
    return {
        "evaluated": True,
        "metric": f"{metric},{filter_name}",
        "value": scale * value,
        "stderr": None if stderr is None else scale * stderr,
        "percent": scale == 100.0,
        "n": sum(int(c.get("effective", 0)) for c in counts.values()),
        "partial": lm_results.is_partial(results),
        "results_file": results["_path"],
    }


def mtbench_section(out: Path, run_config: dict) -> dict:
    bench = out / "mtbench" / "data" / "mt_bench"
    judge = run_config.get("judge_model", "gpt-4")
    judgment_file = bench / "model_judgment" / f"{judge}_single.jsonl"
    if not judgment_file.is_file():
        return {"evaluated": False}
    questions = read_jsonl(bench / "question.jsonl")
    model_id = run_config.get("model_id") or Path(next((bench / "model_answer").glob("*.jsonl"))).stem
    scores = score_judgments(judgment_file, model_id, questions)
    return {"evaluated": True, "judge": judge, "model_id": model_id, "n_questions": len(questions),
            "judgment_file": str(judgment_file), **scores.to_dict(),
            "per_category": category_scores(judgment_file, model_id, questions)}  # fmt: skip


def partial_reasons(lm: dict, mmlu: dict, maths: dict, mt: dict) -> dict[str, str]:
    """{benchmark: why its figures are not the full benchmark's} for every benchmark run on a subset."""
    reasons: dict[str, list[str]] = {}
    for name, results in lm.items():
        if results is not None and lm_results.is_partial(results):
            reasons.setdefault(name, []).append("lm-eval --limit")
    if mmlu.get("evaluated") and len(mmlu["per_subject"]) < len(ALL_SUBJECTS):
        reasons.setdefault("mmlu", []).append(f"{len(mmlu['per_subject'])} of {len(ALL_SUBJECTS)} subjects")
    if maths.get("evaluated") and len(maths["per_subtask"]) < MATH_SUBTASKS:
        reasons.setdefault("hendrycks_math", []).append(f"{len(maths['per_subtask'])} of {MATH_SUBTASKS} subtasks")
    if mt.get("evaluated") and mt["n_questions"] < MTBENCH_QUESTIONS:
        reasons.setdefault("mtbench", []).append(f"{mt['n_questions']} of {MTBENCH_QUESTIONS} questions")
    return {name: ", ".join(why) for name, why in sorted(reasons.items())}


def summarize(out: Path, gsm8k_filter: str = "strict-match") -> dict:
    """Everything `OUT/summary.json` holds: the two tables, their inputs, settings and data licenses."""
    out = Path(out)
    config_path = out / "run_config.json"
    run_config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    paper = ("mmlu", "gsm8k", "hendrycks_math")
    others = sorted(p.name for p in (out / "lm_eval").glob("*") if p.is_dir() and p.name not in paper)
    lm = {name: lm_results.load_results(out / "lm_eval" / name) for name in (*paper, *others)}
    mmlu, gsm8k = mmlu_section(lm["mmlu"]), gsm8k_section(lm["gsm8k"], gsm8k_filter)
    maths = math_section(lm["hendrycks_math"])
    mt = mtbench_section(out, run_config)
    mt_ok = mt.get("evaluated") and not mt["n_failed"] and not mt["missing"]
    group = mmlu.get("groups", {})
    table1 = {
        "mu_MU": mmlu.get("overall"),
        "Math": group.get("math", {}).get("acc"),
        "Med.": group.get("med", {}).get("acc"),
        "Others": group.get("others", {}).get("acc"),
        "mu_MB": mt["average"] if mt_ok else None,
        "Turn 1": mt["turn1"] if mt_ok else None,
        "Turn 2": mt["turn2"] if mt_ok else None,
    }
    mu_mb_x10 = None if table1["mu_MB"] is None else 10.0 * table1["mu_MB"]
    table1["mu_BOTH"] = _mean_or_none([table1["mu_MU"], mu_mb_x10])
    table4 = {"GSM8K": gsm8k.get("exact_match"), "MATH": maths.get("exact_match"), "M-math": table1["Math"]}
    table4["mu_ALL"] = _mean_or_none(list(table4.values()))
    settings = {name: lm_results.run_settings(r) for name, r in lm.items() if r is not None}
    reasons = partial_reasons(lm, mmlu, maths, mt)
    return {
        "name": run_config.get("name", out.name),
        "table1": {k: table1[k] for k in TABLE1_COLUMNS},
        "table4": {k: table4[k] for k in TABLE4_COLUMNS},
        "mmlu": mmlu,
        "gsm8k": gsm8k,
        "math": maths,
        "mtbench": mt,
        "other_benchmarks": {name: task_section(lm[name], name) for name in others if lm[name] is not None},
        "stderr": {"mu_MU": mmlu.get("stderr"), "Math": group.get("math", {}).get("stderr"),
                   "Med.": group.get("med", {}).get("stderr"), "Others": group.get("others", {}).get("stderr"),
                   "GSM8K": gsm8k.get("stderr"), "MATH": maths.get("stderr"),
                   "M-math": group.get("math", {}).get("stderr")},
        "partial": sorted(reasons),
        "partial_reasons": reasons,
        "run_config": run_config,
        "lm_eval_settings": settings,
        "data_licenses": DATA_LICENSES,
    }
