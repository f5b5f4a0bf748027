"""The chat template used in training, written into an exported tokenizer.

Training renders conversations with the tokenizer's own chat template, or, for a base model without one
(Llama-3-8B, the paper's main model), with the plain template of ``mos_nemo/data/tokenize.py``. An export
of such a model must carry the plain template as a Jinja ``chat_template``, or MT-bench answers (and any
chat-formatted evaluation) would be generated in a format the model never saw, or fail outright.
"""

from __future__ import annotations

import json
from pathlib import Path

from mos_nemo.data.tokenize import PLAIN_ROLE_HEADERS


def _jinja_text(text: str) -> str:
    return text.replace("\n", "\\n")


def plain_chat_template() -> str:
    """Jinja for ChatRenderer's plain rendering: {bos}, per message its header, content, {eos} after an
    assistant's content, a blank line; the generation prompt is the assistant header."""
    headers = "".join(
        f"{'{% if' if i == 0 else '{% elif'} message['role'] == '{role}' %}}{{{{ '{_jinja_text(header)}' }}}}"
        for i, (role, header) in enumerate(PLAIN_ROLE_HEADERS.items())
    )
    return (
        "{{ bos_token or '' }}{% for message in messages %}" + headers + "{% endif %}"
        "{{ message['content'] }}{% if message['role'] == 'assistant' %}{{ eos_token or '' }}{% endif %}"
        "{{ '\\n\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '" + _jinja_text(PLAIN_ROLE_HEADERS["assistant"]) + "' }}{% endif %}"
    )


def write_training_chat_template(folder) -> bool:
    """Give the tokenizer in ``folder`` the plain template when it has no chat template; True if written."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if getattr(tokenizer, "chat_template", None):
        return False  # training used this very template
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        config["chat_template"] = plain_chat_template()
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    else:
        tokenizer.chat_template = plain_chat_template()
        tokenizer.save_pretrained(folder)
    return True
