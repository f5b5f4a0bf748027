"""Launch the real entry point under torchrun (gloo, tiny_cpu) for the reliability tests, in the foreground
or in the background, and read what it left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def command(run_dir: Path, *overrides: str, nproc: int = 1, torchrun_flags: tuple = ()) -> list[str]:
    return [TORCHRUN, "--nproc-per-node", str(nproc), "--standalone", *torchrun_flags, "mos_nemo/train.py",
            "--config-name", "tiny_cpu", f"run.dir={run_dir}", *overrides]


def shutdown_timeout_flags(seconds: int) -> tuple[str, ...]:
    """torchrun's ``--shutdown-timeout SECONDS`` where it has the flag (torch >= 2.12); torch 2.9 (CI's second
    leg, the NGC 25.09 image) has none and SIGKILLs its workers a fixed 30 s after forwarding SIGTERM."""
    from torch.distributed.run import get_args_parser

    has_flag = "--shutdown-timeout" in get_args_parser()._option_string_actions
    return ("--shutdown-timeout", str(seconds)) if has_flag else ()


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    return env


def launch(run_dir: Path, *overrides: str, nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run to completion; stdout and stderr merged in ``.output`` (as the user's console shows them)."""
    done = subprocess.run(command(run_dir, *overrides, nproc=nproc), cwd=ROOT, env=_env(), timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done.output = done.stdout
    return done


def start(run_dir: Path, *overrides: str, nproc: int = 1, torchrun_flags: tuple = (),
          session: bool = False) -> subprocess.Popen:
    """Start in the background (console output to run_dir/../NAME.console). ``session``: in a session of its
    own (``setsid``, as a batch script's step), so its process group id is its pid."""
    console = open(Path(str(run_dir) + ".console"), "w")
    return subprocess.Popen(command(run_dir, *overrides, nproc=nproc, torchrun_flags=torchrun_flags), cwd=ROOT,
                            env=_env(), stdout=console, stderr=subprocess.STDOUT, text=True,
                            start_new_session=session)


def console(run_dir: Path) -> str:
    return Path(str(run_dir) + ".console").read_text()


def steps_logged(run_dir: Path) -> list[int]:
    path = run_dir / "train.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def wait_for_step(run_dir: Path, step: int, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while step not in steps_logged(run_dir):
        assert process.poll() is None, f"the run ended early:\n{console(run_dir)[-3000:]}"
        assert time.monotonic() < deadline, f"no step {step} after {timeout}s:\n{console(run_dir)[-3000:]}"
        time.sleep(0.05)


def complete_checkpoints(run_dir: Path) -> list[str]:
    root = run_dir / "checkpoints"
    return sorted(p.name for p in root.glob("step_*") if (p / "meta.json").is_file()) if root.is_dir() else []


def root_cause(output: str) -> str:
    """The message in torchrun's closing "Root Cause" block, which must be the end of the console output."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[-1].strip("=") == "", lines[-3:]  # the block's closing rule is the last line
    assert "Root Cause" in output, output[-2000:]
    cause = lines[-2].strip()
    assert cause.startswith("traceback : "), lines[-4:]
    return cause.removeprefix("traceback : ")


def wait_for_path(path: Path, process: subprocess.Popen, run_dir: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended early:\n{console(run_dir)[-3000:]}"
        assert time.monotonic() < deadline, f"no {path} after {timeout}s:\n{console(run_dir)[-3000:]}"
        time.sleep(0.02)
