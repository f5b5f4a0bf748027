"""`mixing.diff_tokens=sequence`: the reward pass's targets cover every next token of each example."""

import torch

from mos_nemo.data.collate import IGNORE_INDEX, collate_sft
from mos_nemo.engine.training.reward_pass import _sequence_targets


def example(ids, response_from):
    ids = torch.tensor(ids)
    return {"input_ids": ids, "loss_mask": torch.arange(len(ids)) >= response_from}


def test_sequence_targets_are_the_next_tokens_within_each_example_packed_or_padded():
    examples = [example([5, 6, 7, 8], 2), example([9, 10, 11], 1), example([12, 13], 1)]
    for batch in (collate_sft(examples, pad_id=0, pad_to_multiple_of=8),
                  collate_sft(examples, pad_id=0, seq_length=10, pack=True)):
        labels, mask = _sequence_targets(batch)
        # Independent oracle: walk each row's examples; token t of an example predicts token t + 1.
        expected = torch.full_like(batch["tokens"], IGNORE_INDEX)
        for row in range(batch["tokens"].shape[0]):
            for segment in batch["segment_ids"][row].unique().tolist():
                if segment == 0:
                    continue
                positions = (batch["segment_ids"][row] == segment).nonzero().flatten()
                expected[row, positions[:-1]] = batch["tokens"][row, positions[1:]]
        assert torch.equal(labels, expected)
        assert torch.equal(mask.bool(), expected != IGNORE_INDEX)
        assert int(mask.sum()) == 3 + 2 + 1
        # The response targets are a subset, with the same labels: the response NLL is unchanged.
        response = batch["loss_mask"].bool()
        assert bool((mask.bool() | ~response).all())
        assert torch.equal(labels[response], batch["labels"][response])
