"""eval/run_all.sh stops early, non-zero, with one clear line, when the judge is missing or unreachable, a
server does not answer, or the checkpoint does not load; a mos_nemo checkpoint is exported to HF first."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import pytest
from eval_fixtures import error_lines, run_all

pytestmark = pytest.mark.slow


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def _assert_one_error_line(done: subprocess.CompletedProcess, *needles: str) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = error_lines(done)
    assert len(lines) == 1, done.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_missing_judge(tiny_model, tmp_path):
    done = run_all(tiny_model, tmp_path / "out")
    _assert_one_error_line(done, "judge", "OPENAI_API_BASE", "OPENAI_API_KEY")
    assert not (tmp_path / "out" / "lm_eval").exists()  # stopped before any benchmark ran


def test_unreachable_judge(tiny_model, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    done = run_all(tiny_model, tmp_path / "out", OPENAI_API_BASE=url, OPENAI_API_KEY="x")
    _assert_one_error_line(done, "judge", "unreachable", url)


def test_unreachable_generation_server(tiny_model, tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    done = run_all(tiny_model, tmp_path / "out", MTBENCH="0", EVAL_BACKEND="local-completions", EVAL_BASE_URL=url)
    _assert_one_error_line(done, "generation server", "unreachable")


def test_checkpoint_that_does_not_load(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated copy, as an interrupted transfer leaves
    done = run_all(broken, tmp_path / "out", MTBENCH="0")
    _assert_one_error_line(done, "does not load", "model.safetensors")


def test_folder_that_is_neither_hf_nor_exportable(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("not a checkpoint")
    done = run_all(tmp_path / "junk", tmp_path / "out", MTBENCH="0")
    _assert_one_error_line(done, "no config.json", "export")


def test_mos_nemo_checkpoint_is_exported_first(tiny_model, tmp_path):
    ckpt = tmp_path / "ckpt"
    imported = subprocess.run([sys.executable, "-m", "mos_nemo.convert", "import", "--hf", str(tiny_model),
                               "--out", str(ckpt)], capture_output=True, text=True)  # fmt: skip
    assert imported.returncode == 0, imported.stderr[-2000:]
    out = tmp_path / "out"
    done = run_all(ckpt, out, MTBENCH="0", BENCHMARKS="")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "hf_model" / "config.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_config"]["hf_model"] == str(out / "hf_model")
    assert summary["table1"]["mu_BOTH"] is None  # nothing was evaluated, so nothing is reported
