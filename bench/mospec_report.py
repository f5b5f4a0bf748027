"""The analysis of bench/mospec.py: MoSpec's target weight against its fixed point, and paired held-out losses.

Input: ``{strategy: [{"seed", "validation", "examples", "mixture", "train"}]}``, the runs' validation.jsonl,
validation_examples.jsonl, mixture.jsonl and train.jsonl records; ``uni`` is the baseline, ``mospec`` the treatment.

- **Predicted weight.** The update drives p towards p* = R / sum(R) (docs/algorithm.md), R the smoothed
  rewards it was given. MoSpec's Diff doubles the target's reward before smoothing, so
  p*_t = 2 R'_t / (sum_i R'_i + R'_t) in the undoubled rewards R'. Each mixture.jsonl record after an update
  holds those smoothed rewards and the weights the update produced: the target's weight is compared with
  the p* of the same record (where the update was heading), and with p*'s value over the run.
- **Target loss, paired.** Runs with the same seed share the held-out set (``validation.seed``) and the blend's
  random numbers, so the difference d[s, i] = NLL_mospec - NLL_uni of held-out example i at seed s is paired
  twice. Its mean is the effect; its standard error counts both sources of noise, the seeds (training's
  randomness) and the examples (which target examples happen to be held out):
  SE^2 = var_s(mean_i d[s, i]) / S + var_i(mean_s d[s, i]) / K, conservative (the residual is counted twice).
  The 95% interval uses Student's t with Welch-Satterthwaite's degrees of freedom for that sum (between
  S - 1 and S + K - 2: few seeds weigh in as far as their term dominates).
- **Every other dataset**, relative to its own start: (final - start) / start per run, so a dataset that is
  memorised (its loss falls 80%) does not dominate a plain mean; mospec's minus uni's, paired by seed.
"""

from __future__ import annotations

import statistics
from pathlib import Path


def predicted_weight(rewards: dict[str, float], target: str) -> float:
    """p*_target = R_target / sum(R) for the smoothed rewards the update used (the target's already doubled)."""
    return rewards[target] / sum(rewards.values())


def satterthwaite(var_seed: float, seeds: int, var_example: float, examples: int) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of two variance terms estimated from S and K values."""
    return (var_seed + var_example) ** 2 / (var_seed ** 2 / (seeds - 1) + var_example ** 2 / (examples - 1))


def paired_difference(treated: list[list[float]], baseline: list[list[float]]) -> dict:
    """Mean of d[s][i] = treated[s][i] - baseline[s][i], with the two-source standard error and a 95% interval.

    ``treated`` and ``baseline`` are [S seeds][K examples] NLLs of the same examples.
    """
    from scipy import stats

    d = [[t - b for t, b in zip(ts, bs)] for ts, bs in zip(treated, baseline)]
    seeds, examples = len(d), len(d[0])
    per_seed = [statistics.fmean(row) for row in d]
    per_example = [statistics.fmean(column) for column in zip(*d)]
    var_seed = statistics.variance(per_seed) / seeds if seeds > 1 else float("nan")
    var_example = statistics.variance(per_example) / examples if examples > 1 else float("nan")
    se = (var_seed + var_example) ** 0.5
    dof = satterthwaite(var_seed, seeds, var_example, examples)
    t = float(stats.t.ppf(0.975, dof))
    mean = statistics.fmean(per_seed)
    return {"mean": mean, "se": se, "se_seeds": var_seed ** 0.5, "se_examples": var_example ** 0.5,
            "ci95": [mean - t * se, mean + t * se], "t_quantile": t, "dof": dof, "per_seed": per_seed,
            "seeds": seeds, "examples": examples}


def _by_seed(runs: list[dict]) -> list[dict]:
    return sorted(runs, key=lambda r: r["seed"])


def _weights(run: dict, target: str) -> dict:
    updates = [r for r in run["mixture"] if r.get("rewards")]
    return {"steps": [r["step"] for r in updates], "weight": [r["weights"][target] for r in updates],
            "predicted": [predicted_weight(r["rewards"], target) for r in updates]}


def analyse(runs: dict[str, list[dict]], target: str) -> dict:
    """Everything the table and the PNG show (plain JSON)."""
    uni, mospec = _by_seed(runs["uni"]), _by_seed(runs["mospec"])
    if [r["seed"] for r in uni] != [r["seed"] for r in mospec]:
        raise ValueError(f"seeds differ: uni {[r['seed'] for r in uni]}, mospec {[r['seed'] for r in mospec]}")
    datasets = list(uni[0]["validation"][0]["loss"])
    trajectories = [_weights(r, target) for r in mospec]
    target_final = {label: [r["validation"][-1]["loss"][target] for r in seed_runs]
                    for label, seed_runs in (("uni", uni), ("mospec", mospec))}
    relative = {}
    for name in datasets:
        change = {label: [r["validation"][-1]["loss"][name] / r["validation"][0]["loss"][name] - 1
                          for r in seed_runs] for label, seed_runs in (("uni", uni), ("mospec", mospec))}
        paired = [m - u for m, u in zip(change["mospec"], change["uni"])]
        relative[name] = {"uni": statistics.fmean(change["uni"]), "mospec": statistics.fmean(change["mospec"]),
                          "difference": statistics.fmean(paired),
                          "sd": statistics.stdev(paired) if len(paired) > 1 else None, "per_seed": paired}
    return {
        "target": target, "seeds": [r["seed"] for r in uni], "datasets": datasets,
        "start_target_loss": uni[0]["validation"][0]["loss"][target],
        "final_target_loss": {label: statistics.fmean(v) for label, v in target_final.items()},
        "weights": trajectories,
        "final_weight": statistics.fmean(t["weight"][-1] for t in trajectories),
        "final_predicted": statistics.fmean(t["predicted"][-1] for t in trajectories),
        "mean_weight_over_run": statistics.fmean(_mean_weight(r, target) for r in mospec),
        # from train.jsonl (one dataset per step): a static blend logs no mixture record after step 0
        "target_batches": {label: statistics.fmean(sum(t["dataset"] == target for t in r["train"]) for r in seed_runs)
                           for label, seed_runs in (("uni", uni), ("mospec", mospec))},
        "target_loss": paired_difference([r["examples"][-1]["nll"][target] for r in mospec],
                                         [r["examples"][-1]["nll"][target] for r in uni]),
        "relative_change": relative,
    }


def _mean_weight(run: dict, target: str) -> float:
    """The target's weight averaged over the run's steps (each update's weights hold until the next)."""
    records = run["mixture"]
    last = run["validation"][-1]["step"]
    total = 0.0
    for record, following in zip(records, records[1:] + [{"step": last}]):
        total += record["weights"][target] * (following["step"] - record["step"])
    return total / last


def format_table(report: dict) -> str:
    target, loss = report["target"], report["target_loss"]
    lines = [
        f"MoSpec + Diff, target {target}, against uni, paired by seed ({report['seeds']}) and held-out example "
        f"({loss['examples']} of {target})",
        f"target weight: final {report['final_weight']:.3f}, predicted p* at the last update "
        f"{report['final_predicted']:.3f} (mean over seeds); over the run {report['mean_weight_over_run']:.3f} "
        f"(uni 0.25 for N = {len(report['datasets'])}); {target} batches drawn: mospec "
        f"{report['target_batches']['mospec']:.1f}, uni {report['target_batches']['uni']:.1f}",
        f"{target} held-out loss: start {report['start_target_loss']:.4f}, final uni "
        f"{report['final_target_loss']['uni']:.4f}, mospec {report['final_target_loss']['mospec']:.4f}",
        f"{target} held-out loss, mospec - uni: {loss['mean']:+.4f}, SE {loss['se']:.4f} (seeds {loss['se_seeds']:.4f}, "
        f"examples {loss['se_examples']:.4f}), 95% interval [{loss['ci95'][0]:+.4f}, {loss['ci95'][1]:+.4f}] "
        f"(t {loss['t_quantile']:.2f}, {loss['dof']:.1f} dof); per seed " + ", ".join(f"{v:+.4f}" for v in loss["per_seed"]),
        f"smallest effect this design detects with 80% power ((t + 0.84) SE): "
        f"{(loss['t_quantile'] + 0.84) * loss['se']:.4f}",
        "held-out loss relative to its start, (final - start) / start, mean over seeds:",
        f"{'dataset':<12}{'uni':>9}{'mospec':>9}{'mospec-uni':>12}  per seed",
    ]
    for name, row in report["relative_change"].items():
        mark = "  (target)" if name == target else ""
        lines.append(f"{name:<12}{row['uni']:>+9.3f}{row['mospec']:>+9.3f}{row['difference']:>+12.3f}  "
                     + ", ".join(f"{v:+.3f}" for v in row["per_seed"]) + mark)
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for seed, trajectory in zip(report["seeds"], report["weights"]):
        line, = left.plot(trajectory["steps"], trajectory["weight"], marker="o", label=f"weight, seed {seed}")
        left.plot(trajectory["steps"], trajectory["predicted"], linestyle="--", color=line.get_color(),
                  label=f"p* = R / sum(R), seed {seed}")
    left.axhline(1 / len(report["datasets"]), color="grey", linewidth=0.8, label="uni")
    left.set(xlabel="step", ylabel=f"weight of {report['target']}", title="MoSpec target weight vs fixed point")
    left.legend(fontsize=7)
    names = report["datasets"]
    for offset, label in ((-0.2, "uni"), (0.2, "mospec")):
        right.bar([k + offset for k in range(len(names))], [report["relative_change"][n][label] for n in names],
                  width=0.4, label=label)
    right.set_xticks(range(len(names)), names)
    right.set(ylabel="(final - start) / start", title="held-out loss relative to its start")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
