"""Dataset statistics in the shape of the paper's Table 6: examples, words, average instruction and response
length (words per turn) and turns (user/assistant exchanges per example)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from mos_nemo.data.formats import Conversation


@dataclass
class ConversationStats:
    """Sums over a dataset; the averages are ratios of these sums, so they add up across datasets."""

    examples: int = 0
    words: int = 0  # words of every user and assistant turn (system prompts excluded)
    instruction_words: int = 0
    instruction_turns: int = 0
    response_words: int = 0
    response_turns: int = 0

    def add(self, conversation: Conversation) -> None:
        self.examples += 1
        for message in conversation:
            count = len(message["content"].split())
            if message["role"] == "user":
                self.instruction_words += count
                self.instruction_turns += 1
            elif message["role"] == "assistant":
                self.response_words += count
                self.response_turns += 1
            else:
                continue
            self.words += count

    def merge(self, other: "ConversationStats") -> "ConversationStats":
        return ConversationStats(**{k: v + asdict(other)[k] for k, v in asdict(self).items()})

    @property
    def instruction_length(self) -> float:  # Inst.L: words per user turn
        return self.instruction_words / max(self.instruction_turns, 1)

    @property
    def response_length(self) -> float:  # Resp.L: words per assistant turn
        return self.response_words / max(self.response_turns, 1)

    @property
    def turns(self) -> float:  # Turns: assistant turns per example
        return self.response_turns / max(self.examples, 1)

    def summary(self) -> dict:
        return {**asdict(self), "instruction_length": round(self.instruction_length, 2),
                "response_length": round(self.response_length, 2), "turns": round(self.turns, 3)}


def dataset_stats(conversations: Iterable[Conversation]) -> ConversationStats:
    stats = ConversationStats()
    for conversation in conversations:
        stats.add(conversation)
    return stats


def _human(count: int) -> str:
    """26200 -> '26.2K', 3400000 -> '3.4M' (the paper's Table 6 style)."""
    if count >= 1_000_000:
        return f"{count / 1e6:.1f}M"
    if count >= 1_000:
        return f"{count / 1e3:.1f}K"
    return str(count)


def table6(per_dataset: dict[str, ConversationStats]) -> str:
    """A Markdown table with one row per dataset and a Total row, columns as in the paper's Table 6."""
    lines = ["| dataset | #exam. | #words | Inst.L | Resp.L | Turns |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    total = ConversationStats()
    for name, stats in per_dataset.items():
        total = total.merge(stats)
        lines.append(_row(name, stats))
    lines.append(_row("Total", total))
    return "\n".join(lines) + "\n"


def _row(name: str, stats: ConversationStats) -> str:
    return (f"| {name} | {_human(stats.examples)} | {_human(stats.words)} | {stats.instruction_length:.1f} | "
            f"{stats.response_length:.1f} | {stats.turns:.1f} |")
