"""What GPTModel.forward gets for a collated batch: causal attention without a mask, or packed rows.

Three cases, chosen from the batch alone (no host sync: ``collate_sft`` marks packed batches with
``cu_seqlens``):
| batch                  | spec    | attention input                                                     |
| ---------------------- | ------- | ------------------------------------------------------------------- |
| one example per row    | any     | none: causal (TE fused / SDPA is_causal); right padding is harmless  |
| packed rows            | TE      | PackedSeqParams, THD: rows flattened to [1, b*s], cu_seqlens         |
| packed rows            | local   | DocumentSpans (host): one causal SDPA call per example               |
Right padding needs no mask: a causal query never sees a later key, so real tokens never see pads, and
the loss mask and the pooling mask drop the pads' own outputs.
"""

from __future__ import annotations

import torch

from mos_nemo.engine.model.attention import DocumentSpans


def is_packed(batch: dict) -> bool:
    """True for batches collated with ``pack=True`` (they carry cu_seqlens)."""
    return "cu_seqlens" in batch


def model_inputs(batch: dict, use_te: bool, with_labels: bool = True) -> dict:
    """Keyword arguments of GPTModel.forward for ``batch`` (tokens/position_ids/labels [b, s]).

    Under TE with packing the rows are flattened to one THD sequence [1, b*s]; the model then returns a
    per-token loss [1, b*s], which ``.reshape(b, s)`` maps back row by row.
    """
    tokens, positions = batch["tokens"], batch["position_ids"]  # [b, s]
    labels = batch["labels"] if with_labels else None  # [b, s]
    if not is_packed(batch):
        return dict(input_ids=tokens, position_ids=positions, attention_mask=None, labels=labels)
    if not use_te:  # the spans to_device read on the host, else read back here (one sync)
        spans = batch.get("document_spans") or DocumentSpans.from_segments(batch["segment_ids"])
        return dict(input_ids=tokens, position_ids=positions, labels=labels, attention_mask=spans)
    from megatron.core.packed_seq_params import PackedSeqParams

    cu_seqlens, longest = batch["cu_seqlens"], int(batch["max_seqlen"])  # [k + 1] int32, python int
    params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu_seqlens, cu_seqlens_kv=cu_seqlens,
                             max_seqlen_q=longest, max_seqlen_kv=longest)
    flat = lambda t: None if t is None else t.reshape(1, -1)  # noqa: E731  [b, s] -> [1, b*s]
    return dict(input_ids=flat(tokens), position_ids=flat(positions), attention_mask=None, labels=flat(labels),
                packed_seq_params=params)


def schedule_shape(batch: dict, use_te: bool) -> tuple[int, int]:
    """(seq_length, micro_batch_size) the pipeline schedules must use for the tensors between stages."""
    b, s = batch["tokens"].shape
    return (b * s, 1) if (use_te and is_packed(batch)) else (s, b)


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors of ``batch`` on ``device``: through pinned memory and non-blocking on CUDA, as-is on CPU.

    ``max_seqlen`` stays a Python int (TE takes it as a kernel argument; a device tensor would sync); packed
    batches also get their ``document_spans``, read here from the host tensors for the local spec.
    """
    host = {"document_spans": DocumentSpans.from_segments(batch["segment_ids"])} if is_packed(batch) else {}
    if device.type != "cuda":
        return {**batch, **host}
    return {**{key: value.pin_memory().to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
               for key, value in batch.items()}, **host}
