"""``prepare ifd``: Instruction-Following Difficulty (Li et al., 2023) per example and top-k% selection.

IFD(x, y) = PPL(y | x) / PPL(y): how much harder the response is to predict than its instruction makes
it look. PPL(y | x) = exp(mean NLL of the response tokens after the prompt x); PPL(y) = exp(mean NLL of
the same response tokens after only BOS (without BOS: over the tokens after the first)). x is the
conversation up to its final assistant turn (the scorer's chat template when it has one, else
``role: text`` lines) and y that final turn, so one example is one (x, y) pair also for multi-turn data.
Examples whose prompt fills ``max_length`` have no IFD and are never selected.

Scores are appended to ``OUT/scores/NAME.jsonl`` batch by batch (a rerun continues after the last full
line), then the ``top`` fraction of each dataset with the highest IFD goes to ``OUT/NAME.jsonl`` in source
order. Following Li et al., examples with IFD >= 1 (the instruction does not help) are left out unless
``keep_above_one``. The paper (Table 3) scores with Qwen1.5-0.5B and keeps the top 10%.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from tqdm import tqdm

from mos_nemo.errors import MosDataError


def prompt_and_response(conversation: list[dict], tokenizer) -> tuple[str, str]:
    """(x, y): the conversation before its final assistant turn, rendered, and that turn's text."""
    if not conversation or conversation[-1]["role"] != "assistant":
        raise MosDataError("an IFD example must end with an assistant turn")
    before, response = conversation[:-1], conversation[-1]["content"]
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(before, tokenize=False, add_generation_prompt=True)
    else:
        prompt = "".join(f"{m['role']}: {m['content']}\n" for m in before) + "assistant: "
    return prompt, response


def token_pairs(conversation: list[dict], tokenizer, max_length: int) -> tuple[list[int], list[int], int] | None:
    """(conditional ids, unconditional ids, response length), or None when the prompt fills max_length."""
    prompt, response = prompt_and_response(conversation, tokenizer)
    templated = bool(getattr(tokenizer, "chat_template", None))  # the template writes BOS itself
    x_ids = tokenizer(prompt, add_special_tokens=not templated)["input_ids"]
    y_ids = tokenizer(response, add_special_tokens=False)["input_ids"][: max(max_length - len(x_ids), 0)]
    if not y_ids:
        return None
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return x_ids + y_ids, bos + y_ids, len(y_ids)


@torch.no_grad()
def response_nll(model, sequences: list[list[int]], response_lengths: list[int], pad_id: int) -> list[float]:
    """Mean NLL of the last ``response_lengths[i]`` tokens of each sequence (tokens at position 0 excluded)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)  # [b, s], right-padded
    attention = torch.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        attention[row, : len(sequence)] = 1
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float()  # [b, s, v]
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device))[..., 0]
    result = []
    for row, (sequence, length) in enumerate(zip(sequences, response_lengths)):
        start = max(len(sequence) - length, 1)  # position of the first scored token
        result.append(float(-logprobs[row, start - 1: len(sequence) - 1].mean()))
    return result


def score_dataset(model, tokenizer, data: Path, scores: Path, batch_size: int, max_length: int,
                  progress: bool = True) -> list[dict]:
    """IFD of every example of ``data`` (one JSON line each), resuming after the last line in ``scores``."""
    examples = [json.loads(line)["messages"] for line in data.read_text().splitlines() if line.strip()]
    done = _read_scores(scores)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with scores.open("a") as handle:
        bar = tqdm(total=len(examples), initial=len(done), desc=data.stem, unit=" ex", disable=not progress)
        for start in range(len(done), len(examples), batch_size):
            batch = [token_pairs(c, tokenizer, max_length) for c in examples[start: start + batch_size]]
            scored = [pair for pair in batch if pair is not None]
            if scored:
                lengths = [n for _, _, n in scored]
                cond = iter(response_nll(model, [c for c, _, _ in scored], lengths, pad_id))
                uncond = iter(response_nll(model, [u for _, u, _ in scored], lengths, pad_id))
            for offset, pair in enumerate(batch):
                row = {"index": start + offset, "nll_cond": None, "nll_uncond": None, "ifd": None}
                if pair is not None:
                    row["nll_cond"], row["nll_uncond"] = next(cond), next(uncond)
                    row["ifd"] = math.exp(row["nll_cond"] - row["nll_uncond"])  # PPL(y|x) / PPL(y)
                handle.write(json.dumps(row) + "\n")
                done.append(row)
            handle.flush()
            bar.update(len(batch))
        bar.close()
    return done


def _read_scores(scores: Path) -> list[dict]:
    """The complete lines of an earlier (possibly interrupted) run; a torn last line is cut off."""
    if not scores.is_file():
        return []
    text = scores.read_text()
    complete = text[: text.rfind("\n") + 1]
    if len(complete) != len(text):
        scores.write_text(complete)
    return [json.loads(line) for line in complete.splitlines()]


def select_top(rows: list[dict], top: float, keep_above_one: bool) -> list[int]:
    """Indices (ascending) of the ``round(top * n)`` highest-IFD examples among the eligible ones."""
    wanted = int(math.floor(len(rows) * top + 0.5))
    eligible = [r for r in rows if r["ifd"] is not None and math.isfinite(r["ifd"])
                and (keep_above_one or r["ifd"] < 1.0)]
    ranked = sorted(eligible, key=lambda r: (-r["ifd"], r["index"]))[:wanted]
    return sorted(r["index"] for r in ranked)


def prepare_ifd(data: str | Path, model_path: str | Path, out: str | Path, top: float = 0.1,
                batch_size: int = 8, max_length: int = 2048, keep_above_one: bool = False,
                names: list[str] | None = None, device: str | None = None, progress: bool = True) -> dict:
    """Score every ``data/NAME.jsonl`` with the causal LM at ``model_path`` and write the top ``top`` of each."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data, out = Path(data).expanduser(), Path(out).expanduser()
    if not 0 < top <= 1:
        raise MosDataError(f"--top {top}: must lie in (0, 1], e.g. 0.1 for the top 10%")
    files = sorted(data.glob("*.jsonl")) if names is None else [data / f"{n}.jsonl" for n in names]
    missing = [str(f) for f in files if not f.is_file()]
    if not files or missing:
        raise MosDataError(f"--data {data}: no dataset files {missing or '*.jsonl'}; run "
                           "`python -m mos_nemo.data.prepare paper --out DIR` and pass DIR/full")
    if not (Path(model_path).expanduser() / "config.json").is_file():
        raise MosDataError(f"--model {model_path}: no config.json there; give a local Hugging Face model folder")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(device).eval()
    (out / "scores").mkdir(parents=True, exist_ok=True)
    manifest = {"command": "python -m mos_nemo.data.prepare ifd", "model": str(model_path), "top": top,
                "max_length": max_length, "keep_above_one": keep_above_one, "datasets": {}}
    for file in files:
        rows = score_dataset(model, tokenizer, file, out / "scores" / file.name, batch_size, max_length, progress)
        chosen = set(select_top(rows, top, keep_above_one))
        lines = [line for line in file.read_text().splitlines() if line.strip()]
        (out / file.name).write_text("".join(lines[i] + "\n" for i in sorted(chosen)))
        manifest["datasets"][file.stem] = {
            "source": str(file), "examples": len(rows), "selected": len(chosen),
            "unscored": sum(r["ifd"] is None for r in rows),
            "above_one": sum(r["ifd"] is not None and r["ifd"] >= 1.0 for r in rows)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
