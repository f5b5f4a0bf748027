"""Reading lm-eval's result files: per-task metrics and sample counts.

lm-eval 0.4 writes `OUTPUT_PATH/<sanitized model name>/results_<timestamp>.json`; each run adds a new file,
so the newest one is the run's result. Per task it holds `"<metric>,<filter>"` values and, under
`n-samples`, the number of documents evaluated (`effective`, which `--limit` lowers).
"""

from __future__ import annotations

import json
from pathlib import Path

from mos_nemo.errors import MosDataError


def newest_results_file(bench_dir: Path) -> Path | None:
    files = sorted(Path(bench_dir).glob("**/results_*.json"), key=lambda p: p.name)
    return files[-1] if files else None


def load_results(bench_dir: Path) -> dict | None:
    """The newest lm-eval results under `bench_dir`, or None if the benchmark was not run."""
    path = newest_results_file(bench_dir)
    if path is None:
        return None
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MosDataError(f"{path}: not a valid lm-eval results file ({err})") from err
    results["_path"] = str(path)
    return results


def task_metric(results: dict, task: str, metric: str, filter_name: str = "none") -> tuple[float, int]:
    """(value, number of samples) of one task's metric under one filter."""
    key = f"{metric},{filter_name}"
    row = results["results"].get(task, {})
    if key not in row:
        raise MosDataError(f"{results['_path']}: task {task!r} has no metric {key!r} (has {sorted(row)})")
    counts = results.get("n-samples", {}).get(task)
    n = counts["effective"] if counts else row.get("sample_len", 0)
    return float(row[key]), int(n)


def task_stderr(results: dict, task: str, metric: str, filter_name: str = "none") -> float | None:
    """lm-eval's standard error of one task's metric, or None where it wrote none ("N/A")."""
    value = results["results"].get(task, {}).get(f"{metric}_stderr,{filter_name}")
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def subtask_metrics(results: dict, prefix: str, metric: str, filter_name: str = "none") -> dict[str, tuple[float, int]]:
    """{name without prefix: (value, n)} for every evaluated task whose name starts with `prefix`."""
    return {
        task[len(prefix) :]: task_metric(results, task, metric, filter_name)
        for task in results.get("n-samples", {})
        if task.startswith(prefix)
    }


def subtask_stderrs(results: dict, prefix: str, metric: str, filter_name: str = "none") -> dict[str, float | None]:
    """{name without prefix: standard error} for the tasks of subtask_metrics."""
    return {task[len(prefix) :]: task_stderr(results, task, metric, filter_name)
            for task in results.get("n-samples", {}) if task.startswith(prefix)}  # fmt: skip


# The headline metric of some common lm-eval tasks; any other task shows its first metric.
MAIN_METRICS = {
    "ifeval": ("prompt_level_strict_acc", "none"),
    "gsm8k": ("exact_match", "strict-match"),
    "arc_challenge": ("acc_norm", "none"),
    "hellaswag": ("acc_norm", "none"),
    "bbh": ("exact_match", "get-answer"),
}


def main_metric(results: dict, task: str) -> tuple[str, str] | None:
    """(metric, filter) to report for `task`: MAIN_METRICS, else the first metric lm-eval wrote for it."""
    row = results["results"].get(task, {})
    if task in MAIN_METRICS and ",".join(MAIN_METRICS[task]) in row:
        return MAIN_METRICS[task]
    for key, value in row.items():
        metric, _, filter_name = key.partition(",")
        if filter_name and not metric.endswith("_stderr") and isinstance(value, (int, float)):
            return metric, filter_name
    return None


def run_settings(results: dict) -> dict:
    """Backend, batch size, dtype, seeds and versions that lm-eval recorded for the run."""
    config = results.get("config", {})
    model_args = config.get("model_args", {})
    if isinstance(model_args, str):  # older lm-eval stores the raw "k=v,k=v" string
        model_args = dict(kv.split("=", 1) for kv in model_args.split(",") if "=" in kv)
    return {
        "backend": config.get("model"),
        "model_args": model_args,
        "batch_size": config.get("batch_size"),
        "dtype": model_args.get("dtype", config.get("model_dtype")),
        "seed": config.get("random_seed"),
        "fewshot_seed": config.get("fewshot_seed"),
        "limit": config.get("limit"),
        "gen_kwargs": config.get("gen_kwargs"),
        "n_shot": results.get("n-shot"),
        "lm_eval_version": results.get("lm_eval_version"),
        "transformers_version": results.get("transformers_version"),
    }


def _model_args(value) -> dict:
    if isinstance(value, str):
        return dict(kv.split("=", 1) for kv in value.split(",") if "=" in kv)
    return {k: str(v) for k, v in (value or {}).items()}


def _limit(value) -> float | None:
    return None if value in (None, "", "None") else float(value)


def settings_mismatch(results: dict, expected: dict) -> str | None:
    """Why `results` were not made with `expected` settings ({"model", "model_args", "limit", "num_fewshot"};
    model_args as lm-eval's "k=v,k=v" string), or None when model, model args, limit and the n-shot of
    every task match: only then may a rerun reuse them."""
    config = results.get("config", {})
    if config.get("model") != expected["model"]:
        return f"made with model {config.get('model')!r}, not {expected['model']!r}"
    recorded, wanted = _model_args(config.get("model_args")), _model_args(expected["model_args"])
    if recorded != wanted:
        return f"made with model_args {recorded}, not {wanted}"
    if _limit(config.get("limit")) != _limit(expected.get("limit")):
        return f"made with limit {config.get('limit')}, not {expected.get('limit') or 'none (all samples)'}"
    shots = {task: n for task, n in results.get("n-shot", {}).items() if task in results.get("n-samples", {})}
    wrong = {task: n for task, n in shots.items() if int(n) != int(expected["num_fewshot"])}
    if wrong or not shots:
        return f"made with n-shot {wrong or shots}, not {expected['num_fewshot']}"
    return None


def is_partial(results: dict) -> bool:
    """True when lm-eval ran on a subset (--limit): the numbers are not the benchmark's."""
    counts = results.get("n-samples", {}).values()
    return any(int(c.get("effective", 0)) < int(c.get("original", 0)) for c in counts)
