"""Pad id for tokenizers without a pad token (Llama-3): a reserved special token that text never produces,
a pad-named special token when there is one (Llama-3.1/3.2), eos only as the last resort; always logged."""

import logging

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from mos_nemo.data.load import choose_pad_id, pad_token_id

CORPUS = ["the quick brown fox jumps over the lazy dog", "question: what is 12 plus 30? answer: 42"] * 20


def _llama3_like(specials: list[str]) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer built here, with Llama-3's layout of special tokens and no pad token."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>",
                                        eos_token="<|end_of_text|>")
    assert tokenizer.pad_token_id is None
    return tokenizer


def test_llama3_gets_a_reserved_token_that_text_never_produces(caplog):
    tokenizer = _llama3_like(["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                              "<|reserved_special_token_1|>"])
    with caplog.at_level(logging.INFO, logger="mos_nemo.data.load"):
        pad = pad_token_id(tokenizer)
    assert tokenizer.convert_ids_to_tokens(pad) == "<|reserved_special_token_0|>"
    assert "reserved" in caplog.text and str(pad) in caplog.text  # the choice is logged
    for text in CORPUS[:2] + ["<|reserved_special_token_1|> typed by a user"]:
        assert pad not in tokenizer(text)["input_ids"]
    assert pad not in (tokenizer.bos_token_id, tokenizer.eos_token_id)


def test_llama31_prefers_its_pad_named_token():
    tokenizer = _llama3_like(["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                              "<|finetune_right_pad_id|>"])
    assert tokenizer.convert_ids_to_tokens(choose_pad_id(tokenizer)[0]) == "<|finetune_right_pad_id|>"


def test_eos_only_without_any_unused_special_token(smollm2_tokenizer):
    import copy

    tokenizer = copy.deepcopy(smollm2_tokenizer)
    assert tokenizer.pad_token_id is not None and choose_pad_id(tokenizer)[0] == tokenizer.pad_token_id
    tokenizer.pad_token = None  # SmolLM2's specials are all used in pre-training text: nothing is reserved
    pad, why = choose_pad_id(tokenizer)
    assert pad == tokenizer.eos_token_id and "eos" in why


def test_no_pad_no_eos_is_a_user_error():
    from mos_nemo.errors import MosDataError

    tokenizer = _llama3_like(["<|begin_of_text|>", "<|end_of_text|>"])
    tokenizer.eos_token = None
    with pytest.raises(MosDataError, match="pad_token"):
        choose_pad_id(tokenizer)
