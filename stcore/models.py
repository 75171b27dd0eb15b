"""Immutable values of the repository format: tree nodes, index entries, snapshot manifests.

Each value parses itself in a ``from_*`` classmethod and serialises with ``to_*``; the byte
layout they describe is written down in ``docs/format.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from typing import Any, Literal

import attrs

from stcore.errors import CorruptObjectError

BlobType = Literal["data", "tree"]
BLOB_TYPE_CODES: dict[BlobType, int] = {"data": 0, "tree": 1}
BLOB_TYPES_BY_CODE: dict[int, BlobType] = {v: k for k, v in BLOB_TYPE_CODES.items()}

SNAPSHOT_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


@attrs.frozen(kw_only=True)
class IndexEntry:
    """Where one blob lives: its pack, offset and lengths."""

    blob_id: bytes
    blob_type: BlobType
    pack_id: bytes
    offset: int
    stored_length: int
    raw_length: int


@attrs.frozen(kw_only=True)
class TreeNode:
    """One entry of a directory listing (a tree blob)."""

    name: str
    kind: Literal["file", "dir", "symlink"]
    mode: int
    mtime_ns: int
    size: int = 0
    content: tuple[bytes, ...] = ()
    subtree: bytes | None = None
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "type": self.kind,
            "mode": self.mode,
            "mtime_ns": self.mtime_ns,
        }
        if self.kind == "file":
            data["size"] = self.size
            data["content"] = [blob.hex() for blob in self.content]
        elif self.kind == "dir":
            data["subtree"] = self.subtree.hex() if self.subtree else None
        else:
            data["target"] = self.target
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TreeNode:
        try:
            kind = data["type"]
            if kind not in ("file", "dir", "symlink"):
                raise ValueError(f"unknown node type {kind!r}")
            subtree = data.get("subtree")
            return cls(
                name=data["name"],
                kind=kind,
                mode=int(data["mode"]),
                mtime_ns=int(data["mtime_ns"]),
                size=int(data.get("size", 0)),
                content=tuple(bytes.fromhex(h) for h in data.get("content", ())),
                subtree=bytes.fromhex(subtree) if subtree else None,
                target=data.get("target"),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptObjectError(f"malformed tree entry {data!r}: {exc}") from exc


@attrs.frozen(kw_only=True)
class SourceSummary:
    """One source inside a snapshot: its type, root tree and statistics."""

    name: str
    type: str
    root: bytes
    options: dict[str, Any] = attrs.field(factory=dict)
    files: int = 0
    dirs: int = 0
    size: int = 0
    errors: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "root": self.root.hex(),
            "options": self.options,
            "files": self.files,
            "dirs": self.dirs,
            "size": self.size,
            "errors": self.errors,
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> SourceSummary:
        return cls(
            name=name,
            type=data["type"],
            root=bytes.fromhex(data["root"]),
            options=dict(data.get("options", {})),
            files=int(data.get("files", 0)),
            dirs=int(data.get("dirs", 0)),
            size=int(data.get("size", 0)),
            errors=int(data.get("errors", 0)),
        )


def new_snapshot_id(now: dt.datetime | None = None) -> str:
    """A snapshot id that sorts by time and shows the UTC date: ``20261124T131102Z-3fa2c1d9``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now.astimezone(dt.UTC).strftime(SNAPSHOT_TIME_FORMAT)}-{secrets.token_hex(4)}"


@attrs.frozen(kw_only=True)
class SnapshotManifest:
    """Everything one backup recorded: when, where, what, and how big."""

    id: str
    time: dt.datetime
    host: str
    tags: tuple[str, ...] = ()
    program_version: str = ""
    sources: dict[str, SourceSummary] = attrs.field(factory=dict)
    #: bytes read from the sources; bytes of packs and index this backup added (stored size,
    #: not counting the manifest itself, whose size cannot be inside it).
    size: int = 0
    added_bytes: int = 0
    partial: bool = False
    errors: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id.rsplit("-", 1)[-1]

    @property
    def files(self) -> int:
        """Files in all sources together."""
        return sum(s.files for s in self.sources.values())

    @property
    def source_types(self) -> dict[str, str]:
        """Source name -> source type (``{"ai_hub": "json", ...}``)."""
        return {name: s.type for name, s in self.sources.items()}

    def summary(self) -> dict[str, Any]:
        """The fields listings show (``stcore snapshots --json``), without per-source detail."""
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "host": self.host,
            "tags": list(self.tags),
            "sources": self.source_types,
            "files": self.files,
            "size": self.size,
            "added_bytes": self.added_bytes,
            "partial": self.partial,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "id": self.id,
            "time": self.time.isoformat(),
            "host": self.host,
            "tags": list(self.tags),
            "program_version": self.program_version,
            "sources": {name: s.to_json() for name, s in self.sources.items()},
            "size": self.size,
            "added_bytes": self.added_bytes,
            "partial": self.partial,
            "errors": list(self.errors),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotManifest:
        try:
            return cls(
                id=data["id"],
                time=dt.datetime.fromisoformat(data["time"]),
                host=data["host"],
                tags=tuple(data.get("tags", ())),
                program_version=data.get("program_version", ""),
                sources={
                    name: SourceSummary.from_json(name, s)
                    for name, s in data.get("sources", {}).items()
                },
                size=int(data.get("size", 0)),
                added_bytes=int(data.get("added_bytes", 0)),
                partial=bool(data.get("partial", False)),
                errors=tuple(data.get("errors", ())),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptObjectError(f"malformed snapshot manifest: {exc}") from exc


def default_host() -> str:
    return os.uname().nodename
