"""Online Data Mixing (Albalak et al., 2023, "Efficient Online Data Mixing For Language Model Pre-Training",
Algorithm 1): each dataset is an arm of an EXP3 bandit whose reward is the training loss of its batches.

For training step t (1-based), with K available datasets:

    eps_t      = min(1/K, sqrt(ln K / (K t))),   eps_0 = 1/K                       (line 3)
    pi_t(i)    = (1 - K eps_t) softmax_i(eps_{t-1} R_hat) + eps_t                   (line 4)
    R_hat(i)  <- alpha R_hat(i) + (1 - alpha) L_t(i) / pi_t(i)   for i drawn at t     (line 7)

L_t(i) is dataset i's token-averaged training loss in step t (train.jsonl's ``dataset_loss``), before the
step's update; R_hat starts at 0, so pi_1 is uniform. Datasets not drawn at t keep R_hat.

The paper recomputes pi after every step (``mixing.update_every=1`` here). With S > 1, the losses of the S
steps are applied in order at the update, each divided by the pi it was drawn with (the blend's weights
then), and pi is recomputed for the next step: EXP3 with a policy that changes every S steps.
``mixing.mode=batch`` draws one dataset per global batch, as the paper does; in ``sample`` mode every
dataset present in the batch updates its R_hat with its own loss.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch

from mos_nemo.errors import MosValueError
from mos_nemo.mixing.mixer import Mixer, MixerInputs

_STATE_VERSION = 1


def exploration_rate(t: int, k: int) -> float:
    """eps_t = min(1/K, sqrt(ln K / (K t))); eps_0 = 1/K (ODM Algorithm 1, line 3)."""
    if t == 0:
        return 1.0 / k
    return min(1.0 / k, math.sqrt(math.log(k) / (k * t)))


class OnlineDataMixing(Mixer):
    """EXP3 over datasets with the smoothed, importance-weighted training loss as reward.

    Args:
        names: dataset names.
        alpha: R_hat's smoothing (ODM's alpha): the previous estimate weighs alpha, the new one 1 - alpha.
    """

    needs = ("train_loss",)
    strategy = "odm"

    def __init__(self, names: Sequence[str], alpha: float = 0.9):
        super().__init__(names)
        if not 0.0 <= alpha < 1.0:
            raise MosValueError(f"odm_alpha = {alpha}: must be in [0, 1) (the weight of the previous reward)")
        self.alpha = float(alpha)
        self.rewards = torch.zeros(len(self.names), dtype=torch.float64)  # R_hat, line 1
        self.steps_seen = 0  # t of the last step applied to R_hat
        self.pending: list[tuple[int, list, torch.Tensor]] = []  # (step, losses, pi) observed since the update
        self._probabilities = self._compute_probabilities()

    @property
    def probabilities(self) -> torch.Tensor:
        return self._probabilities.clone()

    def _compute_probabilities(self) -> torch.Tensor:
        """pi_{t+1} (line 4) for the next step t + 1, over the available datasets."""
        available = self.availability > 0
        k = int(available.sum())
        t = self.steps_seen + 1
        eps, eps_before = exploration_rate(t, k), exploration_rate(t - 1, k)
        logits = torch.where(available, eps_before * self.rewards, torch.full_like(self.rewards, -math.inf))
        p = (1.0 - k * eps) * torch.softmax(logits, dim=0) + eps
        return torch.where(available, p, torch.zeros_like(p))

    def observe(self, step: int, dataset_losses: Sequence[float | None], weights: torch.Tensor) -> None:
        self.pending.append((int(step), list(dataset_losses), torch.as_tensor(weights, dtype=torch.float64).clone()))

    def update(self, inputs: MixerInputs) -> torch.Tensor:
        """Line 7 for every step observed since the last update, in order; then pi for the next step."""
        raw = torch.full_like(self.rewards, math.nan)  # the newest importance-weighted loss per dataset
        for step, losses, pi in self.pending:
            for i, loss in enumerate(losses):
                if loss is None or self.availability[i] == 0:
                    continue
                if not (math.isfinite(loss) and pi[i] > 0):
                    self.num_skipped += 1
                    continue
                raw[i] = loss / float(pi[i])
                self.rewards[i] = self.alpha * self.rewards[i] + (1.0 - self.alpha) * raw[i]
            self.steps_seen = step
        self.pending = []
        self.rewards_raw = raw
        self.num_updates += 1
        self._probabilities = self._compute_probabilities()
        return self.probabilities

    def _availability_changed(self) -> None:
        self._probabilities = self._compute_probabilities()

    def state_dict(self) -> dict:
        return copy.deepcopy({
            "version": _STATE_VERSION, "strategy": self.strategy, "names": self.names, "alpha": self.alpha,
            "rewards": self.rewards, "rewards_raw": self.rewards_raw, "steps_seen": self.steps_seen,
            "pending": self.pending, "availability": self.availability,
            "num_updates": self.num_updates, "num_skipped": self.num_skipped,
        })

    def load_state_dict(self, state: dict) -> None:
        self._check_state(state)
        state = copy.deepcopy(state)
        self.rewards, self.rewards_raw, self.steps_seen = state["rewards"], state["rewards_raw"], state["steps_seen"]
        self.pending, self.availability = state["pending"], state["availability"]
        self.num_updates, self.num_skipped = state["num_updates"], state["num_skipped"]
        self._probabilities = self._compute_probabilities()
