"""Semantic checks of a composed ``MosConfig``, run before any work starts (no process group needed).

Every failure is a ``MosConfigError`` that names the override path, the bad value and the fix. Types and
unknown keys are already checked by the schema in ``mos_nemo.config``; this module checks meaning.
"""

from __future__ import annotations

import math
from pathlib import Path

from mos_nemo.config import MosConfig
from mos_nemo.data.spec import validate_dataset_configs
from mos_nemo.errors import MosConfigError

ASSET_PREFIX = "asset:"
KNOWN_ASSETS = ("smollm2",)
CHOICES = {
    "model.dtype": ("auto", "fp32", "bf16"),
    "mixing.strategy": ("static", "mos"),
    "mixing.mode": ("batch", "sample"),
    "mixing.reward": ("cossim", "diff"),
    "mixing.reference": ("pool", "live"),
    "mixing.scorer": ("logits", "mlp"),
    "mixing.ema_init": ("one", "raw"),
    "mixing.diff_tokens": ("response", "sequence"),
}


def validate(config: MosConfig, world_size: int, check_paths: bool = True) -> None:
    """Raise ``MosConfigError`` for the first problem found; ``world_size`` is the number of processes."""
    _check_choices(config)
    _check_model(config, check_paths)
    _check_parallel(config, world_size)
    _check_train(config)
    _check_datasets(config)
    _check_mixing(config)
    _check_checkpoint(config)


def _fail(key: str, value: object, fix: str) -> None:
    raise MosConfigError(f"{key}={value!r}: {fix}")


def _check_choices(config: MosConfig) -> None:
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value not in allowed:
            _fail(key, value, f"choose one of {list(allowed)}")


def _check_model(config: MosConfig, check_paths: bool) -> None:
    model = config.model
    if (model.hf_path is None) == (model.config is None):
        _fail("model.hf_path", model.hf_path, "set exactly one of model.hf_path (a HF folder) and model.config "
              "(a tiny random model such as {family: llama})")
    if model.config is not None:
        if model.config.get("family") not in ("llama", "qwen2", "gemma"):
            _fail("model.config.family", model.config.get("family"), "choose one of ['llama', 'qwen2', 'gemma']")
        if model.tokenizer is None:
            _fail("model.tokenizer", None, "a tiny random model needs a tokenizer folder or asset:smollm2")
    for key in ("hf_path", "tokenizer"):
        value = getattr(model, key)
        if value is not None:
            _check_model_path(f"model.{key}", value, check_paths)


def _check_model_path(key: str, value: str, check_paths: bool) -> None:
    if value.startswith(ASSET_PREFIX):
        if value[len(ASSET_PREFIX):] not in KNOWN_ASSETS:
            _fail(key, value, f"known assets are {[ASSET_PREFIX + a for a in KNOWN_ASSETS]}")
        return
    if not check_paths:
        return
    if not Path(value).expanduser().is_dir():
        _fail(key, value, "no such folder: give a local Hugging Face folder")
    if key == "model.hf_path" and not (Path(value).expanduser() / "config.json").is_file():
        _fail(key, value, "no config.json there: give a Hugging Face model folder (convert or download it first)")


def _check_parallel(config: MosConfig, world_size: int) -> None:
    tp, pp = config.parallel.tp, config.parallel.pp
    for key, value in (("parallel.tp", tp), ("parallel.pp", pp)):
        if value < 1:
            _fail(key, value, "must be >= 1")
    if world_size % (tp * pp) != 0:
        _fail("parallel.tp", tp, f"parallel.tp * parallel.pp = {tp * pp} must divide the number of processes "
              f"({world_size}); change the sizes or torchrun --nproc-per-node")
    dp = world_size // (tp * pp)
    train = config.train
    if train.micro_batch_size < 1:
        _fail("train.micro_batch_size", train.micro_batch_size, "must be >= 1")
    if train.global_batch_size % (train.micro_batch_size * dp) != 0:
        _fail("train.global_batch_size", train.global_batch_size, f"must be a multiple of train.micro_batch_size "
              f"({train.micro_batch_size}) x data-parallel size ({dp} = {world_size} processes / (tp*pp))")


def _check_train(config: MosConfig) -> None:
    train, optim = config.train, config.optim
    if (train.max_steps is None) == (train.epochs is None):
        _fail("train.max_steps", train.max_steps, "set exactly one of train.max_steps and train.epochs")
    if train.max_steps is not None and train.max_steps < 1:
        _fail("train.max_steps", train.max_steps, "must be >= 1")
    if train.epochs is not None and not train.epochs > 0:
        _fail("train.epochs", train.epochs, "must be > 0")
    if train.stop_after is not None and train.stop_after < 1:
        _fail("train.stop_after", train.stop_after, "must be >= 1 (or null to train to the end)")
    if train.seq_length < 8:
        _fail("train.seq_length", train.seq_length, "must be >= 8 tokens")
    if config.data.pad_to_multiple_of < 1:
        _fail("data.pad_to_multiple_of", config.data.pad_to_multiple_of, "must be >= 1")
    if not (optim.lr > 0 and math.isfinite(optim.lr)):
        _fail("optim.lr", optim.lr, "must be a finite number > 0")
    if not 0 <= optim.min_lr <= optim.lr:
        _fail("optim.min_lr", optim.min_lr, f"must lie in [0, optim.lr={optim.lr}]")
    if not 0 <= optim.warmup_fraction < 1:
        _fail("optim.warmup_fraction", optim.warmup_fraction, "must lie in [0, 1)")
    if optim.clip_grad < 0:
        _fail("optim.clip_grad", optim.clip_grad, "must be >= 0 (0 turns clipping off)")


def _check_datasets(config: MosConfig) -> None:
    if not config.datasets:
        _fail("datasets", [], "the list is empty: give at least one dataset, e.g. "
              "'datasets=[{name: gsm8k, source: data/gsm8k.jsonl}]'")
    validate_dataset_configs(config.datasets)


def _check_mixing(config: MosConfig) -> None:
    mixing, names = config.mixing, [d.name for d in config.datasets]
    if not (mixing.tau > 0):
        _fail("mixing.tau", mixing.tau, "the temperature must be > 0 (1 proportional, .inf uniform)")
    if not 0 < mixing.ema_beta <= 1:
        _fail("mixing.ema_beta", mixing.ema_beta, "must lie in (0, 1]")
    for key in ("update_every", "reward_batch", "reference_pool", "hidden", "inner_steps"):
        if getattr(mixing, key) is not None and getattr(mixing, key) < 1:
            _fail(f"mixing.{key}", getattr(mixing, key), "must be >= 1")
    if mixing.scorer_lr is not None and not (mixing.scorer_lr > 0 and math.isfinite(mixing.scorer_lr)):
        _fail("mixing.scorer_lr", mixing.scorer_lr, "must be a finite number > 0 (or null for the scorer's default)")
    if not 0 <= mixing.p_min * len(names) < 1:
        _fail("mixing.p_min", mixing.p_min, f"must lie in [0, 1/{len(names)}) for {len(names)} datasets")
    if mixing.target is not None and mixing.target not in names:
        _fail("mixing.target", mixing.target, f"name one of the datasets {names}, or null")
    unknown = [name for name in mixing.exclude if name not in names]
    if unknown:
        _fail("mixing.exclude", list(mixing.exclude), f"{unknown} are not datasets; name some of {names}")
    if len(set(mixing.exclude)) >= len(names):
        _fail("mixing.exclude", list(mixing.exclude), "excludes every dataset; leave at least one to train on")
    if mixing.target is not None and mixing.target in mixing.exclude:
        _fail("mixing.target", mixing.target, "is also in mixing.exclude; a MoSpec target must stay available")


def _check_checkpoint(config: MosConfig) -> None:
    checkpoint = config.checkpoint
    if checkpoint.every < 0:
        _fail("checkpoint.every", checkpoint.every, "must be >= 0 (0 saves only at the end and on signals)")
    if checkpoint.keep < 0:
        _fail("checkpoint.keep", checkpoint.keep, "must be >= 0 (0 keeps all)")
    if checkpoint.resume not in ("auto", "none") and not Path(checkpoint.resume).is_dir():
        _fail("checkpoint.resume", checkpoint.resume, "use auto, none, or the path of a checkpoint folder")
