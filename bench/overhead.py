"""What MoS costs: wall time (and peak memory) of `mixing.strategy=mos` against a static blend, same run.

Both runs use the same recipe, model, steps and data; only the mixing strategy differs. Printed:
- training-loop seconds of each (sum of train.jsonl `seconds`; with MoS these include every reward pass and
  the theta0 pool scoring, reported apart as `mixing_seconds`),
- the ratio MoS / static and the share of MoS time spent in reward passes,
- peak memory of each (GPU: max allocated; CPU: max resident set size) and its ratio.

    .venv/bin/python bench/overhead.py                      # CPU: the demo model (SmolLM2-135M), 2 processes
    .venv/bin/python bench/overhead.py --preset h100        # GPU: the Llama-3.2-1B shape of docs/engine.md, S=100, L=64
    .venv/bin/python bench/overhead.py --steps 40 -- mixing.reward=cossim    # extra overrides after --

Goal on an H100 (issue "MoS in the loop"): at most 2% overhead at update_every 100, reward_batch 64 (the paper
reports about 20%), and peak memory of `reference: pool` within 3% of the static blend.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {
    # SmolLM2-135M-Instruct on the four demo datasets, on CPU with two processes (DP=2).
    "cpu": dict(recipe="smollm2_demo", nproc=2, steps=24, update_every=8, reward_batch=8, overrides=[
        "train.global_batch_size=4", "train.micro_batch_size=2", "train.seq_length=256"]),
    # The Llama-3.2-1B shape measured in docs/engine.md (16 layers, hidden 2048, GQA 32/8, FFN 8192, vocab 128256).
    "h100": dict(recipe="tiny_cpu", nproc=1, steps=300, update_every=100, reward_batch=64, overrides=[
        "model.config={family:llama,num_hidden_layers:16,hidden_size:2048,intermediate_size:8192,"
        "num_attention_heads:32,num_key_value_heads:8}", "model.dtype=bf16", "train.seq_length=2048",
        "train.micro_batch_size=4", "train.global_batch_size=64", "optim.lr=1e-5"]),
}


def run(strategy: str, run_dir: Path, preset: dict, steps: int, extra: list[str]) -> dict:
    launcher = [sys.executable]
    if preset["nproc"] > 1:
        launcher = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node",
                    str(preset["nproc"])]
    command = [*launcher, "mos_nemo/train.py", "--config-name", preset["recipe"], f"run.dir={run_dir}",
               f"train.max_steps={steps}", f"mixing.strategy={strategy}",
               f"mixing.update_every={preset['update_every']}", f"mixing.reward_batch={preset['reward_batch']}",
               "checkpoint.every=0", "checkpoint.save_final=false", *preset["overrides"], *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{strategy} run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    steps_log = [json.loads(line) for line in (run_dir / "train.jsonl").read_text().splitlines()]
    mixture = [json.loads(line) for line in (run_dir / "mixture.jsonl").read_text().splitlines()]
    total = sum(r["seconds"] for r in steps_log)  # with MoS, includes the reward passes and the theta0 pool
    reward_seconds = sum(r.get("mixing_seconds", 0.0) for r in steps_log)
    return dict(step_seconds=total - reward_seconds, reward_seconds=reward_seconds, total=total,
                updates=len(mixture) - 1, peak_gib=max(r.get("peak_memory_gib", 0.0) for r in steps_log))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="training steps of each run")
    parser.add_argument("extra", nargs="*", help="further overrides for both runs, after --")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    steps = args.steps or preset["steps"]
    with tempfile.TemporaryDirectory(prefix="mos_overhead_") as tmp:
        static = run("static", Path(tmp) / "static", preset, steps, args.extra)
        mos = run("mos", Path(tmp) / "mos", preset, steps, args.extra)
    print(f"preset {args.preset}: {steps} steps, update_every {preset['update_every']}, "
          f"reward_batch {preset['reward_batch']}, {mos['updates']} MoS updates")
    print(f"static blend : {static['total']:8.2f} s   peak {static['peak_gib']:.3f} GiB")
    print(f"MoS          : {mos['total']:8.2f} s   peak {mos['peak_gib']:.3f} GiB "
          f"(steps {mos['step_seconds']:.2f} s + reward passes {mos['reward_seconds']:.2f} s)")
    print(f"time ratio MoS/static = {mos['total'] / static['total']:.4f} "
          f"(overhead {100 * (mos['total'] / static['total'] - 1):+.2f}%); "
          f"reward-pass share of MoS time = {100 * mos['reward_seconds'] / mos['total']:.2f}%")
    if static["peak_gib"] > 0:
        print(f"peak memory ratio MoS/static = {mos['peak_gib'] / static['peak_gib']:.4f}")


if __name__ == "__main__":
    main()
