"""The Mixture-of-Skills algorithm, framework-free (pure PyTorch; nothing here imports megatron).

Public API:
- ``temperature_prior(sizes, tau)``: Eq. 3.
- ``cossim_reward(z, target=None)``: Eq. 8 (MoSpec with ``target``).
- ``diff_reward(nll, nll_ref, target=None, mask=None)``: Eq. 10 (MoSpec with ``target``).
- ``smooth_rewards(raw, previous, beta)``: Eq. 11.
- ``MixtureOfSkills``: psi (``scorer="logits"`` or ``"mlp"``) fitted to the prior, ``.probabilities``,
  ``.update(raw_rewards)``, availability, ``state_dict`` / ``load_state_dict``.

- ``Mixer`` (mixer.py): the interface every online mixer implements; ``MIXERS`` / ``build_mixer``
  (registry.py): ``mixing.strategy`` -> mixer. ``MosMixer`` (MoS), ``OnlineDataMixing`` (ODM, EXP3 on
  training losses), ``OnlineDoReMi`` (DoReMi's exponentiated-gradient weights on the excess loss).

docs/algorithm.md maps every equation to its function here and lists every choice made.
"""

from mos_nemo.mixing.controller import MixtureOfSkills
from mos_nemo.mixing.doremi import OnlineDoReMi
from mos_nemo.mixing.mixer import Mixer, MixerInputs
from mos_nemo.mixing.mos_mixer import MosMixer
from mos_nemo.mixing.odm import OnlineDataMixing
from mos_nemo.mixing.prior import temperature_prior
from mos_nemo.mixing.registry import MIXERS, build_mixer
from mos_nemo.mixing.rewards import cossim_reward, diff_reward, smooth_rewards
from mos_nemo.mixing.scorer import DEFAULT_LR, SCORERS, LogitsScorer, MlpScorer

__all__ = [
    "MIXERS", "Mixer", "MixerInputs", "MosMixer", "OnlineDataMixing", "OnlineDoReMi", "build_mixer",
    "DEFAULT_LR", "SCORERS", "LogitsScorer", "MixtureOfSkills", "MlpScorer", "cossim_reward", "diff_reward", "smooth_rewards", "temperature_prior",
]
