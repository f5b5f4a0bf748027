"""Our training step (megatron-core GPTModel + megatron optimizer) against HF transformers + SDPA + torch
AdamW, same shape, batch, dtype and random tokens, each engine in its own process. Printed per engine:
tokens/s, MFU and peak memory; the ratio ours / HF in tokens/s is the LAST line.

    .venv/bin/python bench/engine.py                    # CPU: a tiny Llama shape, fp32, a few minutes
    .venv/bin/python bench/engine.py --preset h100      # GPU: Llama-3.2-1B shape, seq 2048, micro batch 4, bf16

MFU = model FLOPs per second / peak: 6 x (matmul parameters) per token plus causal attention
(6 x layers x seq x hidden per token, half of the full square). Peak on GPU: 989 TFLOP/s (H100 dense bf16);
on CPU: the fp32 matmul throughput measured in the same run (so CPU MFU is relative to this machine).
Peak memory: max allocated (GPU) or the process's max resident set size (CPU). On a shared machine the
engines run alternately ``--repeats`` times (HF, ours, HF, ours, ...) and each engine's best run counts,
so a burst of load from other users does not land on one engine only.
Goal on an H100 without TE (issue "GPU path"): ours >= 1.05x HF tokens/s.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {
    "cpu": dict(shape=dict(num_hidden_layers=4, hidden_size=256, intermediate_size=1024, num_attention_heads=8,
                           num_key_value_heads=4, vocab_size=8192, max_position_embeddings=1024),
                seq=256, micro_batch=4, dtype="fp32", warmup=2, steps=8, peak_tflops=None),
    "h100": dict(shape=dict(num_hidden_layers=16, hidden_size=2048, intermediate_size=8192, num_attention_heads=32,
                            num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192),
                 seq=2048, micro_batch=4, dtype="bf16", warmup=3, steps=20, peak_tflops=989.0),
}


def _flops_per_token(shape: dict, seq: int) -> float:
    h, f = shape["hidden_size"], shape["intermediate_size"]
    layers, vocab = shape["num_hidden_layers"], shape["vocab_size"]
    kv = h // shape["num_attention_heads"] * shape["num_key_value_heads"]
    matmul_params = layers * (h * h * 2 + 2 * h * kv + 3 * h * f) + h * vocab  # q, o, k, v, MLP; lm head
    return 6.0 * matmul_params + 6.0 * layers * seq * h


def _tokens(preset: dict, step: int):
    import torch

    generator = torch.Generator().manual_seed(step)
    return torch.randint(3, preset["shape"]["vocab_size"], (preset["micro_batch"], preset["seq"]), generator=generator)


def _peak_gib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _timed(preset: dict, step_fn, device) -> dict:
    import torch

    for step in range(preset["warmup"]):
        step_fn(step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for step in range(preset["warmup"], preset["warmup"] + preset["steps"]):
        loss = step_fn(step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = preset["steps"] * preset["micro_batch"] * preset["seq"]
    return dict(tokens_per_s=tokens / seconds, peak_gib=_peak_gib(device), last_loss=float(loss))


def run_hf(preset: dict) -> dict:
    import torch
    import transformers

    from mos_nemo.engine.hf.tiny import tiny_hf_config

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if preset["dtype"] == "bf16" else torch.float32
    torch.manual_seed(0)
    config = tiny_hf_config("llama", tie_word_embeddings=False, **preset["shape"])
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=dtype).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.type == "cuda")

    def step(i):
        tokens = _tokens(preset, i).to(device)
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return _timed(preset, step, device)


def run_ours(preset: dict) -> dict:
    import torch

    from mos_nemo.config import OptimConfig
    from mos_nemo.engine.hf.tiny import tiny_hf_config
    from mos_nemo.engine.model.gpt import build_model
    from mos_nemo.engine.parallel import initialize_parallel
    from mos_nemo.engine.training.optim import build_optimizer
    from mos_nemo.engine.training.step import train_step, wrap_for_training

    parallel = initialize_parallel(tp=1, pp=1, seed=0)
    bf16 = preset["dtype"] == "bf16"
    config = tiny_hf_config("llama", tie_word_embeddings=False, **preset["shape"])
    model = wrap_for_training(build_model(config, params_dtype=torch.bfloat16 if bf16 else torch.float32), False)
    optimizer = build_optimizer(model, OptimConfig(lr=1e-5), use_distributed_optimizer=False, bf16=bf16)
    b, s = preset["micro_batch"], preset["seq"]

    def step(i):
        tokens = _tokens(preset, i).to(parallel.device)
        positions = torch.arange(s, device=parallel.device).expand(b, s)
        batch = {"tokens": tokens, "labels": tokens, "position_ids": positions,
                 "loss_mask": torch.ones(b, s, device=parallel.device),
                 "segment_ids": torch.ones(b, s, dtype=torch.long, device=parallel.device),
                 "dataset_ids": torch.zeros(b, s, dtype=torch.long, device=parallel.device)}
        return train_step(model, optimizer, [batch], parallel, num_datasets=1).loss  # includes its one host sync

    return _timed(preset, step, parallel.device)


def cpu_peak_tflops() -> float:
    """fp32 matmul throughput of this machine (TFLOP/s), the CPU preset's MFU denominator."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    started, repeats = time.perf_counter(), 20
    for _ in range(repeats):
        a @ b
    return 2 * 1024**3 * repeats / (time.perf_counter() - started) / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per engine; the best counts")
    parser.add_argument("--engine", choices=("ours", "hf"), default=None, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    if args.engine is not None:
        print(json.dumps((run_ours if args.engine == "ours" else run_hf)(preset)))
        return
    runs = {"hf": [], "ours": []}
    for _ in range(args.repeats):
        for engine in ("hf", "ours"):  # one process each: peak memory and the CPU shims stay apart
            done = subprocess.run([sys.executable, __file__, "--preset", args.preset, "--engine", engine], cwd=ROOT,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{engine} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
            runs[engine].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"run {len(runs[engine])} {engine}: {runs[engine][-1]['tokens_per_s']:.1f} tokens/s", flush=True)
    results = {engine: max(rs, key=lambda r: r["tokens_per_s"]) for engine, rs in runs.items()}
    peak = preset["peak_tflops"] or cpu_peak_tflops()
    flops = _flops_per_token(preset["shape"], preset["seq"])
    print(f"preset {args.preset}: {preset['shape']}, seq {preset['seq']}, micro batch {preset['micro_batch']}, "
          f"{preset['dtype']}, {preset['steps']} timed steps after {preset['warmup']} warm-up; peak {peak:.3f} TFLOP/s")
    for engine, label in (("hf", "HF transformers + SDPA"), ("ours", "megatron-core (ours)")):
        r = results[engine]
        print(f"{label:24s} tokens/s {r['tokens_per_s']:10.1f}  MFU {r['tokens_per_s'] * flops / 1e12 / peak:6.1%}  "
              f"peak memory {r['peak_gib']:.2f} GiB  last loss {r['last_loss']:.3f}")
    ratio = results["ours"]["tokens_per_s"] / results["hf"]["tokens_per_s"]
    print(f"ratio ours/HF tokens/s {ratio:.3f}")


if __name__ == "__main__":
    main()
