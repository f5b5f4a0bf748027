"""The mixture at a glance when there are many datasets: the top movers named, the rest grouped.

With up to ``MAX_NAMED`` datasets every weight is shown, as before. With more (a 64-dataset mixture), the
console line, the text table and the plot name the ``TOP_MOVERS`` datasets whose weight moved most from the
run's start (step 0, the prior), and summarise the others as "K others: mean [min, max]". The logs
(``mixture.jsonl``, ``train.jsonl``, TensorBoard) keep every dataset's numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

MAX_NAMED = 8  # up to this many datasets, every one is named
TOP_MOVERS = 5  # beyond it, this many are named


def top_movers(weights: Mapping[str, float], start: Mapping[str, float] | None, count: int = TOP_MOVERS) -> list[str]:
    """The ``count`` names whose weight moved most from ``start`` (uniform when None); ties in name order."""
    uniform = 1.0 / len(weights)
    moved = {name: abs(p - (start[name] if start else uniform)) for name, p in weights.items()}
    return sorted(moved, key=lambda name: (-moved[name], name))[:count]


def weights_summary(weights: Mapping[str, float], start: Mapping[str, float] | None = None) -> str:
    """``a=0.2513 b=0.7487`` for a few datasets (four decimals, so that CosSim's small moves near uniform
    show); for many, the top movers with their change since ``start`` and the others grouped."""
    if len(weights) <= MAX_NAMED:
        return " ".join(f"{name}={p:.4f}" for name, p in weights.items())
    named = top_movers(weights, start)
    shown = []
    for name in named:
        change = weights[name] - (start[name] if start else 1.0 / len(weights))
        shown.append(f"{name}={weights[name]:.4f}({change:+.4f})")
    rest = [p for name, p in weights.items() if name not in named]
    return (" ".join(shown) + f" | {len(rest)} others: mean {sum(rest) / len(rest):.4f} "
            f"[{min(rest):.4f}, {max(rest):.4f}]")


def counts_summary(counts: Mapping[str, int]) -> str:
    """Which datasets a batch drew: ``a:3,b:1`` for a few, the number of datasets and the largest for many."""
    drawn = {name: n for name, n in counts.items() if n}
    if len(counts) <= MAX_NAMED:
        return ",".join(f"{k}:{v}" for k, v in counts.items())
    largest = sorted(drawn, key=lambda name: (-drawn[name], name))[:3]
    return f"{len(drawn)} datasets (most {','.join(f'{k}:{drawn[k]}' for k in largest)})"


def weights_table_many(records: list[dict]) -> str:
    """One row per dataset (the top movers first, then by final weight): start, final, change, batches drawn."""
    first, last = records[0], records[-1]
    names = list(first["weights"])
    movers = top_movers(last["weights"], first["weights"], len(names))
    width = max(9, *(len(n) + 2 for n in names))
    lines = [f"{len(names)} datasets, steps {first['step']}..{last['step']} ({len(records) - 1} updates); "
             "ordered by how far the weight moved",
             "dataset".ljust(width) + "start".rjust(9) + "final".rjust(9) + "change".rjust(10) + "batches".rjust(9)]
    for name in movers:
        start, final = first["weights"][name], last["weights"][name]
        lines.append(f"{name:<{width}}{start:9.4f}{final:9.4f}{final - start:+10.4f}{last['counts'].get(name, 0):9d}")
    return "\n".join(lines)
