"""The mixer registry: ``mixing.strategy`` -> a factory (names, sizes, mixing config, seed, target) -> Mixer.

One line per mixer. ``static`` is not here: it has no mixer (the blend keeps the prior q_tau).
"""

from __future__ import annotations

from mos_nemo.mixing.controller import MixtureOfSkills
from mos_nemo.mixing.doremi import OnlineDoReMi
from mos_nemo.mixing.mixer import Mixer
from mos_nemo.mixing.mos_mixer import MosMixer
from mos_nemo.mixing.odm import OnlineDataMixing


def _mos(names, sizes, mixing, seed: int, target: int | None) -> MosMixer:
    mos = MixtureOfSkills(sizes, prior_tau=mixing.tau, ema_beta=mixing.ema_beta, lr=mixing.scorer_lr,
                          inner_steps=mixing.inner_steps, hidden=mixing.hidden, p_min=mixing.p_min, seed=seed,
                          names=names, scorer=mixing.scorer, ema_init=mixing.ema_init)
    return MosMixer(mos, reward=mixing.reward, target=target)


MIXERS = {
    "mos": _mos,  # Mixture-of-Skills, Algorithm 1 (CosSim or Diff reward)
    "odm": lambda names, sizes, mixing, seed, target: OnlineDataMixing(names, alpha=mixing.odm_alpha),
    "doremi": lambda names, sizes, mixing, seed, target: OnlineDoReMi(
        names, eta=mixing.doremi_eta, smoothing=mixing.doremi_smoothing),
}


def build_mixer(strategy: str, names, sizes, mixing, seed: int, target: int | None = None) -> Mixer:
    """The mixer of ``mixing.strategy``; ``mixing`` is the config's mixing section (any object with its keys)."""
    return MIXERS[str(strategy)](list(names), list(sizes), mixing, seed, target)
