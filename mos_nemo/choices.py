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
    odm = "odm"  # Online Data Mixing: EXP3 on the training loss (Albalak et al., 2023)
    doremi = "doremi"  # DoReMi's domain-weight update on the excess loss over theta0, online (Xie et al., 2023)


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


class Scorer(Choice):
    logits = "logits"  # psi is N logits, the authors' released code (the default)
    mlp = "mlp"  # psi is a 2-layer MLP on the availability vector (paper Section 3.1)


class EmaInit(Choice):
    one = "one"  # the EMA's previous reward starts at 1 (the authors' code)
    raw = "raw"  # R_0 = R'_0: the first update uses the raw reward


class DiffTokens(Choice):
    response = "response"  # Diff's PPL over response tokens (paper Eq. 9)
    sequence = "sequence"  # over the whole templated sequence (the authors' code)


class CheckpointFormat(Choice):
    auto = "auto"  # periodic and signal saves dp_reshardable, the final save fully_reshardable
    dp_reshardable = "dp_reshardable"  # fast; a resume needs the same tp and pp (any dp)
    fully_reshardable = "fully_reshardable"  # any layout on resume; gathers the optimizer state
