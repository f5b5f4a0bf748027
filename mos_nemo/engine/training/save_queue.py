"""Keep megatron dist-checkpointing's results queue alive through the signals a cluster sends.

megatron's torch_dist writer hands each save's write results to the training process through a queue
served by a ``multiprocessing.Manager``: a separate (spawned) process, started at the first save of a
launch and reused by every later one. torchrun forwards SIGTERM to each worker's whole process group, and
Slurm (``scancel --signal``, preemption) signals every process of the job step, so that signal reached the
Manager too and killed it: the save that the signal was meant to trigger then died with ``EOFError`` or
``BrokenPipeError``, and the work since the last periodic save was lost.

``start_save_queue`` starts that Manager ourselves, before training, with SIGTERM and SIGINT ignored in
it (the training process and megatron's forked writers catch them and finish the save), and hands its
queue to megatron. The Manager leaves on its own when its parent is gone (a SIGKILLed rank), and is shut
down with the launch otherwise. A SIGKILL still ends it, as it ends the ranks.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.managers import SyncManager
from typing import Optional

log = logging.getLogger(__name__)

_manager: Optional[SyncManager] = None


def _serve_through_stop_signals(parent: int) -> None:
    """Runs first in the Manager process: ignore the stop signals, and exit once the parent is gone."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()


def start_save_queue() -> None:
    """Give megatron's async filesystem writer a results queue whose server survives SIGTERM/SIGINT.

    Idempotent; call before the first save (and before a stop signal can arrive)."""
    global _manager
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if _manager is not None:
        return
    if not hasattr(filesystem_async, "_results_queue"):  # another megatron: leave its own queue alone
        log.warning("megatron's filesystem_async has no _results_queue: a stop signal to the whole process "
                    "group may break the save it triggers")
        return
    _manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
    _manager.start(initializer=_serve_through_stop_signals, initargs=(os.getpid(),))
    filesystem_async._results_queue = _manager.Queue()


def stop_save_queue() -> None:
    """Shut the Manager down (the end of a launch); megatron would start its own at a next save."""
    global _manager
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if _manager is None:
        return
    filesystem_async._results_queue = None
    _manager.shutdown()
    _manager = None
