"""The megatron-core model: GPTModel from an HF config (gpt.py), its layer specs (layer_spec.py) and the
torch SDPA core attention used when Transformer Engine is absent (attention.py)."""
