"""Transformer layer specs: the TE spec when Transformer Engine imports, else local modules + SDPA.

The local spec is megatron's local GPT layer with two replacements:
- core attention = ``SDPACoreAttention`` (fused kernels without TE, see attention.py);
- norms = ``RMSNorm`` below, which supports Gemma's (1 + w) scale and sequence parallelism
  (megatron's WrappedTorchNorm supports neither).
Both specs use the same sharded-state-dict keys, so distributed checkpoints move between them.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.attention import SelfAttention, SelfAttentionSubmodules
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.transformer_layer import TransformerLayer, TransformerLayerSubmodules

from mos_nemo.engine.model.attention import SDPACoreAttention


def transformer_engine_available() -> bool:
    """megatron-core's own verdict on Transformer Engine (NeMo / NGC containers); then the TE spec is used.

    ``gpt_layer_specs.HAVE_TE`` is True only if ``transformer_engine`` AND megatron's TE wrappers
    (TENorm, TEFusedMLP, TESpecProvider) import, i.e. exactly when ``get_gpt_layer_with_transformer_engine_spec``
    can build; a bare ``import transformer_engine`` also succeeds for a TE too old or too new for megatron.
    """
    from megatron.core.models.gpt import gpt_layer_specs

    return bool(gpt_layer_specs.HAVE_TE)


def parameter_device(config: TransformerConfig) -> torch.device | str:
    """Where megatron's own layers allocate parameters: CPU with ``use_cpu_initialization``, else the
    current CUDA device (megatron.core.tensor_parallel.layers does the same), so no norm is left behind."""
    return "cpu" if config.use_cpu_initialization else torch.cuda.current_device()


class RMSNorm(torch.nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * g, with g = w (Llama, Qwen2) or g = 1 + w (Gemma).

    Computed in fp32 and cast back, in the same order as HF transformers, so fp32 logits match HF to
    rounding and bf16 ones to the same rounding HF does.
    """

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-5, **unused):
        super().__init__()
        self.eps = eps
        self.zero_centered_gamma = config.layernorm_zero_centered_gamma
        init = torch.zeros if self.zero_centered_gamma else torch.ones
        self.weight = torch.nn.Parameter(init(hidden_size, dtype=config.params_dtype, device=parameter_device(config)))
        # megatron all-reduces the grads of parameters marked sequence_parallel across TP ranks.
        setattr(self.weight, "sequence_parallel", config.sequence_parallel)

    def forward(self, x: Tensor) -> Tensor:  # [s, b, h]
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.zero_centered_gamma:
            return (normed * (1.0 + self.weight.float())).type_as(x)
        return self.weight * normed.to(x.dtype)


def mlp_with_width(mlp, ffn_hidden_size: int):
    """The layer's MLP builder with its width given, as megatron-core asks from 0.16 on (an MLP built without
    ``ffn_hidden_size`` warns that the fallback to ``config.ffn_hidden_size`` will become an error).

    megatron-core 0.16 builds the MLP from a ``ModuleSpec`` (the width goes in its params); from 0.17 the
    layer calls a builder, ``partial(MLP.as_mlp_submodule, ...)``, and rewraps a ``ModuleSpec`` of MLP into
    one with a warning per layer. Both take the width as a keyword.
    """
    if isinstance(mlp, ModuleSpec):
        return ModuleSpec(module=mlp.module, submodules=mlp.submodules,
                          params={**mlp.params, "ffn_hidden_size": ffn_hidden_size})
    return partial(mlp, ffn_hidden_size=ffn_hidden_size)


def local_mlp(ffn_hidden_size: int):
    """megatron-core's MLP (fc1 column-parallel, fc2 row-parallel) in the form this megatron-core builds."""
    submodules = MLPSubmodules(linear_fc1=ColumnParallelLinear, linear_fc2=RowParallelLinear)
    if hasattr(MLP, "as_mlp_submodule"):  # megatron-core >= 0.17
        return mlp_with_width(partial(MLP.as_mlp_submodule, submodules=submodules), ffn_hidden_size)
    return mlp_with_width(ModuleSpec(module=MLP, submodules=submodules), ffn_hidden_size)


def local_layer_spec(ffn_hidden_size: int) -> ModuleSpec:
    """One decoder layer from megatron-core modules, with SDPA attention and our RMSNorm."""
    return ModuleSpec(
        module=TransformerLayer,
        submodules=TransformerLayerSubmodules(
            input_layernorm=RMSNorm,
            self_attention=ModuleSpec(
                module=SelfAttention,
                params={"attn_mask_type": AttnMaskType.causal},
                submodules=SelfAttentionSubmodules(
                    linear_qkv=ColumnParallelLinear,
                    core_attention=SDPACoreAttention,
                    linear_proj=RowParallelLinear,
                    q_layernorm=IdentityOp,
                    k_layernorm=IdentityOp,
                ),
            ),
            self_attn_bda=get_bias_dropout_add,
            pre_mlp_layernorm=RMSNorm,
            mlp=local_mlp(ffn_hidden_size),
            mlp_bda=get_bias_dropout_add,
            # The checkpoint keys of the TE spec, where the norms live inside the following linear.
            sharded_state_dict_keys_map={
                "input_layernorm.": "self_attention.linear_qkv.layer_norm_",
                "pre_mlp_layernorm.": "mlp.linear_fc1.layer_norm_",
            },
        ),
    )


def decoder_block_spec(config: TransformerConfig, use_te: bool) -> ModuleSpec | TransformerBlockSubmodules:
    """The spec GPTModel gets: a layer spec (TE) or block submodules with our final norm (local).

    Both use causal attention without a mask tensor: TE then picks its fused (flash / cuDNN) kernels, which it
    cannot for ``AttnMaskType.arbitrary``. Packed rows reach TE as ``PackedSeqParams`` (THD, cu_seqlens);
    SDPACoreAttention takes their DocumentSpans and attends within each example (see inputs.py).
    """
    if use_te:
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_with_transformer_engine_spec

        spec = get_gpt_layer_with_transformer_engine_spec()
        spec.submodules.self_attention.params = {"attn_mask_type": AttnMaskType.causal}
        spec.submodules.mlp = mlp_with_width(spec.submodules.mlp, config.ffn_hidden_size)
        return spec
    from megatron.core.transformer.transformer_block import get_num_layers_to_build

    layers = get_num_layers_to_build(config)
    return TransformerBlockSubmodules(layer_specs=[local_layer_spec(config.ffn_hidden_size)] * layers,
                                      layer_norm=RMSNorm)
