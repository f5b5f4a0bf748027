"""Core attention on torch's scaled_dot_product_attention, a drop-in for megatron's DotProductAttention.

megatron-core's local DotProductAttention materialises the [b, np, s, s] score matrix in an unfused
softmax; on an H100 without Transformer Engine it reaches about a third of the tokens/s of HF transformers
(docs/engine.md, "Attention without Transformer Engine"). torch SDPA picks a fused kernel (flash /
memory-efficient) on GPU and a plain one on CPU.

Masks follow megatron's convention: a bool tensor [b, 1, s, s] where True means "masked out".
Without a mask the attention is causal.
"""

from __future__ import annotations

import contextlib
import math
from typing import Optional

import torch.nn.functional as F
from torch import Tensor

from megatron.core import tensor_parallel
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.utils import divide


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
        attention_mask: Optional[Tensor],  # [b, 1, sq, sk] bool, True = masked out
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
        if attention_mask is None:
            mask, is_causal = None, True
        else:
            mask, is_causal = ~attention_mask, False  # SDPA's bool mask: True = attend
        # Dropout draws from megatron's TP-aware RNG stream; without dropout skip the state swap.
        rng = tensor_parallel.get_cuda_rng_tracker().fork() if dropout_p > 0 else contextlib.nullcontext()
        with rng:
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal,
                scale=self.softmax_scale, enable_gqa=self.num_groups != self.num_heads,
            )  # [b, np, sq, hn]
        return context.permute(2, 0, 1, 3).reshape(sq, b, self.num_heads * self.head_dim)  # [sq, b, hp]
