"""What MoS costs: wall and CPU time (and peak memory) of `mixing.strategy=mos` against a static blend, one bench run.

All runs use the same model, steps and data; only the mixing differs: a static blend, MoS with the paper's
reward pass (L examples of each of the N datasets every S steps) and MoS with `mixing.reward_budget`
(K = budget / L datasets per update in rotation). The data are N = 16 JSONL files written for the run with
realistic lengths: the Table-6 length model of bench/packing.py (four dataset shapes cycled; lognormal
messages, multi-turn chats), read as one dataset per file (`per_file: true`); training packs rows
(`train.pack=true`), as the reward pass does. Printed per run: training-loop seconds (sum of train.jsonl
`seconds`, which with MoS include every reward pass), of which reward passes (`mixing_seconds`), the median
step without an update (with its inter-quartile range), CPU seconds of the run's processes (user + system,
all ranks), peak memory; then MoS / static ratios. Noise: one run each; on a shared CPU the medians are the
figures to trust, the totals move with the load.

    .venv/bin/python bench/overhead.py                   # CPU: tiny_cpu shape, N = 16, 2 processes (~10 min)
    .venv/bin/python bench/overhead.py --preset h100     # GPU: Llama-3.2-1B shape, Llama-3 vocabulary 128,256
    .venv/bin/python bench/overhead.py --steps 40 -- mixing.reward=diff    # extra overrides after --

Preset h100 (one GPU; not run on the development machine, which has none): the Llama-3.2-1B shape of
docs/engine.md (16 layers, hidden 2048, GQA 32/8, FFN 8192) with the Llama-3 vocabulary (128,256: the
output layer is the part of the forward pass a small vocabulary would hide), bf16, seq 2048, micro batch 4,
global batch 64, S = 100, CosSim L = 64, budget 256, 300 steps (three updates). Token ids come from the
SmolLM2 tokenizer, which is smaller than the vocabulary: cost depends on shapes, not on which ids appear.
bench/reward_cost.py counts what these settings should give for this shape: 3.8% of packed training at
N = 16 without a budget, 1.0% with budget 256 (1.0% at N = 4).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from packing import MESSAGE_TOKENS, TABLE_6, TOKENS_PER_WORD, _message_tokens  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the of and to in is that for it as with was on be by this are from at an have not or which one all "
         "their there were been has more when will would about some time them into only other new these two may "
         "first then any like now such make over our even most after also made many well way down should").split()
PRESETS = {
    # The tiny_cpu model (2 layers, hidden 64, SmolLM2 vocabulary 49,152), DP = 2 over gloo.
    "cpu": dict(nproc=2, steps=30, update_every=10, reward_batch=8, budget=32, datasets=16, examples=200, overrides=[
        "train.seq_length=1024", "model.config.max_position_embeddings=1024", "train.micro_batch_size=2",
        "train.global_batch_size=8"]),
    "h100": dict(nproc=1, steps=300, update_every=100, reward_batch=64, budget=256, datasets=16, examples=2000,
                 overrides=[
        "model.config={family:llama,num_hidden_layers:16,hidden_size:2048,intermediate_size:8192,"
        "num_attention_heads:32,num_key_value_heads:8,vocab_size:128256,max_position_embeddings:2048}",
        "model.dtype=bf16", "train.seq_length=2048", "train.micro_batch_size=4", "train.global_batch_size=64",
        "optim.lr=1e-5"]),
}


def write_realistic_datasets(folder: Path, count: int, examples: int, seed: int = 0) -> None:
    """``count`` files of ``examples`` chats in `messages` format, lengths from the Table-6 model."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        row = TABLE_6[k % len(TABLE_6)]
        rng = np.random.default_rng([seed, k])
        with open(folder / f"{row.name}_{k // len(TABLE_6)}.jsonl", "w") as handle:
            for turns in (1 + rng.poisson(row.turns - 1, examples)).tolist():
                messages = []
                for prompt, response in zip(_message_tokens(rng, row.instruction_words, turns),
                                            _message_tokens(rng, row.response_words, turns)):
                    for role, tokens in (("user", prompt), ("assistant", response)):
                        words = max(1, round((int(tokens) - MESSAGE_TOKENS) / TOKENS_PER_WORD))
                        messages.append({"role": role, "content": " ".join(rng.choice(WORDS, words))})
                handle.write(json.dumps({"messages": messages}) + "\n")  # the chat template adds the rest


def run(label: str, run_dir: Path, data: Path, preset: dict, steps: int, mixing: list[str], extra: list[str]) -> dict:
    launcher = [sys.executable]
    if preset["nproc"] > 1:
        launcher = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node",
                    str(preset["nproc"])]
    command = [*launcher, "mos_nemo/train.py", "--config-name", "tiny_cpu", f"run.dir={run_dir}",
               f"train.max_steps={steps}", "train.pack=true", "checkpoint.every=0", "checkpoint.save_final=false",
               f"datasets=[{{source: '{data}', per_file: true, format: messages}}]", "mixing.tau=inf",
               f"mixing.update_every={preset['update_every']}", f"mixing.reward_batch={preset['reward_batch']}",
               *mixing, *preset["overrides"], *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{label} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    steps_log = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    updating = {r["step"] for r in steps_log if r.get("mixing_seconds", 0.0) > 0}  # updates (and step 1's setup)
    plain = sorted(r["seconds"] for r in steps_log if r["step"] not in updating and r["step"] > 1)  # 1: warm-up
    quartiles = statistics.quantiles(plain, n=4) if len(plain) > 1 else [plain[0]] * 3
    return dict(label=label, total=sum(r["seconds"] for r in steps_log),
                reward=sum(r.get("mixing_seconds", 0.0) for r in steps_log), median=quartiles[1],
                iqr=(quartiles[0], quartiles[2]),
                cpu=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
                peak=max(r.get("peak_memory_gib", 0.0) for r in steps_log),
                updates=len((run_dir / "mixture.jsonl").read_text().splitlines()) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="training steps of each run")
    parser.add_argument("extra", nargs="*", help="further overrides for every run, after --")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    steps = args.steps or preset["steps"]
    plans = [("static", ["mixing.strategy=static"]), ("MoS (paper: every dataset)", ["mixing.strategy=mos"]),
             (f"MoS (reward_budget {preset['budget']})", ["mixing.strategy=mos",
                                                           f"mixing.reward_budget={preset['budget']}"])]
    with tempfile.TemporaryDirectory(prefix="mos_overhead_") as tmp:
        data = Path(tmp) / "data"
        write_realistic_datasets(data, preset["datasets"], preset["examples"])
        results = [run(label, Path(tmp) / f"run{k}", data, preset, steps, mixing, args.extra)
                   for k, (label, mixing) in enumerate(plans)]
    per_update = preset["datasets"] * preset["reward_batch"]
    print(f"preset {args.preset}: N = {preset['datasets']} realistic-length datasets, {steps} steps, packed rows, "
          f"update_every {preset['update_every']}, reward_batch {preset['reward_batch']} ({per_update} examples per "
          f"update; budget {preset['budget']}), processes {preset['nproc']}; extra overrides {args.extra}")
    static = results[0]
    for r in results:
        print(f"{r['label']:28s}: {r['total']:8.2f} s (reward passes {r['reward']:7.2f} s, {r['updates']} updates)  "
              f"median step {r['median']:.3f} s [IQR {r['iqr'][0]:.3f}-{r['iqr'][1]:.3f}]  CPU {r['cpu']:8.1f} s  "
              f"peak {r['peak']:.3f} GiB")
    for r in results[1:]:
        print(f"{r['label']:28s}: time ratio MoS/static {r['total'] / static['total']:.4f} "
              f"(overhead {100 * (r['total'] / static['total'] - 1):+.2f}%), reward passes / static time "
              f"{100 * r['reward'] / static['total']:.2f}%, CPU ratio {r['cpu'] / static['cpu']:.4f}"
              + (f", peak memory ratio {r['peak'] / static['peak']:.4f}" if static["peak"] > 0 else ""))
    if not all(math.isfinite(r["total"]) for r in results):
        sys.exit("a run logged no steps")


if __name__ == "__main__":
    main()
