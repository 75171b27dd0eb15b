"""Backup: read sources into one new snapshot (``stcore backup``).

Entries stream from each source, depth-first; each file is cut into chunks (FastCDC, or runs of
whole pages for SQLite databases), each chunk is named by its id and, unless the index or the
packer already has it, sealed and packed. Directories become tree blobs as they close. Then one
index object for the new packs is written, and the snapshot manifest last, so every snapshot a
reader can see has all of its data; past a threshold, the small index objects are then merged
into one (:mod:`~stcore.repo.compact`). The whole run holds a shared repository lock, so a
prune cannot delete a pack the backup deduplicates against. A files cache (path, size, mtime, ctime,
inode -> content) lets an unchanged file skip reading. :func:`plan_backup` is the dry run: the same
scan, and what the files cache says of each file, with nothing read and nothing written.

A file entry with a negative size is one its source cannot measure before reading it (standard
input): it is chunked as a stream of unknown length.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time as _time
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from stcore.errors import LeftOut, SourceError, StcoreError
from stcore.interfaces import ProgressCallback, Source, SourceEntry, no_progress
from stcore.models import (
    BlobType,
    SnapshotManifest,
    SourceSummary,
    TreeNode,
    default_host,
    new_snapshot_id,
)
from stcore.repo.chunker import Chunker, ChunkerParams
from stcore.repo.compact import compact_index
from stcore.repo.damage import load_damage
from stcore.repo.filescache import (
    SAFETY_NS,
    FilesCache,
    NewRows,
    RecordedFiles,
    files_cache_key,
)
from stcore.repo.format import encode_index, encode_tree
from stcore.repo.index import BlobIndex
from stcore.repo.locks import DEFAULT_LOCK_WAIT, repository_lock
from stcore.repo.packer import Packer
from stcore.repo.store import Store
from stcore.version import __version__

log = logging.getLogger("stcore.backup")


@attrs.frozen(kw_only=True)
class BackupResult:
    """The new snapshot, and the entries that could not be read (path, reason)."""

    manifest: SnapshotManifest
    errors: tuple[tuple[str, str], ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.errors)

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"<BackupResult {m.id}: {m.files} files, "
            f"{m.size} bytes, {m.added_bytes} added, {len(self.errors)} errors>"
        )


@attrs.define
class _DirBuilder:
    """A directory whose entries are still arriving. Only its name is kept, not its path (nor
    the entry, which holds one): a path per level costs memory quadratic in the depth."""

    name: str
    mode: int
    mtime_ns: int
    nodes: list[TreeNode] = attrs.field(factory=list)


@attrs.define
class _BackupSession:
    """The state of one backup while it runs."""

    packer: Packer
    progress: ProgressCallback
    errors: list[tuple[str, str]] = attrs.field(factory=list)
    files: int = 0
    dirs: int = 0
    size: int = 0
    #: files-cache state: what the last backup recorded, what this one will, and the cut-off
    cached: dict[str, RecordedFiles] = attrs.field(factory=dict)
    record: dict[str, NewRows] = attrs.field(factory=dict)
    started_ns: int = 0
    #: progress not yet reported: files done, and bytes of files done without reading them
    pending_files: int = 0
    pending_bytes: int = 0

    def file_done(self, unread: int | None) -> None:
        """Count one more file for progress: ``unread`` is its size when the files cache spared
        reading it, None when it was read. A file that was read is reported at once (reading
        it took far longer than the call); unchanged ones every ``PROGRESS_FILES`` files or
        ``PROGRESS_STEP`` bytes: a no-change backup of 78,000 files spent 0.26 s in the
        callback alone. A callback that stops the run (the daemon's) is thus heard after the
        file being read, or within a few milliseconds of unchanged files."""
        self.pending_files += 1
        if unread is None:
            self.report_progress()
            return
        self.pending_bytes += unread
        if self.pending_files >= PROGRESS_FILES or self.pending_bytes >= PROGRESS_STEP:
            self.report_progress()

    def report_progress(self) -> None:
        """Hand the callback what is pending (a daemon stopping the run hears it here too)."""
        files, unread = self.pending_files, self.pending_bytes
        self.pending_files = self.pending_bytes = 0
        if unread:
            self.progress("bytes", unread)
        if files:
            self.progress("file", files)

    def report(self, path: str, exc: BaseException) -> None:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.errors.append((path, message))


#: a file's files-cache row and the blob ids it records
Known = tuple[int, tuple[bytes, ...]]


#: bytes read between two "bytes" progress events of one file
PROGRESS_STEP = 1024 * 1024
#: unchanged files (not read: the files cache knew them) between two "file" progress events
PROGRESS_FILES = 64

#: entries the backup loop looks ahead to start reading files early (``SourceEntry.prefetch``)
READ_AHEAD_ENTRIES = 32


def _read_ahead(
    entries: Iterable[SourceEntry], session: _BackupSession, source_name: str
) -> Iterator[tuple[SourceEntry, Known | None]]:
    """``entries`` in order, each with what the files cache recorded for it (looked up once),
    and each file's ``prefetch`` called ``READ_AHEAD_ENTRIES`` before the loop reaches it,
    unless the files cache will spare reading it."""
    window: collections.deque[tuple[SourceEntry, Known | None]] = collections.deque()
    cached = session.cached.get(source_name)
    if cached is not None and not len(cached):
        cached = None  # nothing recorded: no path to hash
    for entry in entries:
        known = None
        if entry.kind == "file":
            # the row recorded at the last backup, if the change token still matches (whether
            # its blobs are all still stored is the caller's check)
            token = entry.change_token
            if cached is not None and token is not None:
                known = cached.unchanged("/".join(entry.path), token)
            if known is None and entry.prefetch is not None:
                entry.prefetch()
        window.append((entry, known))
        if len(window) > READ_AHEAD_ENTRIES:
            yield window.popleft()
    yield from window


def backup(
    store: Store,
    sources: Sequence[Source],
    *,
    tags: Iterable[str] = (),
    hostname: str | None = None,
    progress: ProgressCallback | None = None,
    time: dt.datetime | None = None,
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> BackupResult:
    """Back up ``sources`` into one new snapshot and return it with any per-entry errors.

    Unreadable entries are skipped and listed in the result (the manifest is marked
    ``partial``); a source that cannot be read at all raises :class:`SourceError` and
    nothing is written.
    """
    if not sources:
        raise SourceError("nothing to back up: give at least one source")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise SourceError(f"source names must be unique, got {names}")
    now = time or dt.datetime.now(dt.UTC)
    snapshot_id = new_snapshot_id(now)
    store.host.notify_backup_started(store.location, snapshot_id, names)
    # A shared lock for the whole backup: prune (exclusive) cannot delete a pack this backup
    # dedups against between our index load and our manifest.
    with repository_lock(store.backend, exclusive=False, purpose="backup", wait=lock_wait):
        index = store.reload_index()  # after the lock: what a prune left is current
        for blob_id, packs in load_damage(store.cache_dir).items():
            if not index.avoid_packs(blob_id, packs):
                index.discard(blob_id)  # only damaged copies: store it again if it comes by
        files_cache = FilesCache(
            store.cache_dir / "files.sqlite", files_cache_key(store.master_key)
        )
        try:
            run = _Backup(store=store, progress=progress or no_progress)
            return run.run(sources, snapshot_id, now, tags, hostname, files_cache)
        finally:
            files_cache.close()


@attrs.define
class _Backup:
    """One backup while it runs: the store it writes to and the progress callback."""

    store: Store
    progress: ProgressCallback
    # looked up once: they are used for every blob
    _index: BlobIndex = attrs.field(init=False)
    _blob_id: Callable[[bytes], bytes] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._index = self.store.index
        self._blob_id = self.store.codec.blob_id

    def run(
        self,
        sources: Sequence[Source],
        snapshot_id: str,
        now: dt.datetime,
        tags: Iterable[str],
        hostname: str | None,
        files_cache: FilesCache,
    ) -> BackupResult:
        written: list[int] = []
        session = _BackupSession(
            packer=Packer(
                self.store.backend,
                self.store.codec,
                pack_size=self.store.config.pack_size,
                workers=self.store.workers,
                # Over a network a write waits on latency, not the disk: keep more going.
                writes_in_flight=3 if self.store.remote else 2,
                on_pack_written=written.append,
            ),
            progress=self.progress,
            started_ns=_time.time_ns(),
        )
        for source in sources:
            session.cached[source.name] = files_cache.load(source.name)
            session.record[source.name] = NewRows()
        summaries: dict[str, SourceSummary] = {}
        try:
            for source in sources:
                summaries[source.name] = self._backup_source(source, session)
            entries = session.packer.finish()
        except BaseException:
            session.packer.close()
            raise
        finally:
            for source in sources:
                source.close()
        added = sum(written)
        if entries:
            body = encode_index(self.store.codec, entries)
            self.store.write_content_addressed("index", body)
            added += len(body)
            self.store.index.merge(entries)
        manifest = SnapshotManifest(
            id=snapshot_id,
            time=now,
            host=hostname or default_host(),
            tags=tuple(sorted(set(tags))),
            program_version=__version__,
            sources=summaries,
            size=session.size,
            added_bytes=added,
            partial=bool(session.errors),
            errors=tuple(f"{path}: {message}" for path, message in session.errors[:100]),
        )
        self.store.write_manifest(manifest)
        # Recorded only now: every blob named in the cache is in an index object that exists.
        for name, recorded in session.record.items():
            files_cache.replace(name, recorded, previous=session.cached.get(name))
        try:
            compact_index(self.store)  # the snapshot is safe: this only tidies
        except (StcoreError, OSError) as exc:
            log.warning("the index was not compacted (%s); the next backup tries again", exc)
        self.store.host.notify_backup_finished(self.store.location, manifest)
        return BackupResult(manifest=manifest, errors=tuple(session.errors))

    def _store_blob(
        self, session: _BackupSession, blob_type: BlobType, data: bytes, paged: bool = False
    ) -> bytes:
        blob_id = self._blob_id(data)
        if blob_id not in self._index:
            # once: it skips one added already
            session.packer.add(blob_id, blob_type, data, paged)
        return blob_id

    def _backup_source(self, source: Source, session: _BackupSession) -> SourceSummary:
        chunker = Chunker(ChunkerParams.from_json(self.store.config.chunker))
        stack = [_DirBuilder(name="", mode=0, mtime_ns=0)]
        names: list[str] = []  # the path of the top of the stack
        errors_before = len(session.errors)
        files_before, dirs_before, size_before = session.files, session.dirs, session.size

        def close_top() -> None:
            done = stack.pop()
            names.pop()
            tree_id = self._store_blob(session, "tree", encode_tree(done.nodes))
            stack[-1].nodes.append(
                TreeNode(
                    name=done.name,
                    kind="dir",
                    mode=done.mode,
                    mtime_ns=done.mtime_ns,
                    subtree=tree_id,
                )
            )

        for entry, known in _read_ahead(source.scan(session.report), session, source.name):
            parent = entry.path[:-1]
            while len(names) > len(parent):
                close_top()
            while tuple(names) != parent:
                if not names:
                    raise SourceError(
                        f"source {source.name!r} yielded {'/'.join(entry.path)} before its "
                        "directory; sources must yield entries depth-first, sorted by name"
                    )
                close_top()
            name = entry.path[-1]
            if entry.kind == "dir":
                session.dirs += 1
                stack.append(_DirBuilder(name=name, mode=entry.mode, mtime_ns=entry.mtime_ns))
                names.append(name)
            elif entry.kind == "symlink":
                stack[-1].nodes.append(
                    TreeNode(
                        name=name,
                        kind="symlink",
                        mode=entry.mode,
                        mtime_ns=entry.mtime_ns,
                        target=entry.target,
                    )
                )
            else:
                node = self._backup_file(entry, known, chunker, session, source.name)
                if node is not None:
                    stack[-1].nodes.append(node)
        while len(stack) > 1:
            close_top()
        session.report_progress()
        root = self._store_blob(session, "tree", encode_tree(stack[0].nodes))
        return SourceSummary(
            name=source.name,
            type=source.type_name,
            root=root,
            options=source.describe(),
            files=session.files - files_before,
            dirs=session.dirs - dirs_before,
            size=session.size - size_before,
            errors=len(session.errors) - errors_before,
        )

    def _backup_file(
        self,
        entry: SourceEntry,
        known: Known | None,
        chunker: Chunker,
        session: _BackupSession,
        source_name: str,
    ) -> TreeNode | None:
        """Back up one file: from ``known`` (what the files cache recorded for it) when every
        blob of it is still stored, else by reading it."""
        assert entry.opener is not None
        token = entry.change_token
        index = self._index
        if known is not None and index.has_all(known[1]):
            # done, unread: a bar's total counts its bytes too
            return self._file_node(
                entry, known[1], entry.size, session, source_name, token, kept=known[0]
            )
        content: list[bytes] = []
        size = unreported = 0
        try:
            with entry.opener() as stream:
                hint = entry.size if entry.size >= 0 else None  # unknown: never read whole
                paged, chunks = chunker.cut(stream, hint, entry.page_size)
                for chunk in chunks:
                    content.append(self._store_blob(session, "data", chunk, paged))
                    size += len(chunk)
                    unreported += len(chunk)
                    if unreported >= PROGRESS_STEP:  # not per 4 KiB page: a bar update is slow
                        session.progress("bytes", unreported)
                        unreported = 0
        except OSError as exc:
            session.report(f"{source_name}:{'/'.join(entry.path)}", exc)
            return None
        except LeftOut:
            return None
        finally:
            if unreported:
                session.progress("bytes", unreported)
        return self._file_node(entry, tuple(content), size, session, source_name, token)

    def _file_node(
        self,
        entry: SourceEntry,
        content: tuple[bytes, ...],
        size: int,
        session: _BackupSession,
        source_name: str,
        token: str | None,
        kept: int = -1,
    ) -> TreeNode:
        """The file's tree node; its files-cache row is recorded (or, when ``kept`` names the
        row it was found unchanged in, kept as it is) unless it changed too recently."""
        session.files += 1
        session.size += size
        session.file_done(size if kept >= 0 else None)
        if token is not None and entry.mtime_ns < session.started_ns - SAFETY_NS:
            cached = session.cached[source_name]
            if kept >= 0:
                cached.keep(kept)
            else:
                key = cached.key("/".join(entry.path))
                session.record[source_name].add(key, token, content)
        return TreeNode(
            name=entry.path[-1],
            kind="file",
            mode=entry.mode,
            mtime_ns=entry.mtime_ns,
            size=size,
            content=content,
        )


# --- the dry run ---------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class SourcePlan:
    """What a backup would do with one source: its files by what the files cache says of them.

    ``new``: not in the files cache (never backed up from this machine, or a file always read,
    such as a database in use); ``changed``: in it, but changed since (or its content is gone
    from the repository): read again; ``unchanged``: would not be read. ``cached`` says whether
    the files cache knew this source at all (if not, everything is ``new``).
    """

    name: str
    type: str
    cached: bool
    dirs: int = 0
    new_files: int = 0
    new_bytes: int = 0
    changed_files: int = 0
    changed_bytes: int = 0
    unchanged_files: int = 0
    unchanged_bytes: int = 0
    errors: int = 0

    @property
    def files(self) -> int:
        return self.new_files + self.changed_files + self.unchanged_files

    @property
    def size(self) -> int:
        return self.new_bytes + self.changed_bytes + self.unchanged_bytes

    def to_json(self) -> dict[str, object]:
        return {
            "type": self.type,
            "files": self.files,
            "dirs": self.dirs,
            "size": self.size,
            "new": {"files": self.new_files, "bytes": self.new_bytes},
            "changed": {"files": self.changed_files, "bytes": self.changed_bytes},
            "unchanged": {"files": self.unchanged_files, "bytes": self.unchanged_bytes},
            "files_cache": self.cached,
            "errors": self.errors,
        }


@attrs.frozen(kw_only=True)
class BackupPlan:
    """The dry run of a backup: per source what it would back up, and what could not be read."""

    sources: tuple[SourcePlan, ...]
    errors: tuple[tuple[str, str], ...] = ()

    def total(self, field: str) -> int:
        return sum(int(getattr(s, field)) for s in self.sources)

    def to_json(self) -> dict[str, object]:
        return {
            "dry_run": True,
            "files": self.total("files"),
            "dirs": self.total("dirs"),
            "size": self.total("size"),
            "new": {"files": self.total("new_files"), "bytes": self.total("new_bytes")},
            "changed": {
                "files": self.total("changed_files"),
                "bytes": self.total("changed_bytes"),
            },
            "unchanged": {
                "files": self.total("unchanged_files"),
                "bytes": self.total("unchanged_bytes"),
            },
            "sources": {s.name: s.to_json() for s in self.sources},
            "errors": [list(e) for e in self.errors],
        }


def plan_backup(
    store: Store, sources: Sequence[Source], *, progress: ProgressCallback | None = None
) -> BackupPlan:
    """Scan ``sources`` as :func:`backup` would and say what it would back up, writing nothing
    to the repository (no lock either) nor to the files cache. Files are not read, except one
    whose size only reading tells (standard input), which is read through and counted."""
    if not sources:
        raise SourceError("nothing to back up: give at least one source")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise SourceError(f"source names must be unique, got {names}")
    run = _Plan(store=store, progress=progress or no_progress)
    files_cache = FilesCache(store.cache_dir / "files.sqlite", files_cache_key(store.master_key))
    try:
        plans = tuple(run.source(source, files_cache.load(source.name)) for source in sources)
    finally:
        files_cache.close()
        for source in sources:
            source.close()
    return BackupPlan(sources=plans, errors=tuple(run.errors))


@attrs.define
class _Plan:
    """One dry run while it runs."""

    store: Store
    progress: ProgressCallback
    errors: list[tuple[str, str]] = attrs.field(factory=list)

    def report(self, path: str, exc: BaseException) -> None:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.errors.append((path, message))

    def source(self, source: Source, cached: RecordedFiles) -> SourcePlan:
        errors_before = len(self.errors)
        plan = SourcePlan(name=source.name, type=source.type_name, cached=bool(len(cached)))
        for entry in source.scan(self.report):
            if entry.kind == "dir":
                plan.dirs += 1
            if entry.kind != "file":
                continue
            size = entry.size if entry.size >= 0 else self._count_bytes(entry, source.name)
            if size is None:
                continue
            self.progress("file", 1)
            recorded = cached.get("/".join(entry.path))
            if (
                recorded is not None
                and entry.change_token is not None
                and recorded[0] == entry.change_token
                and all(b in self.store.index for b in recorded[1])
            ):
                plan.unchanged_files += 1
                plan.unchanged_bytes += size
            elif recorded is not None:
                plan.changed_files += 1
                plan.changed_bytes += size
            else:
                plan.new_files += 1
                plan.new_bytes += size
        plan.errors = len(self.errors) - errors_before
        return plan

    def _count_bytes(self, entry: SourceEntry, source_name: str) -> int | None:
        """The length of an entry of unknown size, read through in pieces (None: unreadable)."""
        assert entry.opener is not None
        size = 0
        try:
            with entry.opener() as stream:
                while piece := stream.read(PROGRESS_STEP):
                    size += len(piece)
                    self.progress("bytes", len(piece))
        except OSError as exc:
            self.report(f"{source_name}:{'/'.join(entry.path)}", exc)
            return None
        except LeftOut:
            return None
        return size
