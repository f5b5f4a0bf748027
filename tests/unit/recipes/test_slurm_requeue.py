"""train.sbatch end to end without a cluster: srun, scancel and scontrol are small stand-ins on PATH (srun runs
its command on this machine), everything else is real: the batch script, torchrun, the tiny_cpu recipe's
trainer. The end of the allocation (SLURM_JOB_END_TIME, as Slurm exports it; no signal) -> the trainer saves
and exits 0 before it -> `scontrol requeue`; the requeued job resumes from that checkpoint and is preempted
(TERM to the batch shell -> TERM to the step -> the trainer saves -> `scontrol requeue`); the next one
resumes and finishes without requeueing."""

import json
import re
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mos_nemo.engine.training.checkpoint import find_latest

ROOT = Path(__file__).resolve().parents[3]

FAKE_SRUN = r"""#!/bin/bash
# srun stand-in: apply --chdir and --output (%x %j %N), record the step's pid, run the command.
out=""
while [[ "$1" == --* ]]; do
  case "$1" in
    --chdir=*) cd "${1#--chdir=}" ;;
    --output=*) out="${1#--output=}" ;;
  esac
  shift
done
out="${out//%x/$SLURM_JOB_NAME}"; out="${out//%j/$SLURM_JOB_ID}"; out="${out//%N/$(hostname)}"
echo $$ > "$FAKE_SLURM_LOG.step_pid"
exec "$@" >>"$out" 2>&1
"""
FAKE_SCANCEL = """#!/bin/bash
echo "scancel $*" >> "$FAKE_SLURM_LOG"
kill -TERM "$(cat "$FAKE_SLURM_LOG.step_pid")"
"""
FAKE_SCONTROL = """#!/bin/bash
echo "scontrol $*" >> "$FAKE_SLURM_LOG"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _job(tmp_path: Path, restart: int, overrides: list[str], **extra_env: str) -> subprocess.Popen:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", FAKE_SRUN), ("scancel", FAKE_SCANCEL), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SLURM_LOG": str(tmp_path / "slurm.log"),
           "RECIPE": "tiny_cpu", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "mos-tiny_cpu", "SLURM_NNODES": "1",
           "SLURM_RESTART_COUNT": str(restart), "SLURM_SUBMIT_DIR": str(ROOT), "GPUS_PER_NODE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "LOG_DIR": str(tmp_path / "logs"),
           "MOS_RUNS": str(tmp_path / "runs"), "TORCHRUN": str(Path(sys.executable).parent / "torchrun"),
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **extra_env}
    return subprocess.Popen(["bash", "docker/slurm/train.sbatch", f"run.dir={tmp_path / 'run'}", *overrides],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _steps(run: Path) -> int:
    log = run / "train.jsonl"
    return len(log.read_text().splitlines()) if log.is_file() else 0


def _saved_step(run: Path) -> int:
    saved = find_latest(run)
    assert saved is not None
    return json.loads((saved / "meta.json").read_text())["step"]


@pytest.mark.slow
@pytest.mark.distributed
def test_deadline_and_preemption_checkpoint_requeue_and_the_requeued_job_resumes(tmp_path):
    run, settings = tmp_path / "run", ["train.max_steps=5000", "checkpoint.every=0"]
    slurm_log = tmp_path / "slurm.log"
    # 1. The allocation ends in 40 s: no signal comes; the trainer stops, saves, and the job requeues itself.
    job = _job(tmp_path, 0, settings, SLURM_JOB_END_TIME=str(int(time.time()) + 40))
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0, output
    assert slurm_log.read_text().splitlines() == ["scontrol requeue 4242"], output
    node_log = (tmp_path / "logs" / f"mos-tiny_cpu-4242-r0-{socket.gethostname()}.log").read_text()
    assert "before the deadline: the Slurm job's end" in node_log, node_log[-3000:]
    step = _saved_step(run)
    assert 1 <= step < 5000

    # 2. The requeued job resumes and is preempted: TERM to the batch shell.
    slurm_log.unlink()
    job = _job(tmp_path, 1, settings)
    deadline = time.time() + 300
    while _steps(run) < step + 2 and job.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert job.poll() is None, job.stdout.read()
    job.send_signal(signal.SIGTERM)  # what the scheduler sends on preemption
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0, output
    assert slurm_log.read_text().splitlines() == ["scancel --signal=TERM 4242", "scontrol requeue 4242"]
    node_log = (tmp_path / "logs" / f"mos-tiny_cpu-4242-r1-{socket.gethostname()}.log").read_text()
    assert re.search(rf"resumed from \S+ at step {step}:", node_log)
    assert "stopped by a signal" in node_log
    preempted = _saved_step(run)
    assert preempted >= step + 2

    # 3. The next one runs the same command; stop_after (free to change on a resume, unlike max_steps, which
    # moves the LR schedule) ends it one step on, without requeueing.
    slurm_log.unlink()
    again = _job(tmp_path, 2, [*settings, f"train.stop_after={preempted + 1}"])
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    assert not slurm_log.exists()  # not stopped by the deadline: no requeue
    assert json.loads((run / "train.jsonl").read_text().splitlines()[-1])["step"] == preempted + 1
