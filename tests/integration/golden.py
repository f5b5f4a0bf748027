"""Golden values of the tiny_cpu recipe at TP=PP=DP=1, kept in golden_tiny_cpu.json and checked at 1e-4:

- ``losses``: the first steps' losses of ``tiny_cpu train.max_steps=12`` (static blend); test_train_parallel
  compares its single-process run, and through it every layout, with them. Step 1's loss is the untrained
  model's, and test_golden.py recomputes it with Hugging Face transformers (an independent oracle), so the
  file is anchored outside our engine; later steps guard against a regression that hits every layout alike.
- ``mos_weights``: mixture.jsonl weights (step -> name -> p) of the MoS runs in test_mixer_layouts (CosSim and
  Diff, updates at steps 3 and 6).

Regenerate only after a change that is meant to move these numbers, and say why in the commit:

    PYTHONPATH=$PWD .venv/bin/python -m tests.integration.golden
"""

from __future__ import annotations

import datetime
import json
import platform
import subprocess
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).with_name("golden_tiny_cpu.json")
STEPS = 12  # the loss curve depends on train.max_steps through the LR schedule
LOSS_STEPS = 5  # how many of the first losses are kept
TOLERANCE = 1e-4


def load_golden() -> dict:
    return json.loads(GOLDEN.read_text())


def _produce() -> dict:
    from mos_nemo.logs import read_jsonl
    from tests.distributed import launch_training
    from tests.integration.test_mixer_layouts import MOS, REWARDS

    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        launch_training(root / "static", f"train.max_steps={STEPS}")
        losses = [r["loss"] for r in read_jsonl(root / "static" / "train.jsonl")[:LOSS_STEPS]]
        weights = {}
        for reward in REWARDS:
            launch_training(root / reward, *MOS, f"mixing.reward={reward}")
            weights[reward] = {str(r["step"]): r["weights"] for r in read_jsonl(root / reward / "mixture.jsonl")}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {
        "_produced": f"{datetime.date.today()} at commit {commit} on {platform.machine()} CPU, torch fp32, "
                     "by `python -m tests.integration.golden` (tiny_cpu, one process)",
        "losses": {"train.max_steps": STEPS, "first": losses},
        "mos_weights": weights,
    }


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(_produce(), indent=2) + "\n")
    print(f"wrote {GOLDEN}")
