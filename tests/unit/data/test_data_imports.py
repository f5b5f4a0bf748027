"""The data package stands alone: importing it (and the assets module) loads nothing from megatron."""

import subprocess
import sys

import pytest


@pytest.mark.slow  # starts a fresh interpreter
def test_data_package_imports_no_megatron():
    code = ("import sys, mos_nemo.data, mos_nemo.assets; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'megatron'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
