"""load_sft_datasets: config entries -> tokenised, truncated, cached datasets (the data path's front half).

Per dataset: read the source -> subsample (fraction, max_examples; seeded) -> detect or check the format
-> normalise to conversations -> tokenise with the chat template and response mask -> truncate to
seq_length (drop examples with no response token left) -> cache as memory-mapped arrays.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from mos_nemo.data.dataset import DatasetStats, TokenizedDataset, load_cache, save_cache
from mos_nemo.data.formats import RecordError, detect_format, to_conversation
from mos_nemo.data.rng import keyed_generator
from mos_nemo.data.sources import RawRecord, read_source, source_fingerprint
from mos_nemo.data.spec import DatasetConfig, validate_dataset_configs
from mos_nemo.data.tokenize import ChatRenderer, tokenize_rendered, truncate_example
from mos_nemo.errors import MosDataError, MosValueError

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when tokenisation or masking rules change, so old caches are not reused


def load_sft_datasets(configs: Sequence[DatasetConfig], tokenizer, seq_length: int,
                      cache_dir: str | Path | None, seed: int = 0) -> list[TokenizedDataset]:
    """Load, tokenise and cache every configured dataset; logs the format and the drop counts of each."""
    validate_dataset_configs(configs)
    if not isinstance(seq_length, int) or seq_length < 2:
        raise MosValueError(f"seq_length={seq_length!r} must be an int >= 2 (one prompt and one response token)")
    choose_pad_id(tokenizer)  # fails early without any usable pad; the trainer logs the choice once
    tokenizer_key = tokenizer_fingerprint(tokenizer)
    datasets = []
    for config in configs:
        folder = None
        if cache_dir is not None:
            key = _cache_key(config, tokenizer_key, seq_length, seed)
            folder = Path(cache_dir).expanduser() / f"{_safe(config.name)}-{key[:16]}"
        dataset = load_cache(folder) if folder is not None else None
        if dataset is None:
            dataset = _build_dataset(config, tokenizer, seq_length, seed)
            if folder is not None:
                save_cache(dataset, folder)
        log.info(dataset.stats.describe())
        datasets.append(dataset)
    return datasets


def choose_pad_id(tokenizer) -> tuple[int, str]:
    """(pad id, why): the tokenizer's pad token, else a special token that never occurs in text.

    Llama-3's tokenizer has no pad token. Preference: (1) ``pad_token_id``; (2) an added special token named
    like a pad (Llama-3.1/3.2's ``<|finetune_right_pad_id|>``); (3) the first reserved / unused special token
    (Llama-3's ``<|reserved_special_token_0|>``), which no chat template or text produces; (4) eos. Even (4)
    trains nothing on pads: pads sit right of every example, labels there are ignored, the loss mask and the
    pooling mask are 0 there and causal attention never lets a real token see a later pad, so the pad
    row's embedding gets no gradient whatever id it has.
    """
    pad_id = getattr(tokenizer, "pad_token_id", None)
    if pad_id is not None:
        return int(pad_id), f"the tokenizer's pad token {tokenizer.pad_token!r}"
    taken = {getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)}
    added = sorted((int(i), token.content) for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items()
                   if getattr(token, "special", True) and int(i) not in taken)
    for words, kind in ((("pad",), "a special pad token"), (("reserved", "unused"), "an unused reserved token")):
        for token_id, content in added:
            if any(word in content.lower() for word in words):
                return token_id, f"{kind} {content!r} (the tokenizer has no pad token)"
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise MosDataError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no pad, no reserved special token and no "
            "eos token: set one before loading data, e.g. tokenizer.pad_token = '<pad>'")
    return int(eos), (f"eos {tokenizer.eos_token!r} (the tokenizer has no pad and no reserved token; pads never "
                      "enter the loss, attention or pooling)")


def pad_token_id(tokenizer) -> int:
    """The pad id ``choose_pad_id`` picks; logged, since a tokenizer without pad gets one chosen for it."""
    pad_id, why = choose_pad_id(tokenizer)
    log.info("padding with token id %d: %s", pad_id, why)
    return pad_id


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the vocabulary, merges, special tokens and chat template: the cache key's tokenizer part."""
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(repr(getattr(tokenizer, "chat_template", None)).encode())
    digest.update(repr(sorted(tokenizer.special_tokens_map.items())).encode())
    return digest.hexdigest()


def _cache_key(config: DatasetConfig, tokenizer_key: str, seq_length: int, seed: int) -> str:
    fields = json.dumps({"config": asdict(config), "source": source_fingerprint(config), "seed": seed,
                         "tokenizer": tokenizer_key, "seq_length": seq_length, "version": CACHE_VERSION},
                        sort_keys=True)
    return hashlib.sha256(fields.encode()).hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def subsample(records: list[RawRecord], config: DatasetConfig, seed: int) -> list[RawRecord]:
    """A seeded random subset (fraction, then cap), kept in source order; nested as the fraction grows."""
    keep = len(records)
    if config.fraction is not None:
        keep = max(1, round(config.fraction * len(records)))
    if config.max_examples is not None:
        keep = min(keep, config.max_examples)
    if keep >= len(records):
        return records
    generator = keyed_generator(config.seed if config.seed is not None else seed, "subsample", config.name)
    chosen = torch.randperm(len(records), generator=generator)[:keep].sort().values
    return [records[i] for i in chosen.tolist()]


def _detect(records: list[RawRecord], skip_bad_lines: bool) -> str:
    """The format of the first record whose keys name one (only the first when bad records are not skipped)."""
    for record in records if skip_bad_lines else records[:1]:
        try:
            return detect_format(record.data, record.where)
        except MosDataError:
            continue
    return detect_format(records[0].data, records[0].where)  # raises, naming the first record


def _build_dataset(config: DatasetConfig, tokenizer, seq_length: int, seed: int) -> TokenizedDataset:
    report = read_source(config)
    if not report.records:
        raise MosDataError(f"dataset {config.name!r}: source {config.source!r} holds no examples"
                           + (f" ({report.bad_lines} bad lines skipped; first: {report.first_bad})"
                              if report.bad_lines else ""))
    records = subsample(report.records, config, seed)
    detected = config.format == "auto"
    format_name = _detect(records, config.skip_bad_lines) if detected else config.format
    stats = DatasetStats(config.name, format_name, detected, records_read=len(report.records),
                         bad_lines_skipped=report.bad_lines, records_subsampled=len(records),
                         first_skip_reason=report.first_bad)
    renderer, rendered = ChatRenderer(tokenizer), []
    for record in records:
        try:
            conversation = to_conversation(record.data, format_name, record.where)
            rendered.append(renderer.text_and_response_spans(conversation, record.where))
        except RecordError as error:
            if not config.skip_bad_lines:
                raise MosDataError(f"dataset {config.name!r} (format {format_name}): {error}. Fix the record, "
                                   "or set skip_bad_lines: true to skip and count such records") from error
            stats.bad_records_skipped += 1
            stats.first_skip_reason = stats.first_skip_reason or str(error)
    if not rendered:
        raise MosDataError(f"dataset {config.name!r}: all {len(records)} records were skipped as bad "
                           f"(first: {stats.first_skip_reason}); is format {format_name!r} right?")
    examples = []
    for ids, mask in tokenize_rendered(tokenizer, rendered):
        kept = truncate_example(ids, mask, seq_length)
        if kept is None:
            stats.dropped_no_response_after_truncation += 1
            continue
        stats.truncated += int(len(ids) > seq_length)
        examples.append(kept)
    if not examples:
        raise MosDataError(
            f"dataset {config.name!r}: no example keeps a response token after truncation to "
            f"seq_length={seq_length} ({stats.dropped_no_response_after_truncation} dropped); raise seq_length")
    stats.examples = len(examples)
    stats.tokens = sum(len(ids) for ids, _ in examples)
    stats.response_tokens = int(sum(mask.sum() for _, mask in examples))
    return TokenizedDataset.from_examples(config.name, examples, stats)
