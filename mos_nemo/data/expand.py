"""Many datasets from one entry: ``per_file: true`` turns a folder or a glob into one dataset per file.

    datasets:
      - {source: data/p3/, per_file: true, fraction: 0.1}        # data/p3/*.jsonl -> one dataset each
      - {name: tulu, source: "data/tulu/*.jsonl", per_file: true}  # named tulu_<stem>

Each file becomes a dataset named after its stem (with the entry's ``name`` as a prefix, ``<name>_<stem>``,
when one is given) that keeps every other option of the entry (format, fraction, max_examples, ...).
Files are taken in sorted order, so the datasets' order (and the mixture's indices) is the same on every
rank and on resume. Expansion happens when the config is composed, so everything downstream, from the
config checks (``mixing.target``, ``mixing.exclude`` name these datasets) to ``config.yaml``, sees one
entry per file.
"""

from __future__ import annotations

import dataclasses
import glob
from pathlib import Path

from mos_nemo.data.sources import FILE_SUFFIXES, source_files
from mos_nemo.data.spec import HF_PREFIX, DatasetConfig
from mos_nemo.errors import MosConfigError, MosDataError

GLOB_CHARACTERS = ("*", "?", "[")


def expand_datasets(configs: list[DatasetConfig]) -> list[DatasetConfig]:
    """``configs`` with each ``per_file`` entry replaced by one entry per file of its source."""
    expanded: list[DatasetConfig] = []
    for index, config in enumerate(configs):
        if not config.per_file:
            expanded.append(config)
            continue
        files = _files(config, index)
        names = [f"{config.name}_{path.stem}" if config.name else path.stem for path in files]
        clashes = sorted({name for name in names if names.count(name) > 1})
        if clashes:
            same = [str(path) for path, name in zip(files, names) if name == clashes[0]]
            raise MosConfigError(f"datasets[{index}].source={config.source!r} with per_file: files {same} would all "
                                 f"be named {clashes[0]!r}: dataset names are file stems, rename one")
        expanded += [dataclasses.replace(config, name=name, source=str(path), per_file=False)
                     for name, path in zip(names, files)]
    return expanded


def _files(config: DatasetConfig, index: int) -> list[Path]:
    key = f"datasets[{index}].source"
    if config.source.startswith(HF_PREFIX) or not config.source:
        raise MosConfigError(f"{key}={config.source!r} with datasets[{index}].per_file=true: give a local folder or "
                             f"a glob such as 'data/p3/*.jsonl' (one dataset per file)")
    if any(c in config.source for c in GLOB_CHARACTERS):
        pattern = str(Path(config.source).expanduser())
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True)
                       if Path(p).is_file() and Path(p).suffix in FILE_SUFFIXES)
        if not files:
            raise MosConfigError(f"{key}={config.source!r}: the glob matches no {'/'.join(FILE_SUFFIXES)} file "
                                 f"(from {Path.cwd()})")
        return files
    if not Path(config.source).expanduser().is_dir():
        raise MosConfigError(f"{key}={config.source!r} with datasets[{index}].per_file=true: not a folder (from "
                             f"{Path.cwd()}); give a folder or a glob of .jsonl/.json/.parquet files")
    try:
        return source_files(config.source, config.name or None)
    except MosDataError as error:
        raise MosConfigError(f"{key}: {error}") from None
