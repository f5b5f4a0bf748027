"""A checkpoint written under one CI leg's environment and loaded under the other's (docs/versions.md,
"Checkpoints across versions"): megatron-core 0.19 writes no common.pt, which 0.16 needs, so a checkpoint
trained in the container (0.19) and loaded on a Python 3.11 login node (0.16.1) is refused with one error
that names the folder, both versions and what to do, and nothing in it changes; a 0.16 checkpoint resumes
and exports under 0.19.

Both interpreters really write and read: this one (``sys.executable``) and ``MOS_NEMO_OTHER_PYTHON``, the
other leg's. ``.ci/run`` sets it on leg 2 to leg 1's ``.venv/bin/python`` (built first), so CI runs both
directions; set but missing, the test fails. Unset (a local run with one environment), it skips.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mos_nemo.engine.hf.tiny import save_tiny_hf_model
from tests.distributed import ROOT

pytestmark = pytest.mark.slow
TRAIN = ["--config-name", "tiny_cpu", "checkpoint.every=0", "mixing.strategy=static"]
VERSIONS = ("import importlib.metadata as m, json; "
            "print(json.dumps({n: m.version(n) for n in ('megatron-core', 'torch', 'mos_nemo')}))")


def _other_python() -> str:
    other = os.environ.get("MOS_NEMO_OTHER_PYTHON")
    if not other:
        pytest.skip("MOS_NEMO_OTHER_PYTHON (the other CI leg's interpreter) is not set; .ci/run sets it on leg 2")
    if not Path(other).is_file():
        pytest.fail(f"MOS_NEMO_OTHER_PYTHON={other}: no such interpreter (.ci/run builds leg 1's .venv first)")
    return other


def _run(python: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([python, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    done.output = done.stdout + done.stderr
    return done


def _ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.output[-5000:]
    return done.output


def _pair() -> tuple[tuple[str, dict], tuple[str, dict]]:
    """``((newer python, its versions), (older python, its versions))``: one reads 0.19's format, one not."""
    pythons = [sys.executable, _other_python()]
    found = [(python, json.loads(_ok(_run(python, "-c", VERSIONS)).strip().splitlines()[-1])) for python in pythons]
    found.sort(key=lambda item: tuple(int(p) for p in item[1]["megatron-core"].split(".")[:2]), reverse=True)
    releases = [tuple(int(p) for p in v["megatron-core"].split(".")[:2]) for _, v in found]
    if not (releases[0] >= (0, 19) > releases[1]):
        pytest.fail(f"the two interpreters must span megatron-core 0.19 (one older, one newer): {found}")
    return found[0], found[1]


def _train(python: str, run_dir: Path, steps: int) -> subprocess.CompletedProcess:
    """Train ``run_dir`` to ``steps`` (a resume when it holds a checkpoint: a longer run is allowed)."""
    return _run(python, "mos_nemo/train.py", *TRAIN, f"run.dir={run_dir}", f"train.max_steps={steps}",
                "checkpoint.allow_changes=[train.max_steps]")


def _fingerprint(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): zlib.crc32(p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_newer_megatron_checkpoint_is_refused_by_an_older_one_naming_both(tmp_path):
    (newer, new_versions), (older, old_versions) = _pair()
    run_dir = tmp_path / "run"
    _ok(_train(newer, run_dir, 2))
    step = run_dir / "checkpoints" / "step_0000002"
    assert not (step / "common.pt").exists()  # the format the rule is about
    before = _fingerprint(run_dir / "checkpoints")

    export = _run(older, "-m", "mos_nemo.convert", "export", "--ckpt", str(step), "--out", str(tmp_path / "hf"))
    resume = _train(older, run_dir, 4)
    for done in (export, resume):
        assert done.returncode != 0, done.output[-3000:]
        assert "Traceback" not in done.output and "iterdir" not in done.output, done.output[-5000:]
        message = " ".join(done.output.split())  # one error, however the console wraps it
        assert f"checkpoint {step} was written by megatron-core {new_versions['megatron-core']}" in message, message
        assert f"torch {new_versions['torch']}" in message, message
        assert f"this environment has megatron-core {old_versions['megatron-core']}" in message, message
        assert "megatron-core >= 0.19" in message and "mos_nemo.convert export" in message, message
    assert "python -m mos_nemo.convert export: error: checkpoint" in export.stderr
    assert not (tmp_path / "hf").exists()
    assert _fingerprint(run_dir / "checkpoints") == before  # nothing lost, nothing rewritten
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == step.name

    (step / "versions.json").unlink()  # a checkpoint from before versions were recorded: the files still tell
    export = _run(older, "-m", "mos_nemo.convert", "export", "--ckpt", str(step), "--out", str(tmp_path / "hf"))
    assert export.returncode == 2 and "Traceback" not in export.output, export.output[-5000:]
    assert "written by megatron-core >= 0.19.0 (it has no common.pt" in " ".join(export.stderr.split())


def test_an_older_megatron_checkpoint_resumes_and_exports_under_a_newer_one(tmp_path):
    (newer, new_versions), (older, old_versions) = _pair()
    run_dir = tmp_path / "run"
    _ok(_train(older, run_dir, 2))
    step = run_dir / "checkpoints" / "step_0000002"
    assert json.loads((step / "versions.json").read_text())["megatron-core"] == old_versions["megatron-core"]

    for python, out in ((older, tmp_path / "hf_older"), (newer, tmp_path / "hf_newer")):
        _ok(_run(python, "-m", "mos_nemo.convert", "export", "--ckpt", str(step), "--out", str(out)))
    weights = [{} for _ in range(2)]  # each environment's export of the same checkpoint: the same tensors
    for index, out in enumerate((tmp_path / "hf_older", tmp_path / "hf_newer")):
        for shard in sorted(out.glob("*.safetensors")):
            weights[index].update(load_file(shard))
    assert weights[0].keys() == weights[1].keys() and len(weights[0]) > 10
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name

    # a load that fails for another reason (here: --hf names a model of another width) says which versions
    # wrote and read the checkpoint, beside megatron's own reason
    save_tiny_hf_model(tmp_path / "wider", "llama", seed=1, hidden_size=96)
    wrong = _run(newer, "-m", "mos_nemo.convert", "export", "--ckpt", str(step), "--hf", str(tmp_path / "wider"),
                 "--out", str(tmp_path / "hf_wrong"))
    message = " ".join(wrong.stderr.split())
    assert wrong.returncode == 2 and "Traceback" not in wrong.output, wrong.output[-5000:]
    assert f"checkpoint {step.name} ({step}) cannot be loaded" in message, message
    assert (f"written by megatron-core {old_versions['megatron-core']} (torch {old_versions['torch']}" in message
            and f"read here by megatron-core {new_versions['megatron-core']}" in message), message

    output = _ok(_train(newer, run_dir, 3))
    assert f"resumed from {step} at step 2" in output, output[-3000:]
    logged = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    steps = [entry["step"] for entry in logged if "loss" in entry]
    assert steps[-1] == 3 and all(torch.isfinite(torch.tensor(e["loss"])) for e in logged if "loss" in e)
