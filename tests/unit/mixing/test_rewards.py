"""Eq. 8 (CosSim), Eq. 10 (Diff), Eq. 11 (EMA) and MoSpec, against direct per-element formulas."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mos_nemo.mixing import cossim_reward, diff_reward, smooth_rewards


def direct_cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), h=st.integers(1, 16), seed=st.integers(0, 2**31 - 1))
def test_cossim_matches_eq8(n, h, seed):
    z = torch.randn(n, h, generator=torch.Generator().manual_seed(seed))
    rows = z.double().tolist()
    expected = [sum(direct_cosine(rows[i], rows[k]) for k in range(n)) / n for i in range(n)]
    got = cossim_reward(z)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 6), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_cossim_mospec_is_similarity_to_target(n, seed, data):
    target = data.draw(st.integers(0, n - 1))
    z = torch.randn(n, 8, generator=torch.Generator().manual_seed(seed))
    rows = z.double().tolist()
    expected = [direct_cosine(rows[i], rows[target]) for i in range(n)]
    got = cossim_reward(z, target=target)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-10)
    assert math.isclose(float(got[target]), 1.0, rel_tol=1e-12)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 5), l=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_diff_matches_eq10(n, l, seed):
    generator = torch.Generator().manual_seed(seed)
    nll, nll_ref = torch.rand(n, l, generator=generator) * 4, torch.rand(n, l, generator=generator) * 4
    expected = [sum(math.exp(a) / math.exp(b) for a, b in zip(nll[i].tolist(), nll_ref[i].tolist())) / l for i in range(n)]
    torch.testing.assert_close(diff_reward(nll, nll_ref), torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_diff_is_one_when_model_is_unchanged():
    nll = torch.rand(4, 16, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.equal(diff_reward(nll, nll.clone()), torch.ones(4, dtype=torch.float64))


def test_diff_mospec_doubles_target_and_mask_handles_ragged_datasets():
    generator = torch.Generator().manual_seed(1)
    nll, nll_ref = torch.rand(3, 5, generator=generator), torch.rand(3, 5, generator=generator)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False], [True] * 3 + [False] * 2])
    plain = diff_reward(nll, nll_ref, mask=mask)
    for i, length in enumerate([5, 2, 3]):
        expected = sum(math.exp(nll[i, j] - nll_ref[i, j]) for j in range(length)) / length
        assert math.isclose(float(plain[i]), float(expected), rel_tol=1e-6)
    spec = diff_reward(nll, nll_ref, target=1, mask=mask)
    assert float(spec[1]) == 2 * float(plain[1])
    assert torch.equal(spec[[0, 2]], plain[[0, 2]])


def test_ema_eq11_first_update_uses_raw_then_beta_weighs_newest():
    first = torch.tensor([1.0, 2.0])
    r0 = smooth_rewards(first, None, 0.9)
    assert torch.equal(r0, first.double())
    second = torch.tensor([3.0, 0.0])
    r1 = smooth_rewards(second, r0, 0.9)
    torch.testing.assert_close(r1, torch.tensor([0.9 * 3.0 + 0.1 * 1.0, 0.1 * 2.0], dtype=torch.float64))


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: cossim_reward(torch.ones(4)), "expected \\[N, H\\]"),
        (lambda: cossim_reward(torch.ones(0, 3)), "expected \\[N, H\\]"),
        (lambda: cossim_reward(torch.ones(3, 2), target=3), "target = 3"),
        (lambda: diff_reward(torch.ones(3), torch.ones(3)), "expected \\[N, L\\]"),
        (lambda: diff_reward(torch.ones(3, 2), torch.ones(3, 4)), "must match"),
        (lambda: diff_reward(torch.ones(2, 2), torch.ones(2, 2), target=-1), "target = -1"),
        (lambda: diff_reward(torch.ones(2, 2), torch.ones(2, 2), mask=torch.ones(2, 2)), "bool"),
        (lambda: diff_reward(torch.ones(2, 2), torch.ones(2, 2), mask=torch.tensor([[True, True], [False, False]])), "no example"),
    ],
)
def test_rewards_reject_bad_shapes(call, fragment):
    with pytest.raises(ValueError, match=fragment):
        call()
