"""AdamW through megatron-core's optimizer (distributed or not) and the paper's learning-rate schedule.

Paper, Appendix C: AdamW, linear warm-up over the first 10% of the steps, then linear decay. The schedule is
a pure function of the step, so the checkpoint needs only the step to resume it exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mos_nemo.config import OptimConfig
from mos_nemo.engine.cpu import device_mode

from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer


@dataclass(frozen=True)
class LinearSchedule:
    """Linear warm-up then linear decay (Appendix C), indexed by the 1-based step about to be taken.

    Step t uses ``peak * t / W`` for t <= W (W = round(warmup_fraction * max_steps), at least 1 when the
    fraction is > 0), then falls linearly towards ``min_lr``, which it would reach one step after the last,
    so no step is taken with a zero learning rate.
    """

    peak: float
    min_lr: float
    max_steps: int
    warmup_steps: int

    @classmethod
    def from_config(cls, optim: OptimConfig, max_steps: int) -> "LinearSchedule":
        warmup = math.ceil(optim.warmup_fraction * max_steps) if optim.warmup_fraction > 0 else 0
        return cls(peak=optim.lr, min_lr=optim.min_lr, max_steps=max_steps, warmup_steps=min(warmup, max_steps))

    def lr_at(self, step: int) -> float:
        if step <= self.warmup_steps:
            return self.peak * step / self.warmup_steps
        remaining = (self.max_steps - step + 1) / (self.max_steps - self.warmup_steps + 1)
        return self.min_lr + (self.peak - self.min_lr) * max(remaining, 0.0)

    def state_dict(self) -> dict:
        return {"peak": self.peak, "min_lr": self.min_lr, "max_steps": self.max_steps,
                "warmup_steps": self.warmup_steps}


def build_optimizer(model_chunks: list[torch.nn.Module], optim: OptimConfig, use_distributed_optimizer: bool,
                    bf16: bool):
    """megatron-core's Adam with decoupled weight decay (= AdamW) over the DDP-wrapped ``model_chunks``."""
    config = OptimizerConfig(
        optimizer="adam",
        lr=optim.lr,
        min_lr=optim.min_lr,
        weight_decay=optim.weight_decay,
        adam_beta1=optim.adam_beta1,
        adam_beta2=optim.adam_beta2,
        adam_eps=optim.adam_eps,
        decoupled_weight_decay=True,
        clip_grad=optim.clip_grad,
        bf16=bf16,
        params_dtype=torch.bfloat16 if bf16 else torch.float32,
        use_distributed_optimizer=use_distributed_optimizer,
    )
    with device_mode():  # megatron allocates a few buffers on "cuda"
        return get_megatron_optimizer(config, model_chunks)


def set_learning_rate(optimizer, lr: float) -> None:
    """Write ``lr`` into every parameter group (megatron's chained optimizer exposes them all)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
