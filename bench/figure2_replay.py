"""Figure 2 without feedback noise: log real rewards with the mixture held, then replay them offline.

In a MoS run the rewards and the mixture feed each other: the weights decide which data the model sees, and
the data decides the next rewards. To see what the scorer alone does with real rewards, this script

1. ``--log``: trains SmolLM2-135M-Instruct on the four demo datasets twice (CosSim, then Diff), one process,
   with a scorer learning rate of 1e-12, so the weights stay uniform (every run draws uni's batches) while a
   reward is computed and logged (``mixture.jsonl``, ``rewards_raw``) at every step;
2. (default) replays each logged reward sequence through the default scorer (``logits``, the authors' update:
   lr 1e-4, 200 Adam steps, EMA beta 0.9 started at 1, uniform prior), in seconds, and draws the sampling
   probabilities against the update, as the paper's Figure 2 does. Beside each trajectory it prints the
   fixed point p* = R / sum(R) of the mean smoothed reward (docs/algorithm.md, "Where the update goes").

The logged rewards are kept in ``bench/results/figure2_rewards.json``, so the figure is regenerated without
training:

    .venv/bin/python bench/figure2_replay.py --log      # ~30 min on 2 cores: train and log, then replay
    .venv/bin/python bench/figure2_replay.py            # seconds: replay the kept rewards, write the PNG

The paper's Figure 2 (Llama-3-8B, its four datasets) and Appendix A report an ordering: Diff up-samples the
dataset that is hard to learn (Mathematics: low perplexity, large change) and down-samples the one learned
fastest (NLP); CosSim keeps most datasets near uniform. The demo data are other datasets, so only the
mechanism can be compared, not the names.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REWARDS_FILE = ROOT / "bench" / "results" / "figure2_rewards.json"
PNG_FILE = ROOT / "bench" / "results" / "figure2_replay.png"
REWARDS = ("cossim", "diff")
STEPS = 60
# One process, bf16, the convergence study's batch and lengths; a reward at every step (S = 1), L = 8.
LOG_OVERRIDES = [
    "model.dtype=bf16", "train.global_batch_size=4", "train.micro_batch_size=4", "train.seq_length=192",
    "optim.lr=5e-5", "optim.warmup_fraction=0.1", f"train.max_steps={STEPS}", "mixing.strategy=mos",
    "mixing.tau=inf", "mixing.update_every=1", "mixing.reward_batch=8", "mixing.reference_pool=32",
    "mixing.scorer_lr=1e-12",  # the weights stay uniform: no feedback from the rewards to the data
    "checkpoint.every=10", "checkpoint.keep=1", "checkpoint.save_final=false", "checkpoint.resume=auto",
]


def log_rewards(out: Path, seed: int) -> dict:
    """Train one run per reward (resumable: a rerun continues from its checkpoint) and collect the rewards."""
    from mos_nemo.assets import smollm2_dir
    from mos_nemo.demo_data import prepare_demo_datasets
    from mos_nemo.logs import read_jsonl

    smollm2_dir(with_weights=True)
    prepare_demo_datasets()
    logged = {"steps": STEPS, "seed": seed, "overrides": LOG_OVERRIDES, "runs": {}}
    for reward in REWARDS:
        run_dir = out / reward
        command = [sys.executable, str(ROOT / "mos_nemo" / "train.py"), "--config-name", "smollm2_demo",
                   f"run.dir={run_dir}", f"run.seed={seed}", f"mixing.reward={reward}", *LOG_OVERRIDES]
        print(f"figure2: {reward}: {' '.join(command)}", flush=True)
        if subprocess.call(command, cwd=ROOT) != 0:
            sys.exit(f"figure2: the {reward} run failed; see {run_dir / 'log.txt'}; rerun to resume it")
        records = [r for r in read_jsonl(run_dir / "mixture.jsonl") if r.get("rewards_raw")]
        logged["runs"][reward] = {"steps": [r["step"] for r in records],
                                  "rewards_raw": [r["rewards_raw"] for r in records],
                                  "weights_last": records[-1]["weights"]}
    REWARDS_FILE.parent.mkdir(parents=True, exist_ok=True)
    REWARDS_FILE.write_text(json.dumps(logged, indent=1))
    return logged


def replay(rewards_raw: list[dict[str, float]], **scorer_options) -> tuple[list[str], list[list[float]]]:
    """Feed a logged sequence of raw rewards to a fresh default MoS controller (uniform prior).

    Returns the dataset names and p after each update ([updates + 1][N], the uniform start first).
    """
    import torch

    from mos_nemo.mixing import MixtureOfSkills

    names = list(rewards_raw[0])
    mos = MixtureOfSkills([1.0] * len(names), names=names, **scorer_options)
    trajectory = [mos.probabilities.tolist()]
    for raw in rewards_raw:
        trajectory.append(mos.update(torch.tensor([raw[name] for name in names], dtype=torch.float64)).tolist())
    return names, trajectory


def fixed_point(rewards_raw: list[dict[str, float]]) -> dict[str, float]:
    """p* = R / sum(R) of the mean raw reward: where constant rewards of that size would drive p."""
    names = list(rewards_raw[0])
    mean = {name: sum(r[name] for r in rewards_raw) / len(rewards_raw) for name in names}
    total = sum(mean.values())
    return {name: value / total for name, value in mean.items()}


def plot(logged: dict, path: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = []
    figure, axes = plt.subplots(1, len(logged["runs"]), figsize=(6 * len(logged["runs"]), 4.2), squeeze=False)
    for axis, (reward, run) in zip(axes[0], logged["runs"].items()):
        names, trajectory = replay(run["rewards_raw"])
        star = fixed_point(run["rewards_raw"])
        for k, name in enumerate(names):
            line, = axis.plot(range(len(trajectory)), [p[k] for p in trajectory], label=name)
            axis.axhline(star[name], color=line.get_color(), linestyle=":", linewidth=0.8)
        axis.set(xlabel="update", ylabel="sampling probability", ylim=(0, None),
                 title=f"MoS + {reward} + EMA, replayed (dotted: R/sum(R))")
        axis.legend(fontsize=8)
        ranked = sorted(names, key=lambda n: trajectory[-1][names.index(n)], reverse=True)
        lines.append(f"{reward}: {len(trajectory) - 1} updates; p after the last, highest first: "
                     + ", ".join(f"{n} {trajectory[-1][names.index(n)]:.4f} (p* {star[n]:.4f})" for n in ranked))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", action="store_true", help="train and log the rewards first (~30 min)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "figure2", help="run folders for --log")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rewards", type=Path, default=REWARDS_FILE, help="logged rewards to replay")
    parser.add_argument("--png", type=Path, default=PNG_FILE)
    args = parser.parse_args()
    if args.log:
        logged = log_rewards(args.out, args.seed)
    elif args.rewards.is_file():
        logged = json.loads(args.rewards.read_text())
    else:
        sys.exit(f"figure2: {args.rewards} does not exist; run with --log first to train and log the rewards")
    for line in plot(logged, args.png):
        print(line)
    print(f"figure2: wrote {args.png}")


if __name__ == "__main__":
    main()
