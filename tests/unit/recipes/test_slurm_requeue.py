"""train.sbatch end to end without a cluster: srun, scancel and scontrol are small stand-ins on PATH (srun runs
its command on this machine), everything else is real: the batch script, torchrun, the tiny_cpu recipe's
trainer. USR1 to the batch shell -> TERM to the step -> the trainer saves -> `scontrol requeue`; the
requeued job resumes from that checkpoint and finishes without requeueing."""

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


def _job(tmp_path: Path, restart: int, overrides: list[str]) -> subprocess.Popen:
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
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(["bash", "docker/slurm/train.sbatch", f"run.dir={tmp_path / 'run'}", *overrides],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _steps(run: Path) -> int:
    log = run / "train.jsonl"
    return len(log.read_text().splitlines()) if log.is_file() else 0


@pytest.mark.slow
@pytest.mark.distributed
def test_signal_checkpoints_requeues_and_the_requeued_job_resumes(tmp_path):
    run = tmp_path / "run"
    job = _job(tmp_path, 0, ["train.max_steps=400", "checkpoint.every=0"])
    deadline = time.time() + 300
    while _steps(run) < 2 and job.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert job.poll() is None, job.stdout.read()
    job.send_signal(signal.SIGUSR1)  # what `#SBATCH --signal=B:USR1@120` does before the time limit
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0, output
    assert (tmp_path / "slurm.log").read_text().splitlines() == ["scancel --signal=TERM 4242",
                                                                 "scontrol requeue 4242"]
    saved = find_latest(run)
    assert saved is not None, output
    step = json.loads((saved / "meta.json").read_text())["step"]
    assert 2 <= step < 400
    node_log = tmp_path / "logs" / f"mos-tiny_cpu-4242-r0-{socket.gethostname()}.log"
    assert "stopped by a signal" in node_log.read_text()

    (tmp_path / "slurm.log").unlink()
    # The requeued job runs the same command; stop_after (free to change on a resume, unlike max_steps, which
    # moves the LR schedule) ends it two steps on.
    again = _job(tmp_path, 1, ["train.max_steps=400", "checkpoint.every=0", f"train.stop_after={step + 2}"])
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output
    assert not (tmp_path / "slurm.log").exists()  # finished: no requeue
    node_log = tmp_path / "logs" / f"mos-tiny_cpu-4242-r1-{socket.gethostname()}.log"
    assert re.search(rf"resumed from \S+ at step {step}:", node_log.read_text())
    assert json.loads((run / "train.jsonl").read_text().splitlines()[-1])["step"] == step + 2
