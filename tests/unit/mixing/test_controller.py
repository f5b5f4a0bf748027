"""MixtureOfSkills: prior fit, REINFORCE convergence, EMA, p_min, availability, NaN skip, exact resume.

Tests about the MLP parameterisation set ``scorer="mlp"``; behaviour both scorers share is parametrised.
The default scorer's dynamics against the authors' update are in test_dynamics.py.
"""

import io
import logging
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mos_nemo.mixing import SCORERS, MixtureOfSkills, temperature_prior


@settings(max_examples=12, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 100_000), min_size=1, max_size=8),
    tau=st.sampled_from([1.0, 10.0, float("inf")]),
    seed=st.integers(0, 1000),
)
def test_mlp_scorer_is_fitted_to_the_prior_within_1e4(sizes, tau, seed):
    mos = MixtureOfSkills(sizes, prior_tau=tau, seed=seed, scorer="mlp")
    p = mos.probabilities
    assert p.dtype == torch.float64
    assert float((p - temperature_prior(sizes, tau)).abs().max()) < 1e-4
    assert math.isclose(float(p.sum()), 1.0, abs_tol=1e-12)


@pytest.mark.parametrize("sizes, tau", [([26_200, 5_200, 9_300, 62_600], 10.0), ([5, 50, 500], 8.0), ([7, 21], 1.0)])
def test_logits_scorer_is_fitted_to_the_prior_by_mse_1e10(sizes, tau):
    mos = MixtureOfSkills(sizes, prior_tau=tau)
    p, q = mos.probabilities, temperature_prior(sizes, tau)
    assert float(((p - q) ** 2).mean()) <= 1e-10  # the authors' stopping rule (reached one step earlier)
    assert float((p - q).abs().max()) < 1e-4
    assert mos.fit_steps > 1
    assert torch.equal(mos.scorer.logits.detach(), MixtureOfSkills(sizes, prior_tau=tau, seed=99).scorer.logits.detach())


def test_logits_scorer_starts_at_one_so_the_uniform_prior_takes_one_step():
    mos = MixtureOfSkills([1, 2, 3])
    assert mos.fit_steps == 1 and torch.equal(mos.scorer.logits.detach(), torch.ones(3, dtype=torch.float64))
    assert torch.equal(mos.probabilities, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_mlp_fit_is_deterministic_for_a_seed_and_differs_across_seeds():
    a, b, c = (MixtureOfSkills([5, 50, 500], prior_tau=1.0, seed=s, scorer="mlp") for s in (7, 7, 8))
    assert torch.equal(a.probabilities, b.probabilities)
    assert all(torch.equal(x, y) for x, y in zip(a.scorer.parameters(), b.scorer.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.scorer.parameters(), c.scorer.parameters()))


@pytest.mark.slow  # hundreds of scorer updates per example
@pytest.mark.parametrize("scorer", SCORERS)
@settings(max_examples=4, deadline=None)
@given(rewards=st.lists(st.floats(0.2, 3.0), min_size=2, max_size=5), seed=st.integers(0, 100))
def test_constant_rewards_drive_p_to_normalised_rewards(scorer, rewards, seed):
    # lr 1e-4 moves the mlp there in 40 updates; the logits scorer needs 1e-2 for that (1e-4: hundreds).
    lr, updates = {"mlp": (1e-4, 40), "logits": (1e-2, 15)}[scorer]
    mos = MixtureOfSkills([100] * len(rewards), seed=seed, scorer=scorer, lr=lr)
    for _ in range(updates):
        p = mos.update(rewards)
    target = torch.tensor(rewards, dtype=torch.float64) / sum(rewards)
    assert float((p - target).abs().max()) < 1e-2


def test_ema_init_one_starts_the_previous_reward_at_one_as_the_authors_code():
    mos = MixtureOfSkills([10, 10, 10], ema_beta=0.9, inner_steps=1)  # default ema_init="one"
    mos.update([1.0, 2.0, 3.0])
    expected = 0.9 * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) + 0.1
    torch.testing.assert_close(mos.rewards, expected, rtol=0, atol=1e-15)


def test_update_smooths_with_eq11_first_raw_then_ema():
    mos = MixtureOfSkills([10, 10, 10], ema_beta=0.9, inner_steps=1, ema_init="raw")
    mos.update([1.0, 2.0, 3.0])
    assert torch.equal(mos.rewards, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    mos.update([3.0, 2.0, 1.0])
    expected = 0.9 * torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64) + 0.1 * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(mos.rewards, expected, rtol=0, atol=1e-15)
    assert torch.equal(mos.rewards_raw, torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64))


def test_higher_reward_raises_that_datasets_probability():
    mos = MixtureOfSkills([10, 10, 10, 10])
    before = mos.probabilities
    after = mos.update([1.0, 1.0, 1.0, 2.0])
    assert after[3] > before[3]
    assert after[:3].max() < before[:3].min() + 1e-3


@pytest.mark.parametrize("scorer", SCORERS)
def test_p_min_floors_each_available_dataset(scorer):
    rewards = [[0.01, 1.0, 1.0], [0.01, 2.0, 1.0]]
    plain = MixtureOfSkills([10, 10, 10], seed=3, scorer=scorer)
    floored = MixtureOfSkills([10, 10, 10], seed=3, p_min=0.1, scorer=scorer)
    for r in rewards:
        p_plain, p_floor = plain.update(r), floored.update(r)
    torch.testing.assert_close(p_floor, (1 - 3 * 0.1) * p_plain + 0.1, rtol=0, atol=1e-15)
    assert float(p_floor.min()) >= 0.1
    assert math.isclose(float(p_floor.sum()), 1.0, abs_tol=1e-12)


def run_updates(mos, rewards):
    return [mos.update(r) for r in rewards]


@pytest.mark.parametrize("scorer", SCORERS)
def test_save_load_update_is_bit_for_bit_an_uninterrupted_run(scorer):
    generator = torch.Generator().manual_seed(0)
    rewards = [torch.rand(4, generator=generator) + 0.5 for _ in range(6)]
    kwargs = dict(sizes=[3, 30, 300, 3000], prior_tau=10.0, seed=11, names=["a", "b", "c", "d"], p_min=0.01,
                  scorer=scorer)

    uninterrupted = MixtureOfSkills(**kwargs)
    expected = run_updates(uninterrupted, rewards)

    first = MixtureOfSkills(**kwargs)
    run_updates(first, rewards[:3])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    run_updates(first, [torch.full((4,), 9.0)])  # changing the original after saving must not leak into the save
    buffer.seek(0)
    resumed = MixtureOfSkills(**kwargs)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    got = run_updates(resumed, rewards[3:])
    for a, b in zip(got, expected[3:]):
        assert torch.equal(a, b)
    assert torch.equal(resumed.rewards, uninterrupted.rewards)
    assert resumed.num_updates == uninterrupted.num_updates == 6


def test_load_state_rejects_other_datasets_and_another_scorer():
    state = MixtureOfSkills([1, 2], names=["x", "y"]).state_dict()
    with pytest.raises(ValueError, match="same datasets"):
        MixtureOfSkills([1, 2], names=["x", "z"]).load_state_dict(state)
    with pytest.raises(ValueError, match="mixing.scorer=logits"):
        MixtureOfSkills([1, 2], names=["x", "y"], scorer="mlp").load_state_dict(state)


def test_nan_reward_skips_the_update_and_keeps_p(caplog):
    mos = MixtureOfSkills([10, 20, 30], names=["m", "n", "o"])
    reference = MixtureOfSkills([10, 20, 30], names=["m", "n", "o"])
    mos.update([1.0, 2.0, 1.0])
    reference.update([1.0, 2.0, 1.0])
    before = mos.probabilities
    with caplog.at_level(logging.WARNING, logger="mos_nemo.mixing"):
        after = mos.update([1.0, float("nan"), 1.0])
        mos.update([float("inf"), 1.0, 1.0])
    assert torch.equal(after, before)
    assert mos.num_skipped == 2 and mos.num_updates == 1
    assert "skipped" in caplog.text and "non-finite" in caplog.text
    # The skipped updates left no trace: the next finite update matches a run that never saw them.
    assert torch.equal(mos.update([2.0, 1.0, 1.0]), reference.update([2.0, 1.0, 1.0]))


@pytest.mark.parametrize("scorer", SCORERS)
def test_excluded_dataset_gets_zero_probability_and_its_reward_is_ignored(scorer):
    mos = MixtureOfSkills([10, 20, 30], names=["a", "b", "c"], scorer=scorer)
    p = mos.exclude("b")
    assert p[1].item() == 0.0 and math.isclose(float(p.sum()), 1.0, abs_tol=1e-12)
    for _ in range(3):
        p = mos.update([1.0, float("nan"), 2.0])  # an excluded dataset is not scored
    assert mos.num_updates == 3 and p[1].item() == 0.0 and p[2] > p[0]
    assert "(excluded)" in mos.describe()
    assert mos.include(1)[1].item() > 0.0
    with pytest.raises(ValueError, match="no dataset available"):
        solo = MixtureOfSkills([1])
        solo.exclude(0)


def test_describe_names_every_dataset_with_its_probability():
    mos = MixtureOfSkills([10, 30], names=["math", "code"], prior_tau=1.0)
    text = repr(mos)
    assert "math" in text and "code" in text
    assert f"p={float(mos.probabilities[1]):.4f}" in text


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(sizes=[]), "non-empty"),
        (dict(sizes=[3, 0]), "sizes\\[1\\]"),
        (dict(sizes=[3, -1]), "sizes\\[1\\]"),
        (dict(sizes=[3, 4], prior_tau=0.0), "tau"),
        (dict(sizes=[3, 4], prior_tau=-2.0), "tau"),
        (dict(sizes=[3, 4], ema_beta=0.0), "ema_beta"),
        (dict(sizes=[3, 4], lr=-1.0), "lr"),
        (dict(sizes=[3, 4], inner_steps=0), "inner_steps"),
        (dict(sizes=[3, 4], p_min=0.5), "p_min"),
        (dict(sizes=[3, 4], hidden=0), "hidden"),
        (dict(sizes=[3, 4], names=["a"]), "one name per dataset"),
        (dict(sizes=[3, 4], names=["a", "a"]), "duplicates"),
        (dict(sizes=[3, 4], activation="gelu", scorer="mlp"), "activation"),
        (dict(sizes=[3, 4], scorer="linear"), "scorer"),
        (dict(sizes=[3, 4], ema_init="zero"), "ema_init"),
    ],
)
def test_bad_constructor_arguments_raise_value_error(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        MixtureOfSkills(**kwargs)


def test_update_rejects_wrong_reward_shape():
    mos = MixtureOfSkills([1, 2, 3])
    with pytest.raises(ValueError, match="expected \\[3\\]"):
        mos.update([1.0, 2.0])
