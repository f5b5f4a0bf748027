"""Every bounded numeric key fails validation just outside its range, naming the key; the ranges are the
ones the constructors require (a value that passes validation does not fail later, after the model is built)."""

import copy
import functools
import math

import pytest

from mos_nemo.config import compose_config
from mos_nemo.config_checks import BOUNDS, Bound, validate
from mos_nemo.errors import MosConfigError, MosValueError
from mos_nemo.mixing import MixtureOfSkills


def _outside(bound: Bound) -> list[float]:
    """The values just outside ``bound``: the bound minus one (inclusive end) or the bound itself (exclusive)."""
    values = []
    if bound.low is not None:
        values.append(bound.low - 1 if bound.low_inclusive else bound.low)
    if bound.high is not None:
        values.append(bound.high + 1 if bound.high_inclusive else bound.high)
    return values


CASES = [(key, value) for key, bound in BOUNDS.items() for value in _outside(bound)]


@pytest.fixture(scope="module")
def recipe():
    return compose_config("tiny_cpu")


@pytest.mark.parametrize("key, value", CASES, ids=[f"{k}={v}" for k, v in CASES])
def test_a_value_just_outside_the_range_fails_naming_the_key(key, value, recipe):
    # Set on a copy of the composed recipe (composing once keeps this fast); the Hydra override path
    # is the same schema, checked for inner_steps below and in test_config.py.
    config = copy.deepcopy(recipe)
    *path, name = key.split(".")
    section = functools.reduce(getattr, path, config)
    setattr(section, name, type(getattr(section, name) or 0)(value) if math.isfinite(value) else value)
    with pytest.raises(MosConfigError) as caught:
        validate(config, world_size=1)
    assert str(caught.value).startswith(f"{key}=")


def test_inner_steps_zero_fails_at_validation():
    with pytest.raises(MosConfigError, match=r"^mixing\.inner_steps=0: must be >= 1"):
        validate(compose_config("tiny_cpu", ["mixing.inner_steps=0"]), world_size=1)


def test_the_bounds_admit_the_recipe_values_at_the_edge():
    config = compose_config("tiny_cpu", ["mixing.inner_steps=1", "checkpoint.keep=0", "optim.clip_grad=0",
                                         "mixing.ema_beta=1", "train.seq_length=8", "mixing.tau=inf"])
    validate(config, world_size=1)


# The scorer's constructor and the config agree: what validation rejects, MixtureOfSkills rejects too.
SCORER_KEYS = {"mixing.ema_beta": "ema_beta", "mixing.scorer_lr": "lr", "mixing.inner_steps": "inner_steps",
               "mixing.hidden": "hidden", "mixing.p_min": "p_min", "mixing.tau": "prior_tau"}


@pytest.mark.parametrize("key", sorted(SCORER_KEYS))
def test_the_scorer_constructor_rejects_the_same_values(key):
    arguments = dict(prior_tau=1.0, ema_beta=0.9, lr=1e-4, inner_steps=2, hidden=4, p_min=0.0, seed=0)
    MixtureOfSkills([3, 2], **arguments)  # the defaults build
    for value in _outside(BOUNDS[key]):
        value = int(value) if isinstance(arguments[SCORER_KEYS[key]], int) and math.isfinite(value) else value
        with pytest.raises(MosValueError):
            MixtureOfSkills([3, 2], **{**arguments, SCORER_KEYS[key]: value})
