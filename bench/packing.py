"""Packing: share of non-pad tokens with and without `train.pack`, and useful tokens/s of real training steps.

    .venv/bin/python bench/packing.py                 # both parts, about 3 minutes on 2 CPU cores
    .venv/bin/python bench/packing.py --skip-timing   # the share table only (seconds)

Lengths are synthetic, drawn from the paper's Table 6 (average instruction / response length in words per
turn, average turns, examples per dataset for the four training datasets): each message is lognormal
(sigma 0.8) around the table's mean, times 1.3 tokens per word, plus 5 template tokens per message and
20 per conversation (system prompt); turns are 1 + Poisson(turns - 1); examples are truncated at
seq_length as the loader does. The datasets are mixed in proportion to their sizes (the paper's PROP,
tau = 1) through the real blend, collation and packing code (mos_nemo.data). Share = non-pad tokens /
all tokens of the [b, s] batches the model runs. Columns:
- padded: one example per row, padded to the micro batch's longest (a multiple of 8): train.pack=false;
- per micro batch: rows packed within each micro batch of micro_batch_size examples, what train.pack did
  before it packed the whole global batch (`collate_sft(pack=True)` on each micro batch);
- packed: train.pack=true (the whole global batch, first-fit decreasing, rows shared out over the DP
  ranks, micro_batch_size rows per micro batch; a rank left without a row runs one empty row).
Timing: the tiny Llama shape of bench/engine.py (4 layers, hidden 256, fp32), megatron-core train steps on
CPU over the same draws, padded and packed alternating step by step (two models with the same initial
weights; their first-step losses must agree); useful tokens/s counts non-pad tokens only.
Goal (issue 15): >= 90% non-pad tokens packed. The last line is the packed share.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from mos_nemo.data import ReweightableBlend, collate_sft, local_micro_batches
from mos_nemo.data.dataset import DatasetStats, TokenizedDataset

TOKENS_PER_WORD = 1.3
MESSAGE_TOKENS, CONVERSATION_TOKENS, SIGMA = 5, 20, 0.8


@dataclass(frozen=True)
class Table6Row:
    name: str
    examples: int  # #exam.
    instruction_words: float  # Inst.L, words per turn
    response_words: float  # Resp.L, words per turn
    turns: float


TABLE_6 = (Table6Row("mathematics", 26_200, 47.6, 84.0, 1.0), Table6Row("medicine", 5_200, 36.5, 147.4, 1.0),
           Table6Row("general", 9_300, 54.3, 202.4, 3.6), Table6Row("nlp", 62_600, 127.9, 9.7, 1.0))


def _message_tokens(rng: np.random.Generator, mean_words: float, count: int) -> np.ndarray:
    """[count] lognormal token counts whose mean is mean_words x TOKENS_PER_WORD (+ the template's tokens)."""
    mean = mean_words * TOKENS_PER_WORD
    mu = math.log(mean) - SIGMA**2 / 2  # lognormal mean = exp(mu + sigma^2 / 2)
    return np.maximum(1, np.rint(rng.lognormal(mu, SIGMA, count))).astype(np.int64) + MESSAGE_TOKENS


def synthetic_dataset(row: Table6Row, count: int, seq_length: int, vocab_size: int, seed: int) -> TokenizedDataset:
    """`count` examples of random token ids with Table-6-like lengths; loss mask on the response tokens."""
    rng = np.random.default_rng([seed, TABLE_6.index(row)])
    turns = 1 + rng.poisson(row.turns - 1, count)
    examples = []
    for n in turns.tolist():
        parts = [np.zeros(CONVERSATION_TOKENS, dtype=bool)]  # system prompt and template: no loss
        for prompt, response in zip(_message_tokens(rng, row.instruction_words, n),
                                    _message_tokens(rng, row.response_words, n)):
            parts += [np.zeros(prompt, dtype=bool), np.ones(response, dtype=bool)]
        mask = np.concatenate(parts)[:seq_length]  # the loader truncates at seq_length
        ids = rng.integers(3, vocab_size, len(mask))
        examples.append((ids, mask))
    return TokenizedDataset.from_examples(row.name, examples, DatasetStats(row.name, "synthetic", False))


def table6_datasets(count: int, seq_length: int, vocab_size: int = 8192, seed: int = 0) -> list[TokenizedDataset]:
    return [synthetic_dataset(row, count, seq_length, vocab_size, seed) for row in TABLE_6]


def blend(datasets: list[TokenizedDataset], global_batch: int, mode: str, dp_rank: int = 0, dp_size: int = 1,
          seed: int = 0) -> ReweightableBlend:
    """The paper's PROP mixture (weights = Table 6 dataset sizes, tau = 1)."""
    return ReweightableBlend([len(d) for d in datasets], [d.name for d in datasets], global_batch,
                             weights=[row.examples for row in TABLE_6], mode=mode, seed=seed, dp_rank=dp_rank,
                             dp_size=dp_size)


def _share(batches: list[dict]) -> tuple[int, int]:
    """(non-pad tokens, all tokens) of collated batches."""
    return (sum(int((b["segment_ids"] != 0).sum()) for b in batches),
            sum(b["segment_ids"].numel() for b in batches))


def measure_shares(datasets, mode: str, dp_size: int, global_batch: int, micro_batch: int, seq_length: int,
                   steps: int) -> dict:
    """Non-pad token shares over `steps` draws and all DP ranks, for padded / per-micro-batch / packed."""
    totals = {key: [0, 0] for key in ("padded", "per_micro_batch", "packed")}
    drawn = 0
    for rank in range(dp_size):
        source = blend(datasets, global_batch, mode, rank, dp_size)
        for _ in range(steps):
            draw = source.draw()
            padded = local_micro_batches(draw, datasets, micro_batch, 0, seq_length)
            packed = local_micro_batches(draw, datasets, micro_batch, 0, seq_length, pack=True)
            d, e = draw.local()
            examples = [datasets[i][j] for i, j in zip(d.tolist(), e.tolist())]
            drawn += sum(len(x["input_ids"]) for x in examples)
            per_micro = [collate_sft(examples[k:k + micro_batch], 0, seq_length=seq_length, pack=True)
                         for k in range(0, len(examples), micro_batch)]
            for key, batches in (("padded", padded), ("per_micro_batch", per_micro), ("packed", packed)):
                real, total = _share(batches)
                totals[key][0] += real
                totals[key][1] += total
    result = {key: real / total for key, (real, total) in totals.items()}
    result["tokens_drawn"], result["non_pad_tokens"] = drawn, totals["packed"][0]
    return result


def share_table(args) -> float:
    datasets = table6_datasets(args.examples, args.seq_length)
    means = ", ".join(f"{d.name} {float(np.mean(d.lengths)):.0f}" for d in datasets)
    print(f"synthetic Table 6 lengths (lognormal sigma {SIGMA}, {TOKENS_PER_WORD} tokens/word, seq_length "
          f"{args.seq_length}): mean tokens per example {means}; PROP weights = dataset sizes")
    print(f"{'mode':6s} {'dp':>3s} {'rank batch':>10s} {'padded':>8s} {'per micro batch':>16s} {'packed':>8s}"
          f"   (micro_batch_size {args.micro_batch}, global batch {args.global_batch}, {args.steps} steps)")
    headline = None
    for mode in ("batch", "sample"):
        for dp in args.dp:
            r = measure_shares(datasets, mode, dp, args.global_batch, args.micro_batch, args.seq_length, args.steps)
            print(f"{mode:6s} {dp:3d} {args.global_batch // dp:10d} {r['padded']:8.1%} {r['per_micro_batch']:16.1%} "
                  f"{r['packed']:8.1%}")
            if dp == args.dp[0] and mode == "batch":
                headline = r["packed"]
    return headline


def _train_models(shape: dict, seq_length: int):
    """Two megatron-core models (padded, packed) with the same initial weights, and their optimizers."""
    from mos_nemo.config import OptimConfig
    from mos_nemo.engine.hf.tiny import tiny_hf_config
    from mos_nemo.engine.model.gpt import build_model
    from mos_nemo.engine.parallel import initialize_parallel
    from mos_nemo.engine.training.optim import build_optimizer
    from mos_nemo.engine.training.step import wrap_for_training

    parallel = initialize_parallel(tp=1, pp=1, seed=0)
    config = tiny_hf_config("llama", tie_word_embeddings=False, max_position_embeddings=seq_length, **shape)
    models = [build_model(config, params_dtype=torch.float32) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    wrapped = [wrap_for_training(model, False) for model in models]
    return parallel, [(w, build_optimizer(w, OptimConfig(lr=1e-5), use_distributed_optimizer=False, bf16=False))
                      for w in wrapped]


def timing(args) -> None:
    from mos_nemo.engine.training.step import train_step

    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "0"}.items():
        os.environ.setdefault(key, value)
    shape = dict(num_hidden_layers=4, hidden_size=256, intermediate_size=1024, num_attention_heads=8,
                 num_key_value_heads=4, vocab_size=8192)
    seq, batch, micro = args.timing_seq_length, args.timing_global_batch, args.micro_batch
    datasets = table6_datasets(args.examples, seq, shape["vocab_size"])
    source = blend(datasets, batch, "sample")
    parallel, engines = _train_models(shape, seq)
    seconds, useful, rows, first = [0.0, 0.0], [0, 0], [0, 0], [None, None]
    for step in range(args.timing_steps + 1):  # step 0 is warm-up
        draw = source.draw()
        for k, pack in enumerate((False, True)):
            micro_batches = local_micro_batches(draw, datasets, micro, 0, seq, pack=pack)
            started = time.perf_counter()
            result = train_step(*engines[k], micro_batches, parallel, num_datasets=len(datasets))
            if step == 0:
                first[k] = result.loss
                continue
            seconds[k] += time.perf_counter() - started
            useful[k] += result.tokens
            rows[k] += sum(b["tokens"].numel() for b in micro_batches)
    print(f"timing: tiny Llama {shape}, fp32, seq_length {seq}, global batch {batch} (mode sample), "
          f"micro_batch_size {micro}, {args.timing_steps} steps after 1 warm-up, padded and packed alternating")
    print(f"first-step loss padded {first[0]:.6f} packed {first[1]:.6f} (|diff| {abs(first[0] - first[1]):.1e})")
    for k, label in enumerate(("padded", "packed")):
        print(f"{label:7s}: {useful[k] / seconds[k]:9.1f} useful (non-pad) tokens/s, {seconds[k]:6.1f} s, "
              f"non-pad share {useful[k] / rows[k]:.1%}")
    print(f"ratio packed/padded useful tokens/s {(useful[1] / seconds[1]) / (useful[0] / seconds[0]):.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000, help="synthetic examples per dataset")
    parser.add_argument("--seq-length", type=int, default=2048, help="train.seq_length of the share table")
    parser.add_argument("--global-batch", type=int, default=64, help="the paper's batch size")
    parser.add_argument("--micro-batch", type=int, default=4, help="train.micro_batch_size")
    parser.add_argument("--dp", type=int, nargs="+", default=[1, 8], help="data-parallel sizes of the table")
    parser.add_argument("--steps", type=int, default=50, help="draws per data-parallel rank in the table")
    parser.add_argument("--skip-timing", action="store_true", help="the share table only")
    parser.add_argument("--timing-seq-length", type=int, default=1024)
    parser.add_argument("--timing-global-batch", type=int, default=16)
    parser.add_argument("--timing-steps", type=int, default=4)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if not args.skip_timing:
        timing(args)
    headline = share_table(args)
    print(f"packed share of non-pad tokens: {headline:.1%} (mode batch, dp {args.dp[0]}, global batch "
          f"{args.global_batch}, seq_length {args.seq_length}; goal >= 90%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
