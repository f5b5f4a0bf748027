"""MT-bench answers from a model, written in FastChat's answer-file format.

FastChat's own `gen_model_answer.py` hard-codes CUDA and FastChat's conversation templates, so we generate
here instead: the model's own chat template (`tokenizer.apply_chat_template`), both turns of each question
in one conversation, FastChat's per-category temperatures (greedy where the temperature is 0), and one JSON
line per question: {"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [..]}],
"tstamp"}. A reply ends at the template's end-of-turn token(s) (chat_stops.py), not only at eos.
Backends, chosen with --backend: HF `generate` (default; runs on CPU too), vLLM's offline `LLM` API (no
server to start; needs the `vllm` extra and a GPU), or an OpenAI-compatible chat server (vLLM's
`--served-model-name`). Questions already answered in the output file are kept, so a rerun only fills the
gaps.

Usage: python -m mos_nemo.evaluation.mtbench_answers --model DIR --model-id NAME --questions Q.jsonl
       --out ANSWERS.jsonl [--backend hf|vllm|openai] [--base-url URL] [--max-new-tokens 1024] [--seed 1234]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

from mos_nemo.errors import MosCheckpointError, MosError, MosValueError
from mos_nemo.evaluation.chat_stops import TurnStops, turn_stops
from mos_nemo.evaluation.mtbench_data import read_jsonl

# FastChat llm_judge's sampling temperature per MT-bench category (fastchat/llm_judge/common.py).
CATEGORY_TEMPERATURE = {
    "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0,
    "coding": 0.0, "reasoning": 0.0, "stem": 0.1, "humanities": 0.1,
}  # fmt: skip


class HFChatGenerator:
    """Greedy or sampled chat replies from an HF model folder with `generate` (CPU or one GPU)."""

    def __init__(self, model_dir: str, dtype: str, max_new_tokens: int, seed: int):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
            self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=_torch_dtype(dtype, self.device))
        except (OSError, ValueError) as err:
            raise MosCheckpointError(f"{model_dir}: the model does not load ({err})") from err
        self.stops = turn_stops(self.tokenizer)
        self.model.to(self.device).eval()
        self.max_new_tokens, self.seed = max_new_tokens, seed

    def reply(self, messages: list[dict], temperature: float, key: int) -> str:
        torch = self.torch
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        if not isinstance(ids, torch.Tensor):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        ids = ids.to(self.device)  # [1, s]
        sample = temperature >= 1e-4  # FastChat: below this the reply is greedy
        torch.manual_seed(self.seed * 1_000_003 + key)  # sampling depends on (seed, question, turn) only
        with torch.no_grad():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=sample,
                temperature=temperature if sample else None,
                top_p=None,
                top_k=None,
                max_new_tokens=self.max_new_tokens,
                eos_token_id=self.stops.token_ids,  # the end-of-turn token(s), not only the model's eos
                stop_strings=self.stops.strings or None,
                tokenizer=self.tokenizer if self.stops.strings else None,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )  # [1, s + new]
        text = self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=False)
        return _clean(self.tokenizer, self.stops.cut(text))


def _clean(tokenizer, text: str) -> str:
    """A reply without special tokens (bos, pads) and surrounding whitespace."""
    for special in tokenizer.all_special_tokens:
        text = text.replace(special, "")
    return text.strip()


class VLLMChatGenerator:
    """Replies from vLLM's offline `LLM.chat` (the model's chat template; no server to start)."""

    def __init__(self, model_dir: str, dtype: str, max_new_tokens: int, seed: int):
        try:
            from vllm import LLM
        except ImportError as err:
            raise MosValueError("MTBENCH_BACKEND=vllm needs vLLM: `pip install -e '.[vllm]'` on a GPU machine") from err
        from transformers import AutoTokenizer

        self.stops = turn_stops(AutoTokenizer.from_pretrained(model_dir))
        self.llm = LLM(model=model_dir, dtype=dtype, seed=seed)
        self.max_new_tokens, self.seed = max_new_tokens, seed

    def reply(self, messages: list[dict], temperature: float, key: int) -> str:
        from vllm import SamplingParams

        params = SamplingParams(**vllm_sampling_args(self.stops, temperature, self.max_new_tokens,
                                                     self.seed * 1_000_003 + key))
        out = self.llm.chat([messages], params, use_tqdm=False)
        return self.stops.cut(out[0].outputs[0].text).strip()


def vllm_sampling_args(stops: TurnStops, temperature: float, max_new_tokens: int, seed: int) -> dict:
    """vLLM SamplingParams fields: greedy below FastChat's 1e-4, stop at the end-of-turn token(s)."""
    return {"temperature": temperature if temperature >= 1e-4 else 0.0, "max_tokens": max_new_tokens,
            "stop_token_ids": list(stops.token_ids), "stop": list(stops.strings), "seed": seed}  # fmt: skip


class OpenAIChatGenerator:
    """Replies from an OpenAI-compatible chat-completions server (e.g. `vllm serve DIR --served-model-name X`)."""

    def __init__(self, base_url: str, served_model: str, max_new_tokens: int, seed: int, stops: TurnStops,
                 api_key: str = "EMPTY"):  # fmt: skip
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.served_model, self.max_new_tokens, self.seed, self.api_key = served_model, max_new_tokens, seed, api_key
        self.stops = stops

    def reply(self, messages: list[dict], temperature: float, key: int) -> str:
        import urllib.error
        import urllib.request

        body = {
            "model": self.served_model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": self.max_new_tokens,
            "seed": self.seed * 1_000_003 + key,
            "stop": self.stops.tokens + self.stops.strings,  # the template's end of turn (server decodes text)
        }
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return self.stops.cut(json.loads(response.read())["choices"][0]["message"]["content"]).strip()
        except (urllib.error.URLError, OSError) as err:
            raise MosValueError(f"generation server {self.url} is unreachable or failed: {err}") from err


def _torch_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    if not hasattr(torch, name):
        raise MosValueError(f"EVAL_DTYPE={name!r} is not a torch dtype; use float32, bfloat16, float16 or auto")
    return getattr(torch, name)


def unanswered(questions: list[dict], out_path: Path) -> list[dict]:
    """The questions that have no answer line in `out_path` yet."""
    done = {row["question_id"] for row in read_jsonl(out_path)} if out_path.exists() else set()
    return [q for q in questions if q["question_id"] not in done]


def answer_questions(generator, questions: list[dict], model_id: str, out_path: Path) -> int:
    """Append answers for questions not yet in `out_path`; returns how many were generated."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    generated = 0
    for question in unanswered(questions, out_path):
        temperature = CATEGORY_TEMPERATURE.get(question["category"], 0.7)
        messages, turns = [], []
        for turn_index, text in enumerate(question["turns"]):
            messages.append({"role": "user", "content": text})
            reply = generator.reply(messages, temperature, key=question["question_id"] * 10 + turn_index)
            messages.append({"role": "assistant", "content": reply})
            turns.append(reply)
        row = {
            "question_id": question["question_id"],
            "answer_id": uuid.uuid4().hex[:22],
            "model_id": model_id,
            "choices": [{"index": 0, "turns": turns}],
            "tstamp": time.time(),
        }
        with open(out_path, "a") as f:  # one line per question, so an interrupted run resumes
            f.write(json.dumps(row) + "\n")
        generated += 1
    return generated


def make_generator(args):
    """The generator of --backend (hf, vllm or openai)."""
    if args.backend == "openai":
        if not args.base_url:
            raise MosValueError("--backend openai needs --base-url (EVAL_BASE_URL in run_all.sh)")
        from transformers import AutoTokenizer

        stops = turn_stops(AutoTokenizer.from_pretrained(args.model))
        return OpenAIChatGenerator(args.base_url, args.served_model or args.model, args.max_new_tokens, args.seed,
                                   stops)  # fmt: skip
    if args.backend == "vllm":
        return VLLMChatGenerator(args.model, args.dtype, args.max_new_tokens, args.seed)
    return HFChatGenerator(args.model, args.dtype, args.max_new_tokens, args.seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="HF model folder (also the tokenizer)")
    parser.add_argument("--model-id", required=True, help="name written into the answers and file name")
    parser.add_argument("--questions", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--backend", choices=["hf", "vllm", "openai"], default="hf")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--served-model", default=None, help="model name on the server (default: --model)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    todo = unanswered(read_jsonl(args.questions), args.out)
    if not todo:
        print(f"mtbench_answers: every question already answered in {args.out}")
        return 0
    try:
        generator = make_generator(args)
    except MosError as err:
        print(f"mtbench_answers: ERROR: {err}", file=sys.stderr)
        return 2
    count = answer_questions(generator, todo, args.model_id, args.out)
    print(f"mtbench_answers: {count} new answers in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
