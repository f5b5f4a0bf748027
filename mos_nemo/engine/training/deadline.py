"""A deadline of our own: stop at a step boundary while one more save still fits before the end.

A launch may have a wall-clock budget (``train.time_limit``, e.g. ``3h50m``, counted from the process's
start) and, under Slurm, an end time of its job (``SLURM_JOB_END_TIME`` when Slurm sets it, else
``squeue -h -j $SLURM_JOB_ID -o %e``). The earlier of the two is the deadline. After every step the
trainer asks whether the next step and a save would still end before it; if not, it saves now and exits 0,
so the end of an allocation needs no signal and no launcher grace period (torchrun's is 30 s on torch < 2.12).
The anchors: Megatron-LM's ``--exit-duration-in-mins``, NeMo's ``max_time``.

The margin is predicted from this launch's measurements: the slowest of the recent steps plus the slowest
save so far (or the one the resumed checkpoint recorded), times ``SAFETY``, plus ``EXIT_S`` for leaving.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Optional

import psutil

SAFETY = 1.5  # predictions are from the past: leave half as much again
EXIT_S = 5.0  # from the end of the save to the process's exit (barriers, closing the logs)
UNKNOWN_SAVE_S = 60.0  # before any save was measured (a fresh run with a deadline and no periodic save yet)
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """Seconds in ``3h50m``, ``90m``, ``1d2h``, ``45s``, ``3600`` (seconds) or ``HH:MM:SS``; ValueError else."""
    text = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if re.fullmatch(r"\d+:\d{1,2}:\d{1,2}", text):
        hours, minutes, seconds = (int(part) for part in text.split(":"))
        return hours * 3600.0 + minutes * 60.0 + seconds
    parts = re.findall(r"(\d+(?:\.\d+)?)([dhms])", text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def slurm_end_time() -> Optional[float]:
    """This Slurm job's end time (seconds since the epoch), or None outside Slurm or if it is not known."""
    value = os.environ.get("SLURM_JOB_END_TIME")
    if value and value.strip().isdigit():
        return float(value)
    job = os.environ.get("SLURM_JOB_ID")
    if not job or shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
        return time.mktime(time.strptime(out, "%Y-%m-%dT%H:%M:%S"))  # squeue prints local time
    except (OSError, subprocess.SubprocessError, ValueError):  # N/A, Unknown, an unreachable controller
        return None


@dataclass
class Deadline:
    """When this launch must have saved and exited, and what the time left must hold."""

    end: float  # seconds since the epoch
    source: str  # what set it, for the messages
    save_seconds: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    _last_boundary: Optional[float] = None

    @classmethod
    def find(cls, time_limit: Optional[str], resumed_save_seconds: Optional[float] = None) -> Optional["Deadline"]:
        """The earlier of ``train.time_limit`` (from this process's start) and the Slurm job's end, or None."""
        candidates = []
        if time_limit:
            started = psutil.Process(os.getpid()).create_time()
            candidates.append((started + parse_duration(time_limit), f"train.time_limit={time_limit}"))
        slurm = slurm_end_time()
        if slurm is not None:
            candidates.append((slurm, f"the Slurm job's end ({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(slurm))})"))
        if not candidates:
            return None
        end, source = min(candidates)
        deadline = cls(end=end, source=source)
        if resumed_save_seconds:
            deadline.save_seconds.append(float(resumed_save_seconds))
        return deadline

    def step_boundary(self) -> None:
        """Called at the start of the loop and after every step: measures the step that just ended."""
        now = time.monotonic()
        if self._last_boundary is not None:
            self.step_seconds = (self.step_seconds + [now - self._last_boundary])[-10:]
        self._last_boundary = now

    def save_took(self, seconds: float) -> None:
        self.save_seconds.append(seconds)
        self._last_boundary = time.monotonic()  # the save is not part of the next step

    def margin(self) -> float:
        """Seconds the next step, a save and the exit need, as predicted from this launch so far."""
        step = max(self.step_seconds, default=0.0)
        save = max(self.save_seconds, default=UNKNOWN_SAVE_S)
        return SAFETY * (step + save) + EXIT_S

    def too_close(self) -> bool:
        """True when the next step and a save would not end before the deadline: stop now."""
        return time.time() + self.margin() > self.end

    def describe(self) -> str:
        return (f"{self.source} is {max(self.end - time.time(), 0):.0f}s away; one more step and a save need "
                f"about {self.margin():.0f}s")
