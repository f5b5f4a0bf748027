"""Packed reward rows (the default) give every example the numbers it gets alone in a padded row: per-example
NLL (response and whole-sequence) and pooled final hidden states of a real megatron-core GPTModel, fp32 CPU."""

import pytest
import torch

from mos_nemo.data.reward_rows import reward_micro_batches
from mos_nemo.engine.hf.tiny import tiny_hf_config
from mos_nemo.engine.model.gpt import build_model
from mos_nemo.engine.training.reward_pass import RewardRows, score_examples


def _examples(vocab: int) -> list[list[dict]]:
    """Three datasets of examples of 3-40 tokens, prompt (no loss) then response (loss)."""
    generator = torch.Generator().manual_seed(5)
    datasets = []
    for count in (5, 3, 6):
        items = []
        for _ in range(count):
            n = int(torch.randint(3, 41, (1,), generator=generator))
            prompt = int(torch.randint(1, n, (1,), generator=generator))
            items.append({"input_ids": torch.randint(3, vocab, (n,), generator=generator),
                          "loss_mask": torch.arange(n) >= prompt})
        datasets.append(items)
    return datasets


@pytest.fixture(scope="module")
def model(parallel):
    torch.manual_seed(0)
    config = tiny_hf_config("llama")
    return config, build_model(config, params_dtype=torch.float32).eval()


@pytest.mark.parametrize("with_embeddings, nll_tokens", [(False, "response"), (False, "sequence"), (True, "response")])
def test_packed_rows_equal_one_example_per_row(parallel, model, with_embeddings, nll_tokens):
    config, gpt = model
    rows = RewardRows(_examples(config.vocab_size))
    scored = {pack: score_examples(gpt, rows, parallel=parallel, micro_batch_size=2, seq_length=64, pad_id=0,
                                   hidden_size=config.hidden_size, with_embeddings=with_embeddings,
                                   nll_tokens=nll_tokens, pack=pack) for pack in (False, True)}
    packed = reward_micro_batches(rows.examples, width=64, micro_batch_size=2, pad_id=0, pack=True)
    assert sum(len(b["members"]) for b in packed) == 14 and len(packed) < 7  # really packed: fewer rows
    assert torch.equal(scored[True].present, scored[False].present)
    table = "embeddings" if with_embeddings else "nll"
    one, other = getattr(scored[True], table), getattr(scored[False], table)
    real = scored[True].present
    assert one[real].abs().sum() > 0 and torch.isfinite(one[real]).all()
    assert float((one[real] - other[real]).abs().max()) < 1e-5
