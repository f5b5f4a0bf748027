"""Online DoReMi against an independent re-implementation of Xie et al. (2023), Algorithm 1's domain-weight
step, written here from the paper's equations with plain Python floats:

    lambda_i = mean_j max(l_theta(x_j) - l_ref(x_j), 0)
    alpha'_i = alpha_i exp(eta lambda_i);  alpha_i <- (1 - c) alpha'_i / sum_k alpha'_k + c / k
"""

import math
import random

import pytest
import torch

from mos_nemo.errors import MosValueError
from mos_nemo.mixing import MixerInputs, OnlineDoReMi

NAMES = ["gsm8k", "champ", "humaneval"]


def paper_step(alpha: list[float], nll: list[list[float]], ref: list[list[float]], eta: float, c: float) -> list[float]:
    lam = [sum(max(a - b, 0.0) for a, b in zip(row, row_ref)) / len(row) for row, row_ref in zip(nll, ref)]
    grown = [a * math.exp(eta * x) for a, x in zip(alpha, lam)]
    return [(1 - c) * g / sum(grown) + c / len(alpha) for g in grown]


def batches(n: int, seed: int = 0):
    """n reward batches [3, 5]: dataset 2 keeps a large excess loss, dataset 0 falls below the reference."""
    rng = random.Random(seed)
    ref = [[2.0 + rng.random() for _ in range(5)] for _ in range(3)]
    out = []
    for t in range(n):
        shift = [-0.3, 0.05, 0.4]
        out.append(([[r + shift[i] + 0.2 * (rng.random() - 0.5) for r in ref[i]] for i in range(3)], ref))
    return out


@pytest.mark.parametrize("eta,c", [(1.0, 1e-3), (0.3, 0.1)])
def test_updates_match_the_paper(eta, c):
    doremi = OnlineDoReMi(NAMES, eta=eta, smoothing=c)
    alpha = [1 / 3] * 3
    assert doremi.probabilities.tolist() == pytest.approx(alpha)
    for t, (nll, ref) in enumerate(batches(25), start=1):
        alpha = paper_step(alpha, nll, ref, eta, c)
        got = doremi.update(MixerInputs(step=t, nll=torch.tensor(nll, dtype=torch.float64),
                                        nll_ref=torch.tensor(ref, dtype=torch.float64)))
        assert got.tolist() == pytest.approx(alpha, rel=1e-12), f"update {t}"
    assert int(torch.argmax(got)) == 2 and float(got.min()) >= c / 3 - 1e-15


def test_mask_leaves_out_missing_examples_and_excluded_datasets_stay_at_zero():
    doremi = OnlineDoReMi(NAMES, eta=1.0, smoothing=0.01)
    doremi.set_available("champ", False)
    nll = torch.tensor([[3.0, 9.0], [5.0, 5.0], [2.5, 2.5]], dtype=torch.float64)
    ref = torch.full((3, 2), 2.0, dtype=torch.float64)
    mask = torch.tensor([[True, False], [True, True], [True, True]])
    p = doremi.update(MixerInputs(step=1, nll=nll, nll_ref=ref, mask=mask))
    # dataset 0's lambda is 1 (the masked 9.0 is ignored), dataset 2's 0.5; champ is excluded
    expected = paper_step([0.5, 0.5], [[3.0], [2.5]], [[2.0], [2.0]], 1.0, 0.01)
    assert p.tolist() == pytest.approx([expected[0], 0.0, expected[1]], rel=1e-12)


def test_non_finite_excess_loss_skips_the_update():
    doremi = OnlineDoReMi(NAMES)
    nll = torch.tensor([[math.nan], [1.0], [1.0]], dtype=torch.float64)
    p = doremi.update(MixerInputs(step=1, nll=nll, nll_ref=torch.zeros(3, 1, dtype=torch.float64)))
    assert doremi.num_skipped == 1 and doremi.num_updates == 0 and p.tolist() == pytest.approx([1 / 3] * 3)


def test_state_dict_round_trip_continues_bit_for_bit():
    data = batches(10, seed=2)
    whole, first = OnlineDoReMi(NAMES), OnlineDoReMi(NAMES)
    as_inputs = lambda t, b: MixerInputs(step=t, nll=torch.tensor(b[0], dtype=torch.float64),  # noqa: E731
                                         nll_ref=torch.tensor(b[1], dtype=torch.float64))
    for t, b in enumerate(data, start=1):
        whole.update(as_inputs(t, b))
    for t, b in enumerate(data[:4], start=1):
        first.update(as_inputs(t, b))
    second = OnlineDoReMi(NAMES)
    second.load_state_dict(first.state_dict())
    for t, b in enumerate(data[4:], start=5):
        second.update(as_inputs(t, b))
    assert torch.equal(second.probabilities, whole.probabilities) and second.num_updates == 10


def test_bad_settings_are_refused():
    with pytest.raises(MosValueError, match="doremi_eta"):
        OnlineDoReMi(NAMES, eta=0.0)
    with pytest.raises(MosValueError, match="doremi_smoothing"):
        OnlineDoReMi(NAMES, smoothing=1.5)
