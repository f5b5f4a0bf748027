"""Core attention on torch's scaled_dot_product_attention, a drop-in for megatron's DotProductAttention.

megatron-core's local DotProductAttention materialises the [b, np, s, s] score matrix in an unfused
softmax; on an H100 without Transformer Engine it reaches about a third of the tokens/s of HF transformers
(docs/engine.md, "Attention without Transformer Engine"). torch SDPA picks a fused kernel (flash /
memory-efficient) on GPU and a plain one on CPU.

Masks follow megatron's convention: a bool tensor [b, 1, s, s] where True means "masked out".
Without a mask the attention is causal. Packed rows come as ``DocumentSpans`` in the mask's place: each
example of a row attends causally within itself, one SDPA call per example, so no [s, s] mask or score
matrix exists and the fused kernels stay usable (docs/engine.md, "Sequence packing").
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from megatron.core import tensor_parallel
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.utils import divide


@dataclass(frozen=True)
class DocumentSpans:
    """The examples of packed rows, on the host: ``rows[r]`` lists (start, end, is_padding) spans that tile row r.

    Handed to GPTModel as its ``attention_mask`` (megatron passes the mask through to core attention untouched),
    it means the same as ``attention_mask_from_segments``: causal within an example, and each padding token
    attends to itself only. Host-side so that the per-example loop needs no device sync.
    """

    rows: tuple[tuple[tuple[int, int, bool], ...], ...]

    @staticmethod
    def from_segments(segment_ids: Tensor) -> "DocumentSpans":
        """From segment_ids [b, s] (1..k per example, 0 for padding); reads a device tensor back once."""
        rows = []
        for row in segment_ids.cpu().tolist():
            spans, start = [], 0
            for i in range(1, len(row) + 1):
                if i == len(row) or row[i] != row[start]:
                    spans.append((start, i, row[start] == 0))
                    start = i
            rows.append(tuple(spans))
        return DocumentSpans(tuple(rows))


def _sdpa(q: Tensor, k: Tensor, v: Tensor, groups: int, **kwargs) -> Tensor:
    """SDPA with grouped-query attention, on a fused kernel where one exists: CUDA's flash kernel takes GQA but
    only 16-bit inputs, its memory-efficient kernel takes fp32 but not GQA, so fp32 on CUDA gets key/value
    heads repeated (linear memory) rather than the math kernel's [b, heads, s, s] scores. CPU's flash kernel
    takes both."""
    heads = q.shape[1]
    if groups != heads and q.is_cuda and q.dtype == torch.float32:
        k, v = k.repeat_interleave(heads // groups, dim=1), v.repeat_interleave(heads // groups, dim=1)
        groups = heads
    return F.scaled_dot_product_attention(q, k, v, enable_gqa=groups != heads, **kwargs)


def document_attention(q: Tensor, k: Tensor, v: Tensor, spans: DocumentSpans, groups: int, **kwargs) -> Tensor:
    """Causal attention within each example of packed rows: softmax(q k^T * scale) v per span, [b, np, s, hn].

    q [b, np, s, hn], k/v [b, ng, s, hn]. A padding token's only score is its own, so its output is its value
    (no dropout: padding carries no loss and no real token sees it). Memory is that of the longest example's
    fused attention, not O(s^2).
    """
    repeat = q.shape[1] // groups
    rows = []
    for r, row in enumerate(spans.rows):
        pieces = []
        for start, end, padding in row:
            if padding:
                pieces.append(v[r:r + 1, :, start:end].repeat_interleave(repeat, dim=1))
            else:
                pieces.append(_sdpa(q[r:r + 1, :, start:end], k[r:r + 1, :, start:end], v[r:r + 1, :, start:end],
                                    groups, is_causal=True, **kwargs))
        rows.append(torch.cat(pieces, dim=2))
    return torch.cat(rows, dim=0)


class SDPACoreAttention(MegatronModule):
    """softmax(q k^T * scale + mask) v for one TP shard of heads, grouped-query aware."""

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: Optional[float] = None,
        softmax_scale: Optional[float] = None,
        cp_comm_type: Optional[str] = None,
        pg_collection=None,
    ):
        super().__init__(config=config)
        if config.context_parallel_size != 1:
            raise NotImplementedError("SDPACoreAttention has no context parallelism; use the TE spec.")
        tp_size = config.tensor_model_parallel_size
        self.num_heads = divide(config.num_attention_heads, tp_size)
        self.num_groups = divide(config.num_query_groups, tp_size)
        self.head_dim = config.kv_channels
        self.softmax_scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(self.head_dim)
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(
        self,
        query: Tensor,  # [sq, b, np, hn]
        key: Tensor,  # [sk, b, ng, hn]
        value: Tensor,  # [sk, b, ng, hn]
        attention_mask: Optional[Tensor | DocumentSpans],  # [b, 1, sq, sk] bool, True = masked out
        attn_mask_type: Optional[AttnMaskType] = None,
        attention_bias: Optional[Tensor] = None,
        packed_seq_params=None,
    ) -> Tensor:
        if attention_bias is not None or packed_seq_params is not None:
            raise NotImplementedError("SDPACoreAttention takes neither attention_bias nor packed_seq_params.")
        sq, b = query.shape[0], query.shape[1]
        q = query.permute(1, 2, 0, 3)  # [b, np, sq, hn]
        k = key.permute(1, 2, 0, 3)  # [b, ng, sk, hn]
        v = value.permute(1, 2, 0, 3)  # [b, ng, sk, hn]
        dropout_p = self.dropout_p if self.training else 0.0
        # Dropout draws from megatron's TP-aware RNG stream; without dropout skip the state swap.
        rng = tensor_parallel.get_cuda_rng_tracker().fork() if dropout_p > 0 else contextlib.nullcontext()
        options = dict(dropout_p=dropout_p, scale=self.softmax_scale)
        with rng:
            if isinstance(attention_mask, DocumentSpans):  # packed rows
                context = document_attention(q, k, v, attention_mask, self.num_groups, **options)
            elif attention_mask is None:
                context = _sdpa(q, k, v, self.num_groups, is_causal=True, **options)
            else:  # SDPA's bool mask: True = attend
                context = _sdpa(q, k, v, self.num_groups, attn_mask=~attention_mask, **options)
        # context: [b, np, sq, hn]
        return context.permute(2, 0, 1, 3).reshape(sq, b, self.num_heads * self.head_dim)  # [sq, b, hp]
