"""The numbers of paper Tables 1 and 4 for one evaluation folder (the OUT of eval/run_all.sh).

Table 1: mu_MU = MMLU 0-shot accuracy over all subjects, and Math / Med. / Others over the subjects of each
group of paper Table 7, all weighted by per-subject sample counts (so mu_MU equals lm-eval's `mmlu` group
accuracy); mu_MB, Turn 1, Turn 2 from MT-bench; mu_BOTH = (mu_MU + 10 * mu_MB) / 2 (paper Section 4.1,
MT-bench upscaled to 1-100). Table 4: GSM8K 5-shot, MATH 5-shot (hendrycks_math, weighted by subtask
size), M-math = the MMLU Mathematics group, mu_ALL = their mean. Accuracies are in percent. A number whose
inputs were not evaluated is None, and so is every average built on it.

Layout read: OUT/lm_eval/{mmlu,gsm8k,hendrycks_math}/**/results_*.json, OUT/mtbench/data/mt_bench/
(question.jsonl, model_judgment/<judge>_single.jsonl) and OUT/run_config.json (written by run_all.sh).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from mos_nemo.evaluation import lm_results
from mos_nemo.evaluation.mmlu_groups import ALL_SUBJECTS, GROUPS, weighted_accuracy
from mos_nemo.evaluation.mtbench_data import LICENSE_NOTE, read_jsonl
from mos_nemo.evaluation.mtbench_scores import score_judgments

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
    """Per-subject accuracies and the paper's groups, weighted by sample counts."""
    if results is None:
        return {"evaluated": False}
    per_subject = lm_results.subtask_metrics(results, "mmlu_", "acc")
    groups = {}
    for name, subjects in GROUPS.items():
        acc, n = weighted_accuracy(per_subject, subjects)
        groups[name] = {"acc": _pct(acc), "n": n, "subjects": sum(s in per_subject for s in subjects)}
    overall, n_all = weighted_accuracy(per_subject, ALL_SUBJECTS)
    lm_eval_overall = results["results"].get("mmlu", {}).get("acc,none")
    return {
        "evaluated": True,
        "overall": _pct(overall),
        "n": n_all,
        "lm_eval_group_acc": _pct(lm_eval_overall),
        "groups": groups,
        "complete": len(per_subject) == len(ALL_SUBJECTS),
        "per_subject": {s: {"acc": _pct(acc), "n": n} for s, (acc, n) in sorted(per_subject.items())},
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
        "filter": filter_name,
        "by_filter": {f: _pct(v) for f, (v, _) in scores.items()},
        "n": scores[filter_name][1],
        "results_file": results["_path"],
    }


def math_section(results: dict | None) -> dict:
    if results is None:
        return {"evaluated": False}
    per_subtask = lm_results.subtask_metrics(results, "hendrycks_math_", "exact_match")
    acc, n = weighted_accuracy(per_subtask, list(per_subtask))
    return {
        "evaluated": True,
        "exact_match": _pct(acc),
        "n": n,
        "per_subtask": {t: {"exact_match": _pct(v), "n": k} for t, (v, k) in sorted(per_subtask.items())},
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
            "judgment_file": str(judgment_file), **scores.to_dict()}  # fmt: skip


def summarize(out: Path, gsm8k_filter: str = "strict-match") -> dict:
    """Everything `OUT/summary.json` holds: the two tables, their inputs, settings and data licenses."""
    out = Path(out)
    config_path = out / "run_config.json"
    run_config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    lm = {name: lm_results.load_results(out / "lm_eval" / name) for name in ("mmlu", "gsm8k", "hendrycks_math")}
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
    return {
        "name": run_config.get("name", out.name),
        "table1": {k: table1[k] for k in TABLE1_COLUMNS},
        "table4": {k: table4[k] for k in TABLE4_COLUMNS},
        "mmlu": mmlu,
        "gsm8k": gsm8k,
        "math": maths,
        "mtbench": mt,
        "run_config": run_config,
        "lm_eval_settings": settings,
        "data_licenses": DATA_LICENSES,
    }
