"""Plot runs: sampling weights per dataset over steps (paper Figures 2-3), the training loss and, when a run
has ``validation.jsonl``, the held-out loss (the convergence curve, paper Figure 3), as one PNG.

    python -m mos_nemo.plot RUN_DIR [RUN_DIR ...] [-o OUT.png]

Reads ``mixture.jsonl``, ``train.jsonl`` and ``validation.jsonl`` of each run; by default writes
``RUN_DIR/mixture.png`` of the first. Weights are drawn as steps held until the next update and up to the
last trained step, so a static blend (one record, at step 0) is a flat line. With more than 8 datasets the
5 whose weight moved most are drawn by name and the others as one grey band (their min to max) with their
mean dashed; the held-out panel then names the same 5.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mos_nemo.errors import MosError, MosValueError
from mos_nemo.logs import MIXTURE_LOG, TRAIN_LOG, VALIDATION_LOG, read_jsonl
from mos_nemo.weights_view import MAX_NAMED, top_movers, weights_table_many

LINE_STYLES = ("-", "--", ":", "-.")


def weights_table(run_dir: str | Path) -> str:
    """The weights per dataset after every mixing update, as a fixed-width text table."""
    records = read_jsonl(Path(run_dir) / MIXTURE_LOG)
    if not records:
        raise MosValueError(f"{run_dir}: no {MIXTURE_LOG} records; is it a run folder?")
    names = list(records[0]["weights"])
    if len(names) > MAX_NAMED:  # one row per dataset, top movers first
        return weights_table_many(records)
    width = max(9, *(len(n) + 2 for n in names))
    lines = ["step".rjust(6) + "".join(n.rjust(width) for n in names) + "   batches drawn"]
    for record in records:
        weights = "".join(f"{record['weights'][n]:.4f}".rjust(width) for n in names)  # MoS drifts by ~1e-3 per update
        counts = " ".join(str(record["counts"].get(n, 0)) for n in names)
        lines.append(f"{record['step']:>6}{weights}   {counts}")
    return "\n".join(lines)


def _smoothed(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for index, value in enumerate(values):
        total += value - (values[index - window] if index >= window else 0.0)
        out.append(total / min(index + 1, window))
    return out


def weight_steps(mixture: list[dict], last_step: int) -> list[int]:
    """The x values of a weight trajectory: each record's step, and the last trained step to end on."""
    steps = [r["step"] for r in mixture]
    return steps + [last_step] if last_step > steps[-1] else steps


def _held(values: list[float], steps: list[int]) -> list[float]:
    """``values`` (one per mixture record) extended with the last one up to the last trained step."""
    return values + values[-1:] * (len(steps) - len(values))


def _draw_others(axis, mixture: list[dict], steps: list[int], others: list[str], run_name: str) -> None:
    """The datasets not named, as one grey band (min to max over them) with their mean as a dashed line."""
    rows = [[r["weights"][name] for name in others] for r in mixture]
    low, high = _held([min(row) for row in rows], steps), _held([max(row) for row in rows], steps)
    axis.fill_between(steps, low, high, step="post", color="grey", alpha=0.25,
                      label=f"{len(others)} others: min-max ({run_name})")
    axis.plot(steps, _held([sum(row) / len(row) for row in rows], steps), "--", drawstyle="steps-post",
              color="grey", label=f"{len(others)} others: mean ({run_name})")


def draw_runs(run_dirs: list[str | Path]):
    """The figure: weights, training loss and (when any run has it) held-out loss, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [Path(d) for d in run_dirs]
    validated = any(read_jsonl(run / VALIDATION_LOG) for run in runs)
    figure, axes = plt.subplots(1, 3 if validated else 2, figsize=(18 if validated else 12, 4.5))
    weights_axis, loss_axis = axes[0], axes[1]
    colours = {}
    for run_index, run_dir in enumerate(runs):
        style = LINE_STYLES[run_index % len(LINE_STYLES)]
        mixture = read_jsonl(run_dir / MIXTURE_LOG)
        if not mixture:
            raise MosValueError(f"{run_dir}: no {MIXTURE_LOG}; give run folders written by mos_nemo/train.py")
        train = read_jsonl(run_dir / TRAIN_LOG)
        steps = weight_steps(mixture, train[-1]["step"] if train else 0)
        names = list(mixture[0]["weights"])
        named = names if len(names) <= MAX_NAMED else top_movers(mixture[-1]["weights"], mixture[0]["weights"])
        for name in named:
            values = _held([r["weights"][name] for r in mixture], steps)
            line = weights_axis.plot(steps, values, style, drawstyle="steps-post", color=colours.get(name),
                                     label=f"{name} ({run_dir.name})")[0]
            colours.setdefault(name, line.get_color())
            weights_axis.plot([r["step"] for r in mixture], values[:len(mixture)], "o", markersize=3,
                              color=colours[name])  # the updates themselves
        if len(named) < len(names):
            _draw_others(weights_axis, mixture, steps, [n for n in names if n not in named], run_dir.name)
        losses = [r["loss"] for r in train]
        loss_axis.plot([r["step"] for r in train], _smoothed(losses, 5), style, label=run_dir.name)
        if validated:
            validation = read_jsonl(run_dir / VALIDATION_LOG)
            held_steps = [r["step"] for r in validation]
            axes[2].plot(held_steps, [r["mean"] for r in validation], style, marker="o", markersize=3,
                         color="black", label=f"mean ({run_dir.name})")
            for name in (n for n in (validation[0]["loss"] if validation else {}) if n in named):
                axes[2].plot(held_steps, [r["loss"][name] for r in validation], style, linewidth=0.8,
                             color=colours.get(name), label=f"{name} ({run_dir.name})")
    weights_axis.set(xlabel="step", ylabel="sampling probability", title="Dataset weights")
    loss_axis.set(xlabel="step", ylabel="loss (moving average of 5 steps)", title="Training loss")
    for axis in axes:
        axis.legend(fontsize=8)
    if validated:
        axes[2].set(xlabel="step", ylabel="held-out loss (mean response-token NLL)", title="Held-out loss")
    figure.tight_layout()
    return figure


def plot_runs(run_dirs: list[str | Path], out_path: str | Path) -> Path:
    """Write ``draw_runs``'s figure for ``run_dirs`` to ``out_path``."""
    import matplotlib.pyplot as plt

    figure = draw_runs(run_dirs)
    out_path = Path(out_path)
    figure.savefig(out_path, dpi=120)
    plt.close(figure)
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run folders (with mixture.jsonl and train.jsonl)")
    parser.add_argument("-o", "--out", default=None, help="the PNG to write (default: FIRST_RUN/mixture.png)")
    args = parser.parse_args(argv)
    try:
        out = plot_runs(args.run_dirs, args.out or Path(args.run_dirs[0]) / "mixture.png")
    except MosError as error:
        print(f"python -m mos_nemo.plot: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
