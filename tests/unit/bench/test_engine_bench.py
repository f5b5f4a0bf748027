"""bench/engine.py compares like with like: from the same saved weights and the same batch, HF transformers'
step and ours give the same step-0 loss and gradient norm (fp32, tiny shape); the harness's old labels (ours
unshifted) would not."""

import pytest
import torch

from bench.engine import hf_engine, make_batch, our_engine, save_shared_weights
from mos_nemo.engine.parallel import destroy_parallel, initialize_parallel

PRESET = dict(shape=dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=512, max_position_embeddings=128),
              seq=32, micro_batch=2)


@pytest.fixture(scope="module")
def parallel():
    state = initialize_parallel(tp=1, pp=1, seed=0)
    yield state
    destroy_parallel()


def test_step_zero_loss_and_grad_norm_agree_with_hf(parallel, tmp_path):
    save_shared_weights(PRESET, tmp_path)
    hf = hf_engine(tmp_path, "fp32", parallel.device)
    ours = our_engine(tmp_path, "fp32", use_te=False, parallel=parallel)
    for step in range(3):  # step 0 from the same weights, then after identical AdamW updates
        batch = make_batch(PRESET, step, parallel.device)
        (hf_loss, hf_norm), (our_loss, our_norm) = hf(batch), ours(batch)
        assert our_loss == pytest.approx(hf_loss, rel=1e-5), step
        assert our_norm == pytest.approx(hf_norm, rel=1e-4), step


def test_unshifted_labels_would_be_another_loss(parallel, tmp_path):
    save_shared_weights(PRESET, tmp_path)
    hf, ours = hf_engine(tmp_path, "fp32", parallel.device), our_engine(tmp_path, "fp32", False, parallel)
    batch = make_batch(PRESET, 0, parallel.device)
    unshifted = {**batch, "labels": batch["tokens"], "loss_mask": torch.ones_like(batch["loss_mask"])}
    assert abs(ours(unshifted)[0] - hf(batch)[0]) > 1e-3  # what the old harness compared
