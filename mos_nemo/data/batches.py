"""From a blend draw to this rank's micro batches (the data path's last link)."""

from __future__ import annotations

from typing import Sequence

from mos_nemo.data.blend import BlendDraw
from mos_nemo.data.collate import collate_packed_rows, collate_sft, pack_rows
from mos_nemo.data.dataset import TokenizedDataset
from mos_nemo.errors import MosValueError


def local_micro_batches(draw: BlendDraw, datasets: Sequence[TokenizedDataset], micro_batch_size: int,
                        pad_id: int, seq_length: int | None = None, pack: bool = False,
                        pad_to_multiple_of: int = 8, fixed_rows: bool = False) -> list[dict]:
    """This rank's share of a global batch as collated micro batches.

    Without packing: this rank's contiguous slice of the draw, in micro batches of `micro_batch_size`
    examples, each row padded to its micro batch's longest example. With packing: see `packed_rows`; this
    rank gets every dp_size-th packed row, and `micro_batch_size` counts rows (at most micro_batch_size x
    seq_length tokens per forward pass, the unpacked worst case). `fixed_rows` (pipeline parallel: the
    stages exchange tensors of one shape) pads every packed micro batch with empty rows to micro_batch_size.
    Each example carries its dataset index, so every micro batch also has `dataset_ids` [b, s] (-1 on
    padding) for per-dataset loss logging.
    """
    if micro_batch_size < 1:
        raise MosValueError(f"micro_batch_size={micro_batch_size} must be at least 1")
    if pack:
        if seq_length is None:
            raise MosValueError("packing needs seq_length: packed rows are exactly seq_length long")
        return _packed_micro_batches(draw, datasets, micro_batch_size, pad_id, seq_length, fixed_rows)
    dataset_ids, example_ids = draw.local()
    if len(dataset_ids) % micro_batch_size:
        raise MosValueError(f"micro_batch_size={micro_batch_size} must divide the per-rank batch of "
                            f"{len(dataset_ids)} examples (global batch / data-parallel size)")
    examples = [_example(datasets, d, e) for d, e in zip(dataset_ids.tolist(), example_ids.tolist())]
    return [collate_sft(examples[begin:begin + micro_batch_size], pad_id, pad_to_multiple_of, seq_length)
            for begin in range(0, len(examples), micro_batch_size)]


def packed_rows(draw: BlendDraw, datasets: Sequence[TokenizedDataset], seq_length: int,
                micro_batch_size: int) -> tuple[list[list[int]], int]:
    """(rows of global-batch positions, micro batches per rank) for packing one draw.

    The whole global batch is packed at once (`pack_rows`, first-fit decreasing, from the example lengths
    only), so a small per-rank batch does not leave half-empty rows; rank r then runs rows r, r + dp, ...
    The loss is a token average over the global batch (paper Eq. 1), so which rank holds an example does
    not change it. Every rank computes the same rows without communication, and all run the same number
    of micro batches, ceil(ceil(rows / dp) / micro_batch_size), as the pipeline schedules of one replica
    need and as any per-micro-batch collective across data-parallel ranks would.
    """
    lengths = [int(datasets[d].offsets[e + 1] - datasets[d].offsets[e])
               for d, e in zip(draw.dataset_ids.tolist(), draw.example_ids.tolist())]
    rows = pack_rows(lengths, seq_length)
    per_rank = -(-len(rows) // draw.dp_size)
    return rows, max(1, -(-per_rank // micro_batch_size))


def _packed_micro_batches(draw: BlendDraw, datasets: Sequence[TokenizedDataset], micro_batch_size: int,
                          pad_id: int, seq_length: int, fixed_rows: bool) -> list[dict]:
    rows, count = packed_rows(draw, datasets, seq_length, micro_batch_size)
    mine = rows[draw.dp_rank::draw.dp_size]
    batches = []
    for chunk in _spread(mine, count):
        if fixed_rows or not chunk:  # a rank with fewer rows than micro batches runs an empty row
            chunk = chunk + [[]] * ((micro_batch_size if fixed_rows else 1) - len(chunk))
        members = [i for row in chunk for i in row]  # positions in the global batch
        local = {position: k for k, position in enumerate(members)}
        examples = [_example(datasets, int(draw.dataset_ids[i]), int(draw.example_ids[i])) for i in members]
        batches.append(collate_packed_rows(examples, [[local[i] for i in row] for row in chunk], pad_id,
                                           seq_length))
    return batches


def _example(datasets: Sequence[TokenizedDataset], dataset: int, index: int) -> dict:
    item = datasets[dataset][index]
    item["dataset_id"] = dataset
    return item


def _spread(rows: list[list[int]], count: int) -> list[list[list[int]]]:
    """`rows` cut into `count` consecutive chunks whose sizes differ by at most one (fuller rows first)."""
    base, extra = divmod(len(rows), count)
    chunks, begin = [], 0
    for chunk in range(count):
        size = base + (chunk < extra)
        chunks.append(rows[begin:begin + size])
        begin += size
    return chunks
