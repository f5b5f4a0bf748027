"""per_file: a folder or a glob of files becomes one dataset per file (name = stem, the entry's options kept),
through compose_config as a user writes it; bad entries fail naming the key."""

import json

import pytest

from mos_nemo.config import compose_config
from mos_nemo.errors import MosConfigError


def _write(folder, stems):
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        (folder / f"{stem}.jsonl").write_text(json.dumps({"instruction": stem, "output": "ok"}) + "\n")


def test_a_folder_and_a_glob_become_one_dataset_per_file(tmp_path):
    _write(tmp_path / "p3", ["rte", "anli", "copa"])
    _write(tmp_path / "tulu", ["oasst", "flan"])
    (tmp_path / "tulu" / "notes.txt").write_text("not data")
    config = compose_config("tiny_cpu", [
        f"datasets=[{{source: '{tmp_path}/p3', per_file: true, fraction: 0.5}},"
        f" {{name: tulu, source: '{tmp_path}/tulu/*.jsonl', per_file: true, max_examples: 7}}]"])
    assert [d.name for d in config.datasets] == ["anli", "copa", "rte", "tulu_flan", "tulu_oasst"]
    assert [d.source for d in config.datasets][:1] == [str(tmp_path / "p3" / "anli.jsonl")]
    assert {d.fraction for d in config.datasets[:3]} == {0.5} and {d.max_examples for d in config.datasets[3:]} == {7}
    assert not any(d.per_file for d in config.datasets)


def test_bad_per_file_entries_name_the_key(tmp_path):
    _write(tmp_path / "a", ["x"])
    _write(tmp_path / "b", ["x"])
    with pytest.raises(MosConfigError, match=r"datasets\[0\].source.*matches no"):
        compose_config("tiny_cpu", [f"datasets=[{{source: '{tmp_path}/none/*.jsonl', per_file: true}}]"])
    with pytest.raises(MosConfigError, match=r"datasets\[0\].source.*not a folder"):
        compose_config("tiny_cpu", [f"datasets=[{{source: '{tmp_path}/a/x.jsonl', per_file: true}}]"])
    with pytest.raises(MosConfigError, match=r"datasets\[0\].source.*would all be named 'x'"):
        compose_config("tiny_cpu", [f"datasets=[{{source: '{tmp_path}/*/x.jsonl', per_file: true}}]"])
