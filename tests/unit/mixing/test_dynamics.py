"""The scorer's update dynamics against an independent re-implementation of the authors' released update.

The oracle below is written from the description of minghao-wu/mixture_of_skills (utils.py), not from our
code: psi is a [1, N] float32 weight initialised to 1 (logits = weight * ones); one Adam (lr 1e-4) fits
softmax(logits) to the prior by MSE until the loss measured before a step is <= 1e-10, and the same Adam
then takes 200 steps on -(R * log_softmax(logits)).sum() per update, with R the EMA (beta 0.9) of the raw
rewards started from a previous reward of 1.
"""

import pytest
import torch

from mos_nemo.mixing import MixtureOfSkills, temperature_prior
from mos_nemo.mixing.scorer import LogitsScorer, fit_to_prior

SIZES = [26_200, 5_200, 9_300, 62_600]  # the paper's Table 6 (examples per dataset)


def authors_trajectory(prior: torch.Tensor, rewards: list[torch.Tensor], beta: float = 0.9) -> torch.Tensor:
    n = prior.numel()
    weight = torch.ones(1, n, requires_grad=True)  # float32, as in their code
    feature, target = torch.ones(1, n), prior.float().view(1, n)
    adam = torch.optim.Adam([weight], lr=1e-4)
    loss_value = 100.0
    while loss_value > 1e-10:
        adam.zero_grad()
        loss = torch.nn.functional.mse_loss(torch.softmax(weight * feature, dim=-1), target)
        loss_value = loss.item()
        loss.backward()
        adam.step()
    previous, trajectory = torch.ones(n), []
    for raw in rewards:
        previous = beta * raw.float() + (1 - beta) * previous
        for _ in range(200):
            adam.zero_grad()
            (-torch.log_softmax(weight * feature, dim=-1) * previous.view(1, n)).sum().backward()
            adam.step()
        trajectory.append(torch.softmax(weight * feature, dim=-1).detach().view(n).double())
    return torch.stack(trajectory)  # [updates, N]


def reward_sequence() -> list[torch.Tensor]:
    """40 updates of constant rewards, then 30 of random Diff-like rewards in [0.5, 1.2]."""
    generator = torch.Generator().manual_seed(0)
    constant = [torch.tensor([0.7, 0.1, 0.15, 0.05], dtype=torch.float64)] * 40
    diff_like = [0.5 + 0.7 * torch.rand(4, generator=generator, dtype=torch.float64) for _ in range(30)]
    return constant + diff_like


def our_trajectory(tau: float, rewards: list[torch.Tensor], **kwargs) -> torch.Tensor:
    mos = MixtureOfSkills(SIZES, prior_tau=tau, **kwargs)
    return torch.stack([mos.update(r) for r in rewards])


@pytest.mark.slow
@pytest.mark.parametrize("tau", [float("inf"), 10.0, 1.0])
def test_default_scorer_follows_the_authors_update(tau):
    rewards = reward_sequence()
    expected = authors_trajectory(temperature_prior(SIZES, tau), rewards)
    got = our_trajectory(tau, rewards)
    # The acceptance bound is 0.01 at tau = inf; float64 vs their float32 is all that separates us. tau = 1
    # (the authors' command-line default, a proportional prior) starts furthest from uniform.
    assert float((got - expected).abs().max()) < (0.01 if tau == float("inf") else 1e-3)
    # The drift is gradual (paper Figure 2): after 5 constant updates p is still far from R / sum(R) ...
    target = rewards[0] / rewards[0].sum()
    assert float((got[4] - target).abs().max()) > 0.3
    # ... and the prior leaves its imprint: the two priors still give different p after 40 updates.
    if tau != float("inf"):
        uniform_start = authors_trajectory(temperature_prior(SIZES, float("inf")), rewards[:40])
        assert float((got[39] - uniform_start[39]).abs().max()) > 0.02


@pytest.mark.slow
def test_the_golden_test_can_fail_the_mlp_at_the_logits_learning_rate_is_far_off():
    """The issue's finding: a 2-layer MLP with lr 1e-4 moves p much further than the authors' update."""
    rewards = reward_sequence()[:10]
    expected = authors_trajectory(temperature_prior(SIZES, float("inf")), rewards)
    fast = our_trajectory(float("inf"), rewards, scorer="mlp", lr=1e-4)
    assert float((fast - expected).abs().max()) > 0.2


def movement(trajectory: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """max_i |log p_t(i) - log p_{t-1}(i)| per update, [updates]."""
    logs = torch.cat([start.view(1, -1), trajectory]).log()
    return (logs[1:] - logs[:-1]).abs().max(dim=1).values


@pytest.mark.parametrize("tau", [float("inf"), 10.0])
def test_mlp_default_moves_p_about_as_far_per_update_as_logits(tau):
    generator = torch.Generator().manual_seed(1)
    rewards = [0.5 + 0.7 * torch.rand(4, generator=generator, dtype=torch.float64) for _ in range(4)]
    start = temperature_prior(SIZES, tau)
    logits = movement(our_trajectory(tau, rewards), start).mean()
    mlp = movement(our_trajectory(tau, rewards, scorer="mlp"), start).mean()
    mlp_fast = movement(our_trajectory(tau, rewards, scorer="mlp", lr=1e-4), start).mean()
    assert 0.5 < float(mlp / logits) < 2.0
    assert float(mlp_fast / logits) > 3.0  # what the default lr corrects


def test_fast_logits_fit_equals_torch_adam_with_autograd():
    """The written-out Adam of the logits fit: same step count, same logits, same optimiser state as
    torch.optim.Adam driven by autograd, so the updates that follow are the same too."""
    prior = temperature_prior([1, 2, 5], 10.0)
    available = torch.ones(3, dtype=torch.float64)
    fitted = LogitsScorer(3)
    fitted_adam = torch.optim.Adam(fitted.parameters(), lr=1e-4)
    steps = fit_to_prior(fitted, fitted_adam, available, prior)

    plain = LogitsScorer(3)
    plain_adam = torch.optim.Adam(plain.parameters(), lr=1e-4)
    for plain_steps in range(1, 100_000):
        loss = torch.mean((plain.log_probabilities(available).exp() - prior) ** 2)
        plain_adam.zero_grad()
        loss.backward()
        plain_adam.step()
        if loss.item() <= 1e-10:
            break
    assert steps == plain_steps > 100
    torch.testing.assert_close(fitted.logits, plain.logits, rtol=0, atol=1e-14)
    rewards = torch.tensor([0.9, 0.3, 0.5], dtype=torch.float64)
    for scorer, adam in ((fitted, fitted_adam), (plain, plain_adam)):
        for _ in range(300):
            adam.zero_grad()
            (-(rewards * scorer.log_probabilities(available)).sum()).backward()
            adam.step()
    torch.testing.assert_close(fitted.logits, plain.logits, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scorer", ["logits", "mlp"])
def test_excluded_dataset_stays_exactly_zero_through_updates_and_resume(scorer):
    mos = MixtureOfSkills(SIZES, scorer=scorer, names=["math", "med", "general", "nlp"])
    mos.exclude("med")
    for reward in ([1.0, 5.0, 1.0, 1.0], [2.0, 9.0, 1.0, 0.5]):  # a high reward cannot revive it
        p = mos.update(reward)
        assert p[1].item() == 0.0 and abs(float(p.sum()) - 1.0) < 1e-12
    resumed = MixtureOfSkills(SIZES, scorer=scorer, names=["math", "med", "general", "nlp"])
    resumed.load_state_dict(mos.state_dict())
    assert torch.equal(resumed.probabilities, mos.probabilities) and resumed.probabilities[1].item() == 0.0


# ---- the update's fixed point ------------------------------------------------------------------------
# Eq. 6 minimises J(z) = -sum_i R_i log softmax(z)_i over the logits z. Its gradient on logit k is
# dJ/dz_k = p_k sum_i R_i - R_k, which is zero exactly at p* = R / sum(R). These tests check our update
# against that closed form, not against our own numbers.


def closed_form_fixed_point(rewards: torch.Tensor) -> torch.Tensor:
    return rewards / rewards.sum()


@pytest.mark.parametrize("rewards", [[0.86, 0.88, 0.91, 0.87], [0.7, 0.1, 0.15, 0.05], [2.0, 1.0, 1.0, 4.0]])
def test_constant_rewards_drive_p_to_r_over_sum_r(rewards):
    rewards = torch.tensor(rewards, dtype=torch.float64)
    # A large scorer lr only shortens the path; where it ends is set by the rewards alone.
    mos = MixtureOfSkills(SIZES, prior_tau=1.0, lr=1e-2, ema_init="raw")
    for _ in range(60):
        p = mos.update(rewards)
    torch.testing.assert_close(p, closed_form_fixed_point(rewards), rtol=0, atol=2e-3)


def test_gradient_at_the_fixed_point_is_zero():
    """dJ/dz = p sum(R) - R vanishes at p = R / sum(R): autograd on the scorer's own log-probabilities."""
    rewards = torch.tensor([0.7, 0.1, 0.15, 0.05], dtype=torch.float64)
    scorer = LogitsScorer(4)
    available = torch.ones(4, dtype=torch.float64)
    with torch.no_grad():
        scorer.logits.copy_(closed_form_fixed_point(rewards).log())
    (-(rewards * scorer.log_probabilities(available)).sum()).backward()
    assert float(scorer.logits.grad.abs().max()) < 1e-12


def test_adam_makes_the_reward_scale_irrelevant():
    """Adam divides each step by the root of its running squared gradient, so R and 100 R give the same p
    (up to Adam's epsilon): only the rewards' ratios matter. CosSim's rewards of 0.86-0.91 therefore move p
    no further than R / sum(R) = 0.24-0.26 allows, however long the run."""
    generator = torch.Generator().manual_seed(3)
    rewards = [0.5 + 0.7 * torch.rand(4, generator=generator, dtype=torch.float64) for _ in range(8)]
    unit = our_trajectory(float("inf"), rewards, ema_init="raw")
    scaled = our_trajectory(float("inf"), [100.0 * r for r in rewards], ema_init="raw")
    torch.testing.assert_close(unit, scaled, rtol=0, atol=1e-6)
    # and the scale invariance is not vacuous: p did move away from uniform
    assert float((unit[-1] - 0.25).abs().max()) > 1e-3
