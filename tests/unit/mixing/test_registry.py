"""The mixer registry and interface: every strategy but static has a mixer built from the config schema, and
MoS behind the interface gives exactly the controller's numbers (CosSim and Diff computed from the signals)."""

import torch

from mos_nemo.choices import Strategy
from mos_nemo.config import MixingConfig
from mos_nemo.mixing import MIXERS, MixerInputs, MixtureOfSkills, build_mixer, cossim_reward, diff_reward

NAMES, SIZES = ["a", "b", "c"], [30, 10, 20]


def test_every_strategy_but_static_has_a_mixer_and_declares_known_signals():
    assert set(MIXERS) == set(Strategy.values()) - {"static"}
    for strategy in MIXERS:
        mixer = build_mixer(strategy, NAMES, SIZES, MixingConfig(strategy=strategy), seed=0)
        assert mixer.strategy == strategy and set(mixer.needs) <= {"embeddings", "nll", "train_loss"}
        p = mixer.probabilities
        assert p.dtype == torch.float64 and abs(float(p.sum()) - 1.0) < 1e-12
        mixer.set_available("b", False)
        assert float(mixer.probabilities[1]) == 0.0


def test_mos_behind_the_interface_is_bit_equal_to_the_controller():
    generator = torch.Generator().manual_seed(0)
    for reward in ("cossim", "diff"):
        mixing = MixingConfig(strategy="mos", reward=reward, tau=1.0, inner_steps=20)
        mixer = build_mixer("mos", NAMES, SIZES, mixing, seed=3, target=None)
        alone = MixtureOfSkills(SIZES, prior_tau=1.0, inner_steps=20, seed=3, names=NAMES)
        assert mixer.needs == (("embeddings",) if reward == "cossim" else ("nll",))
        for step in range(1, 5):
            z = torch.randn(3, 8, generator=generator, dtype=torch.float64)
            nll, ref = torch.rand(2, 3, 4, generator=generator, dtype=torch.float64)
            inputs = MixerInputs(step=step, embeddings=z, nll=nll, nll_ref=ref)
            raw = cossim_reward(z) if reward == "cossim" else diff_reward(nll, ref)
            assert torch.equal(mixer.update(inputs), alone.update(raw))
            assert torch.equal(mixer.rewards_raw, raw) and torch.equal(mixer.rewards, alone.rewards)
        assert mixer.state_dict()["scorer"].keys() == alone.state_dict()["scorer"].keys()
