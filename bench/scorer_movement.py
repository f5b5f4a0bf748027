"""How far one MoS update moves p, `mlp` scorer against `logits` (the authors' parameterisation), same rewards.

Why: with Adam every parameter moves about lr per step whatever its gradient's size, so a 2-layer MLP
(N*h + h + h*N + N parameters, each nudging the N logits) moves log p much further per step than N free
logits do. `mixing.scorer=mlp` needs its own learning rate for an update to move p as far as `logits` does.

For every case (number of datasets N, prior tau, reward kind, seed) both scorers start from the same prior
and receive the same reward sequence (K updates of 200 Adam steps). Movement = mean over the K updates of
max_i |log p_after(i) - log p_before(i)|. Printed per mlp learning rate: the median and range over cases of
movement(mlp) / movement(logits at 1e-4). The mlp default (mos_nemo.mixing.DEFAULT_LR) is the rate whose
median ratio is closest to 1 (docs/algorithm.md records the figures).

    .venv/bin/python bench/scorer_movement.py              # minutes on a 2-core CPU
    .venv/bin/python bench/scorer_movement.py --updates 10 --seeds 1 --lrs 4e-6 5e-6
"""

from __future__ import annotations

import argparse
import statistics

import torch

from mos_nemo.mixing import DEFAULT_LR, MixtureOfSkills

SIZES = {2: [30_000, 10_000], 4: [26_200, 5_200, 9_300, 62_600], 8: [26_200, 5_200, 9_300, 62_600] * 2}
REWARDS = {"diff": (0.5, 1.2), "cossim": (0.8, 1.0)}  # the ranges each reward takes in practice


def movement(mos: MixtureOfSkills, rewards: list[torch.Tensor]) -> float:
    steps = []
    for reward in rewards:
        before = mos.probabilities.log()
        after = mos.update(reward).log()
        steps.append(float((after - before).abs().max()))
    return statistics.fmean(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=5, help="K: updates per case")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-6, 4e-6, 5e-6, 6e-6, 1e-4])
    args = parser.parse_args()

    ratios: dict[float, list[float]] = {lr: [] for lr in args.lrs}
    for n, sizes in SIZES.items():
        for tau in (float("inf"), 10.0):
            for kind, (low, high) in REWARDS.items():
                for seed in range(args.seeds):
                    generator = torch.Generator().manual_seed(seed)
                    rewards = [low + (high - low) * torch.rand(n, generator=generator) for _ in range(args.updates)]
                    base = movement(MixtureOfSkills(sizes, prior_tau=tau, seed=seed, scorer="logits"), rewards)
                    for lr in args.lrs:
                        mlp = MixtureOfSkills(sizes, prior_tau=tau, seed=seed, scorer="mlp", lr=lr)
                        ratios[lr].append(movement(mlp, rewards) / base)
    cases = len(next(iter(ratios.values())))
    print(f"movement(mlp) / movement(logits, lr {DEFAULT_LR['logits']}), {cases} cases, {args.updates} updates each")
    print(f"{'mlp lr':>10} {'median':>8} {'min':>8} {'max':>8}")
    for lr, values in ratios.items():
        print(f"{lr:>10.1e} {statistics.median(values):>8.2f} {min(values):>8.2f} {max(values):>8.2f}")
    best = min(ratios, key=lambda lr: abs(statistics.median(ratios[lr]) - 1.0))
    print(f"closest to 1: lr {best:.1e}; current mlp default {DEFAULT_LR['mlp']:.1e}")


if __name__ == "__main__":
    main()
