"""Where a launch stands between steps: the one home of the rules for stopping, saving and resuming.

The loop reports what happened, and ``RunState`` decides what follows:

    resumed(trainer state)     a checkpoint was loaded: it holds this step; owed work (below) runs first
    step_abandoned(step, why)  a signal stopped a step between micro batches: the previous step is saved
    step_finished(step, stop)  a step ended; ``stop`` is the signal flag agreed by every rank
    check_deadline()           after a step: stop if the next step and a save would end past the deadline
    saved(step, folder)        a checkpoint of ``step`` is on disk
    first_loss_after()         the first step trained from a checkpoint's weights ended: judge that checkpoint

Owed work: a signalled step saves at once and skips its MoS update and its held-out scoring; the
checkpoint records both as pending (``checkpoint_fields``) and the next launch runs them first, so the
run still continues exactly.

A checkpoint is good only once the step trained from its weights has shown a finite loss and finite
gradients (the loss of the step it was saved after was computed before that step's update, so it says
nothing about the saved weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mos_nemo.engine.parallel import ParallelState
from mos_nemo.engine.training.deadline import Deadline
from mos_nemo.engine.training.interrupt import StopRequest, any_rank_flagged


@dataclass
class SaveDecision:
    final: bool  # the last step of the schedule: the reshardable format (checkpoint.format=auto)
    signalled: bool  # a stop save: fast, sizes only in the manifest


class RunState:
    """The stop/save/resume bookkeeping of one launch (see the module docstring for its transitions)."""

    def __init__(self, abortable: bool):
        self.abortable = abortable  # a step can stop between its micro batches (pp == 1, > 1 micro batch)
        self.signal = StopRequest()
        self.deadline: Optional[Deadline] = None  # train.time_limit / the Slurm job's end (deadline.py)
        self.deadline_note = ""  # the time left and needed when the deadline stopped the launch
        self.saved_step: Optional[int] = None  # the step whose state run.dir's newest checkpoint holds
        self.pending_update = False  # a signalled step skipped its MoS update; the next launch runs it first
        self.pending_validation = False  # a signalled step skipped its held-out loss; the next launch scores it
        self.abandoned: Optional[str] = None  # "step N (after micro-batch k of m)" once a step was abandoned
        self.stop_reason: Optional[str] = None  # "signal" or "deadline" once the ranks agreed to stop
        self.unjudged: Optional[Path] = None  # the checkpoint whose weights the next step starts from

    # ---- transitions -----------------------------------------------------------------------------
    def resumed(self, trainer_state: dict, folder: Path) -> None:
        self.saved_step, self.unjudged = trainer_state["step"], folder
        self.pending_update = trainer_state.get("pending_update", False)
        self.pending_validation = trainer_state.get("pending_validation", False)

    def pending_update_ran(self) -> None:
        self.pending_update = False
        self.saved_step = None  # the checkpoint predates the update: a stop must save again

    def pending_validation_ran(self) -> None:
        self.pending_validation = False

    def step_abandoned(self, step: int, interruption: Exception) -> None:
        self.abandoned = f"step {step} ({interruption})"

    def step_finished(self, stop: bool, update_due: bool) -> None:
        """``stop``: agreed by every rank; a stopping step skips its MoS update (``update_due``) and owes it."""
        if stop:
            self.stop_reason, self.pending_update = "signal", update_due

    def stop_between(self, agreed: bool) -> None:
        """The signal flag agreed after a long MoS update or a periodic save: stop now if any rank was
        signalled during it, rather than after one more step (that step's state is complete; nothing owed)."""
        if agreed:
            self.stop_reason = "signal"

    def check_deadline(self, parallel: ParallelState) -> None:
        """Collective (every rank, after every step): stop if any rank finds the deadline too close."""
        if self.deadline is None or self.stopping:
            return
        self.deadline.step_boundary()
        if any_rank_flagged(self.deadline.too_close(), parallel.world_size):
            self.stop_reason, self.deadline_note = "deadline", self.deadline.describe()

    def validation_due(self) -> bool:
        """Score held-out examples now, unless stopping (then the checkpoint owes it to the next launch)."""
        self.pending_validation = self.stopping
        return not self.stopping

    def saved(self, step: int, folder: Path, seconds: float) -> None:
        self.saved_step, self.unjudged = step, folder
        if self.deadline is not None:
            self.deadline.save_took(seconds)

    def first_loss_after(self) -> Optional[Path]:
        """The checkpoint that the step just finished was trained from, the first time only: its loss judges it."""
        folder, self.unjudged = self.unjudged, None
        return folder

    # ---- decisions -------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None

    def save_due(self, step: int, last: int, max_steps: int, every: int, save_final: bool) -> Optional[SaveDecision]:
        """Whether to save after ``step``: periodically, at this launch's last step, or when stopping."""
        due = (every and step % every == 0) or self.stopping or step == last
        if due and (step < max_steps or save_final or self.stopping):
            return SaveDecision(final=step == max_steps, signalled=self.stop_reason == "signal")
        return None

    def checkpoint_fields(self) -> dict:
        """What a checkpoint must carry so the next launch does the owed work first."""
        return {"pending_update": self.pending_update, "pending_validation": self.pending_validation}

    def stop_message(self, step: int) -> str:
        if self.stop_reason == "deadline":
            return f"stopped after step {step}, before the deadline: {self.deadline_note}; resume with the same command"
        return f"stopped by a signal after step {step}; resume with the same command"
