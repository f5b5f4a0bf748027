"""ODM against an independent re-implementation of Albalak et al. (2023), Algorithm 1, written here from the
paper's equations with plain Python floats (no torch, no code of ours):

    eps_t = min(1/K, sqrt(ln K / (K t))), eps_0 = 1/K
    pi_t(i) = (1 - K eps_t) exp(eps_{t-1} R_i) / sum_j exp(eps_{t-1} R_j) + eps_t
    after step t drew dataset i with loss L:  R_i <- alpha R_i + (1 - alpha) L / pi_t(i)
"""

import math
import random

import pytest
import torch

from mos_nemo.errors import MosValueError
from mos_nemo.mixing import MixerInputs, OnlineDataMixing

NAMES = ["gsm8k", "champ", "humaneval", "mtbench"]


def paper_policy(rewards: list[float], t: int) -> list[float]:
    k = len(rewards)
    eps = lambda s: 1.0 / k if s == 0 else min(1.0 / k, math.sqrt(math.log(k) / (k * s)))  # noqa: E731
    top = max(rewards)  # shift for exp's range; cancels in the ratio
    e = [math.exp(eps(t - 1) * (r - top)) for r in rewards]
    return [(1 - k * eps(t)) * x / sum(e) + eps(t) for x in e]


def paper_run(steps: list[tuple[int, float]], alpha: float, k: int) -> list[list[float]]:
    """pi after each step for a sequence of (drawn dataset, its loss), the policy recomputed every step."""
    rewards, trajectory = [0.0] * k, []
    for t, (i, loss) in enumerate(steps, start=1):
        pi = paper_policy(rewards, t)
        rewards[i] = alpha * rewards[i] + (1 - alpha) * loss / pi[i]
        trajectory.append(paper_policy(rewards, t + 1))
    return trajectory


def draws(n: int, seed: int = 0) -> list[tuple[int, float]]:
    rng = random.Random(seed)  # datasets with different loss levels, noisy, decreasing
    level = [2.5, 1.0, 3.5, 1.8]
    return [(i, level[i] * (1 - t / (2 * n)) + 0.1 * rng.random()) for t, i in ((t, rng.randrange(4)) for t in range(n))]


def losses_of(i: int, loss: float) -> list:
    return [loss if j == i else None for j in range(len(NAMES))]


def test_first_policy_is_uniform_and_eps_follows_the_paper():
    odm = OnlineDataMixing(NAMES)
    assert torch.equal(odm.probabilities, torch.full((4,), 0.25, dtype=torch.float64))
    assert paper_policy([0.0] * 4, 1) == pytest.approx([0.25] * 4)


@pytest.mark.parametrize("alpha", [0.9, 0.5])
def test_every_step_updates_match_the_paper(alpha):
    steps = draws(200)
    expected = paper_run(steps, alpha, 4)
    odm = OnlineDataMixing(NAMES, alpha=alpha)
    for t, (i, loss) in enumerate(steps, start=1):
        odm.observe(t, losses_of(i, loss), odm.probabilities)
        got = odm.update(MixerInputs(step=t))
        assert got.tolist() == pytest.approx(expected[t - 1], rel=1e-12, abs=1e-15), f"step {t}"
    # the mixture moved toward the datasets with the highest loss (EXP3 maximises the loss reward)
    assert int(torch.argmax(got)) == 2 and float(got.min()) >= math.sqrt(math.log(4) / (4 * 201)) - 1e-12


def test_updates_every_s_steps_weight_each_loss_by_the_policy_it_was_drawn_with():
    steps, s, alpha = draws(60, seed=3), 5, 0.9
    odm = OnlineDataMixing(NAMES, alpha=alpha)
    rewards, pi = [0.0] * 4, paper_policy([0.0] * 4, 1)
    for t, (i, loss) in enumerate(steps, start=1):
        odm.observe(t, losses_of(i, loss), torch.tensor(pi, dtype=torch.float64))
        rewards[i] = alpha * rewards[i] + (1 - alpha) * loss / pi[i]
        if t % s == 0:
            pi = paper_policy(rewards, t + 1)
            assert odm.update(MixerInputs(step=t)).tolist() == pytest.approx(pi, rel=1e-12)


def test_excluded_dataset_gets_zero_and_exploration_counts_the_others():
    odm = OnlineDataMixing(NAMES)
    odm.set_available("champ", False)
    for t, (i, loss) in enumerate(draws(30), start=1):
        odm.observe(t, losses_of(i, loss), odm.probabilities)
    p = odm.update(MixerInputs(step=30))
    assert float(p[1]) == 0.0 and float(p.sum()) == pytest.approx(1.0)
    assert float(p[[0, 2, 3]].min()) >= min(1 / 3, math.sqrt(math.log(3) / (3 * 31))) - 1e-12


def test_state_dict_round_trip_continues_bit_for_bit():
    steps = draws(40, seed=1)
    whole, first = OnlineDataMixing(NAMES), OnlineDataMixing(NAMES)
    for mixer, part in ((whole, steps), (first, steps[:17])):
        for t, (i, loss) in enumerate(part, start=1):
            mixer.observe(t, losses_of(i, loss), mixer.probabilities)
            if t % 4 == 0:
                mixer.update(MixerInputs(step=t))
    second = OnlineDataMixing(NAMES)
    second.load_state_dict(first.state_dict())  # step 17: one observed step is pending
    for t, (i, loss) in enumerate(steps[17:], start=18):
        second.observe(t, losses_of(i, loss), second.probabilities)
        if t % 4 == 0:
            second.update(MixerInputs(step=t))
    assert torch.equal(second.probabilities, whole.probabilities)
    assert torch.equal(second.rewards, whole.rewards)


def test_bad_alpha_and_other_strategy_state_are_refused():
    with pytest.raises(MosValueError, match="odm_alpha"):
        OnlineDataMixing(NAMES, alpha=1.0)
    state = OnlineDataMixing(NAMES).state_dict()
    state["strategy"] = "doremi"
    with pytest.raises(MosValueError, match="mixing.strategy=doremi"):
        OnlineDataMixing(NAMES).load_state_dict(state)
