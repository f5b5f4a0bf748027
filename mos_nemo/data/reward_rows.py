"""Reward rows: how the examples of one reward pass become this rank's micro batches (no megatron here).

A reward pass (MoS scoring, held-out loss) runs a set of examples forward once and needs, per example,
numbers that do not depend on which other examples share its row. Two layouts give that:

- ``packed`` (``mixing.reward_pack=true``, the default): all the pass's examples are placed into rows of
  ``width`` tokens by first-fit decreasing (``pack_rows``, as ``train.pack`` does for a global batch), each
  example its own segment: position ids restart at 0 and attention is causal within the segment only
  (the model's packed path, ``model_inputs``), so an example's outputs are those of the example alone up
  to float rounding. Rows hold ~width / mean-length examples instead of one, which is what keeps the
  reward pass cheap (bench/reward_cost.py).
- ``padded``: one example per row, right-padded to ``width``; causal attention without a mask.

Every micro batch has exactly ``micro_batch_size`` rows of ``width`` tokens, and every DP rank runs the same
number of micro batches (empty rows / discarded filler examples fill up), so pipeline stages exchange
tensors of one shape and no rank waits on a missing micro batch. Rows are shared out over DP ranks
(packed: rank r takes rows r, r + dp, ...; padded: a contiguous slice of the examples). Each micro batch
carries ``members``: one ``Member`` per real example, saying which row and segment hold it and which
(dataset, slot) of the reward tables it fills.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from mos_nemo.data.collate import collate_packed_rows, collate_sft, pack_rows
from mos_nemo.errors import MosValueError

PACK_CHUNK = 1024  # examples packed together at most (see packed_reward_rows)


class Member(NamedTuple):
    """Where one scored example sits in a micro batch, and where its result goes."""

    row: int  # row of the micro batch
    segment: int  # its segment id in that row (1-based; always 1 in the padded layout)
    dataset: int  # i of the [N, L] tables
    slot: int  # j of the [N, L] tables


def rank_slice(total: int, dp: int, dp_rank: int) -> range:
    """This DP rank's contiguous share of ``total`` items (the first ranks take one more when uneven)."""
    base, extra = divmod(total, dp)
    start = dp_rank * base + min(dp_rank, extra)
    return range(start, start + base + (1 if dp_rank < extra else 0))


def reward_micro_batches(examples: Sequence[Sequence[dict]], *, width: int, micro_batch_size: int, pad_id: int,
                         dp: int = 1, dp_rank: int = 0, pack: bool = True) -> list[dict]:
    """This rank's micro batches for ``examples[i][j]`` (dataset i, slot j), each a collated batch
    [micro_batch_size, width] with a ``members`` list. Every rank gets the same number of micro batches."""
    if micro_batch_size < 1 or dp < 1 or not 0 <= dp_rank < dp:
        raise MosValueError(f"reward rows: micro_batch_size={micro_batch_size}, dp={dp}, dp_rank={dp_rank}")
    flat = [(i, j) for i, items in enumerate(examples) for j in range(len(items))]
    if not flat:
        raise MosValueError("a reward pass needs at least one example")
    items = [examples[i][j] for i, j in flat]
    if pack:
        return _packed(items, flat, width, micro_batch_size, pad_id, dp, dp_rank)
    return _padded(items, flat, width, micro_batch_size, pad_id, dp, dp_rank)


def packed_reward_rows(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Rows of example positions: ``pack_rows`` (first-fit decreasing) over chunks of PACK_CHUNK examples, so
    that packing a large pass (Diff's theta0 pool: reference_pool x N examples) stays linear in its size
    (first fit scans the open rows); a chunk of 1,024 examples fills its rows as well as the whole would,
    up to its last few rows."""
    rows = []
    for start in range(0, len(lengths), PACK_CHUNK):
        rows += [[start + k for k in row] for row in pack_rows(list(lengths[start:start + PACK_CHUNK]), width)]
    return rows


def _packed(items, flat, width, micro_batch_size, pad_id, dp, dp_rank) -> list[dict]:
    rows = packed_reward_rows([int(item["input_ids"].numel()) for item in items], width)  # same on every rank
    count = max(1, math.ceil(math.ceil(len(rows) / dp) / micro_batch_size))
    mine = rows[dp_rank::dp]
    mine += [[]] * (count * micro_batch_size - len(mine))  # empty rows: fixed shapes, equal counts
    batches = []
    for start in range(0, len(mine), micro_batch_size):
        chunk = mine[start:start + micro_batch_size]
        order = [k for row in chunk for k in row]  # positions in `items`, row by row
        local = {k: n for n, k in enumerate(order)}
        if order:
            batch = collate_packed_rows([items[k] for k in order], [[local[k] for k in row] for row in chunk],
                                        pad_id, width)
        else:  # a micro batch of empty rows still needs one (discarded) example to collate around
            batch = collate_packed_rows([items[0]], [[0]] + [[]] * (len(chunk) - 1), pad_id, width)
        batch["members"] = ([Member(r, s, *flat[k]) for r, row in enumerate(chunk) for s, k in enumerate(row, 1)]
                            if order else [])
        batches.append(batch)
    return batches


def _padded(items, flat, width, micro_batch_size, pad_id, dp, dp_rank) -> list[dict]:
    mine = list(rank_slice(len(flat), dp, dp_rank))
    count = max(1, math.ceil(math.ceil(len(flat) / dp) / micro_batch_size))
    mine += [-1] * (count * micro_batch_size - len(mine))  # -1: filler, a real example whose result is dropped
    batches = []
    for start in range(0, len(mine), micro_batch_size):
        chunk = mine[start:start + micro_batch_size]
        batch = collate_sft([items[max(k, 0)] for k in chunk], pad_id=pad_id, pad_to_multiple_of=width,
                            seq_length=width)
        batch["members"] = [Member(r, 1, *flat[k]) for r, k in enumerate(chunk) if k >= 0]
        batches.append(batch)
    return batches
