"""Small copies of the paper's four hub repositories, in the hub's own layout, written into a tmp folder.

Sizes (valid records after the deliberately broken ones are dropped): math 398, medicine 150, general 57,
P3 3 subsets of 1200 / 1200 (two partial-train shards) / 700 train rows -> 1000 + 1000 + 700 = 2700.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

P3_SUBSETS = {"sub_a": [1200], "sub_b": [600, 600], "sub_c": [700]}
EXPECTED_FULL = {"math": 398, "medicine": 150, "general": 57, "nlp": 2700}


def _write_json(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))


def _p3_table(subset: str, split: str, start: int, count: int) -> pa.Table:
    prompts = [f"{subset}-{split}-{i}: is {i} even? words " + "x " * (i % 5) for i in range(start, start + count)]
    targets = [" yes " if i % 2 == 0 else " no " for i in range(start, start + count)]
    return pa.table({"inputs": [[1, 2, 3]] * count, "inputs_pretokenized": prompts,
                     "targets": [[4]] * count, "targets_pretokenized": targets})


def write_hub_fixtures(root: Path) -> Path:
    math = [{"source": "data/CoT/gsm_rft.json", "instruction": f"What is {i} + {i}? Explain.",
             "output": f"{i} plus {i} is {2 * i}. The answer is {2 * i}."} for i in range(398)]
    math.insert(10, {"source": "broken", "instruction": "no answer", "output": ""})
    math.insert(200, {"source": "broken", "instruction": "", "output": "no question"})
    _write_json(root / "TIGER-Lab/MathInstruct/MathInstruct.json", math)
    medicine = [{"instruction": f"Describe symptom {i}.", "input": "Patient, 40 years old." if i % 3 else "",
                 "output": f"Symptom {i} usually means rest and fluids for a few days."} for i in range(150)]
    _write_json(root / "casey-martin/MedInstruct/data/MedInstruct-52k.json", medicine)
    (root / "casey-martin/MedInstruct/data/MedInstruct-test.jsonl").write_text(
        json.dumps({"instruction": "test split, never read", "input": "", "output": "no"}) + "\n")
    general = []
    for i in range(57):
        turns = 1 + i % 3  # 1, 2 or 3 exchanges
        conversation = []
        for t in range(turns):
            conversation.append({"from": "human", "value": f"question {t} of chat {i}"})
            conversation.append({"from": "gpt", "value": f"answer {t} of chat {i} with some more words"})
        general.append({"id": f"chat{i}", "conversations": conversation})
    general.insert(5, {"id": "bad1", "conversations": [{"from": "gpt", "value": "starts with the model"}]})
    general.insert(9, {"id": "bad2", "conversations": [{"from": "human", "value": "never answered"}]})
    general.insert(30, {"id": "bad3", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": ""}]})
    _write_json(root / "anon8231489123/ShareGPT_Vicuna_unfiltered/ShareGPT_V3_unfiltered_cleaned_split.json", general)
    (root / "anon8231489123/ShareGPT_Vicuna_unfiltered/README.md").write_text("fixture\n")
    for subset, shards in P3_SUBSETS.items():
        folder = "train" if len(shards) == 1 else "partial-train"
        start = 0
        for shard, count in enumerate(shards):
            path = root / "bigscience/P3" / subset / folder / f"{shard:04d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(_p3_table(subset, "train", start, count), path)
            start += count
        validation = root / "bigscience/P3" / subset / "validation" / "0000.parquet"
        validation.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_p3_table(subset, "validation", 0, 50), validation)
    return root
