"""`prepare paper` on local copies of the four hub repositories (hub layout, read by datasets.load_dataset)."""

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from hub_fixtures import EXPECTED_FULL, write_hub_fixtures
from mos_nemo.data.formats import to_conversation
from mos_nemo.data.prepare.paper import prepare_paper
from mos_nemo.errors import MosDataError

ROOT = Path(__file__).resolve().parents[3]
NAMES = ("math", "medicine", "general", "nlp")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return write_hub_fixtures(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def prepared(hub, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    done = subprocess.run([sys.executable, "-m", "mos_nemo.data.prepare", "paper", "--out", str(out),
                           "--source-root", str(hub), "--seed", "7"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return out, done.stdout


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _digest(folder: Path) -> dict[str, str]:
    return {n: hashlib.sha256((folder / f"{n}.jsonl").read_bytes()).hexdigest() for n in NAMES}


def test_counts_are_exact(prepared):
    out, _ = prepared
    manifest = json.loads((out / "manifest.json").read_text())
    for name in NAMES:
        full = _lines(out / "full" / f"{name}.jsonl")
        sample = _lines(out / f"{name}.jsonl")
        assert len(full) == EXPECTED_FULL[name], name
        assert len(sample) == math.floor(EXPECTED_FULL[name] * 0.1 + 0.5), name  # 40, 15, 6, 270
        entry = manifest["datasets"][name]
        assert (entry["kept"], entry["examples"]) == (len(full), len(sample))
        assert entry["revision"].startswith("local:") and entry["seed"] == 7
        # the sample is a subset of the full file, in the same order
        positions = [full.index(record) for record in sample]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert manifest["datasets"]["math"]["dropped"] == 2 and manifest["datasets"]["general"]["dropped"] == 3
    assert manifest["datasets"]["nlp"]["subsets"] == 3 and manifest["datasets"]["nlp"]["rows_read"] == 3100
    assert manifest["filters"] and manifest["fraction"] == 0.1 and manifest["per_subset"] == 1000


def test_dropped_counts_are_on_the_console(prepared):
    out, stdout = prepared
    manifest = json.loads((out / "manifest.json").read_text())
    for name in NAMES:
        entry = manifest["datasets"][name]
        assert f"{name}: kept {entry['kept']} of {entry['read']} records, dropped {entry['dropped']}" in stdout
    assert "math: kept" in stdout and "dropped 2 (first: " in stdout


def test_p3_takes_1k_random_train_rows_per_subset(prepared):
    out, _ = prepared
    prompts = [r["messages"][0]["content"] for r in _lines(out / "full" / "nlp.jsonl")]
    per_subset = {s: [p for p in prompts if p.startswith(f"{s}-")] for s in ("sub_a", "sub_b", "sub_c")}
    assert {s: len(p) for s, p in per_subset.items()} == {"sub_a": 1000, "sub_b": 1000, "sub_c": 700}
    assert all("-train-" in p for p in prompts)  # never the validation split
    rows_b = {int(p.split(":")[0].rsplit("-", 1)[1]) for p in per_subset["sub_b"]}
    assert len(rows_b) == 1000 and min(rows_b) < 600 <= max(rows_b)  # both partial-train shards are drawn from
    first = _lines(out / "full" / "nlp.jsonl")[0]
    assert first["messages"][1]["role"] == "assistant" and first["messages"][1]["content"] in ("yes", "no")


def test_one_conversation_format_readable_by_the_training_loader(prepared):
    out, _ = prepared
    for name in NAMES:
        for index, record in enumerate(_lines(out / f"{name}.jsonl")):
            assert to_conversation(record, "messages", f"{name}:{index}") == record["messages"]
    medicine = _lines(out / "full" / "medicine.jsonl")
    assert not any("never read" in m["content"] for r in medicine for m in r["messages"])


def test_table6_matches_the_files(prepared):
    out, stdout = prepared
    table = (out / "stats.md").read_text()
    assert table in stdout and table.splitlines()[0].split("|")[2].strip() == "#exam."
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:7]] for line in table.splitlines()[2:]}
    for name in NAMES + ("Total",):
        records = [r for n in (NAMES if name == "Total" else (name,)) for r in _lines(out / f"{n}.jsonl")]
        users = [len(m["content"].split()) for r in records for m in r["messages"] if m["role"] == "user"]
        answers = [len(m["content"].split()) for r in records for m in r["messages"] if m["role"] == "assistant"]
        expected = [str(len(records)) if len(records) < 1000 else f"{len(records) / 1e3:.1f}K",
                    str(sum(users) + sum(answers)) if sum(users) + sum(answers) < 1000
                    else f"{(sum(users) + sum(answers)) / 1e3:.1f}K",
                    f"{sum(users) / len(users):.1f}", f"{sum(answers) / len(answers):.1f}",
                    f"{len(answers) / len(records):.1f}"]
        assert rows[name] == expected, name
    assert rows["general"][4] != "1.0" and rows["math"][4] == "1.0"  # multi-turn chats vs single turns


def test_deterministic_for_a_seed_and_different_for_another(hub, prepared, tmp_path):
    out, _ = prepared
    prepare_paper(tmp_path / "again", seed=7, source_root=hub, progress=False)
    assert _digest(tmp_path / "again") == _digest(out)
    prepare_paper(tmp_path / "other", seed=8, source_root=hub, progress=False)
    assert _digest(tmp_path / "other")["nlp"] != _digest(out)["nlp"]


def test_resumes_finished_units_and_redoes_the_rest(prepared, tmp_path):
    out, _ = prepared
    run, hub = tmp_path / "run", write_hub_fixtures(tmp_path / "hub")
    prepare_paper(run, seed=7, source_root=hub, progress=False)
    # Simulate an interruption inside P3: sub_c was never finished and the full nlp file never written.
    (run / "full" / "nlp.parts" / "sub_c.jsonl.done.json").unlink()
    (run / "full" / "nlp.parts" / "sub_c.jsonl").write_text("torn")
    (run / "full" / "nlp.jsonl.done.json").unlink()
    (run / "nlp.jsonl").unlink()
    # A finished unit is not read again: break its source (and MathInstruct's) and rerun.
    for shard in (hub / "bigscience/P3/sub_a/train").iterdir():
        shard.write_bytes(b"not parquet")
    (hub / "TIGER-Lab/MathInstruct/MathInstruct.json").write_text("[broken")
    prepare_paper(run, seed=7, source_root=hub, progress=False)
    assert _digest(run) == _digest(out)
    # ... while an unfinished unit whose source is broken fails naming the file
    (run / "full" / "math.jsonl.done.json").unlink()
    with pytest.raises(MosDataError, match="MathInstruct.json"):
        prepare_paper(run, seed=7, source_root=hub, progress=False)


def test_missing_repository_names_the_folder(tmp_path):
    (tmp_path / "TIGER-Lab").mkdir()
    with pytest.raises(MosDataError, match="TIGER-Lab/MathInstruct"):
        prepare_paper(tmp_path / "out", source_root=tmp_path, progress=False)


def test_without_a_local_copy_or_network_the_hub_error_names_the_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # this machine has no route to the hub either way
    monkeypatch.delenv("MOS_NEMO_HUB_ROOT", raising=False)
    with pytest.raises(MosDataError, match="TIGER-Lab/MathInstruct@main.*--source-root"):
        prepare_paper(tmp_path / "out", progress=False)


def test_the_paper_recipes_read_the_prepared_folder(prepared, monkeypatch):
    from mos_nemo.config import compose_config
    from mos_nemo.data.sources import read_source

    out, _ = prepared
    monkeypatch.setenv("MOS_NEMO_PAPER_DATA", str(out))
    config = compose_config("llama3_8b_mos")
    assert [d.name for d in config.datasets] == list(NAMES)
    for dataset in config.datasets:
        records = read_source(dataset).records
        assert len(records) == len(_lines(out / f"{dataset.name}.jsonl")) and dataset.format == "messages"


def test_p3_subsets_as_separate_datasets(hub, tmp_path):
    from mos_nemo.config import compose_config

    out = tmp_path / "paper"
    done = subprocess.run([sys.executable, "-m", "mos_nemo.data.prepare", "paper", "--out", str(out),
                           "--source-root", str(hub), "--seed", "7", "--p3-separate", "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    counts = {s: len(_lines(out / "nlp" / f"{s}.jsonl")) for s in ("sub_a", "sub_b", "sub_c")}
    assert counts == {"sub_a": 100, "sub_b": 100, "sub_c": 70}  # a random 10% of each subset's rows
    for subset in counts:
        assert all(r["messages"][0]["content"].startswith(f"{subset}-") for r in _lines(out / "nlp" / f"{subset}.jsonl"))
    assert json.loads((out / "manifest.json").read_text())["p3_subsets"]["sub_c"]["examples"] == 70
    config = compose_config("tiny_cpu", [f"datasets=[{{source: '{out}/nlp', per_file: true}}]"])
    assert [d.name for d in config.datasets] == ["sub_a", "sub_b", "sub_c"]
