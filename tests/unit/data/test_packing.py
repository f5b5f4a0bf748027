"""Packing: first-fit decreasing rows, whole-global-batch packing spread over ranks, and bench/packing.py's
share computation on the Table-6-like length mix (goal: >= 90% non-pad tokens)."""

import importlib.util
import itertools
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mos_nemo.data import collate_sft, local_micro_batches
from mos_nemo.data.collate import pack_rows
from mos_nemo.errors import MosValueError

ROOT = Path(__file__).resolve().parents[3]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_packing", ROOT / "bench" / "packing.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def fewest_rows(lengths: list[int], capacity: int) -> int:
    """The optimal number of rows, by trying every assignment of examples to rows (small inputs only)."""
    for count in range(1, len(lengths) + 1):
        for assignment in itertools.product(range(count), repeat=len(lengths)):
            filled = [0] * count
            for length, row in zip(lengths, assignment):
                filled[row] += length
            if max(filled) <= capacity:
                return count
    raise AssertionError("unreachable: one example per row always fits")


def test_first_fit_decreasing_on_a_worked_example():
    # longest first: 7 -> row 0, 6 -> row 1, 5 -> row 2, 4 -> row 1 (6+4=10), 3 -> row 0 (7+3), 2 -> row 2
    assert pack_rows([5, 7, 3, 2, 4, 6], 10) == [[1, 2], [5, 4], [0, 3]]
    assert pack_rows([4, 4, 4], 4) == [[0], [1], [2]]  # ties keep index order
    with pytest.raises(MosValueError, match="> seq_length=4"):
        pack_rows([5], 4)


def test_first_fit_decreasing_is_valid_and_near_optimal():
    rng = random.Random(0)
    for _ in range(60):
        capacity = rng.randint(8, 20)
        lengths = [rng.randint(1, capacity) for _ in range(rng.randint(1, 6))]
        rows = pack_rows(lengths, capacity)
        assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in row) <= capacity for row in rows)
        assert len(rows) <= 11 / 9 * fewest_rows(lengths, capacity) + 6 / 9  # Dosa's tight FFD bound


@pytest.fixture(scope="module")
def bench():
    return load_bench()


@pytest.fixture(scope="module")
def table6(bench):
    return bench.table6_datasets(count=300, seq_length=512, vocab_size=1000)


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_packed_micro_batches_hold_the_global_batch_once_and_agree_across_ranks(bench, table6, mode):
    dp, micro, seq = 2, 2, 512
    per_rank = []
    for rank in range(dp):
        draw = bench.blend(table6, 16, mode, dp_rank=rank, dp_size=dp).draw()
        packed = local_micro_batches(draw, table6, micro, pad_id=0, seq_length=seq, pack=True)
        fixed = local_micro_batches(draw, table6, micro, pad_id=0, seq_length=seq, pack=True, fixed_rows=True)
        assert all(b["tokens"].shape[1] == seq and b["tokens"].shape[0] <= micro for b in packed)
        assert all(b["tokens"].shape == (micro, seq) for b in fixed)
        assert [int(b["loss_mask"].sum()) for b in fixed] == [int(b["loss_mask"].sum()) for b in packed]
        per_rank.append(packed)
    assert len(per_rank[0]) == len(per_rank[1])  # every rank runs the same number of micro batches
    found = []
    for batch in itertools.chain(*per_rank):
        for row in range(batch["tokens"].shape[0]):
            segments = batch["segment_ids"][row]
            found += [batch["tokens"][row, segments == k].tolist() for k in range(1, int(segments.max()) + 1)]
    expected = [table6[d][e]["input_ids"].tolist()
                for d, e in zip(draw.dataset_ids.tolist(), draw.example_ids.tolist())]
    assert sorted(found) == sorted(expected)  # the whole global batch, each example once, over both ranks
    padded = [local_micro_batches(bench.blend(table6, 16, mode, dp_rank=r, dp_size=dp).draw(), table6, micro, 0, seq)
              for r in range(dp)]
    mask_sum = lambda batches: sum(int(b["loss_mask"].sum()) for b in batches)  # noqa: E731
    assert sum(map(mask_sum, per_rank)) == sum(map(mask_sum, padded))  # the same loss tokens as padding


def test_table6_share_reaches_the_goal_and_counts_every_token(bench):
    datasets = bench.table6_datasets(count=500, seq_length=2048)
    means = [float(d.lengths.mean()) for d in datasets]
    for row, mean in zip(bench.TABLE_6, means):  # the synthetic lengths follow Table 6 (within sampling noise)
        words = row.turns * (row.instruction_words + row.response_words)
        expected = words * bench.TOKENS_PER_WORD + 2 * row.turns * bench.MESSAGE_TOKENS + bench.CONVERSATION_TOKENS
        assert abs(mean - expected) / expected < 0.15, (row.name, mean, expected)
    shares = bench.measure_shares(datasets, "sample", dp_size=2, global_batch=64, micro_batch=4, seq_length=2048,
                                  steps=5)
    assert shares["non_pad_tokens"] == shares["tokens_drawn"]  # packing loses and duplicates nothing
    assert shares["packed"] >= 0.90 > shares["padded"]


def test_bench_prints_the_packed_share_last():
    done = subprocess.run([sys.executable, "bench/packing.py", "--skip-timing", "--steps", "3", "--dp", "1",
                           "--examples", "300"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("packed share of non-pad tokens: ") and "goal >= 90%" in last
    share = float(last.split(": ")[1].split("%")[0])
    assert 90.0 <= share <= 100.0


def test_collate_packs_first_fit_decreasing():
    examples = [{"input_ids": torch.arange(1, n + 1), "loss_mask": torch.ones(n, dtype=torch.bool)}
                for n in (5, 7, 3, 2, 4, 6)]
    packed = collate_sft(examples, 0, seq_length=10, pack=True)
    assert packed["tokens"].shape == (3, 10)
    assert packed["segment_ids"].ne(0).sum(1).tolist() == [10, 10, 7]  # rows [7, 3], [6, 4], [5, 2]
    assert packed["cu_seqlens"].tolist() == [0, 7, 10, 16, 20, 25, 27, 30]
