"""Our training step (megatron-core GPTModel + megatron optimizer) against HF transformers + SDPA + torch AdamW,
with the same weights, batches, labels and optimizer settings, steps interleaved in one process.

    .venv/bin/python bench/engine.py                    # CPU: a tiny Llama shape, fp32, a few minutes
    .venv/bin/python bench/engine.py --preset h100      # GPU: Llama-3.2-1B shape, seq 2048, micro batch 4, bf16
    .venv/bin/python bench/engine.py --spec local       # our layer spec: auto (TE if it imports) | te | local

Fairness: one random HF model is saved once and loaded by both sides; both train on next-token labels (HF
shifts inside its loss, ours gets ``labels[:, i] = tokens[:, i + 1]`` with the last position masked); AdamW
with the same lr, betas, eps, weight decay 0 and clipping at 1. Step 0's loss and gradient norm must agree
(the run stops otherwise). Steps alternate HF, ours, ours, HF, ... so load from other users lands on both;
per-step wall and CPU time (this process, all threads) over ``--steps`` (>= 16) timed steps after warm-up,
printed as median [min, max]. Peak memory: each engine alone in a child process, a few steps (max allocated
on GPU, max resident set size on CPU).

Precision settings, one comparison each:
- ``fp32`` (CPU preset): fp32 everywhere;
- ``fp32-master`` (GPU): both keep fp32 master weights and AdamW state; ours bf16 parameters + megatron's fp32
  main params, HF fp32 parameters under bf16 autocast (what HF's Trainer does with bf16=True);
- ``pure-bf16`` (GPU): HF with bf16 parameters and bf16 AdamW state (no master copy: less memory, rounding in
  the update) against ours as above, which always keeps fp32 master weights.
The last line is the tokens/s ratio ours / HF of the last setting (medians of wall time per step).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {
    "cpu": dict(shape=dict(num_hidden_layers=4, hidden_size=256, intermediate_size=1024, num_attention_heads=8,
                           num_key_value_heads=4, vocab_size=8192, max_position_embeddings=1024),
                seq=256, micro_batch=4, warmup=2, steps=16, settings=("fp32",), tolerance=1e-4),
    "h100": dict(shape=dict(num_hidden_layers=16, hidden_size=2048, intermediate_size=8192, num_attention_heads=32,
                            num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192),
                 seq=2048, micro_batch=4, warmup=3, steps=20, settings=("fp32-master", "pure-bf16"), tolerance=3e-2),
}
LR, MEMORY_STEPS = 1e-5, 3


def make_batch(preset: dict, step: int, device) -> dict:
    """Random tokens [b, s] keyed on the step, with next-token labels for our model (HF shifts itself)."""
    b, s = preset["micro_batch"], preset["seq"]
    generator = torch.Generator().manual_seed(step)
    tokens = torch.randint(3, preset["shape"]["vocab_size"], (b, s), generator=generator)
    labels = torch.cat([tokens[:, 1:], torch.zeros(b, 1, dtype=tokens.dtype)], dim=1)  # last position masked
    loss_mask = torch.ones(b, s)
    loss_mask[:, -1] = 0
    batch = {"tokens": tokens, "labels": labels, "loss_mask": loss_mask,
             "position_ids": torch.arange(s).expand(b, s), "segment_ids": torch.ones(b, s, dtype=torch.long),
             "dataset_ids": torch.zeros(b, s, dtype=torch.long)}
    return {key: value.to(device) for key, value in batch.items()}


def save_shared_weights(preset: dict, folder: Path):
    """One random HF Llama of the preset's shape, saved in fp32 for both engines; returns its config."""
    from mos_nemo.engine.hf.tiny import tiny_hf_config, tiny_hf_model

    config = tiny_hf_config("llama", tie_word_embeddings=False, **preset["shape"])
    tiny_hf_model(config, seed=0).save_pretrained(folder, safe_serialization=True)
    return config


def hf_engine(folder: Path, setting: str, device):
    """HF transformers + SDPA + torch AdamW; ``step(batch) -> (loss, grad norm before clipping)``."""
    import transformers

    dtype = torch.bfloat16 if setting == "pure-bf16" else torch.float32
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa", dtype=dtype)
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    autocast = setting == "fp32-master"

    def step(batch: dict) -> tuple[float, float]:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=batch["tokens"], labels=batch["tokens"]).loss  # shifted inside
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), float(grad_norm)

    return step


def our_engine(folder: Path, setting: str, use_te: bool, parallel):
    """megatron-core GPTModel (layer spec per ``use_te``) + megatron's AdamW, one micro batch per step."""
    from mos_nemo.config import OptimConfig
    from mos_nemo.engine.hf.weights import load_hf_weights
    from mos_nemo.engine.model.gpt import build_model, load_hf_config
    from mos_nemo.engine.training.optim import build_optimizer
    from mos_nemo.engine.training.step import train_step, wrap_for_training

    bf16 = setting != "fp32"
    config = load_hf_config(folder)
    gpt = build_model(config, params_dtype=torch.bfloat16 if bf16 else torch.float32, use_te=use_te)
    with torch.no_grad():
        load_hf_weights(gpt, folder, config)
    model = wrap_for_training(gpt, False)
    optim = OptimConfig(lr=LR, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_eps=1e-8, clip_grad=1.0)
    optimizer = build_optimizer(model, optim, use_distributed_optimizer=False, bf16=bf16)

    def step(batch: dict) -> tuple[float, float]:
        result = train_step(model, optimizer, [batch], parallel, num_datasets=1)
        return result.loss, result.grad_norm

    return step


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(step, batch, device) -> tuple[float, float, tuple]:
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    out = step(batch)
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def compare(preset: dict, setting: str, use_te: bool, folder: Path, parallel) -> dict:
    """Step 0 equality, then interleaved timed steps; per engine the per-step wall and CPU seconds."""
    engines = {"hf": hf_engine(folder, setting, parallel.device), "ours": our_engine(folder, setting, use_te, parallel)}
    first = {name: engine(make_batch(preset, 0, parallel.device)) for name, engine in engines.items()}
    (hf_loss, hf_norm), (our_loss, our_norm) = first["hf"], first["ours"]
    tolerance = preset["tolerance"]
    if abs(our_loss - hf_loss) > tolerance * abs(hf_loss) or abs(our_norm - hf_norm) > 10 * tolerance * hf_norm:
        raise SystemExit(f"{setting}: step 0 differs: loss ours {our_loss} HF {hf_loss}, grad norm ours {our_norm} "
                         f"HF {hf_norm}: not the same computation, so the timing would compare nothing")
    times = {name: {"wall": [], "cpu": [], "loss": []} for name in engines}
    for i in range(1, preset["warmup"] + preset["steps"]):
        order = ("hf", "ours") if i % 2 else ("ours", "hf")  # neither always runs first
        batch = make_batch(preset, i, parallel.device)
        for name in order:
            wall, cpu, (loss, _) = _timed(engines[name], batch, parallel.device)
            if i >= preset["warmup"]:
                times[name]["wall"].append(wall)
                times[name]["cpu"].append(cpu)
                times[name]["loss"].append(loss)
    return {"step0": first, **times}


def peak_memory(preset: dict, setting: str, engine: str, use_te: bool, folder: Path, parallel) -> float:
    """GiB: max allocated (GPU) or this process's max resident set (CPU) over a few steps of one engine."""
    step = (hf_engine(folder, setting, parallel.device) if engine == "hf"
            else our_engine(folder, setting, use_te, parallel))
    for i in range(MEMORY_STEPS):
        step(make_batch(preset, i, parallel.device))
    if parallel.device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.4f} [{min(values):.4f}, {max(values):.4f}]"


def _child(args, *extra) -> dict:
    command = [sys.executable, __file__, "--preset", args.preset, "--spec", args.spec, "--folder", str(args.folder),
               *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(extra)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(args, preset: dict) -> None:
    tokens = preset["micro_batch"] * preset["seq"]
    print(f"preset {args.preset}: {preset['shape']}, seq {preset['seq']}, micro batch {preset['micro_batch']}; "
          f"{preset['steps']} interleaved timed steps after {preset['warmup']} warm-up; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    ratio = None
    for setting in preset["settings"]:
        result = _child(args, "--compare", setting)
        print(f"[{setting}] our layer spec: {result['spec']}; step 0 loss ours {result['step0']['ours'][0]:.6f} "
              f"HF {result['step0']['hf'][0]:.6f}, grad norm ours {result['step0']['ours'][1]:.6f} "
              f"HF {result['step0']['hf'][1]:.6f}")
        for engine, label in (("hf", "HF transformers + SDPA"), ("ours", "megatron-core (ours)")):
            r = result[engine]
            memory = _child(args, "--memory", setting, "--engine", engine)["peak_gib"]
            print(f"  {label:24s} wall s/step {_spread(r['wall'])}  CPU s/step {_spread(r['cpu'])}  "
                  f"tokens/s {tokens / statistics.median(r['wall']):9.1f}  peak memory {memory:.2f} GiB  "
                  f"last loss {r['loss'][-1]:.4f}")
        ratio = statistics.median(result["hf"]["wall"]) / statistics.median(result["ours"]["wall"])
        cpu_ratio = statistics.median(result["hf"]["cpu"]) / statistics.median(result["ours"]["cpu"])
        print(f"  [{setting}] ratio ours/HF tokens/s {ratio:.3f} (wall), {cpu_ratio:.3f} (CPU time)", flush=True)
    print(f"ratio ours/HF tokens/s {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--spec", choices=("auto", "te", "local"), default="auto",
                        help="our layer spec: auto = Transformer Engine's when it imports, else the local one")
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)  # the shared weights
    parser.add_argument("--compare", default=None, help=argparse.SUPPRESS)  # child: one setting's comparison
    parser.add_argument("--memory", default=None, help=argparse.SUPPRESS)  # child: one engine's peak memory
    parser.add_argument("--engine", choices=("ours", "hf"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    if args.compare is None and args.memory is None:
        with tempfile.TemporaryDirectory() as folder:
            args.folder = Path(folder)
            save_shared_weights(preset, args.folder)
            report(args, preset)
        return
    from mos_nemo.engine.model.layer_spec import transformer_engine_available
    from mos_nemo.engine.parallel import initialize_parallel

    use_te = transformer_engine_available() if args.spec == "auto" else args.spec == "te"
    parallel = initialize_parallel(tp=1, pp=1, seed=0)
    if args.compare is not None:
        result = compare(preset, args.compare, use_te, args.folder, parallel)
        print(json.dumps({**result, "spec": "te" if use_te else "local"}))
    else:
        print(json.dumps({"peak_gib": peak_memory(preset, args.memory, args.engine, use_te, args.folder, parallel)}))


if __name__ == "__main__":
    main()
