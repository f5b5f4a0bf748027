"""The training loss function megatron calls on the last stage (paper Eq. 1), against a direct torch
computation: cross-entropy summed over response tokens, the response-token count, and per-dataset sums."""

import torch
import torch.nn.functional as F

from mos_nemo.engine.training.step import _masked_token_loss


def test_loss_is_the_summed_response_token_cross_entropy_and_its_count():
    generator = torch.Generator().manual_seed(0)
    b, s, vocab, datasets = 3, 7, 11, 2
    logits = torch.randn(b, s, vocab, generator=generator)  # [b, s, V]
    labels = torch.randint(0, vocab, (b, s), generator=generator)  # [b, s]
    loss_mask = (torch.rand(b, s, generator=generator) > 0.4).float()  # [b, s]; 1 on response tokens
    dataset_ids = torch.tensor([[0] * s, [1] * s, [1] * 4 + [-1] * 3])  # [b, s]; -1 on padding
    loss_mask[2, 4:] = 0.0  # padding carries no loss
    per_token = F.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1), reduction="none").view(b, s)

    loss_sum, count, report = _masked_token_loss(loss_mask, dataset_ids, datasets, per_token)

    chosen = loss_mask.bool()
    expected = F.cross_entropy(logits[chosen], labels[chosen], reduction="sum")  # only the response tokens
    assert torch.allclose(loss_sum, expected, atol=1e-5)
    assert int(count) == int(chosen.sum())
    assert torch.allclose(report["loss_sum_and_tokens"], torch.stack([expected, chosen.sum().float()]), atol=1e-5)
    for dataset in range(datasets):
        mine = chosen & (dataset_ids == dataset)
        want = F.cross_entropy(logits[mine], labels[mine], reduction="sum")
        assert torch.allclose(report["per_dataset"][dataset], torch.stack([want, mine.sum().float()]), atol=1e-5)
    # the optimised quantity is loss_sum / count (megatron divides after the DP all-reduce)
    mean = F.cross_entropy(logits[chosen], labels[chosen])
    assert torch.allclose(loss_sum / count, mean, atol=1e-6)


def test_the_loss_sum_carries_the_gradient():
    per_token = torch.rand(2, 5, requires_grad=True)
    loss_mask = torch.tensor([[1.0, 1, 0, 0, 1], [0, 0, 0, 1, 1]])
    loss_sum, _, _ = _masked_token_loss(loss_mask, torch.zeros(2, 5, dtype=torch.long), 1, per_token)
    loss_sum.backward()
    assert torch.equal(per_token.grad, loss_mask)  # masked tokens get no gradient
