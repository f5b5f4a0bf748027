"""Where a Hugging Face dataset repository is read from: the hub, or a local folder in the hub's layout.

A local root (``--source-root DIR`` or ``$MOS_NEMO_HUB_ROOT``) holds ``DIR/owner/name/<repo files>``, the
same relative paths as on the hub, so that offline copies (and the tests' fixtures) go through the same
``datasets.load_dataset`` call as a download.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mos_nemo.errors import MosDataError

HUB_ROOT_ENV = "MOS_NEMO_HUB_ROOT"


@dataclass(frozen=True)
class HubRepo:
    """One dataset repository at one revision, either on the hub or under a local root."""

    repo_id: str
    revision: str = "main"
    local: Path | None = None

    @classmethod
    def resolve(cls, repo_id: str, revision: str, source_root: str | Path | None) -> "HubRepo":
        """The repo under ``source_root`` (or ``$MOS_NEMO_HUB_ROOT``) when one is given, else on the hub."""
        root = source_root or os.environ.get(HUB_ROOT_ENV)
        if not root:
            return cls(repo_id, revision)
        folder = Path(root).expanduser() / repo_id
        if not folder.is_dir():
            raise MosDataError(f"--source-root {root}: no folder {folder} for the dataset repository {repo_id!r}; "
                               "lay the local copy out as ROOT/owner/name/<files as on the hub>")
        return cls(repo_id, revision, folder.resolve())

    def describe_revision(self) -> str:
        """The commit the data came from (the hub's sha for the revision), or ``local:<folder>``."""
        if self.local is not None:
            return f"local:{self.local}"
        from huggingface_hub import HfApi

        return self._ask_hub(lambda: HfApi().dataset_info(self.repo_id, revision=self.revision).sha)

    def pinned(self) -> "HubRepo":
        """This repo at the commit its revision names now, so that every file read comes from one commit."""
        if self.local is not None:
            return self
        return HubRepo(self.repo_id, self.describe_revision())

    def list_files(self) -> list[str]:
        """Every file path in the repository, relative to its root, sorted."""
        if self.local is not None:
            return sorted(p.relative_to(self.local).as_posix() for p in self.local.rglob("*") if p.is_file())
        from huggingface_hub import HfApi

        return sorted(self._ask_hub(lambda: HfApi().list_repo_files(self.repo_id, repo_type="dataset",
                                                                    revision=self.revision)))

    def _ask_hub(self, call):
        try:
            return call()
        except Exception as error:  # huggingface_hub raises HTTP, connection and offline-mode errors
            raise MosDataError(f"cannot reach the hub for {self.repo_id}@{self.revision}: {error}. Check the "
                               f"network and $HF_TOKEN, or pass --source-root with a local copy "
                               f"(ROOT/{self.repo_id}/...)") from error

    def stream(self, data_files: list[str], columns: list[str] | None = None) -> Iterator[dict]:
        """The rows of ``data_files`` (paths relative to the repo), read by ``datasets.load_dataset`` (streaming)."""
        import datasets

        kwargs = {"columns": columns} if columns else {}
        where = self.local or f"{self.repo_id}@{self.revision}"
        try:
            if self.local is not None:
                rows = datasets.load_dataset(str(self.local), data_files=list(data_files), split="train",
                                             streaming=True, **kwargs)
            else:
                rows = datasets.load_dataset(self.repo_id, revision=self.revision, data_files=list(data_files),
                                             split="train", streaming=True, **kwargs)
            yield from rows
        except Exception as error:  # datasets raises many unrelated types (hub, JSON, Arrow)
            raise MosDataError(f"cannot read {list(data_files)} of {where}: {error}. Check the repository and "
                               "its files, or pass --source-root with a local copy") from error
