"""Does MoSpec do what it predicts? MoSpec + Diff against uni on the demo data (paper Section 6, Table 4).

The update drives the weights to p* = R / sum(R) (docs/algorithm.md). MoSpec's Diff reward doubles the
target's reward, so the target's fixed point is p*_t = 2 R_t / (sum_i R_i + R_t): about 0.4 at N = 4 when the
rewards are equal, more when the other datasets are learned faster than the target (their Diff rewards, the
ratio of current to initial perplexity, fall). The target should then get more batches than under uni, and
its held-out loss should fall further; the other datasets get fewer.

Design (preset ``cpu``): SmolLM2-135M-Instruct, bf16, the four demo datasets, 60 steps of 4 examples (one
dataset per step, Algorithm 1), lr 5e-5. MoSpec: Diff + EMA 0.9, target ``champ``, uniform start, an update
every S = 5 steps (12 updates), reward batch 8, theta0 pool 32, scorer lr 1e-3. Why that lr: each of an
update's 200 Adam steps moves a logit by about lr, the target's up and the others' down, so their gap
moves ~400 lr per update; p_t = 0.45 needs a gap of ln(0.45 / 0.183) = 0.9, about 2 updates at 1e-3 and 22
(more than the run has) at the default 1e-4. Why CHAMP: competition math is learned slowly (0.25 of the
batches left its held-out loss at 1.51 after 40 steps in the convergence study), so its Diff reward stays
high and its p* is well above 0.25, and more of its data should still help; HumanEval and MT-bench are
nearly memorised within 40 steps. 64 held-out examples per dataset (``validation.seed`` fixes them for every
run), scored at the start and after the last step. Seeds 1, 2, 3, paired: a seed fixes the blend's random
numbers, so uni and MoSpec of one seed differ only where their weights differ.

The power, computed before running (``--power``), is printed first; the analysis (bench/mospec_report.py) is
printed last and written to ``--out`` (report.json, table.txt, mospec.png).

    .venv/bin/python bench/mospec.py --power                   # the prediction and the power, no training
    .venv/bin/python bench/mospec.py --quick                   # a few minutes: checks the pipeline only
    nohup .venv/bin/python bench/mospec.py > mospec.log 2>&1 & # the study (about 90 min on 2 idle cores)
    .venv/bin/python bench/mospec.py --report-only             # the table and PNG from the runs on disk

Interrupting (Ctrl-C, or SIGTERM to this process) stops the current run with a checkpoint; the same command
resumes it and skips finished runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.convergence import Study  # noqa: E402
from bench.mospec_report import analyse, format_table, plot, satterthwaite  # noqa: E402

TARGET = "champ"
STRATEGIES = {
    "uni": ["mixing.strategy=static", "mixing.tau=inf"],
    "mospec": ["mixing.strategy=mos", "mixing.reward=diff", f"mixing.target={TARGET}", "mixing.tau=inf",
               "mixing.ema_beta=0.9"],
}
_COMMON = ["model.dtype=bf16", "train.seq_length=192", "optim.lr=5e-5", "optim.warmup_fraction=0.1",
           "mixing.mode=batch", "validation.every=0", "mixing.scorer_lr=1e-3"]
PRESETS = {
    "cpu": dict(seeds=[1, 2, 3], steps=60, overrides=[
        *_COMMON, "train.global_batch_size=4", "train.micro_batch_size=4", "validation.holdout=64",
        "mixing.update_every=5", "mixing.reward_batch=8", "mixing.reference_pool=32"]),
    # A few minutes: the whole pipeline (runs, resume bookkeeping, analysis, PNG); says nothing.
    "quick": dict(seeds=[1, 2], steps=6, overrides=[
        *_COMMON, "train.global_batch_size=2", "train.micro_batch_size=2", "validation.holdout=4",
        "mixing.update_every=2", "mixing.reward_batch=2", "mixing.reference_pool=4"]),
}

# The prior behind the power (before this study ran), from the 2026-11-23 convergence study (bench/RESULTS.md):
# its MoS + Diff run gave CHAMP about 1.6 more batches than uni over 40 steps (weight 0.25 -> 0.32) and CHAMP's
# held-out loss ended 0.0075 lower, i.e. about -0.005 per extra batch. Here the target's weight should sit near
# p* ~ 0.45 from the third update on, ~0.42 over the run: about (0.42 - 0.25) x 60 = 10 more CHAMP batches.
PRIOR_EXTRA_BATCHES = 10.0
PRIOR_LOSS_PER_BATCH = -0.0047
# Noise: that study's paired sd over seeds of a 4-dataset mean was 0.011; one dataset's, about twice. The sd of
# one held-out example's difference between two fine-tunes is not measured anywhere yet: 0.10 is a guess.
PRIOR_SD_SEED = 0.02
PRIOR_SD_EXAMPLE = 0.10


def power(effect: float, sd_seed: float, seeds: int, sd_example: float, examples: int) -> dict:
    """Two-sided 5% test of the paired difference (bench/mospec_report.py's SE and degrees of freedom)."""
    from scipy import stats

    var_seed, var_example = sd_seed ** 2 / seeds, sd_example ** 2 / examples
    se = (var_seed + var_example) ** 0.5
    dof = satterthwaite(var_seed, seeds, var_example, examples)
    critical = stats.t.ppf(0.975, dof)
    shift = abs(effect) / se
    achieved = stats.nct.sf(critical, dof, shift) + stats.nct.cdf(-critical, dof, shift)
    return {"effect": effect, "se": se, "dof": dof, "power": float(achieved),
            "detectable_80": float((critical + stats.norm.ppf(0.8)) * se)}


def power_text(preset: dict) -> str:
    examples = next(int(o.split("=")[1]) for o in preset["overrides"] if o.startswith("validation.holdout="))
    effect = PRIOR_EXTRA_BATCHES * PRIOR_LOSS_PER_BATCH
    result = power(effect, PRIOR_SD_SEED, len(preset["seeds"]), PRIOR_SD_EXAMPLE, examples)
    fewer = power(effect, PRIOR_SD_SEED, len(preset["seeds"]), PRIOR_SD_EXAMPLE, 12)
    return (f"prediction: {TARGET}'s weight near p* = 2 R_t / (sum R + R_t) (~0.4-0.5), about "
            f"{PRIOR_EXTRA_BATCHES:.0f} more {TARGET} batches than uni, {TARGET}'s held-out loss "
            f"{effect:+.3f} against uni\n"
            f"power (prior sd per seed {PRIOR_SD_SEED}, per example {PRIOR_SD_EXAMPLE}): {len(preset['seeds'])} "
            f"seeds x {examples} held-out {TARGET} examples: SE {result['se']:.4f}, {result['dof']:.1f} dof, power "
            f"{result['power']:.2f} at 5%; 80% power needs an effect of {result['detectable_80']:.3f} "
            f"(with 12 held-out examples: power {fewer['power']:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--quick", action="store_true", help="the same as --preset quick")
    parser.add_argument("--out", type=Path, default=None, help="study folder (default runs/mospec_PRESET)")
    parser.add_argument("--power", action="store_true", help="print the prediction and the power, train nothing")
    parser.add_argument("--report-only", action="store_true", help="analyse the runs on disk, train nothing")
    args = parser.parse_args()
    name = "quick" if args.quick else args.preset
    preset = PRESETS[name]
    print(power_text(preset), flush=True)
    if args.power:
        return
    out = args.out or ROOT / "runs" / f"mospec_{name}"
    study = Study(out, name, list(STRATEGIES), presets=PRESETS, table=STRATEGIES, name="mospec")
    started = time.perf_counter()
    if not args.report_only:
        study.train()
    runs = study.collect({"validation": "validation.jsonl", "examples": "validation_examples.jsonl",
                          "mixture": "mixture.jsonl", "train": "train.jsonl"}, every_run=True)
    report = analyse(runs, TARGET)
    plot(report, out / "mospec.png")
    study.write_report(report, format_table(report), out / "mospec.png", started)


if __name__ == "__main__":
    main()
