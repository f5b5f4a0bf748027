"""Check an EVAL_DATA_DIR before a long evaluation: every benchmark folder, config and split that
eval/run_all.sh will read, their rows against the published sizes, and lm-eval's tasks built from them.

    python -m mos_nemo.evaluation.data_check EVAL_DATA_DIR

Expected layout (what `huggingface-cli download --repo-type dataset REPO --local-dir DIR/NAME` writes):
    mmlu/<subject>/test-*.parquet (57 subjects; dev-*.parquet too)      cais/mmlu
    gsm8k/main/{train,test}-*.parquet (5-shot examples come from train)  openai/gsm8k
    hendrycks_math/<subtask>/{train,test}-*.parquet (7 subtasks)         EleutherAI/hendrycks_math
Prints one line per benchmark and a verdict. Exit status: 0 complete; 1 usable but partial (fewer
subjects, subtasks or rows: the evaluation will be marked partial); 2 unusable (a folder, split or parquet
file missing or unreadable; what to fix is named).
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mos_nemo.evaluation.mmlu_groups import ALL_SUBJECTS

MATH_SUBTASKS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")
# benchmark folder -> (hub repository, expected configs, splits each config needs, published test rows)
EXPECTED = {
    "mmlu": ("cais/mmlu", tuple(ALL_SUBJECTS), ("test",), 14042),
    "gsm8k": ("openai/gsm8k", ("main",), ("train", "test"), 1319),
    "hendrycks_math": ("EleutherAI/hendrycks_math", MATH_SUBTASKS, ("train", "test"), 5000),
}


@dataclass
class BenchmarkCheck:
    name: str
    configs: int = 0
    test_rows: int = 0
    problems: list[str] = field(default_factory=list)  # unusable
    partial: list[str] = field(default_factory=list)  # usable, but not the whole benchmark

    def line(self) -> str:
        repo, configs, _, rows = EXPECTED[self.name]
        state = "UNUSABLE" if self.problems else "partial" if self.partial else "complete"
        notes = "; ".join(self.problems or self.partial)
        return (f"{self.name:15s} {state:9s} {self.configs}/{len(configs)} configs, {self.test_rows}/{rows} test "
                f"rows (hub: {repo})" + (f": {notes}" if notes else ""))


def _rows(files: list[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def check_benchmark(data_dir: Path, name: str) -> BenchmarkCheck:
    """What run_all.sh would find for one benchmark under ``data_dir``."""
    _, configs, splits, published = EXPECTED[name]
    result = BenchmarkCheck(name)
    folder = data_dir / name
    if not folder.is_dir():
        result.problems.append(f"no folder {folder}")
        return result
    present = [c for c in configs if (folder / c).is_dir()]
    result.configs = len(present)
    if not present:
        result.problems.append(f"no config folders in {folder} (expected e.g. {folder / configs[0]}/test-*.parquet)")
    missing = [c for c in configs if c not in present]
    if missing:
        result.partial.append(f"missing {len(missing)} configs: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    for config in present:
        for split in splits:
            files = sorted((folder / config).glob(f"{split}-*.parquet"))
            if not files:
                result.problems.append(f"{folder / config}: no {split}-*.parquet")
                continue
            try:
                rows = _rows(files)
            except Exception as error:  # noqa: BLE001 - any unreadable file: name it
                result.problems.append(f"{files[0].parent}: unreadable {split} parquet ({type(error).__name__}: {error})")
                continue
            if split == "test":
                result.test_rows += rows
    if not result.problems and not missing and result.test_rows != published:
        result.partial.append(f"{result.test_rows} test rows, the published benchmark has {published}")
    return result


def check_tasks(data_dir: Path) -> list[str]:
    """Problems building lm-eval's task overrides from ``data_dir`` (what run_all.sh does next)."""
    from mos_nemo.errors import MosDataError
    from mos_nemo.evaluation.local_tasks import write_task_dir

    with tempfile.TemporaryDirectory() as tasks:
        try:
            write_task_dir(data_dir, Path(tasks))
        except MosDataError as error:
            return [str(error)]
    return []


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    data_dir = Path(argv[0]).expanduser().resolve()
    if not data_dir.is_dir():
        print(f"data_check: ERROR: {data_dir} is not a folder", file=sys.stderr)
        return 2
    results = [check_benchmark(data_dir, name) for name in EXPECTED]
    for result in results:
        print(result.line())
    problems = [p for r in results for p in r.problems] + check_tasks(data_dir)
    if problems:
        print(f"data_check: ERROR: {data_dir} is not usable: {problems[0]}", file=sys.stderr)
        return 2
    if any(r.partial for r in results):
        print(f"data_check: {data_dir} is usable but partial: results on it are marked partial (†)")
        return 1
    print(f"data_check: {data_dir} is complete")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
