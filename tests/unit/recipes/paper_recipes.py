"""What the paper's recipes must be: the experiment table, and the model shapes from each model's config.json.

The shapes are copied from the Hugging Face config.json of meta-llama/Meta-Llama-3-8B, Qwen/Qwen1.5-0.5B
and google/gemma-2b (no hub access in tests); PUBLISHED_PARAMS are the models' published sizes, an
independent check of the parameter arithmetic.
"""

from __future__ import annotations

import transformers

HF_CONFIGS = {
    "Meta-Llama-3-8B": transformers.LlamaConfig(
        num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=False),
    "Qwen1.5-0.5B": transformers.Qwen2Config(
        num_hidden_layers=24, hidden_size=1024, intermediate_size=2816, num_attention_heads=16,
        num_key_value_heads=16, vocab_size=151936, tie_word_embeddings=True),
    "gemma-2b": transformers.GemmaConfig(
        num_hidden_layers=18, hidden_size=2048, intermediate_size=16384, num_attention_heads=8,
        num_key_value_heads=1, head_dim=256, vocab_size=256000, tie_word_embeddings=True),
}
PUBLISHED_PARAMS = {"Meta-Llama-3-8B": 8.03e9, "Qwen1.5-0.5B": 0.464e9, "gemma-2b": 2.506e9}
BACKBONES = {"llama3_8b": "Meta-Llama-3-8B", "qwen1_5_0_5b": "Qwen1.5-0.5B", "gemma_2b": "gemma-2b"}

TABLE1_METHODS = ("prop", "temp", "uni", "mos_cossim", "mos_cossim_ema", "mos_diff", "mos_diff_ema")
TABLE1 = [f"{backbone}_{method}" for backbone in BACKBONES for method in TABLE1_METHODS]
TABLE2 = [f"llama3_8b_{m}_tau{t}" for m in ("mos_cossim_ema", "mos_diff_ema") for t in ("1", "10")]
TABLE3 = [f"llama3_8b_ifd_{m}" for m in ("prop", "temp", "uni", "mos_cossim_ema", "mos_diff_ema")]
TABLE4 = ["llama3_8b_mospec_cossim_ema", "llama3_8b_mospec_diff_ema", "llama3_8b_math_only"]
HEADLINE = "llama3_8b_mos"
PAPER_RECIPES = TABLE1 + TABLE2 + TABLE3 + TABLE4 + [HEADLINE]
GPUS_PER_NODE, GPU_MEMORY_GB = 8, 80


def backbone_of(recipe: str) -> str:
    return next(b for b in BACKBONES if recipe.startswith(b + "_"))
