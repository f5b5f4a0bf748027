"""The Mixture-of-Skills algorithm, framework-free (pure PyTorch; nothing here imports megatron).

Public API:
- ``temperature_prior(sizes, tau)``: Eq. 3.
- ``cossim_reward(z, target=None)``: Eq. 8 (MoSpec with ``target``).
- ``diff_reward(nll, nll_ref, target=None, mask=None)``: Eq. 10 (MoSpec with ``target``).
- ``smooth_rewards(raw, previous, beta)``: Eq. 11.
- ``MixtureOfSkills``: psi (``scorer="logits"`` or ``"mlp"``) fitted to the prior, ``.probabilities``,
  ``.update(raw_rewards)``, availability, ``state_dict`` / ``load_state_dict``.

docs/algorithm.md maps every equation to its function here and lists every choice made.
"""

from mos_nemo.mixing.controller import MixtureOfSkills
from mos_nemo.mixing.prior import temperature_prior
from mos_nemo.mixing.rewards import cossim_reward, diff_reward, smooth_rewards
from mos_nemo.mixing.scorer import DEFAULT_LR, SCORERS, LogitsScorer, MlpScorer

__all__ = [
    "DEFAULT_LR", "SCORERS", "LogitsScorer", "MixtureOfSkills", "MlpScorer", "cossim_reward", "diff_reward", "smooth_rewards", "temperature_prior",
]
