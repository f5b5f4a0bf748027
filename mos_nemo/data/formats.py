"""Turn records of the four supported formats into one conversation shape: [{"role", "content"}, ...].

Formats (field names as in the public datasets):
- instruction (Alpaca): `instruction`, optional `input`, `output`, optional `system`;
- sharegpt: `conversations` = [{"from": human|user|gpt|assistant|system, "value": ...}, ...];
- messages (OpenAI): `messages` = [{"role": system|user|assistant, "content": ...}, ...] (content may be a
  string or a list of {"type": "text", "text": ...} parts);
- prompt_completion: `prompt`, `completion`.
Roles are normalised to system / user / assistant. A record with a missing or empty field, an unknown
role or no assistant turn raises a RecordError (a MosDataError) naming its location; the loader turns it
into a counted skip when `skip_bad_lines` is set.
"""

from __future__ import annotations

from mos_nemo.errors import MosDataError

Conversation = list[dict[str, str]]

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "system": "system"}
MESSAGE_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}

# The key each format is recognised by, in detection order.
DETECTION_KEYS = (("messages", ("messages",)), ("sharegpt", ("conversations",)),
                  ("instruction", ("instruction", "output")), ("prompt_completion", ("prompt", "completion")))


class RecordError(MosDataError):
    """One record cannot be used (missing field, unknown role, ...); may be skipped and counted."""


def detect_format(record: dict, where: str) -> str:
    """The format a record is written in, from its keys (see DETECTION_KEYS)."""
    for name, keys in DETECTION_KEYS:
        if all(key in record for key in keys):
            return name
    raise MosDataError(
        f"{where}: cannot detect the format from the keys {sorted(record)}: expected 'messages' (messages), "
        "'conversations' (sharegpt), 'instruction'+'output' (instruction) or 'prompt'+'completion' "
        "(prompt_completion); set format: explicitly or rename the fields")


def to_conversation(record: dict, format_name: str, where: str) -> Conversation:
    """Normalise one record; trailing turns after the last assistant turn are removed (they carry no loss)."""
    if format_name == "instruction":
        conversation = _from_instruction(record, where)
    elif format_name == "sharegpt":
        conversation = _from_turns(record, where, "conversations", "from", "value", SHAREGPT_ROLES)
    elif format_name == "messages":
        conversation = _from_turns(record, where, "messages", "role", "content", MESSAGE_ROLES)
    elif format_name == "prompt_completion":
        conversation = [{"role": "user", "content": _text(record, "prompt", where)},
                        {"role": "assistant", "content": _text(record, "completion", where)}]
    else:
        raise MosDataError(f"{where}: unknown format {format_name!r}")
    last_assistant = max((i for i, m in enumerate(conversation) if m["role"] == "assistant"), default=-1)
    if last_assistant < 0:
        raise RecordError(f"{where}: the conversation has no assistant turn, so nothing to learn from")
    first_turn = next(m["role"] for m in conversation if m["role"] != "system")
    if first_turn == "assistant":
        raise RecordError(f"{where}: the conversation starts with an assistant turn; it needs a user prompt first")
    return conversation[: last_assistant + 1]


def _text(record: dict, key: str, where: str, optional: bool = False) -> str:
    value = record.get(key)
    if isinstance(value, list) and value and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        value = "".join(str(part.get("text", "")) for part in value)  # OpenAI content parts, text only
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        kind = "missing" if value is None else f"a {type(value).__name__}, not a string"
        raise RecordError(f"{where}: field {key!r} is {kind}")
    if not value.strip() and not optional:
        raise RecordError(f"{where}: field {key!r} is empty")
    return value


def _from_instruction(record: dict, where: str) -> Conversation:
    instruction = _text(record, "instruction", where)
    extra_input = _text(record, "input", where, optional=True)
    system = _text(record, "system", where, optional=True)
    prompt = f"{instruction}\n\n{extra_input}" if extra_input.strip() else instruction
    conversation = [{"role": "system", "content": system}] if system.strip() else []
    conversation.append({"role": "user", "content": prompt})
    conversation.append({"role": "assistant", "content": _text(record, "output", where)})
    return conversation


def _from_turns(record: dict, where: str, list_key: str, role_key: str, text_key: str,
                roles: dict[str, str]) -> Conversation:
    turns = record.get(list_key)
    if not isinstance(turns, list) or not turns:
        kind = "missing" if turns is None else ("empty" if turns == [] else f"a {type(turns).__name__}")
        raise RecordError(f"{where}: field {list_key!r} is {kind}; expected a non-empty list of turns")
    conversation: Conversation = []
    for index, turn in enumerate(turns):
        at = f"{where}: {list_key}[{index}]"
        if not isinstance(turn, dict):
            raise RecordError(f"{at} is a {type(turn).__name__}, expected an object with {role_key!r}")
        role = turn.get(role_key)
        if role not in roles:
            raise RecordError(f"{at} has unknown role {role!r}; accepted: {', '.join(sorted(roles))}")
        conversation.append({"role": roles[role], "content": _text(turn, text_key, at)})
    return conversation
