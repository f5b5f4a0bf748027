"""Tokenise conversations with the model's chat template and mark the response tokens (paper Eq. 1).

The loss mask covers every assistant turn: for assistant turn k, the rendered text of turns [0, k) with the
generation prompt is a prefix of the full rendering, and the characters from there to the end of turn k
(without trailing whitespace) are response characters; they include the template's end-of-turn token
(e.g. `<|im_end|>`), which the model must learn to emit. A token is a response token when its character
span overlaps a response span (offsets from a fast tokenizer; a slow tokenizer tokenises the spans apart).

A tokenizer without a chat template gets PLAIN_TEMPLATE:
    {bos}### System:\\n{content}\\n\\n### User:\\n{content}\\n\\n### Assistant:\\n{content}{eos}\\n\\n
(one block per message; the generation prompt is `### Assistant:\\n`).
"""

from __future__ import annotations

import numpy as np

from mos_nemo.data.formats import Conversation, RecordError
from mos_nemo.errors import MosDataError

PLAIN_ROLE_HEADERS = {"system": "### System:\n", "user": "### User:\n", "assistant": "### Assistant:\n"}
PLAIN_TEMPLATE = "{bos}" + "".join(f"{h}{{content}}\n\n" for h in PLAIN_ROLE_HEADERS.values())


class ChatRenderer:
    """Renders conversations to text with the tokenizer's chat template, or PLAIN_TEMPLATE without one."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.uses_plain_template = not getattr(tokenizer, "chat_template", None)

    def render(self, conversation: Conversation, add_generation_prompt: bool, where: str = "") -> str:
        if not self.uses_plain_template:
            try:
                return self.tokenizer.apply_chat_template(
                    conversation, tokenize=False, add_generation_prompt=add_generation_prompt)
            except Exception as error:  # jinja raises TemplateError, templates may raise anything
                raise RecordError(f"{where}: the chat template rejects this conversation ({error})") from error
        eos = self.tokenizer.eos_token or ""
        parts = [self.tokenizer.bos_token or ""]
        for message in conversation:
            end = eos if message["role"] == "assistant" else ""
            parts.append(f"{PLAIN_ROLE_HEADERS[message['role']]}{message['content']}{end}\n\n")
        if add_generation_prompt:
            parts.append(PLAIN_ROLE_HEADERS["assistant"])
        return "".join(parts)

    def text_and_response_spans(self, conversation: Conversation, where: str) -> tuple[str, list[tuple[int, int]]]:
        """The full text and the [start, end) character spans of every assistant turn."""
        full = self.render(conversation, add_generation_prompt=False, where=where)
        spans = []
        for k, message in enumerate(conversation):
            if message["role"] != "assistant":
                continue
            prompt = self.render(conversation[:k], add_generation_prompt=True, where=where)
            through_turn = self.render(conversation[: k + 1], add_generation_prompt=False, where=where)
            if not (full.startswith(through_turn) and through_turn.startswith(prompt)):
                raise MosDataError(
                    f"{where}: the chat template does not render turn {k} as a prefix of the whole "
                    "conversation, so response tokens cannot be located; use a template whose rendering "
                    "of earlier turns does not change when turns are appended")
            spans.append((len(prompt), len(through_turn.rstrip())))
        return full, spans


def response_mask_from_offsets(offsets: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """[s] bool: tokens whose character span [start, end) overlaps any response span."""
    starts, ends = offsets[:, 0], offsets[:, 1]  # [s], [s]
    mask = np.zeros(len(offsets), dtype=bool)
    for span_start, span_end in spans:
        mask |= (starts < span_end) & (ends > span_start)
    return mask


def tokenize_conversations(tokenizer, renderer: ChatRenderer, conversations: list[Conversation],
                           wheres: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input_ids [s_i] int64, response mask [s_i] bool) for each conversation, untruncated."""
    rendered = [renderer.text_and_response_spans(c, w) for c, w in zip(conversations, wheres)]
    return tokenize_rendered(tokenizer, rendered)


def tokenize_rendered(tokenizer, rendered: list[tuple[str, list[tuple[int, int]]]],
                      chunk_size: int = 512) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tokenise rendered texts (as the chat template does: no extra special tokens) and mask their spans."""
    results = []
    for begin in range(0, len(rendered), chunk_size):
        chunk = rendered[begin:begin + chunk_size]
        if not getattr(tokenizer, "is_fast", False):
            results.extend(_tokenize_pieces(tokenizer, text, spans) for text, spans in chunk)
            continue
        encoded = tokenizer([text for text, _ in chunk], add_special_tokens=False, return_offsets_mapping=True)
        for ids, offsets, (_, spans) in zip(encoded["input_ids"], encoded["offset_mapping"], chunk):
            offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)  # [s, 2]
            results.append((np.asarray(ids, dtype=np.int64), response_mask_from_offsets(offsets, spans)))
    return results


def _tokenize_pieces(tokenizer, text: str, spans: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Slow tokenizers have no offsets: tokenise prompt and response pieces separately and concatenate."""
    ids: list[int] = []
    mask: list[bool] = []
    cursor = 0
    for span_start, span_end in spans + [(len(text), len(text))]:
        for piece, is_response in ((text[cursor:span_start], False), (text[span_start:span_end], True)):
            if piece:
                piece_ids = tokenizer.encode(piece, add_special_tokens=False)
                ids.extend(piece_ids)
                mask.extend([is_response] * len(piece_ids))
        cursor = span_end
    return np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=bool)


def truncate_example(ids: np.ndarray, mask: np.ndarray, seq_length: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Keep the first seq_length tokens (the prompt start); None when no response token is left to predict.

    Position 0 is never a target (nothing precedes it), so its mask bit is cleared.
    """
    ids, mask = ids[:seq_length], mask[:seq_length].copy()
    if len(mask):
        mask[0] = False
    if not mask.any():
        return None
    return ids, mask
