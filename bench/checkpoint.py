"""How long a checkpoint save takes, and what each rank writes and holds, per optimizer format.

Trains one step of the tiny_cpu recipe (distributed optimizer, DP = number of ranks, torch AdamW), then
after one untimed warm-up save per format saves it alternately in ``dp_reshardable`` (the periodic/signal format) and ``fully_reshardable`` (the
final/relayout format), ``--repeats`` times each, without checksums (a signal save skips them). Printed per
format: median save seconds over the repeats, and per rank the bytes it wrote (its shard files and RNG file)
and the bytes of the tensors it held in the save's state dict (the full gather lands on DP rank 0). The
last line is the ratio of median save times, dp_reshardable / fully_reshardable, measured in this run.

    .venv/bin/python bench/checkpoint.py                      # 2 ranks over gloo, tiny_cpu shape
    .venv/bin/python bench/checkpoint.py --ranks 2 --repeats 5 -- model.config.hidden_size=128
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
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
    from mos_nemo.engine.training.loop import StopRequest, Trainer
    from mos_nemo.logs import RunLogger

    config = compose_config("tiny_cpu", [f"run.dir={run_dir}", "train.max_steps=4", *overrides])
    parallel = initialize_parallel(config.parallel.tp, config.parallel.pp, config.run.seed)
    trainer = Trainer(config, parallel)
    trainer.logger = RunLogger(run_dir, 4, None, enabled=False)
    trainer._one_step(StopRequest())  # optimizer state exists after one step
    for name in FORMATS:  # warm-up saves, not timed: the first save starts dist_checkpointing's machinery
        checkpoint.save_checkpoint(run_dir, 1000 + FORMATS.index(name), trainer.model, trainer.optimizer,
                                   {"step": 1}, parallel, sharding=name, checksums=False)
    seconds: dict[str, list[float]] = {name: [] for name in FORMATS}
    written, held = {}, {}
    for repeat in range(repeats):
        for name in FORMATS:
            dist.barrier()
            started = time.perf_counter()
            folder = checkpoint.save_checkpoint(run_dir, 10 * repeat + FORMATS.index(name) + 1, trainer.model,
                                                trainer.optimizer, {"step": 1}, parallel, sharding=name,
                                                checksums=False)
            seconds[name].append(time.perf_counter() - started)
            mine = [*folder.glob(f"__{parallel.rank}_*.distcp"), folder / "rng" / f"rank_{parallel.rank:05d}.pt"]
            written[name] = sum(p.stat().st_size for p in mine)
    for name in FORMATS:
        with device_mode():
            held[name] = _held_bytes(checkpoint._sharded_state(trainer.model, trainer.optimizer, False, name))
    destroy_parallel()
    return {"seconds": seconds, "written": written, "held": held, "dp": parallel.dp}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    from mos_nemo.engine.launch import spawn_ranks

    with tempfile.TemporaryDirectory() as tmp:
        results = spawn_ranks(_rank_main, args.ranks, tmp, args.repeats, args.overrides, timeout_s=900)
    median = {name: statistics.median(results[0]["seconds"][name]) for name in FORMATS}
    print(f"tiny_cpu, distributed optimizer, DP={results[0]['dp']} over gloo, {args.repeats} saves per format")
    for name in FORMATS:
        ranks = "; ".join(f"rank {r}: wrote {res['written'][name]:,} B, held {res['held'][name]:,} B"
                          for r, res in enumerate(results))
        print(f"{name:18s} median save {median[name]:.3f} s (rank 0 all: "
              f"{', '.join(f'{s:.3f}' for s in results[0]['seconds'][name])}) | {ranks}")
    print(f"ratio dp_reshardable / fully_reshardable save time: {median['dp_reshardable'] / median['fully_reshardable']:.3f}")


if __name__ == "__main__":
    main()
