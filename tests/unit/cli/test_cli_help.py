"""Every command the README names answers `--help` (exit 0, a usage line), run as the user runs it.

argparse formats help lazily, so a bad help string (an unescaped `%`) only crashes when `--help` is asked.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

COMMANDS = [
    ["-m", "mos_nemo.data.prepare"],
    ["-m", "mos_nemo.data.prepare", "paper"],
    ["-m", "mos_nemo.data.prepare", "ifd"],
    ["-m", "mos_nemo.convert"],
    ["-m", "mos_nemo.convert", "import"],
    ["-m", "mos_nemo.convert", "export"],
    ["-m", "mos_nemo.convert", "verify"],
    ["mos_nemo/train.py"],
    ["-m", "mos_nemo.plot"],
    ["eval/compare.py"],
    ["eval/ppl_table.py"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_help_works(command):
    done = subprocess.run([sys.executable, *command, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
