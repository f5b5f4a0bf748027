"""The temperature prior q_tau over datasets (paper Eq. 3)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mos_nemo.errors import MosValueError


def validate_sizes(sizes: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Return dataset sizes as a float64 tensor [N], or raise naming the bad entry."""
    try:
        values = torch.as_tensor(sizes, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise MosValueError(f"sizes = {sizes!r}: expected a sequence of numbers ({error})") from None
    if values.dim() != 1 or values.numel() == 0:
        raise MosValueError(
            f"sizes has shape {tuple(values.shape)}: give a non-empty list with one size (examples) per dataset"
        )
    for index, size in enumerate(values.tolist()):
        if not math.isfinite(size) or size <= 0:
            raise MosValueError(
                f"sizes[{index}] = {size}: every dataset size must be a positive, finite number of examples"
            )
    return values


def temperature_prior(sizes: Sequence[float] | torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 3: q_tau(i) = q(i)^(1/tau) / sum_n q(n)^(1/tau), with q(i) = M_i / sum_n M_n.

    tau = 1 is proportional sampling, tau = inf is uniform. Computed in log space so that tiny and huge
    datasets side by side do not underflow. Returns float64 [N], summing to 1.
    """
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or math.isnan(tau) or tau <= 0:
        raise MosValueError(f"tau = {tau!r}: the temperature must be a number > 0 (1 proportional, inf uniform)")
    values = validate_sizes(sizes)
    if math.isinf(tau):
        return torch.full_like(values, 1.0 / values.numel())
    log_q = values.log() - values.sum().log()  # [N]
    return torch.softmax(log_q / tau, dim=0)
