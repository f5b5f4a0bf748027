"""The training entry point: compose the config, validate it, build, train, tear down.

    torchrun [--nproc-per-node N] mos_nemo/train.py --config-name NAME [key=value ...]
    python mos_nemo/train.py --config-name NAME [key=value ...] --cfg job [--resolve]   # print, build nothing

Runs on CPU (gloo) and GPU (NCCL), one node or many (torchrun's usual flags). Without torchrun it runs as
a single process. See recipes/ for the recipes and docs/configuration.md "Config keys" for every key.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import record


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-name", "-cn", required=True, help="a recipe in recipes/, e.g. tiny_cpu")
    parser.add_argument("--config-dir", "-cd", default=None, help="a folder of recipes (default: recipes/)")
    parser.add_argument("--cfg", "-c", choices=("job", "hydra", "all"), default=None,
                        help="print the composed and validated config and exit, building nothing (as in Hydra "
                             "apps): job = the training config, hydra = how it was composed, all = both")
    parser.add_argument("--resolve", action="store_true",
                        help="with --cfg: resolve interpolations such as ${recipes_dir:} before printing")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides such as train.max_steps=20")
    return parser.parse_args(argv)


def print_config(args: argparse.Namespace) -> None:
    """``--cfg``: the config as Hydra apps print it (interpolations kept unless ``--resolve``), after the
    checks that need no files or processes (paths are not checked: a login node may not see /models)."""
    from omegaconf import OmegaConf

    from mos_nemo.config import RECIPES_DIR, compose_config, compose_typed
    from mos_nemo.config_checks import validate

    config = compose_config(args.config_name, args.overrides, args.config_dir)
    world_size = int(os.environ.get("WORLD_SIZE", config.parallel.tp * config.parallel.pp))
    validate(config, world_size=world_size, check_paths=False)
    hydra = {"hydra": {"runtime": {"config_name": args.config_name,
                                   "config_dir": str(Path(args.config_dir or RECIPES_DIR).resolve())},
                       "overrides": {"task": list(args.overrides)}}}
    parts = []
    if args.cfg in ("hydra", "all"):
        parts.append(OmegaConf.to_yaml(OmegaConf.create(hydra)))
    if args.cfg in ("job", "all"):
        parts.append(OmegaConf.to_yaml(compose_typed(args.config_name, args.overrides, args.config_dir),
                                       resolve=args.resolve))
    print("".join(parts), end="", flush=True)


def _lock_run_dir(config, parallel):
    """Rank 0 takes run.dir's lock; every rank learns the verdict, so all stop alike if it is taken."""
    import torch.distributed as dist

    from mos_nemo.engine.run_dir import RunDirLock
    from mos_nemo.errors import MosRunDirError

    lock = RunDirLock(config.run.dir, take_over=config.run.take_over_lock)
    verdict = [None]
    if parallel.rank == 0:
        try:
            lock.acquire()
        except MosRunDirError as error:
            verdict = [str(error)]
    if parallel.world_size > 1:
        dist.broadcast_object_list(verdict, src=0)
    if verdict[0] is not None:
        raise MosRunDirError(verdict[0])
    return lock


def _write_exit_note(trainer, rank: int) -> None:
    """Why this launch ended (finished | deadline | signal | stop_after) into $MOS_NEMO_EXIT_NOTE, if set: the
    batch script requeues the job after a deadline stop (docker/slurm/train.sbatch)."""
    path = os.environ.get("MOS_NEMO_EXIT_NOTE")
    if not path or rank != 0:
        return
    reason = "finished" if trainer.step >= trainer.max_steps else (trainer.state.stop_reason or "stop_after")
    if trainer.state.abandoned is not None:
        reason = "signal"
    with open(path, "w") as note:
        note.write(reason + "\n")


@record
def main(argv: list[str] | None = None) -> int:
    """Train as configured; returns the process exit code (0 also after a SIGTERM/SIGINT that was saved)."""
    from mos_nemo.config import compose_config
    from mos_nemo.config_checks import validate
    from mos_nemo.engine.error_report import report_user_error
    from mos_nemo.engine.run_dir import check_writable
    from mos_nemo.errors import MosError

    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.cfg is not None:
        try:
            print_config(args)
        except MosError as error:
            return report_user_error(error)
        return 0
    try:
        # 1. compose and validate: every user error surfaces here, before any process group or model.
        config = compose_config(args.config_name, args.overrides, args.config_dir)
        validate(config, world_size=int(os.environ.get("WORLD_SIZE", "1")))
        check_writable(config.run.dir)
    except MosError as error:
        return report_user_error(error)

    from mos_nemo.engine.training.loop import Trainer
    from mos_nemo.engine.parallel import destroy_parallel, initialize_parallel
    from mos_nemo.logs import configure_logging

    # 2. lock run.dir, build and 3. train; the lock and the process groups are released whatever happens.
    lock = None
    try:
        parallel = initialize_parallel(config.parallel.tp, config.parallel.pp, config.run.seed)
        lock = _lock_run_dir(config, parallel)
        configure_logging(config.run.dir, parallel.rank)
        trainer = Trainer(config, parallel)
        trainer.run()
        _write_exit_note(trainer, parallel.rank)
    except MosError as error:
        return report_user_error(error)
    finally:
        if lock is not None:
            lock.release()
        destroy_parallel()
    return 0


if __name__ == "__main__":  # dist_checkpointing's spawn Manager re-imports this module: keep it guarded
    sys.exit(main())
