"""Every script the docs tell a user to run as `path/to/script ...` is executable in a fresh clone.

A fresh clone takes file modes from the git index, not from the working tree of whoever committed, so the
index is what is checked (and the working tree too, where there is no git checkout, e.g. an sdist).
"""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FOLDERS = ("eval", "docker", "bench", ".ci")


def _repository_files():
    """The repository's own files: git's list in a checkout, else a walk that skips hidden folders (virtualenvs
    such as eval/.venv-judge, caches)."""
    if (ROOT / ".git").exists():
        listed = subprocess.run(["git", "ls-files", "--", *FOLDERS], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split()
        return [ROOT / name for name in listed]
    return [p for folder in FOLDERS for p in (ROOT / folder).rglob("*")
            if not any(part.startswith(".") for part in p.relative_to(ROOT / folder).parts)]


def _scripts_with_shebang():
    return [p for p in sorted(_repository_files()) if p.is_file() and p.read_bytes()[:2] == b"#!"]


def test_there_are_scripts_to_check():
    names = {p.relative_to(ROOT).as_posix() for p in _scripts_with_shebang()}
    assert {"eval/run_all.sh", "docker/slurm/launch.sh", "eval/compare.py"} <= names


def test_every_script_with_a_shebang_is_executable_in_the_git_index():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the working-tree test below covers it")
    listed = subprocess.run(["git", "ls-files", "-s", "--", *FOLDERS], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    modes = {line.split("\t", 1)[1]: line.split()[0] for line in listed.splitlines()}
    scripts = [p.relative_to(ROOT).as_posix() for p in _scripts_with_shebang()]
    wrong = [f"{name} ({modes[name]})" for name in scripts if name in modes and modes[name] != "100755"]
    assert not wrong, "scripts with a shebang not executable in git (git update-index --chmod=+x): " + ", ".join(wrong)


def test_every_script_with_a_shebang_is_executable_on_disk():
    wrong = [p.relative_to(ROOT).as_posix() for p in _scripts_with_shebang() if not os.access(p, os.X_OK)]
    assert not wrong, f"not executable: {wrong}"


def test_run_all_runs_as_the_readme_writes_it():
    """`eval/run_all.sh` with no arguments prints its usage (exit 2), rather than 'Permission denied' (126)."""
    result = subprocess.run(["eval/run_all.sh"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 126, result.stderr
    assert "usage" in (result.stdout + result.stderr).lower()
