"""attention_mask_from_segments: causal, within one packed example, padding attends to itself only."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mos_nemo.engine.model.gpt import attention_mask_from_segments


def test_hand_written_example():
    # one row: example 1 = tokens 0-1, example 2 = tokens 2-4, padding = token 5
    segments = torch.tensor([[1, 1, 2, 2, 2, 0]])
    allowed = torch.tensor([  # allowed[i][j]: query i may see key j (written by hand)
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ], dtype=torch.bool)
    mask = attention_mask_from_segments(segments)
    assert mask.shape == (1, 1, 6, 6) and mask.dtype == torch.bool
    assert torch.equal(mask[0, 0], ~allowed)  # megatron convention: True = masked out


@st.composite
def packed_rows(draw):
    lengths = draw(st.lists(st.integers(1, 5), min_size=1, max_size=4))
    padding = draw(st.integers(0, 3))
    row = [i + 1 for i, n in enumerate(lengths) for _ in range(n)] + [0] * padding
    return torch.tensor([row])


@settings(max_examples=50, deadline=None)
@given(packed_rows())
def test_every_row_sees_something_and_nothing_across_examples(segments):
    mask = attention_mask_from_segments(segments)[0, 0]  # [s, s]
    allowed = ~mask
    assert allowed.any(dim=-1).all()  # no empty softmax row, so no NaN
    assert allowed.diagonal().all()
    assert not allowed.triu(diagonal=1).any()  # causal
    seg = segments[0]
    for i, j in allowed.nonzero().tolist():
        assert seg[i] == seg[j] and (seg[j] != 0 or i == j)
