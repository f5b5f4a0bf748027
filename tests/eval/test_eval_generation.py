"""MT-bench replies end where the chat template ends a turn: the fixture model's turns end with <|im_end|>,
which is not its eos, and the model is scripted to write "Tom has<|im_end|> apples apples ..." (see
eval_fixtures.script_turn_end), so a generator that stops only at eos would put " apples" into every
answer. Also the stop settings each backend is given."""

from __future__ import annotations

import argparse
import json

import pytest
from eval_fixtures import SCRIPTED_AFTER_TURN, SCRIPTED_REPLY
from transformers import AutoTokenizer

from mos_nemo.errors import MosCheckpointError
from mos_nemo.evaluation import mtbench_answers
from mos_nemo.evaluation.chat_stops import turn_stops


def test_end_of_turn_is_read_from_the_template(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    stops = turn_stops(tok)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end != tok.eos_token_id
    assert stops.token_ids == [im_end, tok.eos_token_id] and stops.strings == []
    # a template that ends turns with plain text gets that text as a stop string
    tok.chat_template = ("{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n\n{% endfor %}"
                         "{% if add_generation_prompt %}### assistant:\n{% endif %}")  # fmt: skip
    assert turn_stops(tok).strings == ["### user:"] and turn_stops(tok).token_ids == [tok.eos_token_id]
    tok.chat_template = None
    with pytest.raises(MosCheckpointError, match="no chat template"):
        turn_stops(tok)


def test_hf_answers_stop_at_the_end_of_turn_token(tiny_model, tmp_path):
    questions = [{"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."]},
                 {"question_id": 111, "category": "math", "turns": ["What is 3+4?", "And 5+6?"]}]  # fmt: skip
    generator = mtbench_answers.HFChatGenerator(str(tiny_model), "float32", max_new_tokens=12, seed=0)
    out = tmp_path / "answers.jsonl"
    assert mtbench_answers.answer_questions(generator, questions, "tiny", out) == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = "".join(SCRIPTED_REPLY)  # "Tom has", then <|im_end|>; never " apples"
    for row in rows:
        assert row["choices"][0]["turns"] == [expected, expected]
    # the model does write past <|im_end|> when nothing stops it there: the check above can fail
    tok = generator.tokenizer
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]  # fmt: skip
    free = generator.model.generate(ids, max_new_tokens=6, do_sample=False, eos_token_id=tok.eos_token_id,
                                    pad_token_id=tok.pad_token_id)  # fmt: skip
    assert SCRIPTED_AFTER_TURN in tok.decode(free[0, ids.shape[1] :])


def test_server_and_vllm_backends_get_the_stops(tiny_model):
    stops = turn_stops(AutoTokenizer.from_pretrained(tiny_model))
    args = argparse.Namespace(backend="openai", base_url="http://127.0.0.1:1/v1", served_model="m",
                              model=str(tiny_model), max_new_tokens=5, seed=1, dtype="auto")  # fmt: skip
    generator = mtbench_answers.make_generator(args)
    assert isinstance(generator, mtbench_answers.OpenAIChatGenerator)
    assert generator.stops.tokens == ["<|im_end|>", "</s>"]
    assert stops.cut("Tom has<|im_end|> apples") == "Tom has"
    sampling = mtbench_answers.vllm_sampling_args(stops, 0.0, 64, 7)
    assert sampling == {"temperature": 0.0, "max_tokens": 64, "stop_token_ids": stops.token_ids, "stop": [],
                        "seed": 7}  # fmt: skip
    assert mtbench_answers.vllm_sampling_args(stops, 0.7, 64, 7)["temperature"] == 0.7
