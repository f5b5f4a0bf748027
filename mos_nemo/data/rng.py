"""Random generators keyed on (seed, step, role), so every draw is a pure function of its key."""

from __future__ import annotations

import hashlib

import torch


def keyed_seed(seed: int, *key: object) -> int:
    """A 63-bit seed derived from `seed` and a key such as (step, "blend"); stable across runs and machines."""
    text = repr((int(seed),) + tuple(key)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & ((1 << 63) - 1)


def keyed_generator(seed: int, *key: object) -> torch.Generator:
    """A CPU torch.Generator seeded from (seed, *key)."""
    return torch.Generator().manual_seed(keyed_seed(seed, *key))
