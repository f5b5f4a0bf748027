"""mos_nemo: Mixture-of-Skills (Wu et al., EMNLP 2024) on megatron-core.

Subpackages:
- ``mos_nemo.mixing``: the MoS algorithm (prior, scorer, rewards, EMA); pure PyTorch.
- ``mos_nemo.data``: SFT data pipeline and the reweightable blend; no megatron import.
- ``mos_nemo.engine``: megatron-core model, HF conversion, training step, checkpoints.
"""

__version__ = "0.1.0"
