"""eval/run_all.sh stops early, non-zero, with one clear line, when the judge is missing, unreachable or
does not serve JUDGE_MODEL, a server does not answer, the checkpoint does not load or has no chat template;
training checkpoints (step_N) and converted checkpoints are exported to HF first."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys

import pytest
from eval_fixtures import error_lines, run_all
from stub_judge import StubJudge

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


def test_judge_that_does_not_serve_the_judge_model(tiny_model, tmp_path):
    with StubJudge([], {}) as judge:  # serves "gpt-4" only
        done = run_all(tiny_model, tmp_path / "out", OPENAI_API_BASE=judge.base_url, OPENAI_API_KEY="x",
                       JUDGE_MODEL="gpt-4-0613")  # fmt: skip
        assert judge.chats == ["gpt-4-0613"]  # one real chat request, not FastChat's 16 retries per grading
    _assert_one_error_line(done, "judge", "JUDGE_MODEL=gpt-4-0613", "HTTP 404")
    assert not (tmp_path / "out" / "lm_eval").exists()


def test_model_without_chat_template_fails_before_benchmarks(tiny_model, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_model, base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    for extra in ("chat_template.jinja", "chat_template.json"):
        (base / extra).unlink(missing_ok=True)
    with StubJudge([], {}) as judge:
        done = run_all(base, tmp_path / "out", OPENAI_API_BASE=judge.base_url, OPENAI_API_KEY="x")
    _assert_one_error_line(done, "no chat template", "MTBENCH=0")
    assert not (tmp_path / "out" / "lm_eval").exists()


def test_step_checkpoint_is_exported_with_its_runs_model(training_run, tmp_path):
    step2 = training_run / "checkpoints" / "step_0000002"
    out = tmp_path / "out"
    done = run_all(step2, out, MTBENCH="0", BENCHMARKS="")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "hf_model" / "mos_export_source.json").read_text())["source"] == str(step2)
    config = json.loads((out / "hf_model" / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"]) == (2, 64)  # the run's model.config
    assert json.loads((out / "hf_model" / "tokenizer_config.json").read_text())["chat_template"].startswith("{{ bos_token")
    # results of another checkpoint never land in the same folder
    done = run_all(training_run / "checkpoints" / "step_0000004", out, MTBENCH="0", BENCHMARKS="")
    _assert_one_error_line(done, "holds an evaluation of", "step_0000002", "another output folder")


def test_run_folder_with_a_newer_hf_export_uses_it(training_run, tiny_model, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(training_run, run, ignore=shutil.ignore_patterns("step_0000002"))
    shutil.copytree(tiny_model, run / "hf", copy_function=shutil.copy)  # written (mtime) after the checkpoints
    done = run_all(run, tmp_path / "out", MTBENCH="0", BENCHMARKS="")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["run_config"]["hf_model"] == str(run / "hf")


def test_checkpoint_that_does_not_load(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated copy, as an interrupted transfer leaves
    done = run_all(broken, tmp_path / "out", MTBENCH="0")
    _assert_one_error_line(done, "fails preflight", "model.safetensors")


def test_folder_that_is_neither_hf_nor_exportable(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("not a checkpoint")
    done = run_all(tmp_path / "junk", tmp_path / "out", MTBENCH="0")
    _assert_one_error_line(done, "not an HF folder", "training run folder", "converted checkpoint")


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
