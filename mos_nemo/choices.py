"""The choice-valued config keys as string enums: the one list of allowed values for each.

The schema in ``mos_nemo.config`` types its fields with these, so Hydra rejects a bad value and lists the
allowed ones; engine code compares them to plain strings (``mode == "batch"``), since each member is a str
equal to its value. Member names equal their values because OmegaConf converts a YAML string by name.
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A str enum whose ``str()`` and f-string form are the bare value (``mos``, not ``Strategy.mos``)."""

    __str__ = str.__str__
    __format__ = str.__format__

    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]


class Strategy(Choice):
    static = "static"  # the temperature prior q_tau (Eq. 3), fixed
    mos = "mos"  # learned by the scorer (Algorithm 1)


class Mode(Choice):
    batch = "batch"  # one dataset per global batch (Algorithm 1)
    sample = "sample"  # one dataset per example


class Reward(Choice):
    cossim = "cossim"  # Eq. 8
    diff = "diff"  # Eq. 10


class Reference(Choice):
    pool = "pool"  # Diff's theta0 scores a fixed pool once, at the start
    live = "live"  # Diff's theta0 is a frozen copy of the initial model


class Dtype(Choice):
    auto = "auto"  # bf16 on GPU, fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"


class Family(Choice):
    llama = "llama"
    qwen2 = "qwen2"
    gemma = "gemma"
