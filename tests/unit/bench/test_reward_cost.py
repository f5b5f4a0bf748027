"""bench/reward_cost.py counts right: the two model shapes have the published parameter counts (HF model cards:
Llama-3-8B 8,030,261,248; Llama-3.2-1B 1,235,814,400), and the FLOPs of hand-made rows are worked out below."""

import torch

from bench.reward_cost import SHAPES, ModelShape, attended_spans, forward_flops
from mos_nemo.data.collate import collate_sft


def test_shapes_have_the_published_parameter_counts():
    assert SHAPES["llama3-8b"].params == 8_030_261_248
    assert SHAPES["llama3.2-1b"].params == 1_235_814_400


def _example(n):
    return {"input_ids": torch.arange(1, n + 1), "loss_mask": torch.ones(n, dtype=torch.bool)}


def test_flops_of_padded_and_packed_rows():
    shape = ModelShape(layers=2, hidden=8, ffn=16, heads=2, kv_heads=1, vocab=10, tied=False)
    # per layer: q, o 8x8 each, k, v 8x4 each, MLP 3 x 8x16 -> 128 + 64 + 384 = 576 matmul parameters
    assert shape.layer_matmul_params == 576
    padded = collate_sft([_example(3), _example(5)], pad_id=0, pad_to_multiple_of=8, seq_length=8)  # [2, 8]
    packed = collate_sft([_example(3), _example(4)], pad_id=0, seq_length=8, pack=True)  # [1, 8]: 4 + 3 + 1 pad
    assert attended_spans(padded) == [8, 8] and attended_spans(packed) == [4, 3, 1]
    # 16 tokens x 2 x (2 x 576 + 80 output) + 2 rows x 2 x 2 layers x 8 x 8^2
    assert forward_flops([padded], shape, logits=True) == 16 * 2 * (1152 + 80) + 2 * 2 * 2 * 8 * 64
    # 8 tokens x 2 x 1152 (no output layer) + 2 x 2 layers x 8 x (16 + 9 + 1)
    assert forward_flops([packed], shape, logits=False) == 8 * 2 * 1152 + 2 * 2 * 8 * 26


def test_a_budget_scores_k_datasets_per_steady_update():
    """With 16 datasets and a budget of 4 x L, a steady-state update scores 4 datasets' L examples, so it costs
    about a quarter of the paper's (same rows per dataset, fewer datasets); not the whole N x L."""
    from argparse import Namespace

    from bench.reward_cost import SHAPES, make_datasets, reward_flops

    datasets = make_datasets(16, 200, 2048)
    args = Namespace(updates=4, seq_length=2048, update_every=100, micro_batch=4)
    paper = reward_flops(datasets, "diff", None, SHAPES["llama3.2-1b"], args, pack=False)
    budget = reward_flops(datasets, "diff", 4 * 16, SHAPES["llama3.2-1b"], args, pack=False)
    assert 0.2 < budget / paper < 0.3
