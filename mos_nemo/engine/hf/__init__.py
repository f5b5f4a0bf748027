"""HF interop: weights in and out of megatron-core (weights.py), logit parity with transformers
(verify.py), model-only checkpoints that ``convert`` writes (model_checkpoint.py) and tiny random models
for tests and the demo (tiny.py)."""
