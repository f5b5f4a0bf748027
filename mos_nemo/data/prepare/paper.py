"""``prepare paper``: the four training sets of the paper's Appendix B, then a random 10% of each.

Per dataset: stream the hub files -> normalise every record to one conversation (``mos_nemo.data.formats``;
records it rejects are dropped and counted) -> ``OUT/full/NAME.jsonl`` -> a random ``fraction`` of it ->
``OUT/NAME.jsonl``. P3 first takes ``per_subset`` random rows of the train split of every subset. Then
``OUT/manifest.json`` (sources, revisions, seed, counts, filters) and ``OUT/stats.md`` (Table 6 shape).

Resuming: each finished unit (a dataset's full file, each P3 subset) gets a ``.done.json`` marker written
after its data file is renamed into place; a rerun skips units whose marker matches the settings and
redoes the rest. Every random draw is keyed on (seed, dataset or subset), so the output is a pure function
of the sources and the seed.
"""

from __future__ import annotations

import heapq
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from mos_nemo.data.formats import RecordError, to_conversation
from mos_nemo.data.prepare.hub import HubRepo
from mos_nemo.data.prepare.stats import ConversationStats, table6
from mos_nemo.data.rng import keyed_generator, keyed_seed
from mos_nemo.errors import MosDataError

P3_COLUMNS = ["inputs_pretokenized", "targets_pretokenized"]


@dataclass(frozen=True)
class PaperSource:
    """One training set: its name in the recipes, its hub repository and files, and its record format."""

    name: str
    repo_id: str
    revision: str
    data_files: tuple[str, ...]  # empty: enumerate the subsets (P3's parquet export)
    format: str


PAPER_SOURCES = (
    PaperSource("math", "TIGER-Lab/MathInstruct", "main", ("MathInstruct.json",), "instruction"),
    PaperSource("medicine", "casey-martin/MedInstruct", "main", ("data/MedInstruct-52k.json",), "instruction"),
    PaperSource("general", "anon8231489123/ShareGPT_Vicuna_unfiltered", "main",
                ("ShareGPT_V3_unfiltered_cleaned_split.json",), "sharegpt"),
    # P3's main branch is a loading script (not supported by datasets >= 4); its parquet export holds
    # SUBSET/train/NNNN.parquet (SUBSET/partial-train/ for the largest subsets).
    PaperSource("nlp", "bigscience/P3", "refs/convert/parquet", (), "prompt_completion"),
)

FILTERS = (
    "records that cannot be normalised to a conversation are dropped and counted (missing or empty "
    "field, unknown role, no assistant turn, conversation starting with an assistant turn)",
    "P3: per_subset random rows of the train split of every subset (all rows of a smaller subset)",
    "then a random `fraction` of each dataset (round(fraction * n) examples, kept in source order)",
)


def prepare_paper(out: str | Path, seed: int = 1234, fraction: float = 0.1, per_subset: int = 1000,
                  source_root: str | Path | None = None, sources: Iterable[PaperSource] = PAPER_SOURCES,
                  progress: bool = True, separate_p3: bool = False) -> dict:
    """Prepare every source into ``out``; returns the manifest (also written to ``out/manifest.json``).

    ``separate_p3``: also write ``out/nlp/SUBSET.jsonl``, a random ``fraction`` of each P3 subset's rows, so
    that ``{source: out/nlp, per_file: true}`` trains on every subset as a dataset of its own.
    """
    if not 0 < fraction <= 1:
        raise MosDataError(f"--fraction {fraction}: must lie in (0, 1], e.g. 0.1")
    if per_subset < 1:
        raise MosDataError(f"--p3-per-subset {per_subset}: must be >= 1, e.g. 1000")
    out = Path(out).expanduser()
    (out / "full").mkdir(parents=True, exist_ok=True)
    manifest = {"command": "python -m mos_nemo.data.prepare paper", "seed": seed, "fraction": fraction,
                "per_subset": per_subset, "filters": list(FILTERS), "datasets": {}}
    stats: dict[str, ConversationStats] = {}
    for source in sources:
        repo = HubRepo.resolve(source.repo_id, source.revision, source_root).pinned()
        settings = {"repo": source.repo_id, "revision": repo.describe_revision(), "seed": seed,
                    "per_subset": per_subset if not source.data_files else None}
        full = out / "full" / f"{source.name}.jsonl"
        done = _read_done(full, settings)
        if done is None:
            done = _build_full(source, repo, full, settings, progress)
        entry, stats[source.name] = _subsample(full, out / f"{source.name}.jsonl", source.name, seed, fraction)
        manifest["datasets"][source.name] = {**done, "format": source.format, **entry}
        if separate_p3 and not source.data_files:
            manifest["p3_subsets"] = _separate_subsets(out, source.name, seed, fraction)
    manifest["table6"] = {name: s.summary() for name, s in stats.items()}
    (out / "stats.md").write_text(table6(stats))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _separate_subsets(out: Path, name: str, seed: int, fraction: float) -> dict:
    """``out/NAME/SUBSET.jsonl`` for every P3 subset (each its own random ``fraction``); their counts."""
    (out / name).mkdir(exist_ok=True)
    parts = sorted((out / "full" / f"{name}.parts").glob("*.jsonl"))
    return {part.stem: _subsample(part, out / name / part.name, f"{name}/{part.stem}", seed, fraction)[0]
            for part in parts}


def _done_path(data: Path) -> Path:
    return data.with_name(data.name + ".done.json")


def _read_done(data: Path, settings: dict) -> dict | None:
    """The marker of a finished unit whose settings match, or None (then the unit is (re)built)."""
    marker = _done_path(data)
    if not (marker.is_file() and data.is_file()):
        return None
    done = json.loads(marker.read_text())
    return done if all(done.get(k) == v for k, v in settings.items()) else None


def _finish(data: Path, partial: Path, done: dict) -> dict:
    partial.replace(data)  # the data file is complete before its marker exists
    _done_path(data).write_text(json.dumps(done, indent=2) + "\n")
    return done


def _build_full(source: PaperSource, repo: HubRepo, full: Path, settings: dict, progress: bool) -> dict:
    partial = full.with_name(full.name + ".partial")
    if source.data_files:
        rows = tqdm(repo.stream(list(source.data_files)), desc=source.name, unit=" rows", disable=not progress)
        with partial.open("w") as handle:
            counts = _write_conversations(_located(rows, source.data_files[0]), source, handle)
        return _finish(full, partial, {**settings, "data_files": list(source.data_files), **counts})
    subsets = p3_subsets(repo)
    parts = full.with_name(full.name.removesuffix(".jsonl") + ".parts")
    parts.mkdir(exist_ok=True)
    counts = {"rows_read": 0, "read": 0, "kept": 0, "dropped": 0, "first_dropped": None}
    with partial.open("w") as handle:
        for subset, files in tqdm(subsets.items(), desc=f"{source.name} subsets", unit=" subsets",
                                  disable=not progress):
            part = parts / f"{subset}.jsonl"
            part_done = _read_done(part, settings) or _build_p3_subset(source, repo, subset, files, part,
                                                                       settings, progress)
            for key in ("rows_read", "read", "kept", "dropped"):
                counts[key] += part_done[key]
            counts["first_dropped"] = counts["first_dropped"] or part_done["first_dropped"]
            handle.write(part.read_text())
    return _finish(full, partial, {**settings, "subsets": len(subsets), **counts})


def p3_subsets(repo: HubRepo) -> dict[str, list[str]]:
    """``{subset: [its train parquet files]}`` from the parquet export's ``SUBSET/[partial-]train/*.parquet``."""
    subsets: dict[str, list[str]] = {}
    for path in repo.list_files():
        parts = path.split("/")
        if len(parts) == 3 and parts[1] in ("train", "partial-train") and parts[2].endswith(".parquet"):
            subsets.setdefault(parts[0], []).append(path)
    if not subsets:
        raise MosDataError(f"{repo.local or repo.repo_id}@{repo.revision}: no SUBSET/train/*.parquet files; "
                           "expected the parquet export of bigscience/P3 (revision refs/convert/parquet)")
    return dict(sorted(subsets.items()))


def _build_p3_subset(source: PaperSource, repo: HubRepo, subset: str, files: list[str], part: Path,
                     settings: dict, progress: bool) -> dict:
    """Keep ``per_subset`` uniformly random rows (the smallest keyed random keys: one pass, bounded memory)."""
    generator = np.random.default_rng(keyed_seed(settings["seed"], "prepare", "p3", subset))
    heap: list[tuple[float, int, dict]] = []  # max-heap on the key via negation
    read = 0
    rows = tqdm(repo.stream(files, columns=P3_COLUMNS), desc=subset, unit=" rows", leave=False,
                disable=not progress)
    for index, row in enumerate(rows):
        read += 1
        key = float(generator.random())
        item = (-key, index, {"prompt": (row["inputs_pretokenized"] or "").strip(),
                              "completion": (row["targets_pretokenized"] or "").strip()})
        if len(heap) < settings["per_subset"]:
            heapq.heappush(heap, item)
        elif -heap[0][0] > key:
            heapq.heapreplace(heap, item)
    chosen = sorted((index, record) for _, index, record in heap)
    partial = part.with_name(part.name + ".partial")
    with partial.open("w") as handle:
        located = ((record, f"{subset}#row{index}", subset) for index, record in chosen)
        counts = _write_conversations(located, source, handle)
    return _finish(part, partial, {**settings, "subset": subset, **counts, "rows_read": read})


def _located(rows: Iterable[dict], file_name: str) -> Iterator[tuple[dict, str, str | None]]:
    for index, row in enumerate(rows):
        yield row, f"{file_name}#item{index}", row.get("source") if isinstance(row.get("source"), str) else None


def _write_conversations(located: Iterable[tuple[dict, str, str | None]], source: PaperSource, handle) -> dict:
    """Normalise each record and write ``{"messages": [...], "origin": ...}`` lines; count what was dropped."""
    read = kept = dropped = 0
    first_dropped = None
    for record, where, origin in located:
        read += 1
        try:
            conversation = to_conversation(record, source.format, where)
        except RecordError as error:
            dropped += 1
            first_dropped = first_dropped or str(error)
            continue
        kept += 1
        line = {"messages": conversation, "origin": origin or source.repo_id}
        handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return {"read": read, "kept": kept, "dropped": dropped, "first_dropped": first_dropped}


def _subsample(full: Path, target: Path, name: str, seed: int, fraction: float) -> tuple[dict, ConversationStats]:
    """Write ``round(fraction * n)`` random lines of ``full`` (in their order) to ``target``; returns counts."""
    with full.open() as handle:
        total = sum(1 for _ in handle)
    keep = int(math.floor(total * fraction + 0.5))
    generator = keyed_generator(seed, "prepare", "fraction", name)
    import torch

    chosen = set(torch.randperm(total, generator=generator)[:keep].tolist())
    stats = ConversationStats()
    partial = target.with_name(target.name + ".partial")
    with full.open() as source, partial.open("w") as handle:
        for index, line in enumerate(source):
            if index in chosen:
                handle.write(line)
                stats.add(json.loads(line)["messages"])
    partial.replace(target)
    return {"full_examples": total, "examples": keep, "file": target.name}, stats
