"""Model-only megatron checkpoints: what ``python -m mos_nemo.convert import`` writes and ``export`` reads.

On-disk layout (the training checkpoints of ``engine/training/checkpoint.py`` may add siblings such as
``optimizer/`` or ``train_state.json``; this module reads and writes only these three):

    CKPT/
      model/            megatron dist_checkpointing (torch_dist) of ``model.sharded_state_dict()``;
                        any TP/PP layout loads it (the sharded format reshards on load)
      hf_config.json    the HF config of the model (``PretrainedConfig.to_json_file``)
      tokenizer/        the tokenizer files of the source HF folder (tokenizer.json, chat template, ...),
                        absent when that folder has none (weights and config only)
      versions.json     the megatron-core, torch, mos_nemo and Python versions that wrote it
                        (engine/training/checkpoint_versions.py; absent in checkpoints from before it)

Training checkpoints (``engine/training/checkpoint.py``) carry ``hf_config.json`` and ``tokenizer/`` too
(``write_model_description``), so every checkpoint exports without naming the folder it was trained from.

The sharded keys are those of megatron's TE spec (the local spec maps its norms onto them), so a
checkpoint written without Transformer Engine loads with it and vice versa.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import transformers

from mos_nemo.engine.hf.weights import copy_tokenizer_files, has_tokenizer_files
from mos_nemo.engine.training.checkpoint_versions import DIST_METADATA, write_versions
from mos_nemo.errors import MosCheckpointError

from megatron.core import dist_checkpointing

MODEL_DIR = "model"
HF_CONFIG_FILE = "hf_config.json"
TOKENIZER_DIR = "tokenizer"


def save_mcore_checkpoint(model, hf_config, ckpt_dir, tokenizer_dir=None) -> None:
    """Write ``model`` (all ranks call this) and, on rank 0, the HF config and tokenizer files."""
    ckpt = Path(ckpt_dir)
    if dist.get_rank() == 0:
        (ckpt / MODEL_DIR).mkdir(parents=True, exist_ok=True)
        write_model_description(ckpt, hf_config, tokenizer_dir)
        write_versions(ckpt)
    dist.barrier()
    dist_checkpointing.save(model.sharded_state_dict(), str(ckpt / MODEL_DIR))
    dist.barrier()


def write_model_description(folder, hf_config, tokenizer_dir=None) -> None:
    """``hf_config.json`` and (when ``tokenizer_dir`` has a tokenizer) ``tokenizer/`` in ``folder`` (rank 0)."""
    folder = Path(folder)
    hf_config.to_json_file(str(folder / HF_CONFIG_FILE))
    if tokenizer_dir is not None and has_tokenizer_files(tokenizer_dir):
        (folder / TOKENIZER_DIR).mkdir(exist_ok=True)
        copy_tokenizer_files(tokenizer_dir, folder / TOKENIZER_DIR)


def load_checkpoint_hf_config(ckpt_dir) -> transformers.PretrainedConfig:
    """The HF config stored in a model checkpoint."""
    path = Path(ckpt_dir) / HF_CONFIG_FILE
    if not path.is_file():
        raise MosCheckpointError(
            f"{path}: missing, so the architecture is unknown; for a training checkpoint pass the HF folder "
            "it was trained from (`convert export --ckpt CKPT --hf DIR --out OUT`)."
        )
    fields = json.loads(path.read_text())
    return transformers.AutoConfig.for_model(fields.pop("model_type"), **fields)


def checkpoint_tokenizer_dir(ckpt_dir) -> Path | None:
    """The checkpoint's tokenizer folder, or None when it was written without one (or it is empty: imports
    of tokenizer-less folders written before it was left out)."""
    folder = Path(ckpt_dir) / TOKENIZER_DIR
    return folder if folder.is_dir() and has_tokenizer_files(folder) else None


@torch.no_grad()
def load_mcore_checkpoint(model, ckpt_dir) -> None:
    """Load this rank's shard of the model weights (any TP/PP layout; all ranks call this).

    ``ckpt_dir`` is either a model checkpoint (``CKPT/model/``, the layout above) or a training checkpoint
    of ``engine/training/checkpoint.py`` (``step_N/`` holding the model under the key "model" next to the
    optimizer; only the model is read).
    """
    from mos_nemo.engine.training.checkpoint import apply_model_state, load_tolerant

    ckpt = Path(ckpt_dir)  # TE's `_extra_state` keys may be missing or extra (local spec <-> TE spec)
    dist_dir = model_dist_dir(ckpt)
    if dist_dir != ckpt:
        state = load_tolerant(model.sharded_state_dict(), dist_dir, checkpoint=ckpt)
    else:
        state = load_tolerant({"model": model.sharded_state_dict()}, ckpt, subset=True)["model"]  # no optimizer
    apply_model_state(model, state)


def model_dist_dir(ckpt: Path) -> Path:
    """The torch_dist folder holding the weights: ``CKPT/model`` (model checkpoint) or ``CKPT`` (training)."""
    if (ckpt / MODEL_DIR / DIST_METADATA).is_file():
        return ckpt / MODEL_DIR
    if (ckpt / DIST_METADATA).is_file():
        return ckpt
    raise MosCheckpointError(
        f"{ckpt}: neither a model checkpoint ({MODEL_DIR}/{DIST_METADATA}) nor a training checkpoint "
        f"({DIST_METADATA}); pass a folder written by `python -m mos_nemo.convert import` or a "
        "run.dir/checkpoints/step_N folder."
    )
