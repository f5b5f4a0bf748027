"""Is the data path fast enough? Tokenisation examples/s and blend batches/s against training consumption.

Run: `.venv/bin/python bench/data.py` (under a minute on 2 CPU cores; no GPU needed, no network).

Reference consumption: a 1B model on one GPU trains about 20 micro batches/s at micro batch 4 with SFT-length
sequences (docs/engine.md: ~43k tokens/s on an H100 without Transformer Engine, ~512-token examples), i.e. about
80 examples/s. Baselines measured in the same run:
- tokenisation: the tokenizer's own batch encoding of the rendered conversations (no mask work), so the
  printed ratio is the cost of locating the response tokens;
- blend: a static precomputed index (what megatron's BlendedDataset does; it cannot be reweighted), so the
  ratio is the cost of drawing from live weights.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from mos_nemo.assets import smollm2_dir
from mos_nemo.data import DatasetConfig, ReweightableBlend, load_sft_datasets, local_micro_batches
from mos_nemo.data.formats import to_conversation
from mos_nemo.data.tokenize import ChatRenderer

TRAIN_MICRO_BATCHES_PER_S = 20.0
MICRO_BATCH = 4
WORDS = ("the model learns to solve equations with care while every dataset adds its own skill and style "
         "of answer to the mixture so that rewards change the weights during fine tuning").split()


def synthetic_conversations(count: int, seed: int) -> list[dict]:
    """Multi-turn OpenAI-messages records of roughly 150-500 tokens."""
    rng = random.Random(seed)

    def sentence(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."

    records = []
    for _ in range(count):
        messages = [{"role": "system", "content": sentence(8)}]
        for _ in range(rng.randint(1, 3)):
            messages += [{"role": "user", "content": sentence(rng.randint(10, 60))},
                         {"role": "assistant", "content": sentence(rng.randint(20, 120))}]
        records.append({"messages": messages})
    return records


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def bench_tokenisation(tokenizer, folder: Path, count: int) -> list:
    records = synthetic_conversations(count, seed=0)
    source = folder / "bench.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    renderer = ChatRenderer(tokenizer)
    texts = [renderer.render(to_conversation(r, "messages", "x"), add_generation_prompt=False) for r in records]
    _, baseline_s = timed(lambda: tokenizer(texts, add_special_tokens=False))
    configs = [DatasetConfig(name=f"d{i}", source=str(source)) for i in range(1)]
    datasets, ours_s = timed(lambda: load_sft_datasets(configs, tokenizer, 2048, folder / "cache"))
    _, cached_s = timed(lambda: load_sft_datasets(configs, tokenizer, 2048, folder / "cache"))
    ours = count / ours_s
    print(f"tokenisation (read, chat template, response mask, cache write): {ours:9.0f} examples/s "
          f"= {ours / (TRAIN_MICRO_BATCHES_PER_S * MICRO_BATCH):6.1f}x training consumption; "
          f"{count / baseline_s:9.0f} examples/s for plain batch encoding of the rendered text "
          f"(ours is {baseline_s / ours_s:.2f}x of that)")
    print(f"second run from the memory-mapped cache: {count / cached_s:9.0f} examples/s "
          f"({ours_s / cached_s:.0f}x faster than tokenising)")
    return datasets


def bench_blend(datasets, mode: str, steps: int, global_batch: int = 64) -> None:
    sizes = [len(datasets[0])] * 4
    names = ["math", "med", "general", "nlp"]
    blend = ReweightableBlend(sizes, names, global_batch, weights=[0.4, 0.3, 0.2, 0.1], mode=mode, seed=0)

    def draws():
        for step in range(steps):
            if step % 100 == 0:
                blend.set_weights(torch.rand(4, generator=torch.Generator().manual_seed(step)) + 0.05)
            blend.draw()

    _, draw_s = timed(draws)
    static_index = torch.randint(0, 4 * sizes[0], (steps, global_batch))  # [steps, B], built ahead of time

    def static_draws():
        for step in range(steps):
            _ = (static_index[step] // sizes[0], static_index[step] % sizes[0])

    _, static_s = timed(static_draws)
    four = [datasets[0]] * 4
    collate_steps = max(steps // 10, 10)

    def draws_and_batches():
        for _ in range(collate_steps):
            local_micro_batches(blend.draw(), four, MICRO_BATCH, pad_id=0, seq_length=2048)

    _, full_s = timed(draws_and_batches)
    micro_per_s = collate_steps * global_batch / MICRO_BATCH / full_s
    print(f"blend mode={mode:6s}: {steps / draw_s:9.0f} global batches/s drawn (B={global_batch}; static "
          f"precomputed index: {steps / static_s:9.0f}/s); draw + fetch + collate: {micro_per_s:8.0f} micro "
          f"batches/s = {micro_per_s / TRAIN_MICRO_BATCHES_PER_S:6.1f}x training consumption")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000, help="synthetic conversations to tokenise")
    parser.add_argument("--steps", type=int, default=2000, help="blend draws to time")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the data path runs beside training, on one host core
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir(with_weights=False))
    print(f"SmolLM2-135M-Instruct tokenizer; reference: {TRAIN_MICRO_BATCHES_PER_S:.0f} micro batches/s of "
          f"{MICRO_BATCH} examples (1B model, one GPU)")
    with tempfile.TemporaryDirectory() as folder:
        datasets = bench_tokenisation(tokenizer, Path(folder), args.examples)
        for mode in ("batch", "sample"):
            bench_blend(datasets, mode, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
