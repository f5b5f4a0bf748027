"""Three third-party notices that tell a mos_nemo user nothing they can act on, dropped by name.

Each entry names one logger and the start of one message, so every other line of the same library (any
other warning, and every error) still reaches the console and ``log.txt`` (``logs.configure_logging``
routes megatron's loggers there). What each one is, and why it is noise here:

- ``torch.utils.cpp_extension``: "No CUDA runtime is found, using CUDA_HOME=...", logged when that module
  is imported (megatron-core imports it) on a machine with a CUDA toolkit but no GPU, e.g. the NGC image
  on a CPU node. It says where torch would find nvcc to compile C++/CUDA extensions; we compile none.
- ``megatron.core.models.gpt.gpt_model``: "GPTModel IS DEPRECATED" (megatron-core 0.19). We build
  GPTModel deliberately: HybridModel does not exist in 0.15/0.16, which we support (docs/versions.md).
- ``megatron.core.dist_checkpointing.strategies.torch``: "MCore's async save is deprecated" (0.19). We save
  synchronously; megatron's own synchronous save runs through its "mcore" async machinery and logs the
  notice on the first save all the same (docs/versions.md).

The first one is logged while megatron is imported, before ``configure_logging`` runs, so
``mos_nemo/engine/__init__.py`` calls ``drop_known_notices`` before any engine module imports megatron.

A fourth is no log record: torch 2.9's gloo (the NGC 25.09 image's) writes "[Gloo] Rank R is connected to N
peer ranks. Expected number of connected peer ranks is : N" to stdout (C++ ``std::cout``, no log level)
for every gloo group each rank joins: about 50 lines at 2 ranks, megatron-core's gloo groups included.
``gloo_connection_lines_dropped`` holds stdout's file descriptor while the groups are made and writes back
every other line, a rank that failed to connect included (torch 2.13's gloo no longer prints it by default).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from contextlib import contextmanager

KNOWN_NOTICES = (
    ("torch.utils.cpp_extension", "No CUDA runtime is found, using CUDA_HOME="),
    ("megatron.core.models.gpt.gpt_model", "GPTModel IS DEPRECATED."),
    ("megatron.core.dist_checkpointing.strategies.torch", "MCore's async save is deprecated"),
)


class _DropNotice(logging.Filter):
    """Drops the records of one logger whose message starts with ``start``, at WARNING or below."""

    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING or not str(record.msg).startswith(self.start)


def drop_known_notices() -> None:
    """Put a filter for each known notice on the logger that emits it (once per process; idempotent).

    A logger's filter sees only the records logged on that logger, so nothing else is touched."""
    for name, start in KNOWN_NOTICES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) and f.start == start for f in logger.filters):
            logger.addFilter(_DropNotice(start))


_GLOO_CONNECTED = re.compile(
    rb"\[Gloo\] Rank \d+ is connected to (\d+) peer ranks\. Expected number of connected peer ranks is : (\d+)")


@contextmanager
def gloo_connection_lines_dropped():
    """stdout's file descriptor goes to a temporary file for the block; then every line written there is
    written back to stdout, except gloo's "Rank R is connected to N peer ranks" where N is the expected
    number. A process killed inside the block loses what it held."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            held.seek(0)
            for line in held.read().splitlines(keepends=True):
                connected = _GLOO_CONNECTED.fullmatch(line.rstrip(b"\r\n"))
                if connected is None or connected.group(1) != connected.group(2):
                    os.write(1, line)
