"""Semantic checks of a composed ``MosConfig``, run before any work starts (no process group needed).

Every failure is a ``MosConfigError`` that names the override path, the bad value and the fix. Types and
unknown keys are already checked by the schema in ``mos_nemo.config``; this module checks meaning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from mos_nemo.choices import Dtype
from mos_nemo.config import MosConfig
from mos_nemo.data.spec import HF_PREFIX, validate_dataset_configs
from mos_nemo.errors import MosConfigError
from mos_nemo.mixing.budget import datasets_per_update, reward_batch_of

ASSET_PREFIX = "asset:"
KNOWN_ASSETS = ("smollm2",)


@dataclass(frozen=True)
class Bound:
    """The range a numeric key must lie in; ``None`` ends are open. Checked before anything else."""

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = False

    def admits(self, value: float) -> bool:
        if self.low is not None and not (value >= self.low if self.low_inclusive else value > self.low):
            return False
        return self.high is None or (value <= self.high if self.high_inclusive else value < self.high)

    def describe(self) -> str:
        if self.high is None:
            return f"must be {'>=' if self.low_inclusive else '>'} {self.low}"
        left, right = "[" if self.low_inclusive else "(", "]" if self.high_inclusive else ")"
        return f"must lie in {left}{self.low}, {self.high}{right}"


AT_LEAST_1, AT_LEAST_0, POSITIVE = Bound(1), Bound(0), Bound(0, low_inclusive=False)
FRACTION = Bound(0, 1)  # [0, 1)
# Every numeric key with a fixed range: the ranges the constructors (MixtureOfSkills, Adam, the blend, the
# model) require, checked here so that a bad value fails before any work and names its key. A null value
# (an optional key left unset) is not checked. tests/unit/config tries every key just outside its range.
BOUNDS = {
    "model.config.num_hidden_layers": AT_LEAST_1,
    "model.config.hidden_size": AT_LEAST_1,
    "model.config.intermediate_size": AT_LEAST_1,
    "model.config.num_attention_heads": AT_LEAST_1,
    "model.config.num_key_value_heads": AT_LEAST_1,
    "model.config.vocab_size": AT_LEAST_1,
    "model.config.max_position_embeddings": AT_LEAST_1,
    "parallel.tp": AT_LEAST_1,
    "parallel.pp": AT_LEAST_1,
    "train.max_steps": AT_LEAST_1,
    "train.epochs": POSITIVE,
    "train.global_batch_size": AT_LEAST_1,
    "train.micro_batch_size": AT_LEAST_1,
    "train.seq_length": Bound(8),
    "train.stop_after": AT_LEAST_1,
    "optim.lr": POSITIVE,
    "optim.min_lr": AT_LEAST_0,
    "optim.warmup_fraction": FRACTION,
    "optim.weight_decay": AT_LEAST_0,
    "optim.adam_beta1": FRACTION,
    "optim.adam_beta2": FRACTION,
    "optim.adam_eps": POSITIVE,
    "optim.clip_grad": AT_LEAST_0,
    "data.pad_to_multiple_of": AT_LEAST_1,
    "mixing.tau": POSITIVE,
    "mixing.ema_beta": Bound(0, 1, low_inclusive=False, high_inclusive=True),
    "mixing.update_every": AT_LEAST_1,
    "mixing.reward_batch": AT_LEAST_1,
    "mixing.reference_pool": AT_LEAST_1,
    "mixing.reward_budget": AT_LEAST_1,
    "mixing.scorer_lr": POSITIVE,
    "mixing.inner_steps": AT_LEAST_1,
    "mixing.hidden": AT_LEAST_1,
    "mixing.p_min": AT_LEAST_0,
    "mixing.odm_alpha": FRACTION,
    "mixing.doremi_eta": POSITIVE,
    "mixing.doremi_smoothing": Bound(0, 1, high_inclusive=True),
    "validation.holdout": AT_LEAST_0,
    "validation.every": AT_LEAST_0,
    "checkpoint.every": AT_LEAST_0,
    "checkpoint.keep": AT_LEAST_0,
}


@dataclass(frozen=True)
class Engine:
    """What the run's processes will use, which some checks depend on: a GPU, and Transformer Engine's layer
    spec (megatron's verdict, ``layer_spec.transformer_engine_available``). ``detect()`` asks this machine;
    tests pass the GPU cluster's answer."""

    on_gpu: bool
    use_te: bool

    @staticmethod
    def detect() -> "Engine":
        import torch

        from mos_nemo.engine.model.layer_spec import transformer_engine_available

        return Engine(on_gpu=torch.cuda.is_available(), use_te=transformer_engine_available())


def validate(config: MosConfig, world_size: int, check_paths: bool = True, engine: Engine | None = None) -> None:
    """Raise ``MosConfigError`` for the first problem found; ``world_size`` is the number of processes,
    ``engine`` the GPU / Transformer Engine the run will use (default: this machine's)."""
    engine = Engine.detect() if engine is None else engine
    _check_bounds(config)
    _check_model(config, check_paths)
    _check_parallel(config, world_size, engine)
    _check_attention(config, engine)
    _check_train(config)
    _check_datasets(config, check_paths)
    _check_mixing(config, check_paths)
    _check_validation(config)
    _check_checkpoint(config)


def _fail(key: str, value: object, fix: str) -> None:
    raise MosConfigError(f"{key}={value!r}: {fix}")


def _lookup(config: MosConfig, key: str):
    value = config
    for name in key.split("."):
        value = getattr(value, name) if value is not None else None
    return value


def _check_bounds(config: MosConfig) -> None:
    for key, bound in BOUNDS.items():
        value = _lookup(config, key)
        if value is not None and (math.isnan(value) or not bound.admits(value)):
            _fail(key, value, bound.describe())


def _check_model(config: MosConfig, check_paths: bool) -> None:
    model = config.model
    if (model.hf_path is None) == (model.config is None):
        _fail("model.hf_path", model.hf_path, "set exactly one of model.hf_path (a HF folder) and model.config "
              "(a tiny random model such as {family: llama})")
    if model.config is not None:
        heads, kv_heads = model.config.num_attention_heads, model.config.num_key_value_heads
        if heads % kv_heads != 0:
            _fail("model.config.num_key_value_heads", kv_heads, f"must divide model.config.num_attention_heads "
                  f"({heads}): each key/value head serves a whole group of query heads")
        if model.tokenizer is None:
            _fail("model.tokenizer", None, "a tiny random model needs a tokenizer folder or asset:smollm2")
    for key in ("hf_path", "tokenizer"):
        value = getattr(model, key)
        if value is not None:
            check_model_path(f"model.{key}", value, check_paths, model_folder=key == "hf_path")


def check_model_path(key: str, value: str, check_paths: bool, model_folder: bool = False) -> None:
    """``value`` names a model source training accepts (a local HF folder or ``asset:NAME``); errors name ``key``
    (a config key, or the command-line flag the user typed, e.g. ``--hf``). ``model_folder``: it must also hold
    a config.json (a model, not only a tokenizer)."""
    if value.startswith(ASSET_PREFIX):
        if value[len(ASSET_PREFIX):] not in KNOWN_ASSETS:
            _fail(key, value, f"known assets are {[ASSET_PREFIX + a for a in KNOWN_ASSETS]}")
        return
    if not check_paths:
        return
    if not Path(value).expanduser().is_dir():
        _fail(key, value, "no such folder: give a local Hugging Face folder")
    if model_folder and not (Path(value).expanduser() / "config.json").is_file():
        _fail(key, value, "no config.json there: give a Hugging Face model folder (convert or download it first)")


def _check_parallel(config: MosConfig, world_size: int, engine: Engine) -> None:
    tp, pp = config.parallel.tp, config.parallel.pp
    if world_size % (tp * pp) != 0:
        _fail("parallel.tp", tp, f"parallel.tp * parallel.pp = {tp * pp} must divide the number of processes "
              f"({world_size}); change the sizes or torchrun --nproc-per-node")
    dp = world_size // (tp * pp)
    train = config.train
    if train.global_batch_size % (train.micro_batch_size * dp) != 0:
        _fail("train.global_batch_size", train.global_batch_size, f"must be a multiple of train.micro_batch_size "
              f"({train.micro_batch_size}) x data-parallel size ({dp} = {world_size} processes / (tp*pp))")
    # Sequence parallelism (GPU, tp > 1: build.py) splits every [s, b, h] activation into tp slices of s; the
    # collate pads a micro batch to a multiple of tp but caps it at seq_length, and packed rows are exactly
    # seq_length, so seq_length itself must split evenly.
    if engine.on_gpu and config.parallel.sequence_parallel and tp > 1 and train.seq_length % tp != 0:
        _fail("train.seq_length", train.seq_length, f"must be a multiple of parallel.tp={tp} with "
              f"parallel.sequence_parallel=true (each TP rank holds seq_length / tp tokens); round it to "
              f"{train.seq_length // tp * tp} or {-(-train.seq_length // tp) * tp}, or set "
              "parallel.sequence_parallel=false")


def _check_attention(config: MosConfig, engine: Engine) -> None:
    """Packed rows reach Transformer Engine in the THD layout; TE 2.7 has no fp32 kernel for it (fp32 rules
    out its flash and fused backends, THD its unfused one) and fails at the first forward with "No dot
    product attention backend is available" (docs/engine.md, "Sequence packing")."""
    dtype = config.model.dtype
    fp32 = dtype == Dtype.fp32 or (dtype == Dtype.auto and not engine.on_gpu)
    if engine.use_te and config.train.pack and fp32:
        _fail("model.dtype", str(dtype),
              "with train.pack=true and Transformer Engine, attention needs bf16: Transformer Engine has no fp32 "
              "kernel for packed (THD) rows. Set model.dtype=bf16 (or auto on GPU), or train.pack=false")


def _check_train(config: MosConfig) -> None:
    train, optim = config.train, config.optim
    if (train.max_steps is None) == (train.epochs is None):
        _fail("train.max_steps", train.max_steps, "set exactly one of train.max_steps and train.epochs")
    if not (optim.lr > 0 and math.isfinite(optim.lr)):
        _fail("optim.lr", optim.lr, "must be a finite number > 0")
    if not 0 <= optim.min_lr <= optim.lr:
        _fail("optim.min_lr", optim.min_lr, f"must lie in [0, optim.lr={optim.lr}]")
    if train.time_limit is not None:
        from mos_nemo.engine.training.deadline import parse_duration

        try:
            seconds = parse_duration(train.time_limit)
        except ValueError:
            seconds = 0.0
        if not seconds > 0:
            _fail("train.time_limit", train.time_limit, "give a duration > 0 such as 3h50m, 90m, 45s or 01:30:00")


def _check_datasets(config: MosConfig, check_paths: bool) -> None:
    if not config.datasets:
        _fail("datasets", [], "the list is empty: give at least one dataset, e.g. "
              "'datasets=[{name: gsm8k, source: data/gsm8k.jsonl}]'")
    validate_dataset_configs(config.datasets)
    if not check_paths:
        return
    for index, dataset in enumerate(config.datasets):
        if not dataset.source.startswith(HF_PREFIX) and not Path(dataset.source).expanduser().exists():
            # Named by the dataset first: with many datasets, `datasets[3]` alone makes the user count.
            raise MosConfigError(
                f"dataset {dataset.name!r}: source {dataset.source!r} (key datasets[{index}].source): no such file "
                f"or folder (from {Path.cwd()}): prepare it first; the paper's data is written by "
                "`python -m mos_nemo.data.prepare paper --out DIR` and read from $MOS_NEMO_PAPER_DATA (default "
                "data/paper)")


def _check_mixing(config: MosConfig, check_paths: bool = True) -> None:
    mixing, names = config.mixing, [d.name for d in config.datasets]
    if not 0 <= mixing.p_min * len(names) < 1:
        _fail("mixing.p_min", mixing.p_min, f"must lie in [0, 1/{len(names)}) for {len(names)} datasets")
    if check_paths and mixing.reference_model is not None and not Path(mixing.reference_model).expanduser().is_dir():
        _fail("mixing.reference_model", mixing.reference_model, f"no such folder (from {Path.cwd()}): give a "
              "Hugging Face model folder with the trained model's architecture, e.g. a run's run.dir/hf")
    if mixing.target is not None and mixing.strategy not in ("mos", "static"):  # static ignores it, as it always has
        _fail("mixing.target", mixing.target, f"is MoSpec's target: only mixing.strategy=mos uses it "
              f"(this run has {mixing.strategy}); remove it")
    if mixing.reward_budget is not None and mixing.strategy == "odm":
        _fail("mixing.reward_budget", mixing.reward_budget, "bounds the scoring pass, and mixing.strategy=odm "
              "scores nothing (it learns from the training losses); remove it")
    if mixing.reward_budget is not None and mixing.strategy != "static":  # static ignores it, like target
        datasets_per_update(mixing.reward_budget, reward_batch_of(mixing), len(names))  # budget >= L
    if mixing.target is not None and mixing.target not in names:
        _fail("mixing.target", mixing.target, f"name one of the datasets {names}, or null")
    unknown = [name for name in mixing.exclude if name not in names]
    if unknown:
        _fail("mixing.exclude", list(mixing.exclude), f"{unknown} are not datasets; name some of {names}")
    if len(set(mixing.exclude)) >= len(names):
        _fail("mixing.exclude", list(mixing.exclude), "excludes every dataset; leave at least one to train on")
    if mixing.target is not None and mixing.target in mixing.exclude:
        _fail("mixing.target", mixing.target, "is also in mixing.exclude; a MoSpec target must stay available")


def _check_validation(config: MosConfig) -> None:
    validation = config.validation
    if validation.every > 0 and validation.holdout == 0:
        _fail("validation.every", validation.every, "held-out loss needs held-out examples: set "
              "validation.holdout to the number of examples per dataset to keep out of training")


def _check_checkpoint(config: MosConfig) -> None:
    checkpoint = config.checkpoint
    if checkpoint.resume not in ("auto", "none") and not Path(checkpoint.resume).is_dir():
        _fail("checkpoint.resume", checkpoint.resume, "use auto, none, or the path of a checkpoint folder")
    if checkpoint.format not in CHECKPOINT_FORMATS:
        _fail("checkpoint.format", checkpoint.format, f"choose one of {list(CHECKPOINT_FORMATS)}")
    from mos_nemo.engine.training.resume_config import never_resumable

    for name, why in never_resumable(list(checkpoint.allow_changes)).items():
        _fail("checkpoint.allow_changes", list(checkpoint.allow_changes),
              f"{name} can never change on a resume ({why}); start a new run instead (checkpoint.resume=none "
              "or another run.dir)")
    if config.train.nonfinite_limit < 1:
        _fail("train.nonfinite_limit", config.train.nonfinite_limit, "must be >= 1 (steps in a row)")


CHECKPOINT_FORMATS = ("auto", "dp_reshardable", "fully_reshardable")
