"""SFT data pipeline and the reweightable blend (no megatron import here).

sources -> formats -> tokenize (chat template, response-only loss mask, truncation) -> cached
TokenizedDataset -> ReweightableBlend.draw() -> local_micro_batches / collate_sft (padding or packing).
"""

from mos_nemo.data.batches import local_micro_batches
from mos_nemo.data.blend import BlendDraw, ReweightableBlend, reward_example_ids
from mos_nemo.data.collate import IGNORE_INDEX, collate_sft
from mos_nemo.data.dataset import DatasetStats, TokenizedDataset
from mos_nemo.data.load import load_sft_datasets, pad_token_id
from mos_nemo.data.spec import DatasetConfig, validate_dataset_configs
from mos_nemo.data.tokenize import PLAIN_TEMPLATE

__all__ = [
    "BlendDraw", "DatasetConfig", "DatasetStats", "IGNORE_INDEX", "PLAIN_TEMPLATE", "ReweightableBlend",
    "TokenizedDataset", "collate_sft", "load_sft_datasets", "local_micro_batches", "pad_token_id",
    "reward_example_ids", "validate_dataset_configs",
]
