"""Shared helpers for multi-process tests: the one place tests launch ranks or training runs.

    from tests.distributed import launch_training, run_distributed, train_in_one_group

    def _check(tmp):                      # module level, so spawned ranks can import it
        state = initialize_parallel(tp=2, pp=1, seed=0)
        ...
        destroy_parallel()
        return value                      # picklable; one per rank

    @pytest.mark.distributed
    def test_x(tmp_path):
        results = run_distributed(_check, 2, str(tmp_path))

- ``run_distributed``: a module-level function on N spawned ranks over gloo (each rank sees the torchrun
  environment, so ``initialize_parallel`` works unchanged). A watchdog (``faulthandler``) prints every
  thread's stack and kills a rank stuck in a collective.
- ``train_in_one_group``: several training runs (any TP/PP/DP layouts of the same world size) one after
  the other in one spawned process group: one interpreter start and one megatron import for all of them.
- ``launch_training``: the real entry point ``mos_nemo/train.py`` as a user runs it (torchrun when N > 1);
  returns its console output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mos_nemo.engine.launch import spawn_ranks

WATCHDOG_S = 300
ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def run_distributed(fn, world_size: int, *args, timeout_s: float = WATCHDOG_S) -> list:
    """``fn(*args)`` on ``world_size`` ranks; their results in rank order (RuntimeError if one fails)."""
    return spawn_ranks(fn, world_size, *args, timeout_s=timeout_s)


def launch_training(run_dir: str | Path, *overrides: str, nproc: int = 1, recipe: str = "tiny_cpu",
                    timeout: int = 300) -> str:
    """``mos_nemo/train.py --config-name recipe run.dir=run_dir overrides`` on ``nproc`` processes; its
    stdout + stderr. The test fails with the output's tail if it exits non-zero."""
    # torchrun --standalone picks a free port itself; `--master-port 0` would hang the workers' rendezvous.
    launcher = [TORCHRUN, "--standalone", "--nproc-per-node", str(nproc)] if nproc > 1 else [sys.executable]
    command = [*launcher, "mos_nemo/train.py", "--config-name", recipe, f"run.dir={run_dir}", *overrides]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stdout + done.stderr


def _train_runs(runs: list[tuple[str, list[str]]], recipe: str) -> list[int]:
    from mos_nemo.config import compose_config
    from mos_nemo.config_checks import validate
    from mos_nemo.engine.parallel import destroy_parallel, initialize_parallel
    from mos_nemo.engine.training.loop import Trainer

    steps = []
    for run_dir, overrides in runs:
        config = compose_config(recipe, [f"run.dir={run_dir}", *overrides])
        validate(config, world_size=int(os.environ["WORLD_SIZE"]))  # set by spawn_ranks, as torchrun does
        parallel = initialize_parallel(config.parallel.tp, config.parallel.pp, config.run.seed)
        try:
            steps.append(Trainer(config, parallel).run())
        finally:
            destroy_parallel()
    return steps


def train_in_one_group(runs: list[tuple[str | Path, list[str]]], world_size: int, recipe: str = "tiny_cpu",
                       timeout_s: float = 600) -> list[int]:
    """Train each ``(run_dir, overrides)`` of ``recipe`` in turn on the same ``world_size`` spawned ranks
    (layouts may differ: ``parallel.tp=2``, ``parallel.pp=2``, or neither for DP); the last step of each."""
    runs = [(str(run_dir), list(overrides)) for run_dir, overrides in runs]
    return run_distributed(_train_runs, world_size, runs, recipe, timeout_s=timeout_s)[0]
