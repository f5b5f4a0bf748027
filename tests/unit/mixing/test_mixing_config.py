"""The mixing keys of the config: defaults reproduce the authors' scorer, bad values name their key."""

import pytest

from mos_nemo.config import compose_config
from mos_nemo.config_checks import validate
from mos_nemo.engine.training.reward_hook import DEFAULT_REWARD_BATCH
from mos_nemo.errors import MosConfigError


def test_defaults_are_the_authors_scorer_and_the_papers_diff():
    mixing = compose_config("tiny_cpu").mixing
    assert (mixing.scorer, mixing.scorer_lr, mixing.inner_steps, mixing.ema_init) == ("logits", None, 200, "one")
    assert (mixing.diff_tokens, mixing.reward_batch, mixing.mode) == ("response", None, "batch")
    assert DEFAULT_REWARD_BATCH == {"cossim": 64, "diff": 16}


def test_mixing_options_compose_and_validate():
    overrides = ["mixing.scorer=mlp", "mixing.scorer_lr=1e-3", "mixing.inner_steps=5", "mixing.ema_init=raw",
                 "mixing.diff_tokens=sequence", "mixing.reward_batch=8"]
    config = compose_config("tiny_cpu", overrides)
    validate(config, world_size=1)
    assert (config.mixing.scorer, config.mixing.scorer_lr, config.mixing.diff_tokens) == ("mlp", 1e-3, "sequence")


@pytest.mark.parametrize("override, key", [
    ("mixing.scorer=transformer", "mixing.scorer"),
    ("mixing.ema_init=zero", "mixing.ema_init"),
    ("mixing.diff_tokens=prompt", "mixing.diff_tokens"),
    ("mixing.scorer_lr=0", "mixing.scorer_lr"),
    ("mixing.inner_steps=0", "mixing.inner_steps"),
    ("mixing.reward_batch=0", "mixing.reward_batch"),
])
def test_bad_mixing_values_name_the_key(override, key):
    with pytest.raises(MosConfigError, match=key.replace(".", "\\.")):
        validate(compose_config("tiny_cpu", [override]), world_size=1)
