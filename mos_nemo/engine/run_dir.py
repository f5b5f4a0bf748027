"""``run.dir`` checks before any work: it must be writable, and only one launch may use it at a time.

The lock is ``run.dir/.mos_nemo.lock``, taken by global rank 0. Its record (host, pid, the process's start
time, the Slurm job id) is written whole into a private file first and then linked to the lock's name:
``link`` fails if the name exists, so exactly one launch creates it, and no reader (nor a full disk) ever
sees a half-written lock. A lock whose holder is gone is taken over: on this host, a pid that no longer
runs, or that now belongs to a process started at another time (a reused pid); from another host, only
when it was the same Slurm job (a requeue after a node failure), or when ``run.take_over_lock=true`` says
so. The takeover itself is serialised by a second exclusive file, so two launches racing over one stale
lock cannot both win.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

import psutil

from mos_nemo.errors import MosRunDirError

LOCK_NAME = ".mos_nemo.lock"


def check_writable(run_dir: str | Path) -> None:
    """Create ``run_dir`` and write a probe file in it; MosRunDirError naming the folder if that fails."""
    folder = Path(run_dir)
    probe = folder / f".write_probe.{socket.gethostname()}.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise MosRunDirError(f"run.dir={str(run_dir)!r} is not writable ({type(error).__name__}: "
                             f"{error.strerror or error}); choose a folder you can write to, e.g. "
                             "run.dir=runs/NAME, or fix its permissions") from None


def _start_time(pid: int) -> Optional[float]:
    """When process ``pid`` started (seconds since the epoch), or None if there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # exists, owned by another user
        return -1.0


UNREADABLE_AFTER_S = 10.0  # a lock file still empty or garbled after this long was left by a failed write


class RunDirLock:
    """Exclusive use of a run folder by one launch; ``acquire()`` raises MosRunDirError naming the holder."""

    def __init__(self, run_dir: str | Path, take_over: bool = False):
        self.path = Path(run_dir) / LOCK_NAME
        self.take_over = take_over  # run.take_over_lock: the holder on another host is known to be gone
        self.held = False
        self.record = {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": _start_time(os.getpid()),
                       "job": os.environ.get("SLURM_JOB_ID"), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}

    def _read(self) -> Optional[str]:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None

    def _private_copy(self) -> Path:
        """Our record, written whole and flushed to disk under a name of our own."""
        private = self.path.with_name(f"{LOCK_NAME}.{self.record['host']}.{self.record['pid']}")
        try:
            with open(private, "w") as handle:
                json.dump(self.record, handle)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            private.unlink(missing_ok=True)
            raise MosRunDirError(f"cannot write the lock of run.dir={str(self.path.parent)!r} "
                                 f"({error.strerror or error}; is the disk full?)") from None
        return private

    def stale_because(self, text: str) -> Optional[str]:
        """Why the lock holding ``text`` may be taken over, or None while its holder may still run."""
        try:
            holder = json.loads(text)
            host, pid = holder["host"], int(holder["pid"])
        except (ValueError, KeyError, TypeError):
            age = time.time() - self.path.stat().st_mtime if self.path.exists() else 0.0
            return f"its lock file is unreadable since {age:.0f}s" if age > UNREADABLE_AFTER_S else None
        if host == self.record["host"]:
            started = _start_time(pid)
            if started is None:
                return f"pid {pid} no longer runs"
            recorded = holder.get("pid_started")
            if recorded is not None and started >= 0 and abs(started - float(recorded)) > 1.0:
                return f"pid {pid} is now another process (started at another time)"
            return None
        if holder.get("job") and holder.get("job") == self.record["job"]:
            return f"it was Slurm job {holder['job']} on host {host}, requeued here"
        if self.take_over:
            return f"run.take_over_lock=true (the holder on host {host} is gone)"
        return None

    def acquire(self) -> None:
        private = self._private_copy()
        try:
            for _ in range(50):
                try:
                    os.link(private, self.path)  # atomic: fails if a lock exists
                    self.held = True
                    return
                except FileExistsError:
                    pass
                text = self._read()
                if text is None:
                    continue  # released meanwhile: try again
                reason = self.stale_because(text)
                if reason is None:
                    if not text.strip():  # being written by an older mos_nemo: look again shortly
                        time.sleep(0.2)
                        continue
                    raise MosRunDirError(self._busy_message(text))
                if self._take_over(text, private):
                    self.held = True
                    print(f"mos_nemo: took over the lock {self.path}: {reason}", flush=True)
                    return
                time.sleep(0.05)  # another launch is taking it over: see who won
            raise MosRunDirError(self._busy_message(self._read() or ""))
        finally:
            private.unlink(missing_ok=True)

    def _take_over(self, examined: str, private: Path) -> bool:
        """Replace the stale lock ``examined`` by ours, if no other launch got there first."""
        guard = self.path.with_name(f"{LOCK_NAME}.takeover")
        try:
            descriptor = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > UNREADABLE_AFTER_S:  # its taker died mid-takeover
                    guard.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            return False
        try:
            os.close(descriptor)
            if self._read() != examined:  # someone took it over (or released it) meanwhile
                return False
            os.replace(private, self.path)
            return True
        finally:
            guard.unlink(missing_ok=True)

    def _busy_message(self, text: str) -> str:
        try:
            holder = json.loads(text)
            who = (f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('started')}"
                   + (f", Slurm job {holder['job']}" if holder.get("job") else "") + ")")
            other_host = holder.get("host") != self.record["host"]
        except (ValueError, AttributeError):
            who, other_host = "a process whose lock file is unreadable (being written?)", False
        message = (f"run.dir={str(self.path.parent)!r} is in use by another launch: {who} holds {self.path}. "
                   "Wait for it to finish or stop it, or use another run.dir")
        if other_host:
            message += ("; its liveness cannot be checked from this host: if that launch is gone (its node "
                        "failed), take the lock over with run.take_over_lock=true")
        return message

    def release(self) -> None:
        if self.held:
            text = self._read()
            if text is not None and text == json.dumps(self.record):
                self.path.unlink(missing_ok=True)
            self.held = False
