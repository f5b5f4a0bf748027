"""megatron-core engine: model from HF configs, CPU shims, parallel set-up, HF conversion, training step."""
