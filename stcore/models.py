"""Immutable values of the repository format: tree nodes, index entries, snapshot manifests.

Each value parses itself in a ``from_*`` classmethod and serialises with ``to_*``; the byte
layout they describe is written down in ``docs/format.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
from typing import Annotated, Any, Literal

import attrs
import msgspec

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


class TreeNode(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One entry of a directory listing (a tree blob).

    A msgspec ``Struct``: made in C, so a restore or a check that reads every tree of the Linux
    source (83,000 entries) builds its nodes in a quarter of the time an attrs class took; and,
    holding only strings, numbers and ids, never part of a reference cycle, so the cyclic
    collector does not track it (``gc=False``). ``msgspec.structs.replace`` makes a changed copy.
    """

    name: str
    kind: Literal["file", "dir", "symlink"]
    mode: int
    mtime_ns: int
    size: int = 0
    content: tuple[bytes, ...] = ()
    subtree: bytes | None = None
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON object, its keys in sorted order (so a tree is written in its
        canonical form without sorting every entry's keys again)."""
        kind = self.kind
        if kind == "file":
            return {
                "content": [blob.hex() for blob in self.content],
                "mode": self.mode,
                "mtime_ns": self.mtime_ns,
                "name": self.name,
                "size": self.size,
                "type": kind,
            }
        if kind == "dir":
            return {
                "mode": self.mode,
                "mtime_ns": self.mtime_ns,
                "name": self.name,
                "subtree": self.subtree.hex() if self.subtree else None,
                "type": kind,
            }
        return {
            "mode": self.mode,
            "mtime_ns": self.mtime_ns,
            "name": self.name,
            "target": self.target,
            "type": kind,
        }

    @classmethod
    def from_json(cls, data: object) -> TreeNode:
        """Parse one entry, checking every field's type and range: trees come from storage and
        are not trusted (a hostile tree must be refused before anything is restored). Written
        for speed: a restore of a large tree parses every entry."""
        try:
            if type(data) is not dict:
                raise TypeError("a tree entry must be an object")
            kind = data["type"]
            name = data["name"]
            mode = data["mode"]
            mtime_ns = data["mtime_ns"]
            size = data.get("size", 0)
            kind = _KINDS.get(kind) if type(kind) is str else None
            if kind is None:
                raise ValueError(f"unknown node type {data['type']!r}")
            if type(name) is not str:
                raise TypeError(f"name must be a string, not {type(name).__name__}")
            if type(mode) is not int or not 0 <= mode <= MAX_MODE:
                raise ValueError(f"mode {mode!r} is not a mode")
            mode = _MODES.setdefault(mode, mode)
            if type(mtime_ns) is not int or not -(2**63) <= mtime_ns < 2**63:
                raise ValueError(f"mtime_ns {mtime_ns!r} is out of range")
            if type(size) is not int or not 0 <= size < 2**63:
                raise ValueError(f"size {size!r} is out of range")
            content = data.get("content", ())
            if type(content) is not list and content != ():
                raise TypeError("content must be a list")
            ids = tuple(map(_blob_id_fast, content))
            subtree = data.get("subtree")
            target = data.get("target") if kind == "symlink" else None
            if kind == "symlink" and type(target) is not str:
                raise TypeError("a symlink's target must be a string")
            node = cls(
                name=name,
                kind=kind,
                mode=mode,
                mtime_ns=mtime_ns,
                size=size,
                content=ids,
                subtree=_blob_id(subtree, "subtree") if subtree is not None else None,
                target=target,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CorruptObjectError(f"malformed tree entry: {_short(exc)}") from exc
        if node.kind == "dir" and node.subtree is None:
            raise CorruptObjectError(f"malformed tree entry: directory {name!r} has no subtree")
        return node

    @classmethod
    def list_from_tree(cls, data: bytes) -> list[TreeNode] | None:
        """The entries of a tree blob (``{"nodes": [...]}``), parsed and checked in C by msgspec
        against the rules :meth:`from_json` applies; ``None`` for anything msgspec refuses or a
        rule rejects, rightly or not (a name that is not UTF-8 is stored as a lone surrogate,
        which msgspec does not read), so the caller parses it entry by entry and reports a
        problem in :meth:`from_json`'s words. A third of the time a check or a restore of the
        Linux source spent on its trees."""
        try:
            wire = _decode_tree(data)
        except (msgspec.DecodeError, RecursionError):
            return None
        nodes: list[TreeNode] = []
        append = nodes.append
        try:
            for entry in wire.nodes:
                kind = _KINDS[entry.type]
                subtree = entry.subtree
                if subtree is None and kind == "dir":
                    return None
                target = entry.target if kind == "symlink" else None
                if kind == "symlink" and target is None:
                    return None
                mode = entry.mode
                append(
                    cls(
                        name=entry.name,
                        kind=kind,
                        mode=_MODES.setdefault(mode, mode),
                        mtime_ns=entry.mtime_ns,
                        size=entry.size,
                        content=tuple(map(bytes.fromhex, entry.content)),
                        subtree=_blob_id(subtree, "subtree") if subtree is not None else None,
                        target=target,
                    )
                )
        except ValueError:  # an id that is not hex, or a subtree id not 64 characters long
            return None
        return nodes


#: each kind's one string: the JSON decoder makes a new one per entry, and a restore holds
#: every entry of the snapshot (with :data:`_MODES`, 6 MiB for 78,000 files)
_KINDS: dict[str, Literal["file", "dir", "symlink"]] = {k: k for k in ("file", "dir", "symlink")}
#: each mode seen, as one int object (at most ``MAX_MODE + 1`` of them, however hostile the tree)
_MODES: dict[int, int] = {}


def _blob_id_fast(value: object) -> bytes:
    if type(value) is not str or len(value) != 64:
        raise ValueError("a content id must be a 64-digit hex string")
    return bytes.fromhex(value)


#: the largest mode a tree may record: permission bits plus the file type bits of ``st_mode``
MAX_MODE = 0o177777


#: a content id as :meth:`TreeNode.from_json` takes it: 64 characters (hex, checked after)
_WireId = Annotated[str, msgspec.Meta(min_length=64, max_length=64)]


class _WireNode(msgspec.Struct, forbid_unknown_fields=True):
    """A tree entry as stored, with :meth:`TreeNode.from_json`'s types and ranges, or stricter:
    a key stcore does not write, or a ``target`` that is not text on an entry that is not a
    link, sends the tree to the checked parse, which decides as it always did. (msgspec skips
    a key it does not know without reading it: a damaged key byte would drop a field, and an
    undecodable value in it would pass.)"""

    type: Literal["file", "dir", "symlink"]
    name: str
    mode: Annotated[int, msgspec.Meta(ge=0, le=MAX_MODE)]
    mtime_ns: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
    size: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] = 0
    content: list[_WireId] = []
    subtree: str | None = None
    target: str | None = None


class _WireTree(msgspec.Struct, forbid_unknown_fields=True):
    nodes: list[_WireNode]


_decode_tree = msgspec.json.Decoder(_WireTree).decode


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a string, not {type(value).__name__}")
    return value


def _integer(value: object, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{field} must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{field} {value} is out of range")
    return value


def _list(value: object) -> list[object]:
    if not isinstance(value, list | tuple):
        raise TypeError(f"expected a list, not {type(value).__name__}")
    return list(value)


def _blob_id(value: object, field: str) -> bytes:
    text = _text(value, field)
    if len(text) != 64:
        raise ValueError(f"{field} must be a 64-digit hex id")
    return bytes.fromhex(text)


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
    def from_json(cls, name: str, data: object) -> SourceSummary:
        if not isinstance(data, dict):
            raise TypeError(f"source {name!r} must be an object")
        options = data.get("options", {})
        if not isinstance(options, dict):
            raise TypeError(f"options of source {name!r} must be an object")
        return cls(
            name=_text(name, "source name"),
            type=_text(data["type"], "source type"),
            root=_blob_id(data["root"], "root"),
            options=options,
            files=_integer(data.get("files", 0), "files", 0, 2**63 - 1),
            dirs=_integer(data.get("dirs", 0), "dirs", 0, 2**63 - 1),
            size=_integer(data.get("size", 0), "size", 0, 2**63 - 1),
            errors=_integer(data.get("errors", 0), "errors", 0, 2**63 - 1),
        )


#: what :func:`new_snapshot_id` makes: a UTC time to the second and eight hex digits
SNAPSHOT_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")


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
    def from_json(cls, data: object) -> SnapshotManifest:
        """Parse a manifest, checking every field: manifests come from storage."""
        try:
            if not isinstance(data, dict):
                raise TypeError("a manifest must be an object")
            sources = data.get("sources", {})
            if not isinstance(sources, dict):
                raise TypeError("sources must be an object")
            time = dt.datetime.fromisoformat(_text(data["time"], "time"))
            return cls(
                id=_text(data["id"], "id"),
                time=time if time.tzinfo else time.replace(tzinfo=dt.UTC),
                host=_text(data["host"], "host"),
                tags=tuple(_text(t, "tag") for t in _list(data.get("tags", ()))),
                program_version=_text(data.get("program_version", ""), "program_version"),
                sources={name: SourceSummary.from_json(name, s) for name, s in sources.items()},
                size=_integer(data.get("size", 0), "size", 0, 2**63 - 1),
                added_bytes=_integer(data.get("added_bytes", 0), "added_bytes", 0, 2**63 - 1),
                partial=bool(data.get("partial", False)),
                errors=tuple(_text(e, "error") for e in _list(data.get("errors", ()))),
            )
        except (KeyError, ValueError, TypeError, OverflowError) as exc:
            raise CorruptObjectError(f"malformed snapshot manifest: {_short(exc)}") from exc


def default_host() -> str:
    return os.uname().nodename
