"""Where an assistant turn ends, read from the chat template itself.

Qwen1.5 ends a turn with `<|im_end|>`, Gemma with `<end_of_turn>`, the plain template of a base model
with its eos; none of the first two is the base model's eos, so generation that stops only at eos writes
invented user turns up to the token limit and the judge grades them. We render a one-turn conversation
whose reply is a marker, followed by a second user turn, and take what the template writes right after
the reply:

- if that text starts with a special (added) token, the turn ends with that token: its id is a stop id;
- otherwise the first non-blank line of that text, the next turn's header (e.g. "### User:"), is a stop
  string.

The model's eos is always a stop id as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mos_nemo.errors import MosCheckpointError

_MARKER = "MOSREPLYMARKER"


@dataclass
class TurnStops:
    """Token ids and strings at which an assistant reply is over."""

    token_ids: list[int] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # the stop ids as text, for server `stop` lists

    def cut(self, text: str) -> str:
        """`text` up to the first stop token or string (a server may return text past them)."""
        for stop in self.tokens + self.strings:
            if stop and stop in text:
                text = text[: text.index(stop)]
        return text


def _special_prefix(tokenizer, text: str) -> str | None:
    """The special or added token that `text` starts with, or None."""
    specials = set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "added_tokens_encoder", {}))
    matches = [tok for tok in specials if tok and text.startswith(tok)]
    return max(matches, key=len) if matches else None


def turn_stops(tokenizer) -> TurnStops:
    """The stop ids/strings of the tokenizer's chat template (raises if it has none)."""
    if not getattr(tokenizer, "chat_template", None):
        raise MosCheckpointError(
            "the tokenizer has no chat template, so where a reply ends is unknown; export the checkpoint with "
            "`python -m mos_nemo.convert export` (it writes the template used in training) or add "
            "`chat_template` to tokenizer_config.json"
        )
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _MARKER},
                    {"role": "user", "content": "Again"}]  # fmt: skip
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
    if _MARKER not in rendered:
        raise MosCheckpointError("the chat template does not render the assistant's reply; cannot find its end")
    after = rendered[rendered.index(_MARKER) + len(_MARKER) :].lstrip(" ")
    stops = TurnStops()
    special = _special_prefix(tokenizer, after)
    if special is not None:
        stops.token_ids.append(tokenizer.convert_tokens_to_ids(special))
        stops.tokens.append(special)
    else:
        line = after.split("Again")[0].strip().split("\n")[0].strip()
        if line:
            stops.strings.append(line)
    eos = tokenizer.eos_token_id
    if eos is not None and eos not in stops.token_ids:
        stops.token_ids.append(eos)
        stops.tokens.append(tokenizer.eos_token)
    return stops
