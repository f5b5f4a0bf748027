"""Third-party lines on the console (mos_nemo/known_notices.py, logs.configure_logging): megatron's warnings
reach the console and log.txt once, the three known notices neither, and nothing else is dropped; gloo's
"is connected" lines, written to stdout's file descriptor as C++ does, are dropped and every other line
written there comes back."""

import logging
import os

import pytest

import mos_nemo.engine  # noqa: F401 - sets the known notices' filters, before megatron is imported
from mos_nemo.known_notices import KNOWN_NOTICES, drop_known_notices, gloo_connection_lines_dropped
from mos_nemo.logs import configure_logging

GPT_LOGGER = "megatron.core.models.gpt.gpt_model"
GPT_NOTICE = ("GPTModel IS DEPRECATED. GPTModel is only accepting critical bug fixes, no new features. Please "
              "reference the migration guide `docs/user-guide/hybrid-model-migration.md`")


@pytest.fixture
def routed(tmp_path):
    """configure_logging for rank 0 into tmp_path; its handlers and warning capture undone afterwards."""
    path = configure_logging(tmp_path, rank=0)
    yield path
    for name in ("mos_nemo", "py.warnings", "megatron"):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if getattr(h, "_mos_nemo_handler", False)]:
            logger.removeHandler(handler)
            handler.close()
        logger.propagate = True
    logging.getLogger("megatron").setLevel(logging.NOTSET)
    logging.captureWarnings(False)


def test_megatron_warnings_reach_console_and_log_once_and_known_notices_neither(routed, capsys):
    gpt = logging.getLogger(GPT_LOGGER)
    gpt.warning(GPT_NOTICE)
    gpt.warning("tp_comm_overlap is ignored without TE")  # another warning of the same logger
    gpt.error(GPT_NOTICE)  # an error is never dropped, whatever it says
    logging.getLogger("megatron.core.utils").info("megatron's INFO chatter stays off")
    logging.getLogger("megatron.core.dist_checkpointing.strategies.torch").warning(
        "MCore's async save is deprecated and will be removed in the future releases. Please, use NVRx")
    logging.getLogger("torch.utils.cpp_extension").warning(
        "No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")

    log = routed.read_text().splitlines()
    assert log == [f"WARNING {GPT_LOGGER}: tp_comm_overlap is ignored without TE",
                   f"ERROR {GPT_LOGGER}: {GPT_NOTICE}"]
    assert capsys.readouterr().err.splitlines() == log


def test_drop_known_notices_adds_its_filters_once():
    drop_known_notices()
    counts = [len(logging.getLogger(name).filters) for name, _ in KNOWN_NOTICES]
    drop_known_notices()  # each entry point and each configure_logging call it again
    assert [len(logging.getLogger(name).filters) for name, _ in KNOWN_NOTICES] == counts
    assert min(counts) >= 1


def test_gloo_connection_lines_are_dropped_and_every_other_line_comes_back(capfd):
    with gloo_connection_lines_dropped():
        os.write(1, b"[Gloo] Rank 0 is connected to 1 peer ranks. Expected number of connected peer ranks is : 1\n")
        os.write(1, b"[Gloo] Rank 1 is connected to 0 peer ranks. Expected number of connected peer ranks is : 0\n")
        os.write(1, b"[Gloo] Rank 0 is connected to 2 peer ranks. Expected number of connected peer ranks is : 3\n")
        os.write(1, b"[Gloo] Rank 0 is NOT connected to: [3]\n")
        os.write(1, b"another library's line\n")
        os.write(1, b"a last line without newline")
    assert capfd.readouterr().out.splitlines() == [
        "[Gloo] Rank 0 is connected to 2 peer ranks. Expected number of connected peer ranks is : 3",
        "[Gloo] Rank 0 is NOT connected to: [3]", "another library's line", "a last line without newline"]


def test_gloo_lines_come_back_when_the_block_raises(capfd):
    with pytest.raises(RuntimeError, match="rendezvous"):
        with gloo_connection_lines_dropped():
            os.write(1, b"[Gloo] Rank 0 is NOT connected to: [1]\n")
            raise RuntimeError("rendezvous timed out")
    assert capfd.readouterr().out == "[Gloo] Rank 0 is NOT connected to: [1]\n"
