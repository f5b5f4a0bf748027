"""How long a checkpoint save takes, what each rank writes and holds, what a CRC would add, and how long a
stop signal takes to end a launch.

Trains one step of the tiny_cpu recipe (distributed optimizer, DP = number of ranks, torch AdamW), then
after one untimed warm-up save per format saves it alternately in ``dp_reshardable`` (the periodic/signal format) and ``fully_reshardable`` (the
final/relayout format), ``--repeats`` times each, without checksums (a signal save skips them). Each timed
save includes an fsync of every file this rank wrote (megatron fsyncs its shards; ours too here), so it
times the disk, not the page cache. Printed per format: median (min-max) save seconds, wall and this
process's CPU, and per rank the bytes it wrote (its shard files and RNG file) and the bytes of the tensors it
held in the save's state dict (the full gather lands on DP rank 0); then zlib.crc32 over the files each rank
wrote (its share of a checksummed save), as seconds, MB/s and a ratio to the save; the last lines are the
ratio of median save times, dp_reshardable / fully_reshardable, and, in the same run, ``--signals`` real
launches (torchrun, ``setsid``, periodic saves on) stopped by ``kill -TERM -- -PGID``: seconds from the
signal to the launch's exit, against its measured save.

    .venv/bin/python bench/checkpoint.py                      # 2 ranks over gloo, tiny_cpu shape
    .venv/bin/python bench/checkpoint.py --ranks 2 --repeats 5 --signals 3 -- model.config.hidden_size=128
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FORMATS = ("dp_reshardable", "fully_reshardable")


def _held_bytes(tree) -> int:
    import torch
    from megatron.core.dist_checkpointing.dict_utils import nested_values
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    total = 0
    for value in nested_values(tree):
        tensor = value.data if isinstance(value, ShardedTensor) else value
        if isinstance(tensor, torch.Tensor):
            total += tensor.numel() * tensor.element_size()
    return total


def _rank_main(run_dir: str, repeats: int, overrides: list[str]) -> dict:
    import torch.distributed as dist

    from mos_nemo.config import compose_config
    from mos_nemo.engine.cpu import device_mode
    from mos_nemo.engine.parallel import destroy_parallel, initialize_parallel
    from mos_nemo.engine.training import checkpoint
    from mos_nemo.engine.training.loop import Trainer
    from mos_nemo.logs import RunLogger

    config = compose_config("tiny_cpu", [f"run.dir={run_dir}", "train.max_steps=4", *overrides])
    parallel = initialize_parallel(config.parallel.tp, config.parallel.pp, config.run.seed)
    trainer = Trainer(config, parallel)
    trainer.logger = RunLogger(run_dir, 4, None, enabled=False)
    trainer._one_step()  # optimizer state exists after one step
    for name in FORMATS:  # warm-up saves, not timed: the first save starts dist_checkpointing's machinery
        checkpoint.save_checkpoint(run_dir, 1000 + FORMATS.index(name), trainer.model, trainer.optimizer,
                                   {"step": 1}, parallel, sharding=name, checksums=False)
    seconds: dict[str, list[float]] = {name: [] for name in FORMATS}
    cpu: dict[str, list[float]] = {name: [] for name in FORMATS}
    crc: dict[str, list[float]] = {name: [] for name in FORMATS}
    written, held = {}, {}
    for repeat in range(repeats):
        for name in FORMATS:
            dist.barrier()
            started, cpu_started = time.perf_counter(), time.process_time()
            folder = checkpoint.save_checkpoint(run_dir, 10 * repeat + FORMATS.index(name) + 1, trainer.model,
                                                trainer.optimizer, {"step": 1}, parallel, sharding=name,
                                                checksums=False)
            mine = [*folder.glob(f"__{parallel.rank}_*.distcp"), folder / "rng" / f"rank_{parallel.rank:05d}.pt"]
            for path in mine:
                _fsync(path)
            dist.barrier()
            seconds[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - cpu_started)
            written[name] = sum(p.stat().st_size for p in mine)
            hashing = time.perf_counter()
            for path in mine:
                _crc32(path)
            crc[name].append(time.perf_counter() - hashing)
    for name in FORMATS:
        with device_mode():
            held[name] = _held_bytes(checkpoint._sharded_state(trainer.model, trainer.optimizer, False, name))
    destroy_parallel()
    return {"seconds": seconds, "cpu": cpu, "crc": crc, "written": written, "held": held, "dp": parallel.dp}


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _crc32(path: Path) -> int:
    value = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            value = zlib.crc32(chunk, value)
    return value


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def _signal_to_exit(tmp: str, ranks: int, index: int, overrides: list[str]) -> tuple[float, float]:
    """One real launch stopped as a cluster stops it: (seconds from the signal to exit, its last save's seconds)."""
    run_dir = Path(tmp) / f"signal{index}"
    command = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", str(ranks), "--standalone",
               "mos_nemo/train.py", "--config-name", "tiny_cpu", f"run.dir={run_dir}", "train.max_steps=1000",
               "checkpoint.every=3", *overrides]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    console = run_dir.with_suffix(".console")
    with open(console, "w") as out:
        launch = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        log = run_dir / "train.jsonl"
        while not (log.is_file() and log.read_text().count("\n") >= 5):  # past the step-3 save
            if launch.poll() is not None:
                raise SystemExit(f"the launch ended early:\n{console.read_text()[-2000:]}")
            time.sleep(0.05)
        signalled = time.perf_counter()
        os.killpg(launch.pid, signal.SIGTERM)
        launch.wait(timeout=600)
        elapsed = time.perf_counter() - signalled
    saves = [float(line.rsplit("(", 1)[1].rstrip("s)")) for line in console.read_text().splitlines()
             if line.startswith("saved checkpoint ")]
    if "stopped by a signal" not in console.read_text():
        raise SystemExit(f"the launch did not stop on the signal:\n{console.read_text()[-2000:]}")
    return elapsed, saves[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--signals", type=int, default=3, help="launches stopped by a group SIGTERM")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    from mos_nemo.engine.launch import spawn_ranks

    with tempfile.TemporaryDirectory() as tmp:
        results = spawn_ranks(_rank_main, args.ranks, tmp, args.repeats, args.overrides, timeout_s=900)
        stops = [_signal_to_exit(tmp, args.ranks, index, args.overrides) for index in range(args.signals)]
    median = {name: statistics.median(results[0]["seconds"][name]) for name in FORMATS}
    print(f"tiny_cpu, distributed optimizer, DP={results[0]['dp']} over gloo, {args.repeats} saves per format "
          "(each with an fsync of every file written), median (min-max)")
    for name in FORMATS:
        ranks = "; ".join(f"rank {r}: wrote {res['written'][name]:,} B, held {res['held'][name]:,} B"
                          for r, res in enumerate(results))
        print(f"{name:18s} save {_spread(results[0]['seconds'][name])}, rank 0 CPU "
              f"{_spread(results[0]['cpu'][name])} | {ranks}")
        for rank, res in enumerate(results):
            rate = res["written"][name] / max(statistics.median(res["crc"][name]), 1e-9) / 1e6
            print(f"{'':18s} rank {rank} crc32 of its {res['written'][name]:,} B: {_spread(res['crc'][name])}, "
                  f"{rate:,.0f} MB/s, {statistics.median(res['crc'][name]) / median[name]:.2f}x the save")
    print(f"ratio dp_reshardable / fully_reshardable save time: {median['dp_reshardable'] / median['fully_reshardable']:.3f}")
    if stops:
        exits, saves = [s for s, _ in stops], [s for _, s in stops]
        print(f"signal to exit ({len(stops)} launches, kill -TERM -- -PGID after a periodic save): "
              f"{_spread(exits)}; the stop save itself {_spread(saves)}; "
              f"ratio exit / save {statistics.median(exits) / statistics.median(saves):.2f}")


if __name__ == "__main__":
    main()
