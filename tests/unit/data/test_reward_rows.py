"""reward_micro_batches: every example scored exactly once over the DP ranks, on every rank the same number of
micro batches of one fixed shape, in both layouts; members point at the example's own tokens."""

import pytest
import torch

from mos_nemo.data.reward_rows import reward_micro_batches


def _examples():
    lengths = [[5, 17, 3, 30], [9], [12, 2, 25, 7, 31, 4]]
    return [[{"input_ids": torch.arange(100 * i + j, 100 * i + j + n) % 97 + 1, "loss_mask": torch.ones(n, dtype=torch.bool)}
             for j, n in enumerate(row)] for i, row in enumerate(lengths)]


@pytest.mark.parametrize("pack", [True, False])
@pytest.mark.parametrize("dp", [1, 2, 3])
def test_each_example_once_fixed_shapes_equal_counts(pack, dp):
    examples = _examples()
    per_rank = [reward_micro_batches(examples, width=32, micro_batch_size=2, pad_id=0, dp=dp, dp_rank=r, pack=pack)
                for r in range(dp)]
    assert len({len(batches) for batches in per_rank}) == 1
    seen = []
    for batches in per_rank:
        for batch in batches:
            assert batch["tokens"].shape == (2, 32)
            for m in batch["members"]:
                seen.append((m.dataset, m.slot))
                tokens = batch["tokens"][m.row][batch["segment_ids"][m.row] == m.segment]
                assert torch.equal(tokens, examples[m.dataset][m.slot]["input_ids"])
    assert sorted(seen) == sorted((i, j) for i, row in enumerate(examples) for j in range(len(row)))
    if pack and dp == 1:  # 145 tokens fit in 5 rows of 32 where padding needs 11
        assert len(per_rank[0]) * 2 < 11
