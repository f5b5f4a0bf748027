"""mixing.reward_budget against the paper's full reward (every dataset, L examples, every update), over many seeds,
through the mixers and the rotation the hook uses, with a faithful reward model of a frozen network: example j of dataset i has embedding mu_i + noise (CosSim) and
log-PPL ratio m_i + noise (Diff). docs/algorithm.md ("A reward budget for many datasets") says what must hold:
- each smoothed reward R_i has the full reward's mean and spread at any update (same L per scoring);
- the mean of R_i over a window of W updates has N/K times the variance (K/N as many independent draws);
- every available dataset is scored once per ceil(N_available / K) updates; the first update scores all.
"""

import math

import pytest
import torch

from mos_nemo.errors import MosConfigError
from mos_nemo.mixing import MixerInputs, MixtureOfSkills, MosMixer, OnlineDoReMi
from mos_nemo.mixing.budget import RewardRotation, datasets_per_update, reference_pool_per_dataset

N, L, H, K = 16, 8, 6, 4
UPDATES = 1 + 6 * (N // K)  # the full first update, then six whole rotations
WINDOW = range(1 + 2 * (N // K), UPDATES + 1)  # the last four rotations


def _inputs(update: int, reward: str, scored: torch.Tensor, g: torch.Generator, centre: torch.Tensor) -> MixerInputs:
    """One update's scored signals as the hook hands them over: rows of datasets not scored are NaN (pooled
    embeddings of no example) or 0 with mask False (NLL)."""
    if reward == "cossim":
        fresh = (centre[:, None, :] + torch.randn(N, L, H, generator=g, dtype=torch.float64)).mean(1)  # [N, H]
        return MixerInputs(step=update, embeddings=torch.where(scored[:, None], fresh, torch.nan))
    nll = centre[:, None] + 0.5 * torch.randn(N, L, generator=g, dtype=torch.float64)  # [N, L]
    mask = scored[:, None].expand(N, L).clone()
    return MixerInputs(step=update, nll=torch.where(mask, nll, 0.0), nll_ref=torch.zeros(N, L, dtype=torch.float64),
                       mask=mask)


def _run(seed: int, reward: str, budget: bool) -> torch.Tensor:
    """[UPDATES, N] smoothed rewards of one seeded run (the mixer and rotation the hook uses)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.Generator().manual_seed(0)  # the datasets themselves are the same in every run
    centre = (torch.randn(N, H, generator=centres, dtype=torch.float64) * 0.6 + 1.0 if reward == "cossim"
              else torch.linspace(-0.3, 0.2, N, dtype=torch.float64))
    rotation = RewardRotation(N, K if budget else N, seed)
    mixer = MosMixer(MixtureOfSkills([100] * N, inner_steps=1, seed=0), reward=reward)
    history = []
    for update in range(1, UPDATES + 1):
        scored = rotation.scored(update, mixer.availability)
        mixer.update(rotation.complete(_inputs(update, reward, scored, g, centre), scored))
        history.append(mixer.rewards.clone())
    return torch.stack(history)


@pytest.fixture(scope="module")
def runs():
    seeds = range(300)
    return {(reward, budget): torch.stack([_run(s, reward, budget) for s in seeds])  # [seeds, UPDATES, N]
            for reward in ("cossim", "diff") for budget in (False, True)}


@pytest.mark.parametrize("reward", ["cossim", "diff"])
def test_budget_rewards_have_the_full_rewards_mean_and_spread(runs, reward):
    full, budget = runs[reward, False][:, -1], runs[reward, True][:, -1]  # [seeds, N] at the last update
    standard_error = torch.sqrt((full.var(0) + budget.var(0)) / full.shape[0])
    assert bool(((budget.mean(0) - full.mean(0)).abs() < 4 * standard_error).all())
    assert bool((full.std(0).max() > 0))
    ratio = budget.std(0) / full.std(0)
    assert 0.8 < float(ratio.mean()) < 1.2 and bool(((ratio > 0.65) & (ratio < 1.5)).all())


def test_window_means_have_n_over_k_times_the_variance(runs):
    full, budget = (runs["diff", b][:, [u - 1 for u in WINDOW]].mean(1) for b in (False, True))  # [seeds, N]
    ratio = float((budget.var(0) / full.var(0)).mean())
    assert 0.75 * N / K < ratio < 1.3 * N / K


def _doremi_log_weights(seed: int, budget: bool) -> torch.Tensor:
    """[N] centred log p of DoReMi (no smoothing) after UPDATES updates on stationary excess losses."""
    g = torch.Generator().manual_seed(seed)
    excess = torch.linspace(0.1, 0.6, N, dtype=torch.float64)
    rotation = RewardRotation(N, K if budget else N, seed)
    mixer = OnlineDoReMi([f"d{i}" for i in range(N)], eta=0.2, smoothing=0.0)
    for update in range(1, UPDATES + 1):
        scored = rotation.scored(update, mixer.availability)
        mixer.update(rotation.complete(_inputs(update, "diff", scored, g, excess), scored))
    log_p = mixer.probabilities.log()
    return log_p - log_p.mean()


def test_doremi_under_a_budget_keeps_the_drift_and_pays_in_spread():
    """Unscored datasets carry their latest excess loss, so each update is one exponentiated-gradient step over
    all datasets: log p's drift (eta x the sum of the excess losses used) has the full run's mean; its
    variance is about N/K times the full run's (each fresh excess loss is used about N/K times)."""
    full, budget = (torch.stack([_doremi_log_weights(s, b) for s in range(200)]) for b in (False, True))
    standard_error = torch.sqrt((full.var(0) + budget.var(0)) / full.shape[0])
    assert bool(((budget.mean(0) - full.mean(0)).abs() < 4 * standard_error).all())
    assert float(full.mean(0)[-1] - full.mean(0)[0]) > 1.0  # the drift is there to be matched
    assert 0.6 * N / K < float((budget.var(0) / full.var(0)).mean()) < 1.4 * N / K


def test_rotation_scores_every_available_dataset_once_per_cycle():
    rotation = RewardRotation(10, 3, seed=4)
    available = torch.ones(10)
    first = rotation.scored(1, available)
    assert bool(first.all())  # the first update: everything
    rotation.complete(MixerInputs(step=1, nll=torch.zeros(10, 2)), first)  # now a table is kept
    available[7] = 0  # excluded: never in the rotation
    cycle = rotation.cycle_updates(available)
    assert cycle == 3
    counts = torch.zeros(10)
    for update in range(2, 2 + 3 * cycle):
        picked = rotation.scored(update, available)
        assert int(picked.sum()) == 3 and not bool(picked[7])
        counts += picked
    assert counts[7] == 0 and int(counts.max() - counts[counts > 0].min()) <= 1


def test_budget_sizes_and_errors_name_the_key():
    assert datasets_per_update(None, 64, 50) == 50 and datasets_per_update(256, 64, 50) == 4
    assert datasets_per_update(10_000, 16, 8) == 8
    with pytest.raises(MosConfigError, match="mixing.reward_budget"):
        datasets_per_update(32, 64, 50)
    assert reference_pool_per_dataset(1024, 16, 64, 64) == 1024  # no budget: the paper's pool
    assert reference_pool_per_dataset(1024, 16, 64, 16) == 256 and reference_pool_per_dataset(64, 16, 64, 4) == 16
    assert math.ceil(1024 * 16 / 64) * 64 == 1024 * 16  # the budgeted pool costs reference_pool x K in all


def test_a_skipped_first_update_waits_for_the_non_finite_dataset_to_be_rescored():
    """The first update is skipped (dataset 0's reward is NaN): nothing is smoothed yet, so the next updates use
    every dataset's latest raw reward, and MoS applies its first update once dataset 0 is scored again."""
    rotation = RewardRotation(4, 2, seed=3)
    mixer = MosMixer(MixtureOfSkills([10] * 4, inner_steps=1, seed=0), reward="diff")
    ones = torch.ones(4, L, dtype=torch.bool)
    applied_at = None
    for update in range(1, 6):
        scored = rotation.scored(update, mixer.availability)
        nll = torch.full((4, L), 0.1 * update, dtype=torch.float64)
        if update == 1:
            nll[0] = float("nan")
        inputs = MixerInputs(step=update, nll=nll, nll_ref=torch.zeros(4, L, dtype=torch.float64), mask=ones)
        mixer.update(rotation.complete(inputs, scored))
        if applied_at is None and mixer.num_updates == 1:
            applied_at, scored_then = update, scored
    assert mixer.num_skipped >= 1 and applied_at is not None and bool(scored_then[0])
    assert bool(torch.isfinite(mixer.rewards).all())
