"""The analysis of bench/convergence.py: held-out curves -> steps to a target loss, speed-up, table, PNG.

Input: ``{strategy: [{"seed", "validation": validation.jsonl records, "mixture": mixture.jsonl records}]}``.

- The mean held-out loss of a run at a step is the plain mean over datasets (validation.jsonl ``mean``).
- The target is the best heuristic's final mean held-out loss, averaged over seeds (paper Figure 3 asks how
  many steps MoS needs to reach what the best heuristic reaches at the end).
- Steps to reach a loss: the first step where the curve is at or below it, linearly interpolated between
  the evaluation points before and after; None if the curve never gets there.
- Speed-up per seed: the heuristic's steps to its own final loss (the last step, unless it got there
  earlier) over the MoS run's steps to that same loss, pairing runs with the same seed (same held-out set).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Optional

HEURISTICS = ("prop", "temp", "uni")
MOS_VARIANTS = ("mos_cossim_ema", "mos_diff_ema")
OTHER_MIXERS = ("odm", "doremi")  # learned online too; in the table and the PNG, not in the MoS speed-up
LEARNED = MOS_VARIANTS + OTHER_MIXERS
STRATEGY_ORDER = HEURISTICS + LEARNED


def steps_to_reach(steps: list[int], losses: list[float], target: float) -> Optional[float]:
    """The first (interpolated) step at which ``losses`` reaches ``target``; None if it never does."""
    for index, (step, loss) in enumerate(zip(steps, losses)):
        if loss <= target:
            if index == 0:
                return float(step)
            before_step, before_loss = steps[index - 1], losses[index - 1]
            return before_step + (before_loss - target) / (before_loss - loss) * (step - before_step)
    return None


def _curve(run: dict) -> tuple[list[int], list[float]]:
    return [r["step"] for r in run["validation"]], [r["mean"] for r in run["validation"]]


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values), "values": values}


def analyse(runs: dict[str, list[dict]], steps: int) -> dict:
    """Everything the table and the PNG show (plain JSON)."""
    report: dict = {"steps": steps, "strategies": {}}
    for name in [s for s in STRATEGY_ORDER if s in runs]:
        seed_runs = sorted(runs[name], key=lambda r: r["seed"])
        finals = [r["validation"][-1] for r in seed_runs]
        datasets = list(finals[0]["loss"])
        report["strategies"][name] = {
            "seeds": [r["seed"] for r in seed_runs],
            "final_mean": _spread([f["mean"] for f in finals]),
            "final_per_dataset": {d: statistics.fmean(f["loss"][d] for f in finals) for d in datasets},
            "start_mean": statistics.fmean(r["validation"][0]["mean"] for r in seed_runs),
            "curve_steps": _curve(seed_runs[0])[0],
            "curve_mean": [statistics.fmean(values) for values in zip(*(_curve(r)[1] for r in seed_runs))],
            "final_weights": {d: statistics.fmean(r["mixture"][-1]["weights"][d] for r in seed_runs)
                              for d in datasets},
        }
    present = report["strategies"]
    heuristics = [s for s in HEURISTICS if s in present]
    variants = [s for s in MOS_VARIANTS if s in present]
    if not heuristics:
        return report
    best_heuristic = min(heuristics, key=lambda s: present[s]["final_mean"]["mean"])
    target = present[best_heuristic]["final_mean"]["mean"]
    report.update(best_heuristic=best_heuristic, target=target)
    for name, entry in present.items():
        entry["steps_to_target"] = steps_to_reach(entry["curve_steps"], entry["curve_mean"], target)
    if not variants:
        return report
    best_mos = min(variants, key=lambda s: present[s]["final_mean"]["mean"])
    report["best_mos"] = best_mos
    by_seed = {r["seed"]: r for r in runs[best_heuristic]}
    speedups, differences = [], []
    for mos_run in sorted(runs[best_mos], key=lambda r: r["seed"]):
        heuristic_run = by_seed.get(mos_run["seed"])
        if heuristic_run is None:
            continue
        h_steps, h_losses = _curve(heuristic_run)
        m_steps, m_losses = _curve(mos_run)
        own_final = h_losses[-1]
        heuristic_steps = steps_to_reach(h_steps, h_losses, own_final)
        mos_steps = steps_to_reach(m_steps, m_losses, own_final)
        # Not reached within the run: the speed-up is below 1; report it as the bound steps / last step.
        speedups.append(heuristic_steps / mos_steps if mos_steps else None)
        differences.append(m_losses[-1] - own_final)
    reached = [s for s in speedups if s is not None]
    report["speedup_per_seed"] = speedups
    report["speedup"] = _spread(reached) if reached else None
    report["final_difference"] = _spread(differences) if differences else None  # MoS - heuristic, paired
    return report


def format_table(report: dict) -> str:
    present = report["strategies"]
    datasets = list(next(iter(present.values()))["final_per_dataset"])
    head = f"{'strategy':<16}{'start':>8}{'final mean (sd)':>18}" + "".join(f"{d:>11}" for d in datasets)
    lines = ["held-out loss (plain mean over datasets; per dataset: mean over seeds)",
             head + f"{'steps to target':>17}"]
    for name, entry in present.items():
        final = entry["final_mean"]
        sd = f"({final['sd']:.4f})" if final["sd"] is not None else "(n/a)"
        reached = entry.get("steps_to_target")
        lines.append(f"{name:<16}{entry['start_mean']:>8.4f}{final['mean']:>10.4f} {sd:>7}"
                     + "".join(f"{entry['final_per_dataset'][d]:>11.4f}" for d in datasets)
                     + f"{'not reached' if reached is None else f'{reached:.1f}':>17}")
    if "best_heuristic" in report:
        lines.append(f"target = final mean held-out loss of the best heuristic ({report['best_heuristic']}): "
                     f"{report['target']:.4f} (after {report['steps']} steps)")
    if "best_mos" in report:
        best, heuristic = report["best_mos"], report["best_heuristic"]
        per_seed = ", ".join("not reached" if s is None else f"{s:.2f}" for s in report["speedup_per_seed"])
        speed = report["speedup"]
        shown = "not reached in any seed" if speed is None else (
            f"{speed['mean']:.2f}x (per seed: {per_seed}; min {speed['min']:.2f}, max {speed['max']:.2f})")
        lines.append(f"final weights of {best}: "
                     + " ".join(f"{d}={p:.3f}" for d, p in present[best]["final_weights"].items()))
        difference = report["final_difference"]
        sd = f", sd {difference['sd']:.4f}" if difference["sd"] is not None else ""
        lines.append(f"final mean held-out loss, {best} - {heuristic}, paired by seed: "
                     f"{difference['mean']:+.4f}{sd} (per seed: "
                     + ", ".join(f"{v:+.4f}" for v in difference["values"]) + ")")
        lines.append(f"speed-up of {best} over {heuristic} (steps to reach the heuristic's final loss): {shown}")
    return "\n".join(lines)


def plot(runs: dict[str, list[dict]], report: dict, path: Path) -> None:
    """Left: mean held-out loss against steps (seed mean, band = min-max over seeds). Right: the MoS
    variants' (and ODM's, DoReMi's) weights per dataset against steps (seed mean), as the paper's Figures 2 and 3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [s for s in LEARNED if s in runs]
    figure, axes = plt.subplots(1, 1 + len(variants), figsize=(5.5 * (1 + len(variants)), 4.2), squeeze=False)
    left = axes[0][0]
    for name, entry in report["strategies"].items():
        curves = [[r["mean"] for r in run["validation"]] for run in runs[name]]
        style = "-" if name in LEARNED else "--"
        left.plot(entry["curve_steps"], entry["curve_mean"], style, marker="o", markersize=3, label=name)
        left.fill_between(entry["curve_steps"], [min(v) for v in zip(*curves)], [max(v) for v in zip(*curves)],
                          alpha=0.15)
    if "target" in report:
        left.axhline(report["target"], color="grey", linewidth=0.8, linestyle=":", label="target")
    left.set(xlabel="step", ylabel="mean held-out loss", title="held-out loss (mean over datasets)")
    left.legend(fontsize=8)
    for axis, name in zip(axes[0][1:], variants):
        records = [run["mixture"] for run in runs[name]]
        steps = [r["step"] for r in records[0]]
        for dataset in records[0][0]["weights"]:
            mean = [sum(run[k]["weights"][dataset] for run in records) / len(records) for k in range(len(steps))]
            axis.plot(steps, mean, marker="o", markersize=3, label=dataset)
        axis.set(xlabel="step", ylabel="sampling probability", title=f"{name}: weights (mean over seeds)")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
