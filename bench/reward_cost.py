"""What the MoS reward pass costs next to training, counted on the rows the project's own code builds.

    .venv/bin/python bench/reward_cost.py            # about a minute on 2 CPU cores; no model is run

Data: the Table-6-like synthetic lengths of bench/packing.py (the four training datasets, cycled with fresh
seeds to make N = 4, 16 or 64 datasets), seq_length 2048, global batch 64, micro_batch_size 4, one DP rank.
Training rows: `local_micro_batches` of uniform-mixture draws (MoS's start), padded (train.pack=false) and
packed (train.pack=true). Reward rows: `reward_micro_batches` of the reward examples `reward_example_ids`
draws at updates S, 2S, 3S (S = 100), one example per row at the run-wide width (`reward_width`, the former
layout) or packed (mixing.reward_pack=true), for the paper (L of every dataset) and with
mixing.reward_budget (K = budget / L datasets per update, the rotation of mos_nemo/mixing/budget.py).
CosSim (L = 64) runs no output layer; Diff (L = 16) does, and scores theta0's pool once (one-off).

FLOPs of a forward pass: 2 x (matmul parameters) x (tokens in the rows, pads included) + causal attention
2 x layers x hidden x l^2 per attended span l (the row's width when rows are padded; each example and the
padding tail when packed, as TE's THD / flash varlen kernels do). Training = 3 x forward, with the output
layer. Shapes: Llama-3-8B and Llama-3.2-1B (vocabulary 128,256). "% of training" = reward FLOPs per update /
FLOPs of S training steps; "pad/pack" = against padded / packed training. Counting, not timing: the last
line is the headline the issue asks for, against packed training (the smaller denominator).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from packing import TABLE_6, synthetic_dataset  # noqa: E402  bench/packing.py: the Table-6 length model

from mos_nemo.data import ReweightableBlend, local_micro_batches, reward_example_ids  # noqa: E402
from mos_nemo.data.reward_rows import reward_micro_batches  # noqa: E402
from mos_nemo.mixing.budget import RewardRotation, datasets_per_update, reference_pool_per_dataset  # noqa: E402
from mos_nemo.mixing.mixer import MixerInputs  # noqa: E402


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool  # tied input/output embeddings (counted once in params; the output matmul still runs)

    @property
    def layer_matmul_params(self) -> int:
        """q, k, v, o and the gated MLP's three matrices of one layer."""
        d, kv = self.hidden, self.kv_heads * (self.hidden // self.heads)
        return 2 * d * d + 2 * d * kv + 3 * d * self.ffn

    @property
    def params(self) -> int:
        """All parameters: layers (with their two norms), embeddings (x2 untied), final norm."""
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * (self.layer_matmul_params + 2 * self.hidden) + embeddings + self.hidden


SHAPES = {
    "llama3-8b": ModelShape(layers=32, hidden=4096, ffn=14336, heads=32, kv_heads=8, vocab=128256, tied=False),
    "llama3.2-1b": ModelShape(layers=16, hidden=2048, ffn=8192, heads=32, kv_heads=8, vocab=128256, tied=True),
}
REWARDS = {"cossim": 64, "diff": 16}  # the paper's L (the authors' 8 x 8 and 8 x 2)


def attended_spans(batch: dict) -> list[int]:
    """Lengths attention runs over: each row's width (one example per row, causal over the row), or each
    packed segment and each row's padding tail (varlen kernels)."""
    b, s = batch["segment_ids"].shape
    if "cu_seqlens" not in batch:
        return [s] * b
    return [int(n) for row in batch["segment_ids"] for n in torch.unique_consecutive(row, return_counts=True)[1]]


def forward_flops(batches: list[dict], shape: ModelShape, logits: bool) -> float:
    """FLOPs of one forward pass over ``batches`` (see the module docstring)."""
    tokens = sum(b["tokens"].numel() for b in batches)
    matmul = shape.layers * shape.layer_matmul_params + (shape.vocab * shape.hidden if logits else 0)
    attention = sum(2 * shape.layers * shape.hidden * span**2 for b in batches for span in attended_spans(b))
    return 2.0 * matmul * tokens + attention


def make_datasets(n: int, examples: int, seq_length: int) -> list:
    """N synthetic datasets: the four Table-6 rows cycled, copy c drawn with seed c."""
    datasets = []
    for k in range(n):
        dataset = synthetic_dataset(TABLE_6[k % 4], examples, seq_length, vocab_size=1000, seed=k // 4)
        dataset.name = f"{dataset.name}_{k // 4}"
        datasets.append(dataset)
    return datasets


def training_flops(datasets, shape, args) -> dict[str, float]:
    """Mean FLOPs of one training step (3 x forward), padded and packed, over ``args.draws`` draws."""
    blend = ReweightableBlend([len(d) for d in datasets], [d.name for d in datasets], args.global_batch,
                              mode="sample", seed=0)
    totals = {"padded": 0.0, "packed": 0.0}
    for _ in range(args.draws):
        draw = blend.draw()
        for layout in totals:
            rows = local_micro_batches(draw, datasets, args.micro_batch, 0, args.seq_length, pack=layout == "packed")
            totals[layout] += 3 * forward_flops(rows, shape, logits=True)
    return {layout: total / args.draws for layout, total in totals.items()}


def reward_rows(datasets, ids, width, args, pack: bool) -> list[dict]:
    examples = [[datasets[i][int(k)] for k in ids[i]] for i in range(len(datasets))]
    return reward_micro_batches(examples, width=width, micro_batch_size=args.micro_batch, pad_id=0, pack=pack)


def reward_width_of(datasets, seq_length: int) -> int:
    from mos_nemo.engine.training.reward_pass import reward_width

    return reward_width(datasets, seq_length)


def reward_flops(datasets, reward: str, budget: int | None, shape, args, pack: bool) -> float:
    """Mean FLOPs of one steady-state reward update, over ``args.updates`` updates or one whole rotation
    (every dataset scored once), whichever is longer; the rotation's first, full update is a one-off."""
    n, L = len(datasets), REWARDS[reward]
    rotation = RewardRotation(n, datasets_per_update(budget, L, n), seed=0)
    first = rotation.scored(1, torch.ones(n))  # the first update scores every dataset (counted in one_off_flops)
    rotation.complete(MixerInputs(step=0, nll=torch.zeros(n, L)), first)  # now the rotation has a table to carry
    width, total = reward_width_of(datasets, args.seq_length), 0.0
    updates = max(args.updates, rotation.cycle_updates(torch.ones(n)))
    for update in range(2, 2 + updates):
        scored = rotation.scored(update, torch.ones(n))
        ids = [reward_example_ids(len(d), L if scored[i] else 0, 0, update * args.update_every, i)
               for i, d in enumerate(datasets)]
        total += forward_flops(reward_rows(datasets, ids, width, args, pack), shape, logits=reward == "diff")
    return total / updates


def one_off_flops(datasets, reward: str, budget: int | None, shape, args) -> float:
    """Scored once per run (packed rows): Diff's theta0 pool; with a budget also the first (full) update."""
    n, L = len(datasets), REWARDS[reward]
    per_update = datasets_per_update(budget, L, n)
    width, total = reward_width_of(datasets, args.seq_length), 0.0
    if reward == "diff":
        size = reference_pool_per_dataset(args.reference_pool, L, n, per_update)
        ids = [reward_example_ids(len(d), min(size, len(d)), 0, -1, i) for i, d in enumerate(datasets)]
        total += forward_flops(reward_rows(datasets, ids, width, args, True), shape, logits=True)
    if per_update < n:
        ids = [reward_example_ids(len(d), L, 0, args.update_every, i) for i, d in enumerate(datasets)]
        total += forward_flops(reward_rows(datasets, ids, width, args, True), shape, logits=reward == "diff")
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", type=int, nargs="+", default=[4, 16, 64], help="values of N")
    parser.add_argument("--examples", type=int, default=1100, help="synthetic examples per dataset")
    parser.add_argument("--seq-length", type=int, default=2048)
    parser.add_argument("--global-batch", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--update-every", type=int, default=100, help="S")
    parser.add_argument("--budget", type=int, default=256, help="mixing.reward_budget (examples per update)")
    parser.add_argument("--reference-pool", type=int, default=1024, help="mixing.reference_pool")
    parser.add_argument("--draws", type=int, default=20, help="training draws averaged")
    parser.add_argument("--updates", type=int, default=3, help="reward updates averaged (at least one rotation)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"seq_length {args.seq_length}, global batch {args.global_batch}, S = {args.update_every}, "
          f"L = {REWARDS}, reward_budget {args.budget}, micro_batch_size {args.micro_batch}; FLOPs counted on the "
          "rows the code builds. % = reward FLOPs per update / FLOPs of S training steps (padded / packed training)")
    print(f"{'model':12s} {'reward':6s} {'N':>3s} {'setting':14s} {'examples':>8s} {'padded rows':>15s} "
          f"{'packed rows':>15s} {'one-off (train steps)':>22s}")
    headline = 0.0
    for n in args.datasets:
        datasets = make_datasets(n, args.examples, args.seq_length)
        for name, shape in SHAPES.items():
            train = training_flops(datasets, shape, args)
            window = {layout: args.update_every * flops for layout, flops in train.items()}
            for reward, L in REWARDS.items():
                for budget in (None, args.budget):
                    per_update = datasets_per_update(budget, L, n)
                    cells = []
                    for pack in (False, True):
                        flops = reward_flops(datasets, reward, budget, shape, args, pack)
                        cells.append(f"{100 * flops / window['padded']:6.2f}/{100 * flops / window['packed']:6.2f}%")
                        if pack and budget is not None and n == max(args.datasets):
                            headline = max(headline, flops / window["packed"])
                    one_off = one_off_flops(datasets, reward, budget, shape, args) / train["packed"]
                    setting = "paper" if budget is None else f"budget {budget}"
                    print(f"{name:12s} {reward:6s} {n:3d} {setting:14s} {per_update * L:8d} {cells[0]:>15s} "
                          f"{cells[1]:>15s} {one_off:22.1f}", flush=True)
    print(f"reward/training compute at N={max(args.datasets)} with reward_budget: {100 * headline:.2f}% "
          f"(budget {args.budget} examples, packed reward rows vs packed training, worst of CosSim/Diff and "
          f"both shapes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
