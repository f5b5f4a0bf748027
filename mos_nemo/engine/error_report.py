"""How a launch that stops on one of our errors reports it: once, last, and as torchrun's root cause.

Our errors (``MosError``) are raised alike on every rank (config checks run everywhere, and collective
checks such as the run-dir lock or checkpoint verification share their verdict), so rank 0 prints the
message and the other ranks stay quiet. Under torchrun, each worker has an error file
(``TORCHELASTIC_ERROR_FILE``); torchrun prints the earliest one as "Root Cause" at the very end of its
output. Rank 0 writes our message there; the other ranks write a one-line pointer to rank 0, stamped a
second later so that rank 0's stays the first observed failure. Exceptions that are not ours (bugs) go
through torch's ``errors.record``, which puts their traceback in that block.
"""

from __future__ import annotations

import json
import os
import sys
import time

EXIT_USER_ERROR = 2


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
        _write_error_file(f"mos_nemo: rank {rank} stopped on the error reported by rank 0", now + 1)
    return EXIT_USER_ERROR
