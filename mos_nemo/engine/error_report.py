"""How a launch that stops on one of our errors reports it: once, last, and as torchrun's root cause.

Our errors (``MosError``) are raised alike on every rank (config checks run everywhere, and collective
checks such as the run-dir lock or checkpoint verification share their verdict), so rank 0 prints the
message and the other ranks stay quiet. Under torchrun, each worker has an error file
(``TORCHELASTIC_ERROR_FILE``); torchrun prints the earliest one as "Root Cause" at the very end of its
output. Rank 0 writes our message there; the other ranks write a one-line pointer to rank 0, stamped
``POINTER_DELAY_S`` later so that rank 0's stays the first observed failure even when another rank reaches
the same error first (on a loaded machine rank 0 can be seconds behind: a one-second margin lost that race). Exceptions that are not ours (bugs) go
through torch's ``errors.record``, which puts their traceback in that block.
"""

from __future__ import annotations

import json
import os
import sys
import time

EXIT_USER_ERROR = 2
POINTER_DELAY_S = 60  # torchrun shows the failure with the earliest error-file timestamp as the root cause
RANK0_GRACE_S = 30  # how long other ranks wait for rank 0 to report (torchrun stops them when it exits)


def _global_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _write_error_file(message: str, timestamp: int) -> None:
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    try:
        with open(path, "w") as handle:
            # torch's own layout; torchrun shows "py_callstack" as the root cause's traceback: our message
            json.dump({"message": {"message": message, "extraInfo": {"py_callstack": message,
                                                                     "timestamp": str(timestamp)}}}, handle)
    except OSError:
        pass  # the console message below still tells the user


def report_user_error(error: BaseException) -> int:
    """Print ``error`` (rank 0 only) and record it for torchrun; return the process exit code."""
    rank = _global_rank()
    now = int(time.time())
    if rank == 0:
        message = f"mos_nemo: {error}"
        _write_error_file(message, now)
        sys.stdout.flush()
        print(message, file=sys.stderr, flush=True)
    else:
        _write_error_file(f"mos_nemo: rank {rank} stopped on the error reported by rank 0", now + POINTER_DELAY_S)
        if os.environ.get("TORCHELASTIC_ERROR_FILE"):
            # torchrun stops every worker as soon as one exits: leaving first, this rank would get rank 0
            # killed before it printed the message. Rank 0 raises the same error and exits, and torchrun
            # then ends this wait with SIGTERM (the wait only runs out if rank 0 is stuck elsewhere).
            time.sleep(RANK0_GRACE_S)
    return EXIT_USER_ERROR
