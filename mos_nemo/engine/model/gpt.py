"""megatron-core GPTModel for the Llama (Llama-3, SmolLM2), Qwen2 (Qwen1.5) and Gemma (v1) families.

The HF config decides the architecture; megatron's TransformerConfig mirrors it:
| HF                          | megatron                                                    |
| --------------------------- | ----------------------------------------------------------- |
| num_key_value_heads (GQA)   | num_query_groups                                            |
| head_dim (Gemma: 256)       | kv_channels                                                 |
| rope_parameters             | RotaryEmbedding.inv_freq, recomputed with HF's own function |
| RMSNorm, Gemma's (1 + w)    | RMSNorm (layer_spec.py), layernorm_zero_centered_gamma      |
| silu / gelu_pytorch_tanh    | gated_linear_unit + activation_func (SwiGLU / GeGLU)        |
| Qwen2 q/k/v bias            | add_qkv_bias                                                |
| tie_word_embeddings         | share_embeddings_and_output_weights                         |
| Gemma's sqrt(h) embed scale | a forward hook on the embedding                             |

RoPE positions are 0..s-1 within a row, whatever ``position_ids`` says (megatron's RotaryEmbedding ignores
them). With packed rows attending within their example (``DocumentSpans``, or the dense mask of
``attention_mask_from_segments``) that equals HF's per-example positions up to
rounding, because RoPE scores depend only on the distance between two tokens of the same example.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers

from mos_nemo.engine.cpu import install_cpu_shims
from mos_nemo.engine.model.layer_spec import decoder_block_spec, transformer_engine_available
from mos_nemo.errors import MosConfigError

from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.transformer.transformer_config import TransformerConfig

FAMILIES = ("llama", "qwen2", "gemma")
_ACTIVATIONS = {"silu": F.silu, "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh")}
_ROPE_TYPES = ("default", "linear", "llama3")


def load_hf_config(hf_path_or_dir, key: str = "model.hf_path") -> transformers.PretrainedConfig:
    """The HF config of a local model folder; MosConfigError naming ``key`` (the config key or command-line
    flag the folder came from) if it is missing."""
    folder = Path(hf_path_or_dir)
    if not (folder / "config.json").is_file():
        raise MosConfigError(
            f"{key}={str(hf_path_or_dir)!r}: no config.json there. Point {key} at a local "
            "HF model folder (config.json + *.safetensors); the HF hub is not used."
        )
    return transformers.AutoConfig.from_pretrained(folder)


def model_family(hf_config) -> str:
    """One of FAMILIES, from ``hf_config.model_type``."""
    family = getattr(hf_config, "model_type", None)
    if family not in FAMILIES:
        raise MosConfigError(
            f"model.hf_path: model_type={family!r} is not supported; supported families: {', '.join(FAMILIES)}."
        )
    return family


def _activation(hf_config):
    name = getattr(hf_config, "hidden_activation", None) or hf_config.hidden_act
    if name not in _ACTIVATIONS:
        raise MosConfigError(f"model.hf_path: hidden_act={name!r} unsupported; expected one of {list(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]


def _check_supported(hf_config, family: str, tp: int, pp: int) -> None:
    """Reject architecture options the conversion does not implement, and layouts that do not divide."""
    if getattr(hf_config, "mlp_bias", False) or (family != "qwen2" and getattr(hf_config, "attention_bias", False)):
        raise MosConfigError("model.hf_path: attention_bias/mlp_bias=true is not supported for this family.")
    if family == "qwen2" and getattr(hf_config, "use_sliding_window", False):
        raise MosConfigError("model.hf_path: Qwen2 use_sliding_window=true is not supported; set it to false.")
    rope_type = hf_rope_parameters(hf_config).get("rope_type", "default")
    if rope_type not in _ROPE_TYPES:
        raise MosConfigError(f"model.hf_path: rope_type={rope_type!r} unsupported; expected one of {_ROPE_TYPES}.")
    for what, count in (("num_attention_heads", hf_config.num_attention_heads),
                        ("num_key_value_heads", _kv_heads(hf_config)), ("vocab_size", hf_config.vocab_size)):
        if count % tp:
            raise MosConfigError(f"parallel.tp={tp} does not divide the model's {what}={count}; pick a divisor.")
    if hf_config.num_hidden_layers % pp:
        raise MosConfigError(
            f"parallel.pp={pp} does not divide the model's num_hidden_layers={hf_config.num_hidden_layers}."
        )


def _kv_heads(hf_config) -> int:
    return getattr(hf_config, "num_key_value_heads", None) or hf_config.num_attention_heads


def _head_dim(hf_config) -> int:
    return getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads


def hf_rope_parameters(hf_config) -> dict:
    """RoPE settings as a dict with ``rope_type`` and ``rope_theta`` (transformers 4 and 5 spellings)."""
    params = dict(getattr(hf_config, "rope_parameters", None) or getattr(hf_config, "rope_scaling", None) or {})
    params.setdefault("rope_type", params.get("type", "default"))
    params.setdefault("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
    return params


def hf_rope_inv_freq(hf_config) -> torch.Tensor:
    """RoPE inverse frequencies [head_dim/2] exactly as HF computes them (base and scaling)."""
    params = hf_rope_parameters(hf_config)
    if params["rope_type"] == "default":
        dim = _head_dim(hf_config)
        return 1.0 / (params["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS[params["rope_type"]](hf_config, "cpu")
    if attention_factor != 1.0:
        raise MosConfigError(f"model.hf_path: RoPE attention scaling {attention_factor} is not supported.")
    return inv_freq


def fusion_settings(use_te: bool, activation, grad_accum_kernel: bool) -> dict[str, bool]:
    """megatron's fused-kernel switches. All off without TE (CPU, or a GPU without TE: they need TE's or
    apex's CUDA kernels). With TE on:
    - gradient_accumulation_fusion: TE linears fuse it natively; the output layer is megatron's
      ColumnParallelLinear, which needs apex's ``fused_weight_gradient_mlp_cuda`` (``grad_accum_kernel``);
    - apply_rope_fusion: TE's fused RoPE (megatron checks TE >= 1.4);
    - bias_activation_fusion: megatron fuses only F.silu / F.gelu (SwiGLU / exact GeGLU), not Gemma's tanh GELU;
    - bias_dropout_fusion, masked_softmax_fusion, cross_entropy_loss_fusion: megatron's own fused kernels.
    """
    on = bool(use_te)
    return dict(
        gradient_accumulation_fusion=on and grad_accum_kernel,
        bias_activation_fusion=on and activation in (F.silu, F.gelu),
        bias_dropout_fusion=on,
        masked_softmax_fusion=False,  # megatron's local softmax attention, which neither spec uses
        persist_layer_norm=False,  # apex's persistent LayerNorm; megatron ignores it for RMSNorm
        apply_rope_fusion=on,
        cross_entropy_loss_fusion=on,
    )


def _grad_accum_kernel_available() -> bool:
    from megatron.core.tensor_parallel import layers

    return bool(layers._grad_accum_fusion_available)


def transformer_config_from_hf(hf_config, *, tp: int, pp: int, params_dtype: torch.dtype,
                               sequence_parallel: bool = False, fused: bool | None = None) -> TransformerConfig:
    """megatron TransformerConfig for ``hf_config`` at TP ``tp`` / PP ``pp``; dropout off (fine-tuning).

    ``fused`` (default: on a GPU with Transformer Engine) switches on megatron's fusions, see fusion_settings.
    """
    family = model_family(hf_config)
    _check_supported(hf_config, family, tp, pp)
    on_cpu = not torch.cuda.is_available()
    fused = (not on_cpu and transformer_engine_available()) if fused is None else fused
    activation = _activation(hf_config)
    return TransformerConfig(
        num_layers=hf_config.num_hidden_layers,
        hidden_size=hf_config.hidden_size,
        ffn_hidden_size=hf_config.intermediate_size,
        num_attention_heads=hf_config.num_attention_heads,
        num_query_groups=_kv_heads(hf_config),
        kv_channels=_head_dim(hf_config),
        normalization="RMSNorm",
        layernorm_epsilon=hf_config.rms_norm_eps,
        layernorm_zero_centered_gamma=family == "gemma",
        gated_linear_unit=True,
        activation_func=activation,
        add_bias_linear=False,
        add_qkv_bias=family == "qwen2",
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=getattr(hf_config, "initializer_range", 0.02),
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        sequence_parallel=sequence_parallel and tp > 1,
        params_dtype=params_dtype,
        pipeline_dtype=params_dtype,
        bf16=params_dtype == torch.bfloat16,
        fp16=params_dtype == torch.float16,
        attention_softmax_in_fp32=True,
        use_cpu_initialization=on_cpu,
        **fusion_settings(fused, activation, grad_accum_kernel=fused and _grad_accum_kernel_available()),
    )


def _scale_embedding_output(hidden_size: int):
    """Gemma multiplies token embeddings by sqrt(hidden), rounded to the activation dtype like HF."""

    def hook(module, inputs, output):  # output: [s, b, h]
        return output * torch.tensor(math.sqrt(hidden_size), dtype=torch.float32).to(output.dtype)

    return hook


def default_device() -> torch.device:
    """This rank's CUDA device, or CPU without CUDA."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def build_model(hf_config, *, params_dtype: torch.dtype, sequence_parallel: bool = False,
                device: torch.device | str | None = None, use_te: bool | None = None) -> GPTModel:
    """GPTModel for this rank's pipeline stage (TP/PP sizes from megatron's parallel_state), every parameter
    and buffer on ``device`` (default: this rank's GPU, else CPU). ``use_te`` picks the layer spec
    (default: TE when megatron-core finds it; False forces the local spec, e.g. to compare the two).

    Call ``initialize_parallel`` first. Weights are randomly initialised; load them with
    ``hf_weights.load_hf_weights`` or a megatron checkpoint.
    """
    install_cpu_shims()
    tp = parallel_state.get_tensor_model_parallel_world_size()
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    use_te = transformer_engine_available() if use_te is None else use_te
    config = transformer_config_from_hf(hf_config, tp=tp, pp=pp, params_dtype=params_dtype,
                                        sequence_parallel=sequence_parallel,
                                        fused=use_te and torch.cuda.is_available())
    rope = hf_rope_parameters(hf_config)
    model = GPTModel(
        config=config,
        transformer_layer_spec=decoder_block_spec(config, use_te=use_te),
        vocab_size=hf_config.vocab_size,
        max_sequence_length=hf_config.max_position_embeddings,
        pre_process=parallel_state.is_pipeline_first_stage(),
        post_process=parallel_state.is_pipeline_last_stage(),
        parallel_output=True,
        share_embeddings_and_output_weights=bool(getattr(hf_config, "tie_word_embeddings", False)),
        position_embedding_type="rope",
        rotary_base=rope["rope_theta"],
    )
    # megatron knows only Llama-3.1's scaling with fixed constants: take HF's frequencies instead.
    model.rotary_pos_emb.inv_freq = hf_rope_inv_freq(hf_config).to(model.rotary_pos_emb.inv_freq.device)
    if model_family(hf_config) == "gemma" and model.pre_process:
        model.embedding.register_forward_hook(_scale_embedding_output(hf_config.hidden_size))
    return model.to(default_device() if device is None else device)


def attention_mask_from_segments(segment_ids: torch.Tensor) -> torch.Tensor:
    """Megatron attention mask [b, 1, s, s] (True = masked out) for packed rows.

    segment_ids [b, s]: 1..k for the k examples packed in a row, 0 for padding. Token i may attend to
    token j iff j <= i, both are in the same example and it is not padding; a padding token attends to
    itself only, so that no softmax row is empty (which would give NaN).
    """
    s = segment_ids.shape[1]
    causal = torch.ones(s, s, dtype=torch.bool, device=segment_ids.device).tril()  # [s, s]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # [b, s, s]
    real = (segment_ids != 0)[:, None, :]  # [b, 1, s] keys that are not padding
    allowed = causal & same & real  # [b, s, s]
    pad_self = torch.eye(s, dtype=torch.bool, device=segment_ids.device) & (segment_ids == 0)[:, :, None]
    return ~(allowed | pad_self)[:, None]  # [b, 1, s, s]
