"""lm-eval task folders that read benchmark data from local copies in the Hugging Face hub layout.

lm-eval's stock tasks (`mmlu`, `gsm8k`, `hendrycks_math`) download `cais/mmlu`, `openai/gsm8k` and
`EleutherAI/hendrycks_math` from the hub. Where the hub is out of reach, a user points EVAL_DATA_DIR at a
folder holding `mmlu/`, `gsm8k/` and `hendrycks_math/` (as `huggingface-cli download --repo-type dataset`
writes them: one sub-folder per config with parquet shards, and a README declaring the configs). For each
config found there we write a task YAML that `include`s lm-eval's stock YAML (same prompt, metric, filters
and task name) and only swaps `dataset_path`, plus a group YAML with the same group name listing the
configs present. Passed with `--include_path`, these override the stock tasks (lm-eval lets later paths
win), so `--tasks mmlu` means the same benchmark whether the data comes from the hub or from disk.

Usage: python -m mos_nemo.evaluation.local_tasks DATA_DIR OUT_DIR   (prints the benchmarks written)
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from mos_nemo.errors import MosDataError
from mos_nemo.evaluation.mmlu_groups import ALL_SUBJECTS

# benchmark folder name -> (stock group name, stock task YAML folder inside lm_eval/tasks, aggregate metric)
BENCHMARKS = {
    "mmlu": ("mmlu", "mmlu/default", "acc"),
    "gsm8k": ("gsm8k", "gsm8k", None),
    "hendrycks_math": ("hendrycks_math", "hendrycks_math", "exact_match"),
}


def stock_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def local_configs(dataset_dir: Path) -> list[str]:
    """Config names of a local hub-layout dataset: the sub-folders holding parquet or jsonl shards."""
    configs = sorted(
        p.name
        for p in dataset_dir.iterdir()
        if p.is_dir() and (any(p.glob("*.parquet")) or any(p.glob("*.jsonl")))
    )
    if not configs:
        raise MosDataError(
            f"{dataset_dir}: no config folders with parquet shards found; expected the hub layout "
            "(e.g. mmlu/anatomy/test-00000-of-00001.parquet and a README.md declaring the configs)"
        )
    return configs


def _stock_task_by_dataset_name(stock_dir: Path) -> dict[str, Path]:
    """{dataset_name: stock YAML path} for the tasks of one stock folder (MATH's names differ from its configs)."""
    found = {}
    for path in sorted(stock_dir.glob("*.yaml")):
        text = yaml.safe_load(path.read_text().replace("!function", "")) or {}
        name = text.get("dataset_name")
        if name and "task" in text and name not in found:
            found[name] = path
    return found


def _write(path: Path, cfg: dict) -> None:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def write_task_dir(data_dir: Path, out_dir: Path) -> list[str]:
    """Write override YAMLs for every benchmark folder present in `data_dir`; returns their names."""
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for folder, (group, stock_rel, metric) in BENCHMARKS.items():
        dataset_dir = data_dir / folder
        if not dataset_dir.is_dir():
            continue
        stock_dir = stock_tasks_dir() / stock_rel
        if folder == "gsm8k":
            _write(out_dir / "gsm8k.yaml", {"include": str(stock_dir / "gsm8k.yaml"), "dataset_path": str(dataset_dir)})
            written.append(group)
            continue
        stock_by_name = _stock_task_by_dataset_name(stock_dir)
        tasks = []
        for config in local_configs(dataset_dir):
            if folder == "mmlu" and config not in ALL_SUBJECTS:
                continue  # e.g. the `all` or `auxiliary_train` configs of cais/mmlu
            if config not in stock_by_name:
                raise MosDataError(
                    f"{dataset_dir / config}: config {config!r} is not a {group} config of lm-eval; "
                    f"expected one of {sorted(stock_by_name)}"
                )
            stock_yaml = stock_by_name[config]
            task = yaml.safe_load(stock_yaml.read_text().replace("!function", ""))["task"]
            _write(out_dir / f"{task}.yaml", {"include": str(stock_yaml), "dataset_path": str(dataset_dir)})
            tasks.append(task)
        group_cfg = {
            "group": group,
            "task": tasks,
            "aggregate_metric_list": [{"metric": metric, "aggregation": "mean", "weight_by_size": True}],
            "metadata": {"version": 1.0, "local_data": str(dataset_dir)},
        }
        _write(out_dir / f"_{group}_local.yaml", group_cfg)
        written.append(group)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m mos_nemo.evaluation.local_tasks DATA_DIR OUT_DIR")
    print(" ".join(write_task_dir(Path(sys.argv[1]), Path(sys.argv[2]))))
