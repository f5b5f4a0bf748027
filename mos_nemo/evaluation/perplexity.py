"""Response-only perplexity of a base and a fine-tuned model per dataset (paper Appendix A, Table 5).

Per example, PPL(y|x) = exp(mean NLL over the response tokens only), the quantity of the Diff reward
(paper Eq. 9; docs/ and eval/README.md): conversations are rendered and masked by the training data path
(`mos_nemo.data.tokenize`), so every assistant turn, end-of-turn token included, is a response token.
Table 5 reports, per dataset, the average of the per-example PPLs under theta_0 (base) and theta
(fine-tuned) and their ratio Delta = PPL_theta / PPL_theta0 (a ratio of the averages, as the paper's
numbers show: 2.94 / 4.18 = 0.70).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from mos_nemo.data.formats import detect_format, to_conversation
from mos_nemo.data.tokenize import ChatRenderer, tokenize_conversations
from mos_nemo.errors import MosCheckpointError, MosDataError


@dataclass
class PplRow:
    dataset: str
    n_examples: int
    ppl_base: float
    ppl_finetuned: float

    @property
    def delta(self) -> float:
        return self.ppl_finetuned / self.ppl_base


def load_conversations(path: Path, max_examples: int | None) -> list[list[dict]]:
    """The first `max_examples` records of a .jsonl or .json file, as normalised conversations."""
    path = Path(path)
    if not path.is_file():
        raise MosDataError(f"{path}: dataset file not found")
    if path.suffix == ".json":
        records = json.loads(path.read_text())
        wheres = [f"{path}[{i}]" for i in range(len(records))]
    else:
        lines = [(i, line) for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
        try:
            records = [json.loads(line) for _, line in lines]
        except json.JSONDecodeError as err:
            raise MosDataError(f"{path}: not JSON lines ({err})") from err
        wheres = [f"{path}:{i}" for i, _ in lines]
    records, wheres = records[:max_examples], wheres[:max_examples]
    if not records:
        raise MosDataError(f"{path}: no records")
    return [to_conversation(r, detect_format(r, w), w) for r, w in zip(records, wheres)]


def load_model(model_dir: str, dtype: torch.dtype, device: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    except (OSError, ValueError) as err:
        raise MosCheckpointError(f"{model_dir}: the model does not load ({err})") from err
    return model.to(device).eval(), tokenizer


@torch.no_grad()
def response_ppl(model, tokenizer, conversations, max_length: int, batch_size: int) -> list[float]:
    """exp(mean response-token NLL) per conversation (truncated to `max_length` tokens)."""
    wheres = [f"example {i}" for i in range(len(conversations))]
    encoded = tokenize_conversations(tokenizer, ChatRenderer(tokenizer), conversations, wheres)
    device = next(model.parameters()).device
    ppls = []
    for begin in range(0, len(encoded), batch_size):
        chunk = [(ids[:max_length], mask[:max_length]) for ids, mask in encoded[begin : begin + batch_size]]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)  # [b, s], right-padded
        is_response = torch.zeros(len(chunk), width, dtype=torch.bool)  # [b, s]
        attention = torch.zeros(len(chunk), width, dtype=torch.long)  # [b, s]
        for row, (tokens, mask) in enumerate(chunk):
            ids[row, : len(tokens)] = torch.from_numpy(tokens)
            is_response[row, : len(tokens)] = torch.from_numpy(mask)
            attention[row, : len(tokens)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits.float()  # [b, s, v]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), ids[:, 1:].to(device), reduction="none"
        ).cpu()  # [b, s-1]: token t+1 predicted from the prefix up to t
        targets = is_response[:, 1:]  # [b, s-1]; position 0 is never a target
        counts = targets.sum(dim=1)  # [b]
        if (counts == 0).any():
            raise MosDataError(f"examples {begin}..{begin + len(chunk) - 1}: one has no response token within "
                               f"max_length={max_length}; raise --max-length")  # fmt: skip
        mean_nll = (nll * targets).sum(dim=1) / counts  # [b]
        ppls.extend(torch.exp(mean_nll).tolist())
    return ppls


def ppl_rows(base: str, finetuned: str, datasets: dict[str, Path], max_examples: int | None = None,
             max_length: int = 2048, batch_size: int = 4, dtype: torch.dtype = torch.float32) -> list[PplRow]:
    """One Table 5 row per dataset: average response PPL under `base` and under `finetuned`."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    conversations = {name: load_conversations(path, max_examples) for name, path in datasets.items()}
    averages: dict[str, list[float]] = {name: [] for name in datasets}
    for model_dir in (base, finetuned):  # one model in memory at a time
        model, tokenizer = load_model(model_dir, dtype, device)
        for name, convs in conversations.items():
            ppls = response_ppl(model, tokenizer, convs, max_length, batch_size)
            averages[name].append(sum(ppls) / len(ppls))
        del model
    return [PplRow(name, len(conversations[name]), *averages[name]) for name in datasets]


def render_table5(rows: list[PplRow]) -> str:
    lines = ["| dataset | n | PPL_θ0 | PPL_θ | Δ |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.dataset} | {r.n_examples} | {r.ppl_base:.2f} | {r.ppl_finetuned:.2f} | {r.delta:.2f} |")
    return "\n".join(lines)
