"""From a blend draw to this rank's micro batches (the data path's last link)."""

from __future__ import annotations

from typing import Sequence

from mos_nemo.data.blend import BlendDraw
from mos_nemo.data.collate import collate_sft
from mos_nemo.data.dataset import TokenizedDataset
from mos_nemo.errors import MosValueError


def local_micro_batches(draw: BlendDraw, datasets: Sequence[TokenizedDataset], micro_batch_size: int,
                        pad_id: int, seq_length: int | None = None, pack: bool = False,
                        pad_to_multiple_of: int = 8) -> list[dict]:
    """This rank's slice of a global batch, cut into micro batches of `micro_batch_size` examples and collated.

    Each example carries its dataset index, so every micro batch also has `dataset_ids` [b, s] (-1 on
    padding) for per-dataset loss logging.
    """
    dataset_ids, example_ids = draw.local()
    if micro_batch_size < 1 or len(dataset_ids) % micro_batch_size:
        raise MosValueError(f"micro_batch_size={micro_batch_size} must divide the per-rank batch of "
                            f"{len(dataset_ids)} examples (global batch / data-parallel size)")
    examples = []
    for dataset, example in zip(dataset_ids.tolist(), example_ids.tolist()):
        item = datasets[dataset][example]
        item["dataset_id"] = dataset
        examples.append(item)
    return [collate_sft(examples[begin:begin + micro_batch_size], pad_id, pad_to_multiple_of, seq_length, pack)
            for begin in range(0, len(examples), micro_batch_size)]
