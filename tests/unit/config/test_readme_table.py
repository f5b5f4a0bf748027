"""docs/configuration.md 'Config keys' (the README's reference for every key) lists every key of the schema with
the schema's default (the schema is the truth)."""

import math
import re
import typing
from dataclasses import MISSING, fields, is_dataclass
from enum import Enum
from pathlib import Path

from mos_nemo.config import MosConfig

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "docs" / "configuration.md"


def schema_defaults(cls=MosConfig, prefix: str = "") -> dict[str, object]:
    """``{"a.b": default}`` for every leaf key; an optional sub-config (default null) lists its own keys too."""
    out = {}
    hints = typing.get_type_hints(cls)
    for item in fields(cls):
        key = f"{prefix}{item.name}"
        default = item.default_factory() if item.default is MISSING else item.default
        if is_dataclass(default):
            out.update(schema_defaults(type(default), f"{key}."))
            continue
        out[key] = default.value if isinstance(default, Enum) else default
        options = typing.get_args(hints[item.name])
        inner = [t for t in options if is_dataclass(t)] if type(None) in options else []
        if inner:  # Optional[SomeConfig] = None: its fields are documented as key.field
            out.update(schema_defaults(inner[0], f"{key}."))
    return out


def parse_value(text: str) -> object:
    text = text.strip().strip("`")
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text == "[]":
        return []
    if text == "inf":
        return math.inf
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def readme_defaults() -> dict[str, object]:
    section = README.read_text().split("## Config keys", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([a-z0-9_.]+)`", cells[0])
        values = re.split(r"\s*(?:,|/)\s*", cells[1]) if len(keys) > 1 else [cells[1]]
        assert len(values) == len(keys), f"README row {cells[0]}: {len(keys)} keys but defaults {cells[1]!r}"
        out.update({key: parse_value(value) for key, value in zip(keys, values)})
    return out


def test_readme_documents_every_key_with_the_schema_default():
    documented, schema = readme_defaults(), schema_defaults()
    assert sorted(set(schema) - set(documented)) == [], "keys missing from README 'Config keys'"
    assert sorted(set(documented) - set(schema)) == [], "README documents keys the schema does not have"
    wrong = {key: (documented[key], schema[key]) for key in schema if documented[key] != schema[key]}
    assert wrong == {}, "README default vs schema default"


def test_the_readme_links_the_table():
    assert "docs/configuration.md" in (ROOT / "README.md").read_text()


def test_the_parser_sees_a_changed_default():
    # the check above can fail: a README row with another default is read as that value
    assert parse_value("1e-5") == 1e-5 and parse_value("`auto`") == "auto" and parse_value("null") is None
