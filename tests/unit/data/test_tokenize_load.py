"""Tokenisation with SmolLM2's real chat template: response-only masks, truncation, cache, bad datasets."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from mos_nemo.data import DatasetConfig, load_sft_datasets
from mos_nemo.data.formats import to_conversation
from mos_nemo.data.sources import read_source
from mos_nemo.errors import MosConfigError, MosDataError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "data"
FORMAT_FILES = {"instruction": "instruction.jsonl", "sharegpt": "sharegpt.json", "messages": "messages.jsonl",
                "prompt_completion": "prompt_completion.jsonl"}


def masked_runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    runs, start = [], None
    for i, bit in enumerate(mask.tolist() + [False]):
        if bit and start is None:
            start = i
        if not bit and start is not None:
            runs.append((start, i))
            start = None
    return runs


@pytest.mark.parametrize("format_name", sorted(FORMAT_FILES))
def test_mask_covers_exactly_each_assistant_turn(smollm2_tokenizer, format_name):
    tokenizer = smollm2_tokenizer
    source = FIXTURES / FORMAT_FILES[format_name]
    [dataset] = load_sft_datasets([DatasetConfig(name=format_name, source=str(source))], tokenizer, 4096, None)
    assert dataset.stats.format == format_name and dataset.stats.format_detected
    records = read_source(DatasetConfig(name="r", source=str(source))).records
    assert len(dataset) == len(records)
    for index, record in enumerate(records):
        conversation = to_conversation(record.data, format_name, record.where)
        example = dataset[index]
        # The token ids are exactly what the model's own chat template produces.
        expected_ids = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
        assert example["input_ids"].tolist() == list(expected_ids)
        replies = [m["content"] for m in conversation if m["role"] == "assistant"]
        runs = masked_runs(example["loss_mask"])
        assert len(runs) == len(replies)  # every assistant turn, and nothing else
        for (start, end), reply in zip(runs, replies):
            assert tokenizer.decode(example["input_ids"][start:end]) == reply + "<|im_end|>"
            assert tokenizer.decode(example["input_ids"][:start]).endswith("<|im_start|>assistant\n")


def test_tokenizer_without_chat_template_uses_the_documented_plain_template(smollm2_tokenizer, tmp_path):
    plain = PreTrainedTokenizerFast(tokenizer_object=smollm2_tokenizer.backend_tokenizer,
                                    eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    assert not plain.chat_template
    [dataset] = load_sft_datasets([DatasetConfig(name="m", source=str(FIXTURES / "messages.jsonl"))], plain,
                                  4096, None)
    example = dataset[0]
    text = plain.decode(example["input_ids"])
    assert text == ("### System:\nYou are a math tutor.\n\n### User:\nWhat is 12 squared?\n\n### Assistant:\n"
                    "12 squared is 144.<|endoftext|>\n\n### User:\nAnd 13 squared?\n\n### Assistant:\n"
                    "13 squared is 169.<|endoftext|>\n\n")
    runs = masked_runs(example["loss_mask"])
    assert [plain.decode(example["input_ids"][a:b]).strip() for a, b in runs] == [
        "12 squared is 144.<|endoftext|>", "13 squared is 169.<|endoftext|>"]


def test_truncation_keeps_the_prompt_start_and_drops_examples_without_response(smollm2_tokenizer, tmp_path):
    long_prompt = "word " * 60
    rows = [{"prompt": long_prompt, "completion": "short answer"},  # response beyond 40 tokens: dropped
            {"prompt": "Hi", "completion": "a fairly long answer " * 10},  # truncated inside the response
            {"prompt": "Hi", "completion": "ok"}]
    source = tmp_path / "pc.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    full = smollm2_tokenizer.apply_chat_template(to_conversation(rows[1], "prompt_completion", "x"),
                                                 tokenize=True, return_dict=True)["input_ids"]
    [dataset] = load_sft_datasets([DatasetConfig(name="pc", source=str(source))], smollm2_tokenizer, 40, None)
    assert dataset.stats.dropped_no_response_after_truncation == 1
    assert dataset.stats.truncated == 1 and len(dataset) == 2
    assert dataset[0]["input_ids"].tolist() == list(full[:40])  # the start is kept
    assert dataset[0]["loss_mask"].any()
    with pytest.raises(MosDataError, match=r"no example keeps a response token after truncation to seq_length=12"):
        load_sft_datasets([DatasetConfig(name="pc", source=str(source))], smollm2_tokenizer, 12, None)


def test_second_load_comes_from_the_cache_and_a_changed_source_is_retokenised(smollm2_tokenizer, tmp_path):
    source = tmp_path / "data.jsonl"
    shutil.copy(FIXTURES / "instruction.jsonl", source)
    configs = [DatasetConfig(name="inst", source=str(source))]
    [first] = load_sft_datasets(configs, smollm2_tokenizer, 128, tmp_path / "cache")
    [second] = load_sft_datasets(configs, smollm2_tokenizer, 128, tmp_path / "cache")
    assert not first.stats.cache_hit and second.stats.cache_hit
    assert len(list((tmp_path / "cache").iterdir())) == 1
    for i in range(len(first)):
        assert torch.equal(first[i]["input_ids"], second[i]["input_ids"])
        assert torch.equal(first[i]["loss_mask"], second[i]["loss_mask"])
    with source.open("a") as handle:
        handle.write(json.dumps({"instruction": "One more.", "output": "Here it is."}) + "\n")
    [third] = load_sft_datasets(configs, smollm2_tokenizer, 128, tmp_path / "cache")
    assert not third.stats.cache_hit and len(third) == len(first) + 1
    [shorter] = load_sft_datasets(configs, smollm2_tokenizer, 64, tmp_path / "cache")  # seq_length is keyed
    assert not shorter.stats.cache_hit


def test_subsample_fraction_and_cap_are_seeded_and_nested(smollm2_tokenizer, tmp_path):
    source = tmp_path / "many.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"Question {i}?", "completion": f"Answer {i}."}) + "\n"
                              for i in range(50)))

    def kept(**kwargs):
        [dataset] = load_sft_datasets([DatasetConfig(name="m", source=str(source), **kwargs)],
                                      smollm2_tokenizer, 128, None, seed=3)
        return [smollm2_tokenizer.decode(dataset[i]["input_ids"]).split("Question ")[1].split("?")[0]
                for i in range(len(dataset))]

    tenth, half = kept(fraction=0.1), kept(fraction=0.5)
    assert len(tenth) == 5 and len(half) == 25 and set(tenth) <= set(half)
    assert kept(fraction=0.1) == tenth and kept(fraction=0.1, seed=4) != tenth
    assert len(kept(fraction=0.5, max_examples=7)) == 7


def test_bad_datasets_are_errors_or_counted_skips(smollm2_tokenizer, tmp_path):
    def load(name, **kwargs):
        return load_sft_datasets([DatasetConfig(name="d", source=str(FIXTURES / name), **kwargs)],
                                 smollm2_tokenizer, 256, None)

    with pytest.raises(MosDataError, match="holds no examples"):
        load("empty.jsonl")
    with pytest.raises(MosDataError, match=r"unknown_role.jsonl:2: messages\[1\] has unknown role 'wizard'"):
        load("unknown_role.jsonl")
    [dataset] = load("unknown_role.jsonl", skip_bad_lines=True)
    assert dataset.stats.bad_records_skipped == 1 and len(dataset) == 1
    with pytest.raises(MosDataError, match=r"empty_field.jsonl:2: field 'output' is empty"):
        load("empty_field.jsonl")
    [dataset] = load("empty_field.jsonl", skip_bad_lines=True)
    assert dataset.stats.bad_records_skipped == 2 and len(dataset) == 1
    [dataset] = load("malformed_line.jsonl", skip_bad_lines=True)
    assert dataset.stats.bad_lines_skipped == 1 and len(dataset) == 2
    [dataset] = load("not_utf8.jsonl", skip_bad_lines=True)
    assert dataset.stats.bad_lines_skipped == 1 and len(dataset) == 2
    with pytest.raises(MosDataError, match="all 3 records were skipped"):
        load("empty_field.jsonl", skip_bad_lines=True, format="messages")
    same = str(FIXTURES / "instruction.jsonl")
    with pytest.raises(MosConfigError, match="duplicates"):
        load_sft_datasets([DatasetConfig(name="a", source=same), DatasetConfig(name="a", source=same)],
                          smollm2_tokenizer, 256, None)


def test_tokenizer_without_pad_token_loads_and_pads_with_a_chosen_id(smollm2_tokenizer):
    from mos_nemo.data import pad_token_id

    no_pad = PreTrainedTokenizerFast(tokenizer_object=smollm2_tokenizer.backend_tokenizer, eos_token="<|im_end|>")
    assert no_pad.pad_token_id is None
    [dataset] = load_sft_datasets([DatasetConfig(name="a", source=str(FIXTURES / "instruction.jsonl"))], no_pad, 64,
                                  None)
    # SmolLM2 reserves no special token, so eos pads (the choices: tests/unit/data/test_pad_id.py)
    assert len(dataset) > 0 and pad_token_id(no_pad) == no_pad.eos_token_id


def test_smollm2_tokenizer_folder_is_a_normal_hf_folder(smollm2_tokenizer):
    from mos_nemo.assets import smollm2_dir

    folder = smollm2_dir(with_weights=False)
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    reloaded = AutoTokenizer.from_pretrained(folder)
    assert reloaded.chat_template == smollm2_tokenizer.chat_template and "<|im_start|>" in reloaded.chat_template
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llama"


def tokenizer_with_template(base, template: str):
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, eos_token="<|im_end|>",
                                        pad_token="<|im_end|>")
    tokenizer.chat_template = template
    return tokenizer


def test_a_template_that_rejects_a_conversation_is_a_record_error(smollm2_tokenizer):
    no_system = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}"
                 "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tokenizer = tokenizer_with_template(smollm2_tokenizer, no_system)
    source = str(FIXTURES / "instruction.jsonl")  # line 4 has a system prompt
    with pytest.raises(MosDataError, match=r"instruction.jsonl:4: the chat template rejects.*no system role"):
        load_sft_datasets([DatasetConfig(name="i", source=source)], tokenizer, 256, None)
    [dataset] = load_sft_datasets([DatasetConfig(name="i", source=source, skip_bad_lines=True)], tokenizer, 256,
                                  None)
    assert dataset.stats.bad_records_skipped == 1 and len(dataset) == 5
    runs = masked_runs(dataset[0]["loss_mask"])
    assert [tokenizer.decode(dataset[0]["input_ids"][a:b]) for a, b in runs] == ["2 + 3 = 5.<|im_end|>"]


def test_a_template_that_rewrites_earlier_turns_is_refused(smollm2_tokenizer):
    last_marked = ("{% for m in messages %}<|im_start|>{{ m['role'] }}{% if loop.last %} (last){% endif %}\n"
                   "{{ m['content'] }}<|im_end|>\n{% endfor %}"
                   "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tokenizer = tokenizer_with_template(smollm2_tokenizer, last_marked)
    with pytest.raises(MosDataError, match=r"messages.jsonl:1: the chat template does not render turn 2 as a prefix"):
        load_sft_datasets([DatasetConfig(name="m", source=str(FIXTURES / "messages.jsonl"))], tokenizer, 256, None)


def test_auto_detection_skips_undetectable_records_when_asked(smollm2_tokenizer, tmp_path):
    source = tmp_path / "mixed.jsonl"
    rows = [{"text": "no format"},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text",
                                                                                     "text": "there"}]},
                          {"role": "assistant", "content": "Hello!"}]}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(MosDataError, match=r"mixed.jsonl:1: cannot detect the format"):
        load_sft_datasets([DatasetConfig(name="x", source=str(source))], smollm2_tokenizer, 256, None)
    [dataset] = load_sft_datasets([DatasetConfig(name="x", source=str(source), skip_bad_lines=True)],
                                  smollm2_tokenizer, 256, None)
    assert dataset.stats.format == "messages" and dataset.stats.bad_records_skipped == 1
    assert "<|im_start|>user\nHi there<|im_end|>" in smollm2_tokenizer.decode(dataset[0]["input_ids"])
