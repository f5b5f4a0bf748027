"""Two real data-parallel processes (gloo): each draws on its own, without talking, and they agree."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mos_nemo.data import ReweightableBlend

SIZES = [4000, 3500, 3300, 5000]
NAMES = ["math", "med", "general", "nlp"]
MODES = ("batch", "sample")


def draw_on_rank(rank: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/init", rank=rank, world_size=2)
    try:
        for mode in MODES:
            gather_draws(rank, mode, folder)
    finally:
        dist.destroy_process_group()


def gather_draws(rank: int, mode: str, folder: str) -> None:
    """40 draws on this rank (weights change at step 20); rank 0 receives both ranks' slices."""
    blend = ReweightableBlend(SIZES, NAMES, 32, mode=mode, seed=7, dp_rank=rank, dp_size=2)
    local = []
    for step in range(40):
        if step == 20:
            blend.set_weights([0.0, 0.2, 0.0, 0.8])  # as every rank does after a MoS update
        draw = blend.draw()
        local.append(torch.stack(draw.local()))  # [2, 16]: dataset and example ids
    mine = torch.stack(local)  # [steps, 2, 16]
    gathered = [torch.empty_like(mine) for _ in range(2)]
    dist.all_gather(gathered, mine)  # only the test talks; the blend never does
    if rank == 0:
        torch.save(torch.stack(gathered), f"{folder}/{mode}.pt")  # [rank, steps, 2, 16]


@pytest.mark.distributed
def test_two_ranks_take_disjoint_halves_of_one_global_batch(tmp_path):
    mp.start_processes(draw_on_rank, args=(str(tmp_path),), nprocs=2, start_method="spawn")
    for mode in MODES:
        check_against_one_process(mode, torch.load(tmp_path / f"{mode}.pt"))  # [rank, steps, 2, 16]


def check_against_one_process(mode: str, both: torch.Tensor) -> None:
    reference = ReweightableBlend(SIZES, NAMES, 32, mode=mode, seed=7)  # a single process, the whole batch
    for step in range(40):
        if step == 20:
            reference.set_weights([0.0, 0.2, 0.0, 0.8])
        draw = reference.draw()
        rank0, rank1 = both[0, step], both[1, step]
        assert torch.equal(torch.cat([rank0[0], rank1[0]]), draw.dataset_ids)
        assert torch.equal(torch.cat([rank0[1], rank1[1]]), draw.example_ids)
        pairs0, pairs1 = set(zip(*rank0.tolist())), set(zip(*rank1.tolist()))
        assert len(pairs0) == len(pairs1) == 16 and not pairs0 & pairs1
        if step >= 20:
            assert set(draw.dataset_ids.tolist()) <= {1, 3}
