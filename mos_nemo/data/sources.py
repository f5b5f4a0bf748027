"""Read raw records from local JSONL / JSON / Parquet files (or folders of them) and HF datasets.

Every record keeps where it came from (`file:line`, `file#row`), so later errors can name it.
Malformed lines (bad JSON, bytes that are not UTF-8, a value that is not an object) raise a MosDataError
naming the file and line, or, with `skip_bad_lines`, are skipped and counted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from mos_nemo.data.spec import HF_PREFIX, DatasetConfig
from mos_nemo.errors import MosDataError

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass
class RawRecord:
    """One record as read from its source, with its location for error messages."""

    data: dict
    where: str


@dataclass
class SourceReport:
    """What reading a source produced: the records and how many bad lines were skipped."""

    records: list[RawRecord] = field(default_factory=list)
    bad_lines: int = 0
    first_bad: str | None = None

    def skip(self, message: str) -> None:
        self.bad_lines += 1
        if self.first_bad is None:
            self.first_bad = message


def source_files(source: str, name: str | None = None) -> list[Path]:
    """The data files of a local source: the file itself, or the sorted data files under a folder."""
    path = Path(source).expanduser()
    if not path.exists():
        which = f"dataset {name!r}: source" if name else "dataset source"
        raise MosDataError(f"{which} {source!r} does not exist: give a .jsonl/.json/.parquet path, "
                           "a folder of them, or hf://owner/name")
    if path.is_file():
        if path.suffix not in FILE_SUFFIXES:
            raise MosDataError(f"dataset source {source!r} has suffix {path.suffix!r}: "
                               f"use one of {', '.join(FILE_SUFFIXES)}")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in FILE_SUFFIXES)
    if not files:
        raise MosDataError(f"dataset folder {source!r} holds no {'/'.join(FILE_SUFFIXES)} files")
    return files


def source_fingerprint(config: DatasetConfig) -> str:
    """A cheap identity of the source content: paths, sizes and modification times (or the HF fingerprint)."""
    digest = hashlib.sha256()
    if config.source.startswith(HF_PREFIX):
        dataset = _load_hf(config)
        digest.update(f"{config.source}|{config.subset}|{config.split}|{dataset._fingerprint}".encode())
    else:
        for path in source_files(config.source, config.name):
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_source(config: DatasetConfig) -> SourceReport:
    """Read every record of a dataset source (see the module docstring for the error rules)."""
    report = SourceReport()
    if config.source.startswith(HF_PREFIX):
        dataset = _load_hf(config)
        for row, record in enumerate(dataset):
            report.records.append(RawRecord(record, f"{config.source}[{config.split}]#row{row}"))
        return report
    for path in source_files(config.source, config.name):
        if path.suffix == ".parquet":
            _read_parquet(path, report)
        else:
            _read_json_text(path, report, config.skip_bad_lines)
    return report


def _load_hf(config: DatasetConfig):
    import datasets

    name = config.source[len(HF_PREFIX):]
    try:
        return datasets.load_dataset(name, config.subset, split=config.split)
    except Exception as error:  # the datasets library raises many unrelated types
        raise MosDataError(f"dataset {config.name!r}: cannot load {config.source!r} (subset={config.subset!r}, "
                           f"split={config.split!r}): {error}. Check the id, or download it and give a "
                           "local path") from error


def _read_parquet(path: Path, report: SourceReport) -> None:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...
        raise MosDataError(f"{path}: not a readable Parquet file ({error})") from error
    report.records.extend(RawRecord(row, f"{path}#row{index}") for index, row in enumerate(rows))


def _read_json_text(path: Path, report: SourceReport, skip_bad_lines: bool) -> None:
    """A `.json` file holding one array, or JSON lines (`.jsonl`, or a `.json` that is not an array)."""
    raw = path.read_bytes()
    if path.suffix == ".json" and raw.lstrip()[:1] == b"[":
        _read_json_array(path, raw, report)
        return
    for line_number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        try:
            record = json.loads(line.decode("utf-8"))
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        except UnicodeDecodeError as error:
            message = f"{where}: bytes that are not UTF-8 at column {error.start + 1} ({error.reason})"
            _bad_line(report, message, skip_bad_lines)
            continue
        except ValueError as error:
            _bad_line(report, f"{where}: malformed JSON line ({error})", skip_bad_lines)
            continue
        report.records.append(RawRecord(record, where))


def _bad_line(report: SourceReport, message: str, skip_bad_lines: bool) -> None:
    if not skip_bad_lines:
        raise MosDataError(f"{message}. Fix the line, or set skip_bad_lines: true to skip and count such lines")
    report.skip(message)


def _read_json_array(path: Path, raw: bytes, report: SourceReport) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise MosDataError(f"{path}:{line}: bytes that are not UTF-8 ({error.reason}); re-encode the file "
                           "as UTF-8") from error
    try:
        records = json.loads(text)
    except json.JSONDecodeError as error:
        raise MosDataError(f"{path}:{error.lineno}: malformed JSON ({error.msg}, column {error.colno}); "
                           "a .json file must hold one valid array (use .jsonl to skip bad lines)") from error
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise MosDataError(f"{path}: element {index} of the array is a {type(record).__name__}, "
                               "expected a JSON object per example")
        report.records.append(RawRecord(record, f"{path}#item{index}"))
