"""Fixtures of the engine unit tests."""

import pytest

from mos_nemo.engine.parallel import destroy_parallel, initialize_parallel


@pytest.fixture(scope="module")
def parallel():
    """A single-process megatron parallel state (TP = PP = DP = 1), torn down after the module."""
    state = initialize_parallel(tp=1, pp=1, seed=0)
    yield state
    destroy_parallel()
