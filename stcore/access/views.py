"""Lazy, read-only views of a snapshot: nothing is fetched until it is read.

``repo.snapshot("latest").sources["ai_hub"].data`` reads exactly the trees and blobs of that one
source. Trees are read once per view and kept. File bytes are fetched in bulk
(:meth:`Store.read_blobs`): a read that spans many blobs, such as a database stored one page
per blob, costs a range request per pack rather than one per blob, and still fetches only the
blobs it touches (plus, at most, the small gaps between neighbours in one pack).
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import io
import json
import secrets
import sqlite3
from collections.abc import Container, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from stcore import jsondoc
from stcore.access.lent import LentBuffer, lend
from stcore.errors import CorruptObjectError, NotADatabaseError, PathNotFoundError
from stcore.globs import match_path
from stcore.localfiles import atomic_write
from stcore.models import SnapshotManifest, SourceSummary, TreeNode
from stcore.repo.reader import read_files, read_in_order
from stcore.streams import SQLITE_MAGIC

if TYPE_CHECKING:
    from stcore.repo.store import Store

#: chunks a :class:`SnapshotFile` keeps after reading them (at most 4 MiB each by default)
KEPT_CHUNKS = 4


@attrs.frozen(kw_only=True)
class FileInfo:
    """One entry of a source, as listed by :meth:`SourceView.files`."""

    path: str
    kind: str
    size: int
    mode: int
    mtime: dt.datetime
    target: str | None = None


def content_key(blob_ids: Iterable[bytes]) -> str:
    """The hex key of a file's content: a hash of its chunk ids, which are hashes of the
    chunks (keyed, in an encrypted repository)."""
    return hashlib.blake2b(b"".join(blob_ids), digest_size=16).hexdigest()


def _info(path: str, node: TreeNode) -> FileInfo:
    return FileInfo(
        path=path,
        kind=node.kind,
        size=node.size,
        mode=node.mode,
        mtime=dt.datetime.fromtimestamp(node.mtime_ns / 1e9, dt.UTC),
        target=node.target,
    )


class SnapshotFile(io.RawIOBase):
    """A seekable, read-only file over a backed-up file's chunks, fetching only what is read.

    Each read maps its byte range to the chunks covering it (from their sizes in the index) and
    fetches just those blobs, together: neighbours in a pack cost one range request. The last
    :data:`KEPT_CHUNKS` chunks read are kept, so small reads, and readers that go back and
    forth between a file's footer and its body (Parquet), cost one fetch per chunk: the chunk
    is this file's read-ahead block. On a remote repository the object cache keeps every
    fetched blob for next time.

    ``read`` copies the bytes once (none when a read is exactly one chunk); ``read_buffer``,
    which pyarrow prefers, fills a :class:`~stcore.access.lent.LentBuffer` in place.
    """

    def __init__(self, repository: Store, node: TreeNode, name: str) -> None:
        super().__init__()
        self.name = name
        self._repository = repository
        self._ids = node.content
        self._starts: list[int] = []
        self._lengths: list[int] = []
        offset = 0
        for blob_id in self._ids:
            self._starts.append(offset)
            entry = repository.index.get(blob_id)
            if entry is None:
                raise CorruptObjectError(
                    f"{name}: blob {blob_id.hex()} is not in the index; run `stcore check`"
                )
            self._lengths.append(entry.raw_length)
            offset += entry.raw_length
        self.size = offset
        self._pos = 0
        #: chunk index -> plaintext, least recently used first
        self._kept: dict[int, bytes] = {}
        plain = repository.chunk_cache
        #: decoded chunks kept on local disk, read back a slice at a time (None: not used)
        self._plain = plain if plain is not None and plain.admits(self.size) else None
        lend(self)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        bases = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}
        if whence not in bases:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        base = bases[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def _chunks(
        self, first: int, last: int, skip: Container[int]
    ) -> Iterator[tuple[int, bytes | None]]:
        """Chunks ``first`` to ``last`` in order, None for those in ``skip``: kept ones reused,
        the others fetched in bulk and kept (the oldest dropped), and on disk for next time."""
        kept = self._kept
        reused = {i: kept.pop(i) for i in range(first, last + 1) if i in kept}
        wanted = [i for i in range(first, last + 1) if i not in reused and i not in skip]
        fetched = read_in_order(self._repository, [self._ids[i] for i in wanted])
        for index in range(first, last + 1):
            if index in skip:
                yield index, None
                continue
            if index in reused:
                chunk = reused[index]
            else:
                chunk = next(fetched)
                if self._plain is not None:
                    self._plain.put(self._ids[index], chunk)
            kept[index] = chunk
            if len(kept) > KEPT_CHUNKS:
                del kept[next(iter(kept))]
            yield index, chunk

    def _from_disk(self, first: int, last: int, end: int) -> dict[int, bytes | memoryview]:
        """The parts of chunks ``first`` to ``last`` under ``[pos, end)`` that the chunk cache
        holds (each checked), by chunk index; kept chunks are not looked up."""
        if self._plain is None:
            return {}
        found: dict[int, bytes | memoryview] = {}
        for index in range(first, last + 1):
            if index in self._kept:
                continue
            start = self._starts[index]
            begin = max(self._pos, start) - start
            stop = min(end, start + self._lengths[index]) - start
            piece = self._plain.read(self._ids[index], begin, stop)
            if piece is not None:
                found[index] = piece
        return found

    def _pieces(self, count: int) -> Iterator[memoryview | bytes]:
        """The next ``count`` bytes (at most to the end) as slices of chunks; moves past them."""
        end = min(self._pos + count, self.size)
        if end <= self._pos:
            return
        first = bisect.bisect_right(self._starts, self._pos) - 1
        last = bisect.bisect_right(self._starts, end - 1) - 1
        from_disk = self._from_disk(first, last, end)
        for index, chunk in self._chunks(first, last, from_disk):
            if chunk is None:
                piece = from_disk[index]
                self._pos += len(piece)
                yield piece
                continue
            inside = self._pos - self._starts[index]
            length = min(end - self._pos, len(chunk) - inside)
            self._pos += length
            yield chunk if length == len(chunk) else memoryview(chunk)[inside : inside + length]

    @property
    def content_key(self) -> str:
        """A key of the file's content (its chunk ids): equal across snapshots, and only
        there, for a file whose bytes are unchanged."""
        return content_key(self._ids)

    def span(
        self, start: int | None = None, end: int | None = None
    ) -> tuple[list[bytes], int, int]:
        """What bytes ``[start, end)`` take (``None`` = the file's start or end, negative =
        from the end, as fsspec's ``cat_file``): the ids of the chunks covering them, where
        the range begins in the first of those chunks, and its length."""
        size = self.size
        begin = 0 if start is None else (start if start >= 0 else max(0, size + start))
        stop = size if end is None else (end if end >= 0 else max(0, size + end))
        stop = min(stop, size)
        if stop <= begin:
            return [], 0, 0
        first = bisect.bisect_right(self._starts, begin) - 1
        last = bisect.bisect_right(self._starts, stop - 1) - 1
        return list(self._ids[first : last + 1]), begin - self._starts[first], stop - begin

    def _remaining(self, size: int | None) -> int:
        left = max(0, self.size - self._pos)
        return left if size is None or size < 0 else min(size, left)

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        target = memoryview(buffer).cast("B")
        end = min(self._pos + len(target), self.size)
        if end <= self._pos:
            return 0
        first = bisect.bisect_right(self._starts, self._pos) - 1
        last = bisect.bisect_right(self._starts, end - 1) - 1
        # what the chunk cache holds goes straight into the target, checked there ...
        done: set[int] = set()
        for index in range(first, last + 1):
            if self._plain is None or index in self._kept:
                continue
            start = self._starts[index]
            begin, stop = max(self._pos, start), min(end, start + self._lengths[index])
            out = target[begin - self._pos : stop - self._pos]
            if self._plain.read_into(self._ids[index], begin - start, stop - start, out):
                done.add(index)
        # ... and the rest is copied from kept or freshly decoded chunks
        for index, chunk in self._chunks(first, last, done):
            if chunk is None:
                continue
            start = self._starts[index]
            begin, stop = max(self._pos, start), min(end, start + len(chunk))
            target[begin - self._pos : stop - self._pos] = memoryview(chunk)[
                begin - start : stop - start
            ]
        written = end - self._pos
        self._pos = end
        return written

    def read(self, size: int | None = -1) -> bytes:
        self._check_open()
        pieces = list(self._pieces(self._remaining(size)))
        if len(pieces) == 1 and isinstance(pieces[0], bytes):
            return pieces[0]  # exactly one whole chunk: no copy at all
        return b"".join(pieces)

    def readall(self) -> bytes:
        return self.read(-1)

    def read_buffer(self, size: int | None = -1) -> LentBuffer:
        """``read`` into a buffer native readers may keep (pyarrow calls this, not ``read``)."""
        self._check_open()
        buffer = LentBuffer(self._remaining(size))
        count = self.readinto(buffer)
        del buffer[count:]
        return buffer


class SourceView:
    """One source of a snapshot."""

    def __init__(self, repository: Store, snapshot_id: str, summary: SourceSummary) -> None:
        self._repository = repository
        self.snapshot_id = snapshot_id
        self.summary = summary
        self._nodes: dict[str, TreeNode] | None = None
        self._trees: dict[bytes, dict[str, TreeNode]] = {}

    @property
    def name(self) -> str:
        return self.summary.name

    @property
    def type(self) -> str:
        return self.summary.type

    def _all_nodes(self) -> dict[str, TreeNode]:
        if self._nodes is None:
            root = self.summary.root
            trees = self._repository.read_trees(root)  # a bulk read per level of folders
            self._nodes = {
                "/".join(path): node for path, node in self._repository.walk(root, trees=trees)
            }
        return self._nodes

    def files(self, glob: str | None = None) -> list[FileInfo]:
        """Every entry (files, directories, symlinks), optionally filtered by a glob on its path."""
        infos = []
        for path, node in self._all_nodes().items():
            if glob is not None and not match_path(glob, path):
                continue
            infos.append(_info(path, node))
        return infos

    def _lookup(self, path: str) -> TreeNode | None:
        """The node at ``path``, reading only the trees on the way down to it."""
        if self._nodes is not None:
            return self._nodes.get(path.strip("/"))
        tree_id: bytes | None = self.summary.root
        node: TreeNode | None = None
        for name in path.strip("/").split("/"):
            if tree_id is None:
                return None
            nodes = self._trees.get(tree_id)
            if nodes is None:
                nodes = {n.name: n for n in self._repository.read_tree(tree_id)}
                self._trees[tree_id] = nodes
            node = nodes.get(name)
            if node is None:
                return None
            tree_id = node.subtree if node.kind == "dir" else None
        return node

    def _file(self, path: str) -> TreeNode:
        node = self._lookup(path)
        if node is None or node.kind != "file":
            raise PathNotFoundError(
                f"snapshot {self.snapshot_id}, source {self.name!r} has no file {path!r}"
            )
        return node

    def info(self, path: str) -> FileInfo:
        """Metadata of one entry, reading only the trees on its path."""
        node = self._lookup(path)
        if node is None:
            raise PathNotFoundError(
                f"snapshot {self.snapshot_id}, source {self.name!r} has no entry {path!r}"
            )
        return _info(path.strip("/"), node)

    def iter_chunks(self, path: str) -> Iterator[bytes]:
        """The file's chunks in order, fetched a window at a time with few range requests."""
        yield from read_in_order(self._repository, self._file(path).content)

    def read_many(self, paths: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """``(path, bytes)`` of each file, in the order given, read together.

        Files are fetched in bulk a window (32 MiB) at a time: their blobs are grouped by pack
        and neighbours read with one range request, so thousands of small files cost a few
        requests. Every path is looked up before anything is read.
        """
        wanted = list(paths)
        nodes = [self._file(path) for path in wanted]
        contents = read_files(self._repository, [node.content for node in nodes])
        yield from zip(wanted, contents, strict=True)

    def read_bytes(self, path: str) -> bytes:
        return b"".join(self.iter_chunks(path))

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return self.read_bytes(path).decode(encoding)

    def read_json(self, path: str) -> Any:
        return jsondoc.loads(self.read_bytes(path))

    def iter_jsonl(self, path: str | Iterable[str]) -> Iterator[Any]:
        """The records of a JSON-lines file, or of several (a list of paths, read together
        with :meth:`read_many`) one file after another."""
        paths = [path] if isinstance(path, str) else path
        for _, body in self.read_many(paths):
            for line in body.splitlines():
                if line.strip():
                    yield json.loads(line)

    def open(self, path: str) -> SnapshotFile:
        """A seekable, read-only binary file of ``path`` that fetches only the chunks read."""
        return SnapshotFile(self._repository, self._file(path), path)

    def connect(self, path: str | None = None) -> sqlite3.Connection:
        """A read-only sqlite3 connection to a backed-up database (a ``sqlite`` source's file).

        The database is materialised once into the local cache, named by its content, and
        opened immutable; later calls (and other processes) reuse that copy. It counts against
        the cache bound and shows in ``stcore cache stats``. Its blobs are written straight
        into it, not also into the object cache. A file that does not start with SQLite's
        header is refused before anything is written. For an encrypted repository no
        plaintext copy stays on disk: each call writes a private copy, opens it and unlinks it
        at once (the open connection keeps reading it).
        """
        if path is None:
            files = [f.path for f in self.files() if f.kind == "file"]
            if len(files) != 1:
                raise PathNotFoundError(
                    f"source {self.name!r} holds {len(files)} files; name the database to open"
                )
            path = files[0]
        node = self._file(path)
        name = content_key(node.content)
        if self._repository.encrypted:
            directory = self._repository.cache_dir / "sqlite"
            target = directory / f".{name}-{secrets.token_hex(8)}.db"
            atomic_write(target, self._database_chunks(path, node))
            try:
                return _open_immutable(target)
            finally:
                target.unlink(missing_ok=True)
        cache = self._repository.local_cache
        target = cache.put_file("sqlite", f"{name}.db", self._database_chunks(path, node))
        return _open_immutable(target)

    def _database_chunks(self, path: str, node: TreeNode) -> Iterator[bytes]:
        """``path``'s chunks, refused before the first is written anywhere unless they start
        with SQLite's header (the first read brings it anyway: no extra request). They bypass
        the object cache: the working copy is their cached form."""
        chunks = read_in_order(self._repository, node.content, cached=False)
        first = next(chunks, b"")
        if not first.startswith(SQLITE_MAGIC):
            raise NotADatabaseError(
                f"snapshot {self.snapshot_id}, source {self.name!r}: {path!r} is not a SQLite "
                "database (use open() or read_bytes())"
            )
        yield first
        yield from chunks

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


def _open_immutable(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)


class _Sources(Mapping[str, SourceView]):
    def __init__(self, repository: Store, manifest: SnapshotManifest) -> None:
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

    def __init__(self, repository: Store, manifest: SnapshotManifest) -> None:
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
