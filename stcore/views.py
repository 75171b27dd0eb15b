"""Lazy, read-only views of a snapshot: nothing is fetched until it is read.

``repo.snapshot("latest").sources["ai_hub"].data`` reads exactly the trees and blobs of that one
source. Trees are read once per view and kept; file bytes are fetched blob by blob.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from stcore.errors import ObjectNotFoundError
from stcore.globs import match_path
from stcore.models import SnapshotManifest, SourceSummary, TreeNode

if TYPE_CHECKING:
    from stcore.repo.repository import Repository


@attrs.frozen(kw_only=True)
class FileInfo:
    """One entry of a source, as listed by :meth:`SourceView.files`."""

    path: str
    kind: str
    size: int
    mode: int
    mtime: dt.datetime
    target: str | None = None


class SourceView:
    """One source of a snapshot."""

    def __init__(self, repository: Repository, snapshot_id: str, summary: SourceSummary) -> None:
        self._repository = repository
        self.snapshot_id = snapshot_id
        self.summary = summary
        self._nodes: dict[str, TreeNode] | None = None

    @property
    def name(self) -> str:
        return self.summary.name

    @property
    def type(self) -> str:
        return self.summary.type

    def _all_nodes(self) -> dict[str, TreeNode]:
        if self._nodes is None:
            self._nodes = {
                "/".join(path): node for path, node in self._repository.walk(self.summary.root)
            }
        return self._nodes

    def files(self, glob: str | None = None) -> list[FileInfo]:
        """Every entry (files, directories, symlinks), optionally filtered by a glob on its path."""
        infos = []
        for path, node in self._all_nodes().items():
            if glob is not None and not match_path(glob, path):
                continue
            infos.append(
                FileInfo(
                    path=path,
                    kind=node.kind,
                    size=node.size,
                    mode=node.mode,
                    mtime=dt.datetime.fromtimestamp(node.mtime_ns / 1e9, dt.UTC),
                    target=node.target,
                )
            )
        return infos

    def _file(self, path: str) -> TreeNode:
        node = self._all_nodes().get(path.strip("/"))
        if node is None or node.kind != "file":
            raise ObjectNotFoundError(
                f"snapshot {self.snapshot_id}, source {self.name!r} has no file {path!r}"
            )
        return node

    def iter_chunks(self, path: str) -> Iterator[bytes]:
        for blob_id in self._file(path).content:
            yield self._repository.read_blob(blob_id)

    def read_bytes(self, path: str) -> bytes:
        return b"".join(self.iter_chunks(path))

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read_bytes(path).decode(encoding)

    def read_json(self, path: str) -> Any:
        return json.loads(self.read_bytes(path))

    def iter_jsonl(self, path: str) -> Iterator[Any]:
        for line in self.read_bytes(path).splitlines():
            if line.strip():
                yield json.loads(line)

    def open(self, path: str) -> io.BytesIO:
        """A read-only binary file object of ``path``'s bytes."""
        return io.BytesIO(self.read_bytes(path))

    @property
    def data(self) -> Any:
        """The source's data in parsed form, as its source type defines it (JSON documents...)."""
        factory = self._repository.host.sources.get(self.type)
        reader = getattr(factory, "read_data", None)
        if reader is None:
            raise AttributeError(
                f"sources of type {self.type!r} have no parsed form; use files() and read_bytes()"
            )
        return reader(self)

    def __repr__(self) -> str:
        return f"<SourceView {self.name!r} ({self.type}) of {self.snapshot_id}>"


class _Sources(Mapping[str, SourceView]):
    def __init__(self, repository: Repository, manifest: SnapshotManifest) -> None:
        self._repository = repository
        self._manifest = manifest
        self._views: dict[str, SourceView] = {}

    def __getitem__(self, name: str) -> SourceView:
        if name not in self._views:
            summary = self._manifest.sources.get(name)
            if summary is None:
                available = ", ".join(self._manifest.sources) or "none"
                raise KeyError(
                    f"snapshot {self._manifest.id} has no source {name!r} (it has: {available})"
                )
            self._views[name] = SourceView(self._repository, self._manifest.id, summary)
        return self._views[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._manifest.sources)

    def __len__(self) -> int:
        return len(self._manifest.sources)


class Snapshot:
    """A snapshot's metadata and lazy access to its sources."""

    def __init__(self, repository: Repository, manifest: SnapshotManifest) -> None:
        self.manifest = manifest
        self.sources: Mapping[str, SourceView] = _Sources(repository, manifest)

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def time(self) -> dt.datetime:
        return self.manifest.time

    @property
    def tags(self) -> tuple[str, ...]:
        return self.manifest.tags

    @property
    def host(self) -> str:
        return self.manifest.host

    def __repr__(self) -> str:
        return f"<Snapshot {self.id} sources={list(self.sources)}>"
