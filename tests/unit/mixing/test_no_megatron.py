"""The mixing core is usable from any training loop: importing it pulls in no megatron or transformers."""

import subprocess
import sys

import pytest


@pytest.mark.slow  # starts a fresh interpreter
def test_mixing_imports_nothing_from_megatron_or_transformers():
    code = (
        "import sys, mos_nemo.mixing as m; m.MixtureOfSkills([1, 2]).update([1.0, 2.0]); m.OnlineDataMixing(['a', 'b']); m.OnlineDoReMi(['a']);"
        "print(sorted({k.split('.')[0] for k in sys.modules if k.split('.')[0] in ('megatron', 'transformers', 'apex')}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
