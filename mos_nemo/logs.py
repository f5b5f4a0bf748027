"""What a run writes to ``run.dir`` (rank 0 only): config.yaml, train.jsonl, mixture.jsonl, TensorBoard events,
and one progress line per step on the terminal.

- ``train.jsonl``: one object per step: ``step`` (1-based), ``loss``, ``dataset`` (batch mode) or ``counts``
  (sample mode: name -> examples), ``lr``, ``tokens``, ``seconds``, ``grad_norm``, ``update_applied`` (False
  when the optimizer skipped the step for non-finite gradients), ``loss_tokens`` and ``dataset_loss`` (name ->
  token-averaged loss of that dataset's examples in the batch), ``peak_memory_gib`` (GPU max allocated, or
  CPU max resident set size, so far) and, with MoS, ``mixing_seconds`` (wall time of
  the reward pass and scorer update in that step, included in ``seconds``; the first step of a launch
  also counts the scoring of theta0's reference pool, done just before it).
- ``mixture.jsonl``: one object at step 0 and one after every mixing update: ``step``, ``weights`` (name ->
  probability), ``rewards_raw`` and ``rewards`` (name -> value; null at step 0 and for static blends),
  ``counts`` (name -> batches drawn so far).
- ``validation.jsonl`` (with ``validation.holdout``): ``step``, ``loss`` (name -> held-out loss: mean over
  the dataset's held-out examples of each example's mean response-token NLL) and ``mean`` (plain mean over
  datasets), at step 0, every ``validation.every`` steps and after the last step.
- ``validation_examples.jsonl``: at the same steps, ``step`` and ``nll`` (name -> each held-out example's
  mean response-token NLL, in one fixed order), so that two runs can be compared example by example.
On resume these files are cut back to the checkpoint's step, so a resumed run's files equal an unbroken run's.

Python ``logging`` (the ``mos_nemo.*`` loggers: build progress, per-dataset load counts, skipped optimizer
steps), megatron-core's warnings (less three known notices: mos_nemo/known_notices.py) and Python warnings
are set up once per process by ``configure_logging``: rank 0 writes to the console and ``run.dir/log.txt``,
every other rank only to ``run.dir/logs/rank_N.txt``. The run's own lines
(settings, step lines, MoS updates, saves) go the same way (``RunLogger.print``), so ``log.txt`` holds
exactly what the console shows, one line per event, in the same format (the message; ``WARNING`` and the
logger's name added for warnings and errors; train.jsonl has the times). On a terminal the step lines become a progress bar
and go to ``log.txt`` only; third-party progress bars (transformers, datasets) are shown only on a terminal.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mos_nemo.errors import MosDataError
from mos_nemo.weights_view import MAX_NAMED, counts_summary, weights_summary

TRAIN_LOG = "train.jsonl"
MIXTURE_LOG = "mixture.jsonl"
VALIDATION_LOG = "validation.jsonl"
VALIDATION_EXAMPLES_LOG = "validation_examples.jsonl"  # each held-out example's NLL, for paired comparisons


_HANDLER_MARK = "_mos_nemo_handler"  # set on the handlers we install, so a second call replaces them
RUN_LOGGER = "mos_nemo.run"  # the run's own lines (RunLogger.print)


class _Formatter(logging.Formatter):
    """The message as it is; warnings and errors also say their level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname} {record.name}: {text}"
        return text


class _ConsoleHandler(logging.Handler):
    """INFO to stdout, warnings and errors to stderr, through ``tqdm.write`` so that a progress bar on the
    terminal is redrawn below the line instead of being broken by it; skips records marked file-only."""

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(record, "console", True):
            return
        from tqdm import tqdm

        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            tqdm.write(self.format(record), file=stream)
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never stop training
            self.handleError(record)


def _quiet_third_party_bars() -> None:
    """transformers' and datasets' progress bars (shard loading, GGUF conversion) are for terminals only."""
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def logging_configured() -> bool:
    """Whether ``configure_logging`` set up this process (else RunLogger prints plainly)."""
    return any(getattr(h, _HANDLER_MARK, False) for h in logging.getLogger("mos_nemo").handlers)


def configure_logging(run_dir: str | Path, rank: int) -> Path:
    """Route the ``mos_nemo`` loggers, megatron's warnings and Python warnings: rank 0 to the console and
    ``run_dir/log.txt``, rank N > 0 to ``run_dir/logs/rank_N.txt`` only (so a warning is shown once, not once
    per rank).

    Returns this rank's log file. Calling it again (another run in the same process) replaces the handlers.
    """
    run_dir = Path(run_dir)
    path = run_dir / "log.txt" if rank == 0 else run_dir / "logs" / f"rank_{rank}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.FileHandler(path)]
    if rank == 0:
        handlers.append(_ConsoleHandler())
    if not sys.stderr.isatty():
        _quiet_third_party_bars()
    formatter = _Formatter()
    # megatron's own loggers have no handler: without this, their warnings reach stderr only (and from every
    # rank), not log.txt. Its INFO chatter stays off, as before.
    for name, level in (("mos_nemo", logging.INFO), ("py.warnings", logging.INFO), ("megatron", logging.WARNING)):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
            logger.removeHandler(old)
            old.close()
        for handler in handlers:
            handler.setFormatter(formatter)
            setattr(handler, _HANDLER_MARK, True)
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False  # not twice through a root handler someone else configured
    logging.captureWarnings(True)  # warnings.warn -> the py.warnings logger -> the handlers above
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    """All records of a JSONL file (an absent file reads as empty); a bad line raises naming file:line."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise MosDataError(f"{path}:{number}: not valid JSON ({error})") from None
    return records


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep the records with ``step <= last_step`` (those a checkpoint at ``last_step`` has seen).

    A torn last line (a write cut short by a full disk or a kill) is dropped, not an error; the file is
    rewritten through a temporary file, so a full disk now leaves the old one whole."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                break  # torn
            raise MosDataError(f"{path}:{number}: not valid JSON ({error})") from None
        if record["step"] <= last_step:
            kept.append(line)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(line + "\n" for line in kept))
    temporary.replace(path)


def _memory_gib() -> float:
    """Peak memory so far: the GPU's max allocated, or on CPU the process's max resident set size."""
    import torch  # here, not at the top: the evaluation tools read JSONL through this module without torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def format_weights(weights: dict[str, float], start: Optional[dict[str, float]] = None) -> str:
    """``a=0.2513 b=0.7487``: four decimals, so that small moves of p (CosSim's, near uniform) show; beyond
    ``MAX_NAMED`` datasets the top movers since ``start`` and the others grouped (``weights_view``)."""
    return weights_summary(weights, start)


class RunLogger:
    """Writes the run's logs; every method is a no-op on ranks other than 0 (``enabled=False``)."""

    def __init__(self, run_dir: str | Path, max_steps: int, resumed_step: Optional[int], enabled: bool):
        self.enabled = enabled
        self.max_steps = max_steps
        self.run_dir = Path(run_dir)
        self._tensorboard = None
        self._bar = None
        self._start_weights: Optional[dict[str, float]] = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name in (TRAIN_LOG, MIXTURE_LOG, VALIDATION_LOG, VALIDATION_EXAMPLES_LOG):
            path = self.run_dir / name
            if resumed_step is None:
                path.write_text("")  # a fresh run starts fresh logs
            else:
                _truncate_jsonl(path, resumed_step)
        from torch.utils.tensorboard import SummaryWriter

        self._tensorboard = SummaryWriter(
            str(self.run_dir / "tb"), purge_step=None if resumed_step is None else resumed_step + 1
        )
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=max_steps, initial=resumed_step or 0, unit="step", dynamic_ncols=True)

    def print(self, text: str, console: bool = True) -> None:
        """One message (rank 0) on the console and in log.txt, without breaking the progress bar;
        ``console=False``: log.txt only. Without ``configure_logging`` (the Trainer used as a library), a
        plain print."""
        if not self.enabled:
            return
        if logging_configured():
            logging.getLogger(RUN_LOGGER).info(text, extra={"console": console})
        elif console:
            if self._bar is not None:
                self._bar.write(text)
            else:
                print(text, flush=True)

    def write_config(self, config_yaml: str, non_default: dict[str, Any], path: Optional[Path] = None) -> None:
        """Save the resolved config (to ``path``, default run.dir/config.yaml) and print the settings that
        differ from the defaults, once."""
        if not self.enabled:
            return
        (path or self.run_dir / "config.yaml").write_text(config_yaml)
        lines = [f"  {key} = {value}" for key, value in non_default.items()]
        self.print("mos_nemo: settings that differ from the defaults\n" + "\n".join(lines))

    def log_step(self, record: dict[str, Any], weights: dict[str, float]) -> None:
        """Append one train.jsonl record and show one progress line (loss, tokens/s, weights)."""
        if not self.enabled:
            return
        record = {**record, "peak_memory_gib": round(_memory_gib(), 4)}
        self._append(TRAIN_LOG, record)
        step, seconds = record["step"], max(record["seconds"], 1e-9)
        tokens_per_second = record["tokens"] / seconds
        for key in ("loss", "lr", "grad_norm"):
            self._tensorboard.add_scalar(f"train/{key}", record[key], step)
        self._tensorboard.add_scalar("train/tokens_per_second", tokens_per_second, step)
        for name, value in record.get("dataset_loss", {}).items():
            self._tensorboard.add_scalar(f"train/loss_{name}", value, step)
        shown = format_weights(weights, self.start_weights())  # many datasets: top movers, the rest grouped
        source = record.get("dataset") or counts_summary(record.get("counts", {}))
        line = (f"step {step}/{self.max_steps} | loss {record['loss']:.4f} | lr {record['lr']:.3e} | "
                f"grad {record['grad_norm']:.3f} | {tokens_per_second:.0f} tok/s | mem {_memory_gib():.2f} GiB | "
                f"batch {source} | weights {shown}")
        if self._bar is not None:  # the terminal shows the bar; log.txt keeps the full line
            self._bar.set_postfix_str(f"loss {record['loss']:.4f} | {tokens_per_second:.0f} tok/s | {shown}")
            self._bar.update(1)
            self.print(line, console=False)
        else:
            self.print(line)

    def log_mixture(self, step: int, weights: dict[str, float], counts: dict[str, int],
                    rewards_raw: Optional[dict[str, float]] = None,
                    rewards: Optional[dict[str, float]] = None) -> None:
        """Append one mixture.jsonl record (at step 0 and after every mixing update).

        No wall times here (they live in train.jsonl), so an interrupted and resumed run's file equals an
        unbroken run's byte for byte.
        """
        if not self.enabled:
            return
        self._append(MIXTURE_LOG, {"step": step, "weights": weights, "rewards_raw": rewards_raw,
                                   "rewards": rewards, "counts": counts})
        for name, value in weights.items():
            self._tensorboard.add_scalar(f"mixture/weight/{name}", value, step)
        for name, value in (rewards or {}).items():
            self._tensorboard.add_scalar(f"mixture/reward/{name}", value, step)
        for name, value in (rewards_raw or {}).items():
            self._tensorboard.add_scalar(f"mixture/reward_raw/{name}", value, step)
        self._mixture_overview(step, weights)

    def _mixture_overview(self, step: int, weights: dict[str, float]) -> None:
        """TensorBoard charts that stay readable with many datasets: the weights' histogram, entropy (nats)
        and extremes, beside the per-dataset charts."""
        if len(weights) <= MAX_NAMED:
            return
        values = list(weights.values())
        self._tensorboard.add_histogram("mixture/weights", np.asarray(values), step)
        entropy = -sum(p * math.log(p) for p in values if p > 0)
        for key, value in (("entropy", entropy), ("max", max(values)), ("min", min(values))):
            self._tensorboard.add_scalar(f"mixture/overview/{key}", value, step)

    def start_weights(self) -> Optional[dict[str, float]]:
        """The weights at step 0 (mixture.jsonl's first record; also after a resume), None before it exists."""
        if self._start_weights is None and (self.run_dir / MIXTURE_LOG).is_file():
            with open(self.run_dir / MIXTURE_LOG) as handle:
                first = handle.readline()
            self._start_weights = json.loads(first)["weights"] if first.strip() else None
        return self._start_weights

    def log_validation(self, step: int, losses: dict[str, float],
                       examples: Optional[dict[str, list[float]]] = None) -> None:
        """Append one validation.jsonl record (and one validation_examples.jsonl record of each held-out
        example's NLL, when given) and print the held-out losses."""
        if not self.enabled:
            return
        mean = sum(losses.values()) / len(losses)
        self._append(VALIDATION_LOG, {"step": step, "loss": losses, "mean": mean})
        if examples is not None:
            self._append(VALIDATION_EXAMPLES_LOG, {"step": step, "nll": examples})
        for name, value in losses.items():
            self._tensorboard.add_scalar(f"validation/loss_{name}", value, step)
        self._tensorboard.add_scalar("validation/mean", mean, step)
        shown = " ".join(f"{name}={value:.4f}" for name, value in losses.items())
        self.print(f"step {step}: held-out loss mean {mean:.4f} | {shown}")

    def _append(self, name: str, record: dict[str, Any]) -> None:
        with open(self.run_dir / name, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
