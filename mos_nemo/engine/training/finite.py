"""The non-finite guard, and the verdict on each checkpoint from the first step trained from it.

A step's loss is computed before its update, so a checkpoint saved after an exploding update looks fine
until the next step: the first step trained from a checkpoint's weights (in this launch or the next)
judges it, good if its loss and gradients are finite (``verdict.json``, see checkpoint_files.py). A run of
``train.nonfinite_limit`` non-finite steps stops the launch, naming the newest good checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

from mos_nemo.engine.training.checkpoint import newest_good_checkpoint
from mos_nemo.engine.training.checkpoint_files import write_verdict
from mos_nemo.errors import MosTrainingError


class FiniteGuard:
    def __init__(self, run_dir: str, limit: int):
        self.run_dir, self.limit = run_dir, limit
        self.steps: list[int] = []  # the current run of steps with a non-finite loss or grad norm

    @property
    def failing(self) -> bool:
        """The last step was not finite: its state must not replace (or, with keep, prune) a finite one."""
        return bool(self.steps)

    def judge(self, folder: Optional[Path], step: int, loss: float, grad_norm: float, writer: bool,
              say: Callable[[str], None]) -> None:
        """``step`` was the first trained from ``folder``'s weights: record whether they are good (rank 0)."""
        if folder is None or not writer:
            return
        good = math.isfinite(loss) and math.isfinite(grad_norm)  # one batch can pass near overflow, its grads not
        write_verdict(folder, good=good, by_step=step, loss=loss)
        if not good:
            say(f"step {step}: the loss or gradients from {folder.name}'s weights are not finite: that checkpoint "
                "is marked bad; checkpoint.resume=auto passes over it")

    def check(self, step: int, loss: float, grad_norm: Optional[float], say: Callable[[str], None]) -> None:
        """Raise MosTrainingError after ``limit`` steps in a row with a non-finite loss or grad norm."""
        if math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm)):
            self.steps = []
            return
        self.steps.append(step)
        say(f"step {step}: non-finite loss {loss} or grad norm {grad_norm}")
        if len(self.steps) < self.limit:
            return
        good = newest_good_checkpoint(self.run_dir)
        named = (f"The newest good checkpoint (the step after it had a finite loss and gradients) is {good}; "
                 "checkpoint.resume=auto takes it" if good is not None else
                 "No checkpoint of this run is known good (none had a finite step after it)")
        raise MosTrainingError(
            f"the loss or grad norm was not finite for {self.limit} steps in a row (steps {self.steps[0]}-{step}; "
            f"loss {loss}, grad norm {grad_norm}); stopped without saving. {named}. Lower optim.lr (with "
            "checkpoint.allow_changes=[optim.lr]), check the data, or resume from an earlier checkpoint with "
            f"checkpoint.resume=PATH (train.nonfinite_limit={self.limit} sets how many steps are tolerated)")
