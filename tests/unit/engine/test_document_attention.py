"""Packed rows on the local spec: per-example attention (``DocumentSpans``) computes exactly what the dense
block-diagonal mask computed (outputs and gradients, fp32), and its memory is linear in the row length: no
[heads, s, s] tensor, a peak bounded by the inputs' size, where the dense mask under the math kernel (CUDA's
choice for a masked GQA call) exceeds one [heads, s, s] tensor."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.packed_attention import attention_inputs, masked_attention, measure, packed_row
from mos_nemo.engine.model.attention import DocumentSpans, document_attention
from mos_nemo.engine.hf.tiny import save_tiny_hf_model
from mos_nemo.engine.hf.weights import load_hf_weights
from mos_nemo.engine.model.gpt import attention_mask_from_segments, build_model, load_hf_config


def test_spans_tile_each_row_and_mark_padding():
    segments = torch.tensor([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    assert DocumentSpans.from_segments(segments).rows == (
        ((0, 3, False), (3, 5, False), (5, 6, True)), ((0, 6, False),), ((0, 6, True),))


def test_per_example_attention_equals_the_dense_mask_outputs_and_gradients():
    segments = torch.cat([packed_row([30, 17, 9], 64), packed_row([64], 64), packed_row([5, 40], 64),
                          packed_row([], 64)])  # with padding tails, a full row and an empty (all padding) row
    q, k, v = attention_inputs(heads=8, groups=2, seq=64, head_dim=16)
    q, k, v = (t.detach().repeat(4, 1, 1, 1).requires_grad_() for t in (q, k, v))  # [4, ...]
    weights = torch.randn(4, 8, 64, 16, generator=torch.Generator().manual_seed(1))  # a loss that weighs every output
    before = masked_attention(q, k, v, segments)
    grads_before = torch.autograd.grad((before * weights).sum(), (q, k, v))
    now = document_attention(q, k, v, DocumentSpans.from_segments(segments), groups=2)
    grads_now = torch.autograd.grad((now * weights).sum(), (q, k, v))
    assert torch.allclose(now, before, atol=1e-5, rtol=1e-5)
    for new, old in zip(grads_now, grads_before):
        assert torch.allclose(new, old, atol=1e-5, rtol=1e-5)


def test_the_model_gives_the_same_logits_with_spans_as_with_the_dense_mask(tmp_path, parallel):
    save_tiny_hf_model(tmp_path, "llama", seed=0)
    config = load_hf_config(tmp_path)
    model = build_model(config, params_dtype=torch.float32)
    load_hf_weights(model, tmp_path, config)
    segments = torch.cat([packed_row([7, 5], 16), packed_row([16], 16)])  # [2, 16]
    tokens = torch.randint(3, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(2))
    positions = torch.arange(16).expand(2, 16)
    with torch.no_grad():
        dense = model(input_ids=tokens, position_ids=positions, attention_mask=attention_mask_from_segments(segments))
        spans = model(input_ids=tokens, position_ids=positions, attention_mask=DocumentSpans.from_segments(segments))
    assert torch.allclose(spans, dense, atol=1e-5)


class LargestTensor(TorchDispatchMode):
    """Records the most elements of any tensor an operator returns (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(item, torch.Tensor):
                self.largest = max(self.largest, item.numel())
        return out


def test_a_packed_2048_token_row_allocates_no_square_tensor_and_linear_memory():
    heads, groups, seq, head_dim = 16, 4, 2048, 64
    segments = packed_row([612, 401, 288, 243, 201, 170, 96], seq)
    q, k, v = attention_inputs(heads, groups, seq, head_dim)
    tracker = LargestTensor()
    with tracker:
        document_attention(q, k, v, DocumentSpans.from_segments(segments), groups).sum().backward()
    assert tracker.largest <= heads * seq * head_dim  # nothing of s x s elements, let alone heads x s x s
    q.grad = k.grad = v.grad = None

    square = heads * seq * seq * 4  # one [heads, s, s] fp32 tensor: 256 MiB
    inputs = sum(t.numel() * 4 for t in (q, k, v))  # 12 MiB
    now = min(measure("documents", q, k, v, segments) for _ in range(2))
    before_on_cuda = measure("mask-math", q, k, v, segments)
    # q, k, v, their gradients, the output, its gradient and the per-example pieces: a few times the inputs
    assert now < 8 * inputs + 16 * 2**20, (now, inputs)
    assert before_on_cuda > square  # the measure sees a quadratic path when there is one
