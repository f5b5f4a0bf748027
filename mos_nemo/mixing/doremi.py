"""Online DoReMi: the domain-weight update of DoReMi (Xie et al., 2023, Algorithm 1) driving the blend.

Every S steps, on a reward mini-batch of L examples per dataset (the theta0 reference pool, as Diff uses):

    lambda(i) = (1/L) sum_j max(NLL_theta(x_j) - NLL_ref(x_j), 0)       excess loss (per example, see below)
    alpha'    = alpha * exp(eta * lambda)                                exponentiated-gradient ascent
    alpha     = (1 - c) alpha' / sum(alpha') + c u                       smoothing with the uniform u

alpha starts uniform (Algorithm 1's alpha_0 = 1/k) and is the sampling distribution p itself.
Differences from DoReMi's recipe (docs/mixers.md): no separate reference or proxy model is trained (the
reference is theta0, the model before fine-tuning; the "proxy" is the model being trained); the weights
are used online to sample, not averaged over the proxy run and then used for a second run; the excess loss
is clipped per example (mean response-token NLL) rather than per token; and an update comes every S steps
on a reward batch, not every step on the training batch.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence

import torch

from mos_nemo.errors import MosValueError
from mos_nemo.mixing.mixer import Mixer, MixerInputs, available_uniform

logger = logging.getLogger(__name__)

_STATE_VERSION = 1


def excess_loss(nll: torch.Tensor, nll_ref: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """lambda [N]: mean over each dataset's examples of max(nll - nll_ref, 0). nll, nll_ref, mask: [N, L]."""
    if nll.dim() != 2 or nll.shape != nll_ref.shape:
        raise MosValueError(f"nll {tuple(nll.shape)} and nll_ref {tuple(nll_ref.shape)}: expected equal [N, L]")
    clipped = (nll.to(torch.float64) - nll_ref.to(torch.float64)).clamp(min=0.0)  # [N, L]
    if mask is None:
        return clipped.mean(dim=1)
    return torch.where(mask, clipped, torch.zeros_like(clipped)).sum(dim=1) / mask.sum(dim=1)


class OnlineDoReMi(Mixer):
    """DoReMi's exponentiated-gradient domain weights, updated online from the excess loss over theta0.

    Args:
        names: dataset names.
        eta: step size of the exponentiated-gradient update (DoReMi: 1).
        smoothing: c, the weight of the uniform distribution mixed in after each update (DoReMi: 1e-3).
    """

    needs = ("nll",)
    strategy = "doremi"

    def __init__(self, names: Sequence[str], eta: float = 1.0, smoothing: float = 1e-3):
        super().__init__(names)
        if not (eta > 0 and math.isfinite(eta)):
            raise MosValueError(f"doremi_eta = {eta}: must be a positive number (DoReMi uses 1)")
        if not 0.0 <= smoothing <= 1.0:
            raise MosValueError(f"doremi_smoothing = {smoothing}: must be in [0, 1] (DoReMi uses 1e-3)")
        self.eta, self.smoothing = float(eta), float(smoothing)
        self.alpha = available_uniform(self.availability)  # [N], Algorithm 1's alpha_0

    @property
    def probabilities(self) -> torch.Tensor:
        kept = self.alpha * self.availability
        return kept / kept.sum()

    def update(self, inputs: MixerInputs) -> torch.Tensor:
        """One exponentiated-gradient step on the excess loss, then uniform smoothing; returns the new p."""
        lam = excess_loss(inputs.nll, inputs.nll_ref, inputs.mask)
        available = self.availability > 0
        self.rewards_raw = lam
        if not bool(torch.isfinite(lam[available]).all()):
            self.num_skipped += 1
            logger.warning("DoReMi update skipped: non-finite excess loss %s", lam.tolist())
            return self.probabilities
        lam = torch.where(available, lam, torch.zeros_like(lam))
        # exp(eta * lambda) in log space: the shift by max(lambda) cancels in the normalisation
        grown = self.probabilities * torch.exp(self.eta * (lam - lam[available].max()))
        uniform = available_uniform(self.availability)
        self.alpha = (1.0 - self.smoothing) * grown / grown.sum() + self.smoothing * uniform
        self.num_updates += 1
        return self.probabilities

    def _availability_changed(self) -> None:
        if not bool((self.alpha * self.availability).sum() > 0):  # only excluded datasets had weight
            self.alpha = available_uniform(self.availability)

    def state_dict(self) -> dict:
        return copy.deepcopy({
            "version": _STATE_VERSION, "strategy": self.strategy, "names": self.names, "alpha": self.alpha,
            "rewards_raw": self.rewards_raw, "availability": self.availability,
            "num_updates": self.num_updates, "num_skipped": self.num_skipped,
        })

    def load_state_dict(self, state: dict) -> None:
        self._check_state(state)
        state = copy.deepcopy(state)
        self.alpha, self.rewards_raw, self.availability = state["alpha"], state["rewards_raw"], state["availability"]
        self.num_updates, self.num_skipped = state["num_updates"], state["num_skipped"]
