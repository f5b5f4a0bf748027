"""Eq. 3, the temperature prior, against the direct (non-log-space) formula."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mos_nemo.mixing import temperature_prior

sizes_strategy = st.lists(st.integers(min_value=1, max_value=10**7), min_size=1, max_size=12)


def direct_prior(sizes, tau):
    q = [m / sum(sizes) for m in sizes]
    powered = [qi ** (1.0 / tau) for qi in q]
    return [v / sum(powered) for v in powered]


@settings(max_examples=60, deadline=None)
@given(sizes=sizes_strategy, tau=st.sampled_from([1.0, 10.0]))
def test_prior_matches_eq3(sizes, tau):
    got = temperature_prior(sizes, tau)
    assert got.dtype == torch.float64
    assert got.shape == (len(sizes),)
    torch.testing.assert_close(got, torch.tensor(direct_prior(sizes, tau), dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert math.isclose(float(got.sum()), 1.0, abs_tol=1e-12)


@settings(max_examples=30, deadline=None)
@given(sizes=sizes_strategy)
def test_prior_tau_inf_is_exactly_uniform(sizes):
    got = temperature_prior(sizes, float("inf"))
    assert torch.equal(got, torch.full((len(sizes),), 1.0 / len(sizes), dtype=torch.float64))


@settings(max_examples=30, deadline=None)
@given(sizes=sizes_strategy)
def test_prior_tau_one_is_proportional(sizes):
    got = temperature_prior(sizes, 1.0)
    expected = torch.tensor(sizes, dtype=torch.float64) / sum(sizes)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)


def test_paper_table6_sizes_flatten_with_temperature():
    sizes = [26_200, 5_200, 9_300, 62_600]  # Mathematics, Medicine, General, NLP (paper Table 6)
    proportional, tempered, uniform = (temperature_prior(sizes, tau) for tau in (1.0, 10.0, float("inf")))
    # A higher temperature moves every dataset towards uniform: the largest shrinks, the smallest grows.
    assert proportional[3] > tempered[3] > uniform[3]
    assert proportional[1] < tempered[1] < uniform[1]
    torch.testing.assert_close(tempered, torch.tensor(direct_prior(sizes, 10.0), dtype=torch.float64))


@pytest.mark.parametrize(
    "sizes, tau, fragment",
    [
        ([], 1.0, "non-empty"),
        ([10, 0, 3], 1.0, "sizes[1] = 0.0"),
        ([10, -4], 1.0, "sizes[1] = -4.0"),
        ([10, float("nan")], 1.0, "sizes[1] = nan"),
        ([[1, 2], [3, 4]], 1.0, "shape"),
        (["a", "b"], 1.0, "sequence of numbers"),
        ([1, 2], 0.0, "tau = 0.0"),
        ([1, 2], -1.0, "tau = -1.0"),
        ([1, 2], float("nan"), "tau = nan"),
    ],
)
def test_prior_rejects_bad_arguments(sizes, tau, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        temperature_prior(sizes, tau)
