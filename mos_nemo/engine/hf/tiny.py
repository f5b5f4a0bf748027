"""Tiny random models of the three families, made locally (no download), for tests and the demo.

    cfg = tiny_hf_config("gemma", num_hidden_layers=2)     # HF config, hidden 64, GQA 4 heads / 2 KV heads
    save_tiny_hf_model(folder, "qwen2", seed=0)             # config + model.safetensors + tokenizer files

Every weight is drawn from a ``torch.Generator`` seeded with ``seed`` (norm weights and biases included,
so that a conversion that drops or swaps them changes the logits).
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

from mos_nemo.errors import MosValueError

_COMMON = dict(
    vocab_size=320,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)
_FAMILY = {
    # Llama-3 style: theta 500000 with Llama-3.1 frequency scaling, untied head (SmolLM2 ties: override).
    "llama": dict(tie_word_embeddings=False, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    # Qwen2: q/k/v bias, theta 1e6, tied head (as Qwen2-0.5B).
    "qwen2": dict(tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    # Gemma v1: head_dim differs from hidden/heads, GeGLU, (1 + w) norms, sqrt(h) embedding scale, tied.
    "gemma": dict(tie_word_embeddings=True, head_dim=32, hidden_act="gelu_pytorch_tanh",
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
}
_CONFIG_CLASSES = {
    "llama": transformers.LlamaConfig,
    "qwen2": transformers.Qwen2Config,
    "gemma": transformers.GemmaConfig,
}
# A small fixed corpus for the tiny byte-level BPE tokenizer.
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Mixture-of-Skills learns to mix datasets for instruction tuning.",
    "Question: what is 12 plus 30? Answer: 42.",
    "def add(a, b):\n    return a + b\n",
    "The patient was given 5 mg of the drug twice a day.",
]


def tiny_hf_config(family: str, **overrides) -> transformers.PretrainedConfig:
    """A few-layer HF config of ``family`` (llama | qwen2 | gemma); ``overrides`` set any config field.

    ``vocab_size`` is rounded up to a multiple of 8 so that TP sizes up to 8 divide it (pass the
    tokenizer's ``len(tokenizer)`` to fit a real tokenizer).
    """
    if family not in _CONFIG_CLASSES:
        raise MosValueError(f"tiny_hf_config(family={family!r}): expected one of {sorted(_CONFIG_CLASSES)}.")
    fields = {**_COMMON, **_FAMILY[family], **overrides}
    fields["vocab_size"] = -(-int(fields["vocab_size"]) // 8) * 8
    config = _CONFIG_CLASSES[family](**fields)
    config.dtype = torch.float32
    return config


def tiny_hf_model(config: transformers.PretrainedConfig, seed: int) -> transformers.PreTrainedModel:
    """An HF causal LM for ``config`` with every parameter drawn from a generator seeded with ``seed``."""
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)  # [*param.shape]
            if name.endswith("norm.weight"):
                # Around the identity scale: 1 + 0.1 n for w-norms, 0.1 n for Gemma's (1 + w) norms.
                param.copy_(param + 0.1 * noise)
            else:
                param.copy_(0.05 * noise)
    return model.eval()


def tiny_tokenizer(vocab_size: int = 320) -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a fixed corpus: <pad>=0, <s>=1, </s>=2, at most ``vocab_size``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def save_tiny_hf_model(folder, family: str, seed: int = 0, **overrides) -> transformers.PretrainedConfig:
    """Write a random tiny model of ``family`` as an HF folder (config, safetensors, tokenizer)."""
    folder = Path(folder)
    tokenizer = tiny_tokenizer()
    config = tiny_hf_config(family, **{"vocab_size": len(tokenizer), **overrides})
    tiny_hf_model(config, seed).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return config
