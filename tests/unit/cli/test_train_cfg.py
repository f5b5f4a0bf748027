"""`mos_nemo/train.py ... --cfg job|hydra|all [--resolve]`: Hydra's way to inspect a composed recipe. It prints
the config (validated, interpolations kept unless --resolve) and exits 0 without building or writing
anything; a mistake is still reported naming the key."""

import subprocess
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from mos_nemo.config import compose_config, to_yaml

ROOT = Path(__file__).resolve().parents[3]


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "mos_nemo/train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cfg_job_prints_the_composed_recipe_and_builds_nothing(tmp_path):
    run_dir = tmp_path / "never_created"
    done = _train("--config-name", "llama3_8b_mos", f"run.dir={run_dir}", "--cfg", "job")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "${oc.env:MOS_NEMO_MODELS" in done.stdout  # as composed: interpolations kept, like Hydra
    printed = OmegaConf.create(done.stdout)
    assert printed.run.dir == str(run_dir) and printed.parallel.tp == 2
    assert not run_dir.exists()


def test_cfg_job_resolve_equals_what_a_run_would_save(tmp_path):
    overrides = [f"run.dir={tmp_path / 'run'}", "train.max_steps=7"]
    done = _train("--config-name", "tiny_cpu", *overrides, "--cfg", "job", "--resolve")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "${" not in done.stdout
    assert yaml.safe_load(done.stdout) == yaml.safe_load(to_yaml(compose_config("tiny_cpu", overrides)))


def test_cfg_all_adds_how_it_was_composed():
    done = _train("-cn", "tiny_cpu", "train.max_steps=3", "--cfg", "all")
    assert done.returncode == 0, done.stderr[-3000:]
    printed = yaml.safe_load(done.stdout)
    assert printed["hydra"]["runtime"]["config_name"] == "tiny_cpu"
    assert printed["hydra"]["overrides"]["task"] == ["train.max_steps=3"]
    assert printed["train"]["max_steps"] == 3


def test_cfg_still_reports_a_mistyped_key():
    done = _train("--config-name", "tiny_cpu", "train.max_stepz=3", "--cfg", "job")
    assert done.returncode == 2 and "max_stepz" in done.stderr and not done.stdout
