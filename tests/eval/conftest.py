"""Shared inputs of the evaluation tests: a tiny random Llama HF folder and benchmark fixtures on disk."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import eval_fixtures  # noqa: E402

@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("eval_model") / "tiny-llama"
    return eval_fixtures.build_tiny_llama(folder, eval_fixtures.corpus_for_tokenizer())


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval_data")
    eval_fixtures.build_mmlu(root / "mmlu")
    eval_fixtures.build_gsm8k(root / "gsm8k")
    eval_fixtures.build_math(root / "hendrycks_math")
    return root


@pytest.fixture(scope="session")
def training_run(tmp_path_factory) -> Path:
    """The folder of a real tiny training run (tiny_cpu recipe, 4 steps, checkpoints at steps 2 and 4) of
    a base model: its tokenizer has no chat template, so training used the plain template."""
    root = tmp_path_factory.mktemp("eval_training")
    return eval_fixtures.train_tiny_run(root / "base-tokenizer", root / "tiny-run")
