"""Collation: padding widths, next-token labels on response tokens only, packing that keeps examples apart."""

from pathlib import Path

import pytest
import torch

from mos_nemo.data import (DatasetConfig, ReweightableBlend, collate_sft, load_sft_datasets,
                           local_micro_batches)
from mos_nemo.errors import MosValueError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "data"
SOURCES = ["instruction.jsonl", "sharegpt.json", "messages.jsonl", "prompt_completion.jsonl"]


@pytest.fixture(scope="module")
def datasets(smollm2_tokenizer):
    configs = [DatasetConfig(name=name.split(".")[0], source=str(FIXTURES / name)) for name in SOURCES]
    return load_sft_datasets(configs, smollm2_tokenizer, 96, None)


def all_examples(datasets) -> list[dict]:
    return [dataset[i] for dataset in datasets for i in range(len(dataset))]


def test_padding_rounds_the_longest_up_and_labels_are_next_response_tokens(datasets, smollm2_tokenizer):
    examples = all_examples(datasets)[:5]
    pad = smollm2_tokenizer.pad_token_id
    batch = collate_sft(examples, pad, pad_to_multiple_of=8)
    longest = max(len(e["input_ids"]) for e in examples)
    assert batch["tokens"].shape == (5, -(-longest // 8) * 8)
    assert {k: v.dtype for k, v in batch.items()} == {
        "tokens": torch.int64, "labels": torch.int64, "loss_mask": torch.float32, "position_ids": torch.int64,
        "segment_ids": torch.int64}
    for row, example in enumerate(examples):
        ids, mask = example["input_ids"], example["loss_mask"]
        n = len(ids)
        assert torch.equal(batch["tokens"][row, :n], ids)
        assert (batch["tokens"][row, n:] == pad).all() and (batch["segment_ids"][row, n:] == 0).all()
        assert (batch["segment_ids"][row, :n] == 1).all()
        assert torch.equal(batch["position_ids"][row, :n], torch.arange(n))
        predicted = batch["loss_mask"][row].bool()
        assert torch.equal(predicted[: n - 1], mask[1:]) and not predicted[n - 1:].any()
        assert torch.equal(batch["labels"][row][predicted], ids[1:][mask[1:]])
        assert (batch["labels"][row][~predicted] == -100).all()
    capped = collate_sft(examples, pad, pad_to_multiple_of=128, seq_length=96)
    assert capped["tokens"].shape[1] == 96


class SegmentAttention(torch.nn.Module):
    """A real attention layer using the engine's rule: causal AND same segment, with position embeddings."""

    def __init__(self, vocab_size: int):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(vocab_size, 16)
        self.positions = torch.nn.Embedding(512, 16)
        self.attention = torch.nn.MultiheadAttention(16, 2, batch_first=True)


def segment_attention_output(layer: SegmentAttention, batch: dict, row: int) -> torch.Tensor:
    embed, positions, attention = layer.embed, layer.positions, layer.attention
    tokens, segments = batch["tokens"][row], batch["segment_ids"][row]  # [s], [s]
    hidden = (embed(tokens) + positions(batch["position_ids"][row]))[None]  # [1, s, h]
    causal = torch.ones(len(tokens), len(tokens), dtype=torch.bool).tril()
    allowed = causal & (segments[:, None] == segments[None, :])  # [s, s]
    with torch.no_grad():
        output, _ = attention(hidden, hidden, hidden, attn_mask=~allowed)
    return output[0]  # [s, h]


def test_packing_fills_rows_of_seq_length_and_keeps_examples_separate(datasets, smollm2_tokenizer):
    examples = all_examples(datasets)
    pad = smollm2_tokenizer.pad_token_id
    packed = collate_sft(examples, pad, seq_length=256, pack=True)
    layer = SegmentAttention(len(smollm2_tokenizer))
    assert packed["tokens"].shape[1] == 256 and packed["tokens"].shape[0] < len(examples)
    total_tokens = sum(len(e["input_ids"]) for e in examples)
    assert int((packed["segment_ids"] > 0).sum()) == total_tokens
    by_tokens = {tuple(e["input_ids"].tolist()): e for e in examples}
    recovered = []
    for row in range(packed["tokens"].shape[0]):
        segments = packed["segment_ids"][row]
        count = int(segments.max())
        assert sorted(set(segments.tolist()) - {0}) == list(range(1, count + 1))  # 1..k, each used once
        for segment in range(1, count + 1):
            where = (segments == segment).nonzero().flatten()
            assert torch.equal(where, torch.arange(where[0], where[-1] + 1))  # contiguous
            assert torch.equal(packed["position_ids"][row, where], torch.arange(len(where)))
            assert packed["loss_mask"][row, where[-1]] == 0  # no label reaches into the next example
            recovered.append(packed["tokens"][row, where].tolist())
        alone = collate_sft([by_tokens[tuple(r)] for r in recovered[-count:]], pad)
        separate_outputs = [segment_attention_output(layer, alone, i)[: len(r)] for i, r in enumerate(recovered[-count:])]
        assert torch.allclose(segment_attention_output(layer, packed, row)[segments > 0], torch.cat(separate_outputs),
                              atol=1e-5)  # each packed example computes exactly what it computes alone
    assert sorted(recovered) == sorted(e["input_ids"].tolist() for e in examples)
    unpacked = collate_sft(examples, pad)
    assert packed["loss_mask"].sum() == unpacked["loss_mask"].sum()


def test_local_micro_batches_follow_the_blend_and_tag_datasets(datasets, smollm2_tokenizer):
    blend = ReweightableBlend([len(d) for d in datasets], [d.name for d in datasets], global_batch_size=8,
                              mode="sample", seed=0, dp_rank=1, dp_size=2)
    draw = blend.draw()
    micro = local_micro_batches(draw, datasets, micro_batch_size=2, pad_id=smollm2_tokenizer.pad_token_id)
    assert len(micro) == 2
    dataset_ids, example_ids = draw.local()
    for index, batch in enumerate(micro):
        for row in range(2):
            d, e = int(dataset_ids[2 * index + row]), int(example_ids[2 * index + row])
            n = len(datasets[d][e]["input_ids"])
            assert torch.equal(batch["tokens"][row, :n], datasets[d][e]["input_ids"])
            assert (batch["dataset_ids"][row, :n] == d).all() and (batch["dataset_ids"][row, n:] == -1).all()


def test_collate_rejects_bad_input(datasets):
    examples = all_examples(datasets)
    with pytest.raises(MosValueError, match="needs seq_length"):
        collate_sft(examples, 0, pack=True)
    with pytest.raises(MosValueError, match="> seq_length=8"):
        collate_sft(examples, 0, seq_length=8)
    with pytest.raises(MosValueError, match="no examples"):
        collate_sft([], 0)
