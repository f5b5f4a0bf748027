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
    seq_length. With packing: examples placed first-fit (in order) into rows of exactly seq_length tokens.
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
        rows = _first_fit_rows(lengths, seq_length)
        width = seq_length
    else:
        rows = [[i] for i in range(len(examples))]
        multiple = max(1, int(pad_to_multiple_of))
        width = -(-max(lengths) // multiple) * multiple
        width = min(width, seq_length) if seq_length is not None else width
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
            start += lengths[index]
    if pack:
        batch["cu_seqlens"], batch["max_seqlen"] = _cu_seqlens(rows, lengths, width)
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


def _first_fit_rows(lengths: list[int], seq_length: int) -> list[list[int]]:
    """Example indices per row: each example goes into the first row with room (a deterministic bin packing)."""
    rows: list[list[int]] = []
    used: list[int] = []
    for index, length in enumerate(lengths):
        for row, filled in enumerate(used):
            if filled + length <= seq_length:
                rows[row].append(index)
                used[row] += length
                break
        else:
            rows.append([index])
            used.append(length)
    return rows
