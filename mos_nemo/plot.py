"""Plot runs: sampling weights per dataset over steps (paper Figures 2-3) and the training loss, as one PNG.

    python -m mos_nemo.plot RUN_DIR [RUN_DIR ...] [-o OUT.png]

Reads ``mixture.jsonl`` and ``train.jsonl`` of each run; by default writes ``RUN_DIR/mixture.png`` of the first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mos_nemo.errors import MosValueError
from mos_nemo.logs import MIXTURE_LOG, TRAIN_LOG, read_jsonl
from mos_nemo.weights_view import MAX_NAMED, plot_weights_grouped, weights_table_many

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


def plot_runs(run_dirs: list[str | Path], out_path: str | Path) -> Path:
    """Write the two-panel figure (weights, loss) for ``run_dirs`` to ``out_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (weights_axis, loss_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = {}
    for run_index, run_dir in enumerate(Path(d) for d in run_dirs):
        style = LINE_STYLES[run_index % len(LINE_STYLES)]
        mixture = read_jsonl(run_dir / MIXTURE_LOG)
        if not mixture:
            raise MosValueError(f"{run_dir}: no {MIXTURE_LOG}; give run folders written by mos_nemo/train.py")
        steps = [r["step"] for r in mixture]
        if len(mixture[0]["weights"]) > MAX_NAMED:  # many datasets: top movers named, the rest as one band
            plot_weights_grouped(weights_axis, mixture, style, run_dir.name)
        for name in mixture[0]["weights"] if len(mixture[0]["weights"]) <= MAX_NAMED else ():
            line = weights_axis.plot(steps, [r["weights"][name] for r in mixture], style, marker="o", markersize=3,
                                     color=colours.get(name), label=f"{name} ({run_dir.name})")[0]
            colours.setdefault(name, line.get_color())
        train = read_jsonl(run_dir / TRAIN_LOG)
        losses = [r["loss"] for r in train]
        loss_axis.plot([r["step"] for r in train], _smoothed(losses, 5), style, label=run_dir.name)
    weights_axis.set(xlabel="step", ylabel="sampling probability", title="Dataset weights")
    loss_axis.set(xlabel="step", ylabel="loss (moving average of 5 steps)", title="Training loss")
    weights_axis.legend(fontsize=8)
    loss_axis.legend(fontsize=8)
    figure.tight_layout()
    out_path = Path(out_path)
    figure.savefig(out_path, dpi=120)
    plt.close(figure)
    return out_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run folders (with mixture.jsonl and train.jsonl)")
    parser.add_argument("-o", "--out", default=None, help="the PNG to write (default: FIRST_RUN/mixture.png)")
    args = parser.parse_args(argv)
    out = plot_runs(args.run_dirs, args.out or Path(args.run_dirs[0]) / "mixture.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
