"""MoS as a mixer: CosSim (Eq. 8) or Diff (Eq. 10) rewards from the scored signals, then
``MixtureOfSkills.update`` (EMA Eq. 11, REINFORCE Eq. 6). The numbers are those of the controller alone."""

from __future__ import annotations

import torch

from mos_nemo.mixing.controller import MixtureOfSkills
from mos_nemo.mixing.mixer import Mixer, MixerInputs
from mos_nemo.mixing.rewards import cossim_reward, diff_reward


class MosMixer(Mixer):
    """Mixture-of-Skills (Wu et al., 2024, Algorithm 1) behind the mixer interface.

    Args:
        mos: the controller (psi, EMA, availability).
        reward: "cossim" (needs pooled embeddings) or "diff" (needs NLL against theta0).
        target: MoSpec's target dataset index (Section 6), or None.
    """

    strategy = "mos"

    def __init__(self, mos: MixtureOfSkills, reward: str, target: int | None = None):
        self.mos, self.reward, self.target = mos, reward, target
        self.names = mos.names
        self.needs = ("embeddings",) if reward == "cossim" else ("nll",)
        self.last_raw: torch.Tensor | None = None  # this update's raw rewards as computed (NaN kept)

    def raw_rewards(self, inputs: MixerInputs) -> torch.Tensor:
        """R'(i) [N]: Eq. 8 on the pooled embeddings, or Eq. 10 on the NLL against theta0."""
        if self.reward == "cossim":
            return cossim_reward(inputs.embeddings, target=self.target)
        return diff_reward(inputs.nll, inputs.nll_ref, target=self.target, mask=inputs.mask)

    def update(self, inputs: MixerInputs) -> torch.Tensor:
        self.last_raw = self.raw_rewards(inputs)
        return self.mos.update(self.last_raw, scored=inputs.scored)  # not scored: R(i) kept (reward budget)

    @property
    def probabilities(self) -> torch.Tensor:
        return self.mos.probabilities

    # The controller owns availability and the counters; the mixer only forwards them.
    availability = property(lambda self: self.mos.availability)
    rewards = property(lambda self: self.mos.rewards)
    rewards_raw = property(lambda self: self.last_raw)
    num_updates = property(lambda self: self.mos.num_updates)
    num_skipped = property(lambda self: self.mos.num_skipped)

    def set_available(self, dataset: int | str, available: bool) -> torch.Tensor:
        return self.mos.set_available(dataset, available)

    def _availability_changed(self) -> None:  # set_available is the controller's
        raise NotImplementedError

    def state_dict(self) -> dict:
        return self.mos.state_dict()  # the controller's own state, as checkpoints have always held it

    def load_state_dict(self, state: dict) -> None:
        self.mos.load_state_dict(state)
