"""MoS rewards: CosSim (Eq. 7-8), Diff (Eq. 9-10), MoSpec variants (Section 6), EMA smoothing (Eq. 11).

All functions take already-reduced statistics (pooled embeddings, per-example NLL) so that they are
independent of how the model was run: the engine all-reduces partial sums over data-parallel ranks first.
Rewards are computed in float64 so every rank derives bit-identical values from the same inputs.
"""

from __future__ import annotations

import torch

from mos_nemo.errors import MosValueError


def _check_target(target: int | None, num_datasets: int) -> None:
    if target is None:
        return
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < num_datasets:
        raise MosValueError(f"target = {target!r}: must be a dataset index in [0, {num_datasets}) or None")


def cossim_reward(z: torch.Tensor, target: int | None = None) -> torch.Tensor:
    """Eq. 8: R(i) = (1/N) sum_n cos(z_i, z_n), n = i included; z_i is dataset i's pooled embedding (Eq. 7).

    With ``target`` (MoSpec, Section 6) the reward is R(i) = cos(z_i, z_target).

    Args:
        z: [N, H] mean-pooled final hidden states, one row per dataset.
    Returns:
        float64 [N]. A zero row gives NaN (an undefined angle), which the controller refuses.
    """
    if z.dim() != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise MosValueError(f"z has shape {tuple(z.shape)}: expected [N, H] pooled embeddings with N, H >= 1")
    _check_target(target, z.shape[0])
    z64 = z.to(torch.float64)
    norms = z64.norm(dim=1, keepdim=True)  # [N, 1]
    unit = z64 / norms  # [N, H]; NaN rows where a norm is 0
    cosine = unit @ unit.T  # [N, N]
    if target is not None:
        return cosine[:, target].clone()
    return cosine.mean(dim=1)


def diff_reward(
    nll: torch.Tensor,
    nll_ref: torch.Tensor,
    target: int | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 10: R(i) = (1/L) sum_j PPL_theta(y_j | x_j) / PPL_theta0(y_j | x_j).

    PPL = exp(mean response-token NLL) (Eq. 9), so each ratio is exp(nll - nll_ref). With ``target``
    (MoSpec, Section 6) the target dataset's reward is doubled.

    Args:
        nll: [N, L] per-example mean response-token NLL under the current model theta.
        nll_ref: [N, L] the same examples under theta0.
        mask: optional [N, L] bool, True where an example exists (datasets with fewer than L examples).
    Returns:
        float64 [N].
    """
    if nll.dim() != 2 or nll.shape[0] == 0 or nll.shape[1] == 0:
        raise MosValueError(f"nll has shape {tuple(nll.shape)}: expected [N, L] per-example NLL with N, L >= 1")
    if nll_ref.shape != nll.shape:
        raise MosValueError(f"nll_ref has shape {tuple(nll_ref.shape)}, nll has {tuple(nll.shape)}: they must match")
    _check_target(target, nll.shape[0])
    ratio = torch.exp(nll.to(torch.float64) - nll_ref.to(torch.float64))  # [N, L]
    if mask is None:
        reward = ratio.mean(dim=1)
    else:
        if mask.shape != nll.shape or mask.dtype != torch.bool:
            raise MosValueError(f"mask has shape {tuple(mask.shape)} and dtype {mask.dtype}: expected bool {tuple(nll.shape)}")
        counts = mask.sum(dim=1)  # [N]
        if bool((counts == 0).any()):
            empty = counts.eq(0).nonzero().flatten().tolist()
            raise MosValueError(f"mask leaves datasets {empty} with no example: each needs at least one")
        reward = torch.where(mask, ratio, torch.zeros_like(ratio)).sum(dim=1) / counts
    if target is not None:
        reward = reward.clone()
        reward[target] *= 2.0
    return reward


def smooth_rewards(raw: torch.Tensor, previous: torch.Tensor | None, beta: float) -> torch.Tensor:
    """Eq. 11: R_t = beta * R'_t + (1 - beta) * R_{t-1}.

    ``previous`` None means R_0 = R'_0 (the first update uses the raw reward); the controller passes ones
    instead for ``ema_init="one"``, the authors' start.
    """
    if previous is None:
        return raw.to(torch.float64).clone()
    return beta * raw.to(torch.float64) + (1.0 - beta) * previous
