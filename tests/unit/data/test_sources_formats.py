"""Reading sources (JSONL/JSON/Parquet/folder/hf://) and normalising the four formats; bad input of each kind."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mos_nemo.data.formats import RecordError, detect_format, to_conversation
from mos_nemo.data.sources import read_source
from mos_nemo.data.spec import DatasetConfig, validate_dataset_configs
from mos_nemo.errors import MosConfigError, MosDataError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "data"


def config(source, **kwargs) -> DatasetConfig:
    return DatasetConfig(name=kwargs.pop("name", "d"), source=str(source), **kwargs)


def fixture_lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("file_name, expected", [
    ("instruction.jsonl", "instruction"), ("sharegpt.json", "sharegpt"),
    ("messages.jsonl", "messages"), ("prompt_completion.jsonl", "prompt_completion")])
def test_every_fixture_format_is_detected_and_normalised(file_name, expected):
    report = read_source(config(FIXTURES / file_name))
    assert report.records and report.bad_lines == 0
    for record in report.records:
        assert detect_format(record.data, record.where) == expected
        conversation = to_conversation(record.data, expected, record.where)
        assert conversation[-1]["role"] == "assistant"
        assert {m["role"] for m in conversation} <= {"system", "user", "assistant"}


def test_instruction_input_and_system_are_folded_into_the_prompt():
    record = {"instruction": "Translate.", "input": "Good morning", "output": "Bonjour.", "system": "Be brief."}
    assert to_conversation(record, "instruction", "x:1") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Translate.\n\nGood morning"},
        {"role": "assistant", "content": "Bonjour."}]


def test_sharegpt_multi_turn_keeps_every_turn_and_drops_a_trailing_user_turn():
    records = json.loads((FIXTURES / "sharegpt.json").read_text())
    turns = records[2]["conversations"]  # human, gpt, human, gpt, human
    conversation = to_conversation(records[2], "sharegpt", "x")
    assert [m["content"] for m in conversation] == [t["value"] for t in turns[:4]]
    assert [m["role"] for m in conversation] == ["user", "assistant", "user", "assistant"]


def test_json_jsonl_parquet_folder_and_hf_sources_read_the_same_records(tmp_path):
    rows = fixture_lines("prompt_completion.jsonl")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "part-0.parquet")
    (tmp_path / "array.json").write_text(json.dumps(rows))
    (tmp_path / "lines.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("part-0.parquet", "array.json", "lines.jsonl"):
        assert [r.data for r in read_source(config(tmp_path / name)).records] == rows
    folder_records = read_source(config(tmp_path)).records  # sorted: array.json, lines.jsonl, part-0.parquet
    assert [r.data for r in folder_records] == rows * 3
    hf_folder = tmp_path / "hf"
    hf_folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), hf_folder / "train.parquet")
    assert [r.data for r in read_source(config(f"hf://{hf_folder}", split="train")).records] == rows


def test_malformed_json_line_names_file_and_line_or_is_skipped_and_counted():
    path = FIXTURES / "malformed_line.jsonl"
    with pytest.raises(MosDataError, match=rf"{path}:2: malformed JSON line.*skip_bad_lines"):
        read_source(config(path))
    report = read_source(config(path, skip_bad_lines=True))
    assert report.bad_lines == 1 and len(report.records) == 2
    assert report.records[1].where == f"{path}:3"


def test_bytes_that_are_not_utf8_name_file_and_line():
    path = FIXTURES / "not_utf8.jsonl"
    with pytest.raises(MosDataError, match=rf"{path}:2: bytes that are not UTF-8"):
        read_source(config(path))
    report = read_source(config(path, skip_bad_lines=True))
    assert report.bad_lines == 1 and [r.where for r in report.records] == [f"{path}:1", f"{path}:3"]


def test_non_utf8_and_malformed_json_array_name_the_line(tmp_path):
    bad_bytes = tmp_path / "bad.json"
    bad_bytes.write_bytes(b'[\n{"prompt": "a", "completion": "b"},\n{"prompt": "caf\xe9", "completion": "c"}\n]')
    with pytest.raises(MosDataError, match=rf"{bad_bytes}:3: bytes that are not UTF-8"):
        read_source(config(bad_bytes))
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"prompt": "a", "completion": "b"},\n{"prompt": "a" "completion": "b"}\n]')
    with pytest.raises(MosDataError, match=rf"{broken}:3: malformed JSON"):
        read_source(config(broken))


def test_unknown_role_and_empty_or_missing_fields_are_record_errors():
    unknown = fixture_lines("unknown_role.jsonl")[1]
    with pytest.raises(RecordError, match=r"f:2: messages\[1\] has unknown role 'wizard'"):
        to_conversation(unknown, "messages", "f:2")
    empty_output, missing_output = fixture_lines("empty_field.jsonl")[1:]
    with pytest.raises(RecordError, match="field 'output' is empty"):
        to_conversation(empty_output, "instruction", "f:2")
    with pytest.raises(RecordError, match="field 'output' is missing"):
        to_conversation(missing_output, "instruction", "f:3")
    with pytest.raises(RecordError, match="'conversations' is empty"):
        to_conversation({"conversations": []}, "sharegpt", "f:4")
    with pytest.raises(RecordError, match="no assistant turn"):
        to_conversation({"messages": [{"role": "user", "content": "hi"}]}, "messages", "f:5")
    with pytest.raises(RecordError, match="'completion' is a int, not a string"):
        to_conversation({"prompt": "p", "completion": 3}, "prompt_completion", "f:6")


def test_undetectable_format_lists_the_keys_and_the_choices():
    with pytest.raises(MosDataError, match=r"x:1: cannot detect the format from the keys \['question', 'text'\]"):
        detect_format({"question": "q", "text": "t"}, "x:1")


def test_config_validation_rejects_duplicates_and_bad_fields():
    with pytest.raises(MosConfigError, match=r"datasets\[1\].name='a' duplicates datasets\[0\].name"):
        validate_dataset_configs([config("x", name="a"), config("y", name="a")])
    with pytest.raises(MosConfigError, match=r"format='alpaca' is unknown"):
        validate_dataset_configs([config("x", format="alpaca")])
    with pytest.raises(MosConfigError, match=r"fraction=1.5 must lie in \(0, 1\]"):
        validate_dataset_configs([config("x", fraction=1.5)])
    with pytest.raises(MosConfigError, match=r"datasets\[0\].name is empty"):
        validate_dataset_configs([config("x", name="")])
    with pytest.raises(MosConfigError, match="datasets is empty"):
        validate_dataset_configs([])


def test_missing_source_and_empty_folder_are_clear_errors(tmp_path):
    with pytest.raises(MosDataError, match="does not exist"):
        read_source(config(tmp_path / "nope.jsonl"))
    with pytest.raises(MosDataError, match="holds no .jsonl/.json/.parquet files"):
        read_source(config(tmp_path))


def test_dataset_config_is_a_strict_hydra_structured_config():
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError

    schema = OmegaConf.structured(DatasetConfig)
    merged = OmegaConf.to_object(OmegaConf.merge(schema, {"name": "math", "source": "m.jsonl", "fraction": 0.1}))
    assert merged == DatasetConfig(name="math", source="m.jsonl", fraction=0.1)
    with pytest.raises(ConfigKeyError):
        OmegaConf.merge(schema, {"nmae": "math"})
