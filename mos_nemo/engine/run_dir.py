"""``run.dir`` checks before any work: it must be writable, and only one launch may use it at a time.

The lock is a file ``run.dir/.mos_nemo.lock`` created exclusively (``O_CREAT | O_EXCL``) by global rank 0,
holding the host, pid and start time of its holder. A lock whose holder is on this host and no longer
alive is stale (a killed run) and is taken over; one held from another host is reported, since its
liveness cannot be checked from here.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class RunDirLock:
    """Exclusive use of a run folder by one launch; ``acquire()`` raises MosRunDirError naming the holder."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False

    def _holder(self) -> Optional[dict]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        me = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        for _ in range(3):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:  # being written right now, or garbage: look again shortly
                    time.sleep(0.2)
                    holder = self._holder()
                if holder is not None and holder.get("host") == me["host"] and not _alive(int(holder["pid"])):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise MosRunDirError(self._busy_message(holder))
            with os.fdopen(descriptor, "w") as handle:
                json.dump(me, handle)
            self.held = True
            return
        raise MosRunDirError(self._busy_message(self._holder()))

    def _busy_message(self, holder: Optional[dict]) -> str:
        who = (f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('started')})"
               if holder else "a process whose lock file is unreadable")
        return (f"run.dir={str(self.path.parent)!r} is in use by another launch: {who} holds {self.path}. "
                "Wait for it to finish or stop it, or use another run.dir; if that process is gone (e.g. on "
                "another host), delete the lock file")

    def release(self) -> None:
        if self.held:
            holder = self._holder()
            if holder is not None and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False
