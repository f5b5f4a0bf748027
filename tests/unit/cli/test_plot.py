"""`python -m mos_nemo.plot`: a static run's weights are flat lines over the whole run (not one dot at step
0), and held-out loss (validation.jsonl), the curve the convergence study is about, gets its own panel.
The run folders are written by the trainer's own RunLogger, so the files have the real layout."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from mos_nemo.logs import RunLogger
from mos_nemo.plot import draw_runs

ROOT = Path(__file__).resolve().parents[3]
NAMES = ("math", "code")


def _write_run(run_dir: Path, updates: dict[int, list[float]], steps: int, validation: bool) -> None:
    logger = RunLogger(run_dir, steps, None, enabled=True)
    weights = dict(zip(NAMES, updates[0]))
    logger.log_mixture(0, weights, {n: 0 for n in NAMES})
    if validation:
        logger.log_validation(0, {"math": 2.0, "code": 3.0})
    for step in range(1, steps + 1):
        if step in updates:
            weights = dict(zip(NAMES, updates[step]))
            logger.log_mixture(step, weights, {n: step for n in NAMES}, weights, weights)
        logger.log_step({"step": step, "loss": 3.0 - 0.1 * step, "lr": 1e-3, "grad_norm": 1.0, "tokens": 100,
                         "seconds": 0.1, "dataset": "math"}, weights)
        if validation and step % 5 == 0:
            logger.log_validation(step, {"math": 2.0 - 0.1 * step, "code": 3.0 - 0.05 * step})
    logger.close()


def test_static_weights_are_flat_lines_and_held_out_loss_is_drawn(tmp_path):
    static, learned = tmp_path / "static", tmp_path / "mos"
    _write_run(static, {0: [0.5, 0.5]}, steps=10, validation=False)
    _write_run(learned, {0: [0.5, 0.5], 4: [0.6, 0.4], 8: [0.7, 0.3]}, steps=10, validation=True)
    figure = draw_runs([static, learned])
    weights_axis, _, held_out_axis = figure.axes
    lines = {line.get_label(): line for line in weights_axis.get_lines()}
    flat = lines["math (static)"]
    assert list(flat.get_xdata()) == [0, 10] and list(flat.get_ydata()) == [0.5, 0.5]
    assert flat.get_drawstyle() == "steps-post"
    assert list(lines["math (mos)"].get_xdata()) == [0, 4, 8, 10]
    assert list(lines["math (mos)"].get_ydata()) == [0.5, 0.6, 0.7, 0.7]
    held = {line.get_label(): line for line in held_out_axis.get_lines()}
    assert list(held["mean (mos)"].get_xdata()) == [0, 5, 10]
    assert np.allclose(held["mean (mos)"].get_ydata(), [2.5, 2.125, 1.75])
    assert held_out_axis.get_title() == "Held-out loss"

    done = subprocess.run([sys.executable, "-m", "mos_nemo.plot", str(static), str(learned), "-o",
                           str(tmp_path / "both.png")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "both.png").stat().st_size > 10_000


def test_a_folder_that_is_not_a_run_is_one_error_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mos_nemo.plot", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "mixture.jsonl" in done.stderr
