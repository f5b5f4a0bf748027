"""MT-bench graded by a LOCAL judge served through FastChat's own OpenAI-compatible server (controller, model
workers, openai_api_server: eval/serve_judge.sh), on CPU, with FastChat's real llm_judge as the client.
Two local judges: a scripted tiny model whose verdict is always "[[7]]" (every grading parses: mu_MB = 7),
and one that always answers "Tom has apples" (no verdict parses: each such grading is counted as
unparsable and reported, and the run fails rather than print a mu_MB). The stub judge of the other tests
stays for fast checks; this is the real component."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import time

import pytest
from eval_fixtures import REPO, build_scripted_judge, error_lines, run_all

pytestmark = [pytest.mark.slow, pytest.mark.network]  # network: the judge venv and MT-bench wheel from PyPI

QUESTION_IDS = "81,111"  # two questions, four gradings (111 is graded against its reference answer)


def _free_port_block(size: int) -> int:
    for base in range(23100, 60000, 97):
        try:
            sockets = [socket.create_server(("127.0.0.1", base + i)) for i in range(size)]
        except OSError:
            continue
        for sock in sockets:
            sock.close()
        return base
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def judge_api(tmp_path_factory):
    root = tmp_path_factory.mktemp("fastchat_judge")
    judge = build_scripted_judge(root / "scripted-judge")
    no_verdict = build_scripted_judge(root / "chatty-judge", reply="Tom has apples")
    port = _free_port_block(4)
    env = {**os.environ, "JUDGE_PORT": str(port), "JUDGE_DEVICE": "cpu", "JUDGE_LOG_DIR": str(root / "logs")}
    server = subprocess.Popen([str(REPO / "eval" / "serve_judge.sh"), f"{judge}=gpt-4", f"{no_verdict}=gpt-3.5-turbo"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    selector = selectors.DefaultSelector()
    selector.register(server.stdout, selectors.EVENT_READ)
    output, deadline = [], time.time() + 900
    try:
        while not any(line.startswith("judge ready:") for line in output):
            assert server.poll() is None and time.time() < deadline, "".join(output)[-3000:] + _logs(root)
            if selector.select(timeout=5):
                output.append(server.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _logs(root) -> str:
    return "".join(f"\n--- {p.name}\n" + p.read_text()[-1500:] for p in sorted((root / "logs").glob("*.log")))


def _evaluate(tiny_model, out, judge_api, judge_model):
    return run_all(tiny_model, out, OPENAI_API_BASE=judge_api, OPENAI_API_KEY="EMPTY", JUDGE_MODEL=judge_model,
                   BENCHMARKS="", MTBENCH_QUESTION_IDS=QUESTION_IDS, MTBENCH_MAX_NEW_TOKENS="8")


def test_a_local_judge_served_by_fastchat_grades_mtbench(tiny_model, judge_api, tmp_path):
    done = _evaluate(tiny_model, tmp_path / "out", judge_api, "gpt-4")
    assert done.returncode == 0, done.stderr[-3000:]
    mt = json.loads((tmp_path / "out" / "summary.json").read_text())["mtbench"]
    assert (mt["n_graded"], mt["n_failed"], mt["turn1"], mt["turn2"], mt["average"]) == (4, 0, 7.0, 7.0, 7.0)
    assert not (REPO / "controller.log").exists()  # FastChat's own logs go to JUDGE_LOG_DIR, not the checkout


def test_verdicts_that_cannot_be_parsed_are_counted_and_reported(tiny_model, judge_api, tmp_path):
    done = _evaluate(tiny_model, tmp_path / "out", judge_api, "gpt-3.5-turbo")
    assert done.returncode != 0
    (line,) = error_lines(done)
    assert "4 failed gradings (score -1: 4 judge verdicts without a parsable [[rating]], 0 judge calls" in line
    mt = json.loads((tmp_path / "out" / "summary.json").read_text())["mtbench"]
    assert (mt["n_graded"], mt["n_unparsable"], mt["n_judge_errors"]) == (0, 4, 0)
    assert "4 failed (4 verdicts without a parsable [[rating]]" in (tmp_path / "out" / "summary.md").read_text()
