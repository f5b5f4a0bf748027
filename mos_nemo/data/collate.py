"""Collate tokenised SFT examples into model-ready tensors, padded or packed.

Every row carries `segment_ids` (1..k for the k examples in it, 0 for padding) and `position_ids` that restart
at 0 for each example; the engine's attention mask is causal AND same-segment, so packed examples never see
each other. Labels are next tokens within the same example only (the last token of an example has none);
`loss_mask[t]` is 1.0 where `labels[t]` is a response token (paper Eq. 1: loss on responses only).
"""

from __future__ import annotations

import torch

from mos_nemo.errors import MosValueError

IGNORE_INDEX = -100


def collate_sft(examples: list[dict], pad_id: int, pad_to_multiple_of: int = 8, seq_length: int | None = None,
                pack: bool = False) -> dict[str, torch.Tensor]:
    """tokens/labels/loss_mask/position_ids/segment_ids, each [b, s].

    Without packing: one example per row, s = longest example rounded up to `pad_to_multiple_of`, capped at
    seq_length. With packing: examples placed by `pack_rows` (first-fit decreasing) into rows of exactly
    seq_length tokens.
    When every example has an int "dataset_id", a "dataset_ids" [b, s] tensor (-1 on padding) is added.
    Packed batches also carry "cu_seqlens" [k + 1] int32 and "max_seqlen" (a Python int): the boundaries of
    the k sequences of the flattened batch [b*s] (every example, and each row's padding as one more), the
    THD layout Transformer Engine's fused attention takes instead of a mask.
    """
    if not examples:
        raise MosValueError("collate_sft got no examples: a micro batch needs at least one")
    lengths = [int(example["input_ids"].numel()) for example in examples]
    if min(lengths) < 1:
        raise MosValueError(f"collate_sft got an empty example (lengths {lengths})")
    if seq_length is not None and max(lengths) > seq_length:
        raise MosValueError(f"an example has {max(lengths)} tokens > seq_length={seq_length}; "
                            "load data with the same seq_length so it is truncated first")
    if pack:
        if seq_length is None:
            raise MosValueError("collate_sft(pack=True) needs seq_length: packed rows are exactly seq_length long")
        return collate_packed_rows(examples, pack_rows(lengths, seq_length), pad_id, seq_length)
    multiple = max(1, int(pad_to_multiple_of))
    width = -(-max(lengths) // multiple) * multiple
    width = min(width, seq_length) if seq_length is not None else width
    return _fill(examples, [[i] for i in range(len(examples))], pad_id, width)


def collate_packed_rows(examples: list[dict], rows: list[list[int]], pad_id: int, seq_length: int) -> dict:
    """The packed batch [len(rows), seq_length] whose row r holds examples[i] for i in rows[r], in that order.

    A row may be empty (all padding): the pipeline schedules need every micro batch to have the same number
    of rows. Adds "cu_seqlens" and "max_seqlen" (see `collate_sft`).
    """
    lengths = [int(example["input_ids"].numel()) for example in examples]
    placed = sorted(i for members in rows for i in members)
    if placed != list(range(len(examples))):
        raise MosValueError(f"packed rows {rows} must place each of the {len(examples)} examples exactly once")
    fullest = max((sum(lengths[i] for i in members) for members in rows), default=0)
    if fullest > seq_length:
        raise MosValueError(f"a packed row holds {fullest} tokens > seq_length={seq_length}")
    batch = _fill(examples, rows, pad_id, seq_length)
    batch["cu_seqlens"], batch["max_seqlen"] = _cu_seqlens(rows, lengths, seq_length)
    return batch


def _fill(examples: list[dict], rows: list[list[int]], pad_id: int, width: int) -> dict[str, torch.Tensor]:
    """The [len(rows), width] tensors of `collate_sft`, each row holding its examples back to back."""
    batch = {
        "tokens": torch.full((len(rows), width), int(pad_id), dtype=torch.int64),  # [b, s]
        "labels": torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.int64),  # [b, s]
        "loss_mask": torch.zeros((len(rows), width), dtype=torch.float32),  # [b, s]
        "position_ids": torch.zeros((len(rows), width), dtype=torch.int64),  # [b, s]
        "segment_ids": torch.zeros((len(rows), width), dtype=torch.int64),  # [b, s]
    }
    if all("dataset_id" in example for example in examples):  # optional: per-dataset loss logging
        batch["dataset_ids"] = torch.full((len(rows), width), -1, dtype=torch.int64)  # [b, s], -1 = padding
    for row, members in enumerate(rows):
        start = 0
        for segment, index in enumerate(members, start=1):
            _place(batch, row, start, segment, examples[index])
            start += int(examples[index]["input_ids"].numel())
    return batch


def _cu_seqlens(rows: list[list[int]], lengths: list[int], width: int) -> tuple[torch.Tensor, int]:
    """Cumulative sequence starts over the flattened rows, padding tails counted as sequences of their own."""
    spans = []
    for members in rows:
        spans += [lengths[i] for i in members]
        tail = width - sum(lengths[i] for i in members)
        if tail:
            spans.append(tail)
    bounds = torch.tensor([0] + spans, dtype=torch.int64).cumsum(0).to(torch.int32)  # [k + 1]
    return bounds, max(spans)


def _place(batch: dict[str, torch.Tensor], row: int, start: int, segment: int, example: dict) -> None:
    ids = example["input_ids"].to(torch.int64)  # [n]
    mask = example["loss_mask"].to(torch.bool)  # [n]
    n = len(ids)
    span = slice(start, start + n)
    batch["tokens"][row, span] = ids
    batch["position_ids"][row, span] = torch.arange(n)
    batch["segment_ids"][row, span] = segment
    if "dataset_ids" in batch:
        batch["dataset_ids"][row, span] = int(example["dataset_id"])
    targets = slice(start, start + n - 1)  # the last token of an example predicts nothing
    batch["labels"][row, targets] = torch.where(mask[1:], ids[1:], torch.full_like(ids[1:], IGNORE_INDEX))
    batch["loss_mask"][row, targets] = mask[1:].float()


def pack_rows(lengths: list[int], seq_length: int) -> list[list[int]]:
    """Example indices per row of seq_length tokens, by first-fit decreasing bin packing.

    Examples are taken longest first (ties: lower index first) and each goes into the first row with room,
    which fills rows far better than first-fit in arrival order when a few long examples (multi-turn chat)
    meet many short ones; it uses at most 11/9 of the optimal number of rows plus one. Deterministic: the
    result depends on the lengths only. Within a row, examples keep that longest-first order.
    """
    if any(length > seq_length for length in lengths):
        raise MosValueError(f"an example has {max(lengths)} tokens > seq_length={seq_length}; "
                            "load data with the same seq_length so it is truncated first")
    rows: list[list[int]] = []
    free: list[int] = []  # tokens left in each row
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        row = next((r for r, room in enumerate(free) if room >= lengths[index]), len(rows))
        if row == len(rows):
            rows.append([])
            free.append(seq_length)
        rows[row].append(index)
        free[row] -= lengths[index]
    return rows
