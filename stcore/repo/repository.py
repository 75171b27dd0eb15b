"""The repository: opening and creating one, backup, restore, check and statistics.

A :class:`Repository` owns a backend, the repository config, the in-memory index (blob id ->
where it lives) and the snapshot catalog. It never modifies or deletes stored objects: a backup
writes new packs, then one index object for them, then the snapshot manifest, in that order, so
every snapshot a reader can see has all of its data.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import secrets
import time as _time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from stcore import __version__
from stcore.cache import ObjectCache, cache_limit_from_env
from stcore.catalog import Catalog
from stcore.errors import (
    CorruptObjectError,
    ObjectExistsError,
    ObjectNotFoundError,
    RepositoryError,
    RepositoryExistsError,
    RepositoryNotFoundError,
    SnapshotNotFoundError,
    SourceError,
)
from stcore.interfaces import Backend, Compressor, Source, SourceEntry
from stcore.keys import (
    KdfParams,
    MasterKey,
    PasswordSource,
    add_key,
    describe_keys,
    open_master_key,
    remove_key,
    require_usable_password,
    resolve_password,
)
from stcore.locks import lock_wait_from_env, repository_lock
from stcore.models import IndexEntry, SnapshotManifest, SourceSummary, TreeNode, default_host
from stcore.models import new_snapshot_id as _new_snapshot_id
from stcore.plugins import PluginHost, make_plugin_manager
from stcore.repo.chunker import Chunker, ChunkerParams
from stcore.repo.filescache import SAFETY_NS, FilesCache
from stcore.repo.format import (
    DEFAULT_PACK_SIZE,
    PACK_FOOTER,
    Codec,
    IndexRow,
    RepositoryConfig,
    decode_index_rows,
    decode_pack_footer,
    decode_pack_trailer,
    decode_tree,
    encode_index,
    encode_tree,
    hash_id,
    index_entries,
    object_key,
)
from stcore.repo.index import BlobIndex
from stcore.repo.packer import Packer

#: Called with an event name and an amount: ("bytes", n) as data is read, ("file", 1) per file.
ProgressCallback = Callable[[str, int], None]


def _no_progress(event: str, amount: int) -> None:
    pass


def default_cache_root() -> Path:
    """``$STCORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/stcore``, else ``~/.cache/stcore``."""
    explicit = os.environ.get("STCORE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "stcore"


def open_backend(
    url: str,
    host: PluginHost,
    *,
    create: bool = False,
    options: Mapping[str, Any] | None = None,
) -> Backend:
    """Open the backend a URL names: ``s3://...`` by scheme, a plain path with ``local``.

    ``options`` go to the backend as they are (``[repository.options]`` in stcore.toml): retry
    limits, endpoints, timeouts; each backend's README lists what it understands.
    """
    if "://" in url:
        name = host.backends.by_scheme(url.split("://", 1)[0])
    else:
        name = "local"
    factory = host.backends.get(name)
    return factory(url, options=dict(options or {}), create=create)


@attrs.frozen(kw_only=True)
class BackupResult:
    manifest: SnapshotManifest
    errors: tuple[tuple[str, str], ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.errors)


@attrs.frozen(kw_only=True)
class CheckResult:
    snapshots: int
    packs: int
    blobs: int
    read_data: bool
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


@attrs.define
class _DirBuilder:
    path: tuple[str, ...]
    entry: SourceEntry | None
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
    cached: dict[str, dict[str, tuple[str, tuple[bytes, ...]]]] = attrs.field(factory=dict)
    record: dict[str, list[tuple[str, str, tuple[bytes, ...]]]] = attrs.field(factory=dict)
    started_ns: int = 0
    unchanged_files: int = 0

    def report(self, path: str, exc: BaseException) -> None:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.errors.append((path, message))

    def recorded_content(self, source_name: str, entry: SourceEntry) -> tuple[bytes, ...] | None:
        """The content the files cache recorded for ``entry`` at the last backup, if its change
        token still matches (whether those blobs are all still stored is the caller's check)."""
        token = entry.change_token
        if token is None:
            return None
        known = self.cached.get(source_name, {}).get("/".join(entry.path))
        return known[1] if known is not None and known[0] == token else None


#: bytes read between two "bytes" progress events of one file
PROGRESS_STEP = 1024 * 1024

#: entries the backup loop looks ahead to start reading files early (``SourceEntry.prefetch``)
READ_AHEAD_ENTRIES = 32


def _read_ahead(
    entries: Iterable[SourceEntry], session: _BackupSession, source_name: str
) -> Iterator[SourceEntry]:
    """``entries`` in order, each file's ``prefetch`` called ``READ_AHEAD_ENTRIES`` before the
    loop reaches it, unless the files cache will spare reading it."""
    window: collections.deque[SourceEntry] = collections.deque()
    for entry in entries:
        if (
            entry.prefetch is not None
            and entry.kind == "file"
            and session.recorded_content(source_name, entry) is None
        ):
            entry.prefetch()
        window.append(entry)
        if len(window) > READ_AHEAD_ENTRIES:
            yield window.popleft()
    yield from window


class Repository:
    """An open repository. Use :func:`open_repository` or :func:`init_repository` to get one."""

    def __init__(
        self,
        backend: Backend,
        config: RepositoryConfig,
        host: PluginHost,
        *,
        cache_root: Path | None = None,
        workers: int | None = None,
        object_cache: bool = False,
        master_key: MasterKey | None = None,
        key_id: str | None = None,
    ) -> None:
        self.backend = backend
        self.config = config
        self.host = host
        self._master_key = master_key
        #: the keys/ object this repository was opened with (encrypted repositories only)
        self.key_id = key_id
        self.workers = workers or max(2, os.cpu_count() or 2)
        self.codec = self._make_codec()
        self.chunker_params = ChunkerParams.from_json(config.chunker)
        # Keyed by location as well as id: a mirror has its primary's id, and the two must not
        # share a catalog (refreshing one would drop the other's snapshots and sync state).
        where = hash_id(backend.location.encode()).hex()[:12]
        self.cache_dir = (cache_root or default_cache_root()) / f"{config.id}-{where}"
        self._index: BlobIndex | None = None
        self._catalog: Catalog | None = None
        self._catalog_fresh = False
        #: what was fetched from a remote backend, kept on local disk (None for local repos)
        self.object_cache: ObjectCache | None = (
            ObjectCache(self.cache_dir / "objects", cache_limit_from_env())
            if object_cache
            else None
        )

    # --- construction ---------------------------------------------------------------------------

    def _make_codec(self) -> Codec:
        compressors: dict[int, Compressor] = {}
        for name in self.host.compressors.names():
            try:
                compressor = self.host.compressors.get(name)()
            except Exception:
                continue  # an unusable codec matters only if a frame needs it
            compressors[compressor.code] = compressor
        default = self.host.compressors.get(self.config.compression)(self.config.compression_level)
        compressors[default.code] = default
        master = self._master_key
        encryptor = self.host.encryptors.get(self.config.encryption)(
            master.encryption if master else None
        )
        return Codec(
            compressors=compressors,
            compressor=default,
            encryptor=encryptor,
            id_key=master.ids if master else None,
        )

    # --- keys -----------------------------------------------------------------------------------

    @property
    def encrypted(self) -> bool:
        return self.config.encryption != "none"

    def _require_master(self) -> MasterKey:
        if self._master_key is None:
            raise RepositoryError(f"{self.location} is not encrypted: it has no keys")
        return self._master_key

    def keys(self) -> list[dict[str, Any]]:
        """The key objects (id, created, host, KDF parameters); ``current`` marks ours."""
        self._require_master()
        return [{**k, "current": k["id"] == self.key_id} for k in describe_keys(self.backend)]

    def add_key(self, password: str, kdf: KdfParams | None = None) -> str:
        """Let ``password`` open the repository too; returns the new key's id."""
        return add_key(self.backend, self._require_master(), password, kdf)

    def remove_key(self, key_id: str) -> None:
        """Delete a key object; removing the last one is refused."""
        self._require_master()
        remove_key(self.backend, key_id)

    def change_password(self, password: str, kdf: KdfParams | None = None) -> str:
        """Add a key for ``password`` and remove the one this repository was opened with."""
        new_id = self.add_key(password, kdf)
        if self.key_id is not None:
            remove_key(self.backend, self.key_id)
        self.key_id = new_id
        return new_id

    @property
    def location(self) -> str:
        return self.backend.location

    @property
    def id(self) -> str:
        return self.config.id

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
        self.backend.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- index ----------------------------------------------------------------------------------

    @property
    def index(self) -> BlobIndex:
        if self._index is None:
            self._index = self._load_index()
        return self._index

    def _load_index(self, *, cached: bool = True) -> BlobIndex:
        """All index objects merged; ``cached=False`` reads every one from the backend (check)."""
        index = BlobIndex()
        keys = [info.key for info in self.backend.list("index/")]

        def read(key: str) -> list[IndexRow]:
            return self._read_index_rows(key, cached=cached)

        with ThreadPoolExecutor(max_workers=8) as pool:
            for rows in pool.map(read, keys):
                for row in rows:
                    index.add_fields(*row)
        return index

    def _read_index_object(self, key: str, *, cached: bool = True) -> list[IndexEntry]:
        return index_entries(self._read_index_rows(key, cached=cached))

    def _read_index_rows(self, key: str, *, cached: bool = True) -> list[IndexRow]:
        """The rows of one index object; damage is reported with the object's key."""
        stored = self._read_index_stored(key, cached)  # names the key itself when damaged
        try:
            return decode_index_rows(self.codec, stored)
        except CorruptObjectError as exc:
            raise CorruptObjectError(f"{key}: {exc}") from exc

    def _read_index_stored(self, key: str, cached: bool) -> bytes:
        """The stored bytes of one index object, verified against its name."""
        name = key.rsplit("/", 1)[-1]
        cache = self.object_cache if cached else None
        stored = cache.get("index", name) if cache is not None else None
        if stored is None or hash_id(stored).hex() != name:
            stored = self._read_object(key)
            if hash_id(stored).hex() != name:
                raise CorruptObjectError(f"{key} does not match its hash")
            if cache is not None:
                cache.put("index", name, stored)
        return stored

    def _read_object(self, key: str) -> bytes:
        try:
            return self.backend.read(key)
        except ObjectNotFoundError:
            raise ObjectNotFoundError(
                f"{key} is missing from {self.location}; run `stcore check` to see what is affected"
            ) from None

    # --- blobs ----------------------------------------------------------------------------------

    def read_blob(self, blob_id: bytes) -> bytes:
        """The plaintext of one blob, verified against its id."""
        entry = self.index.get(blob_id)
        if entry is None:
            raise CorruptObjectError(
                f"blob {blob_id.hex()} is not in the index of {self.location}; "
                "the repository is damaged (run `stcore check`)"
            )
        return self._read_entry(entry)

    def read_blobs(self, blob_ids: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]:
        """``(blob id, plaintext)`` for many blobs, each verified, with few backend reads.

        Blobs are grouped by pack and neighbours read with one range request (see
        :mod:`stcore.repo.reader`). The order is by pack range, not the order asked; an id asked
        for twice is yielded twice. Use :func:`stcore.repo.reader.read_in_order` for file order.
        """
        from stcore.repo.reader import BlobReader

        return BlobReader(self).read_blobs(blob_ids)

    def _read_entry(self, entry: IndexEntry) -> bytes:
        key = object_key("data", entry.pack_id)
        cache = self.object_cache
        if cache is not None:
            name = entry.blob_id.hex()
            stored = cache.get("blob", name)
            if stored is not None:
                try:
                    return self.codec.unseal_blob(entry.blob_id, stored, entry.raw_length)
                except CorruptObjectError:
                    cache.discard("blob", name)  # damaged on local disk: fetch it again
            stored = self._read_object_range(key, entry.offset, entry.stored_length)
            try:
                data = self.codec.unseal_blob(entry.blob_id, stored, entry.raw_length)
            except CorruptObjectError as exc:
                raise CorruptObjectError(f"pack {key}, blob {name}: {exc}") from exc
            cache.put("blob", name, stored)
            return data
        stored = self._read_object_range(key, entry.offset, entry.stored_length)
        try:
            return self.codec.unseal_blob(entry.blob_id, stored, entry.raw_length)
        except CorruptObjectError as exc:
            raise CorruptObjectError(f"pack {key}, blob {entry.blob_id.hex()}: {exc}") from exc

    def _read_object_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            data = self.backend.read(key, offset, length)
        except ObjectNotFoundError:
            raise ObjectNotFoundError(
                f"{key} is missing from {self.location}; run `stcore check` to see what is affected"
            ) from None
        if len(data) != length:
            raise CorruptObjectError(
                f"{key} is truncated: expected {length} bytes at offset {offset}, got {len(data)}"
            )
        return data

    def read_tree(self, tree_id: bytes) -> list[TreeNode]:
        return decode_tree(self.read_blob(tree_id))

    # --- snapshots and catalog ------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = Catalog(self.cache_dir / "catalog.sqlite")
        if not self._catalog_fresh:
            stored = {info.key.rsplit("/", 1)[-1] for info in self.backend.list("snapshots/")}
            self._catalog.refresh(stored, self.load_manifest)
            self._catalog_fresh = True
        return self._catalog

    def rebuild_catalog(self) -> int:
        """Drop the catalog and rebuild it from the repository; return the snapshot count."""
        self._catalog_fresh = False
        self.catalog  # noqa: B018 - opens the database
        assert self._catalog is not None
        self._catalog.clear()
        self._catalog_fresh = False
        return len(self.catalog.ids())

    def load_manifest(self, snapshot_id: str) -> SnapshotManifest:
        key = object_key("snapshots", snapshot_id)
        try:
            stored = self.backend.read(key)
        except ObjectNotFoundError:
            raise SnapshotNotFoundError(f"snapshot {snapshot_id} does not exist") from None
        try:
            payload = self.codec.unseal(stored, b"snapshot:" + snapshot_id.encode())
            manifest = SnapshotManifest.from_json(json.loads(payload))
        except (CorruptObjectError, ValueError) as exc:
            raise CorruptObjectError(f"{key} cannot be read: {exc}") from exc
        if manifest.id != snapshot_id:
            raise CorruptObjectError(f"{key} holds the manifest of {manifest.id}")
        return manifest

    def snapshots(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        source: str | None = None,
        source_type: str | None = None,
        tags: Iterable[str] = (),
        host: str | None = None,
        synced: bool | None = None,
        remote: str | None = None,
        limit: int | None = None,
    ) -> list[SnapshotManifest]:
        """Snapshot manifests matching every filter given, newest first (from the catalog).

        ``synced``/``remote`` filter on sync state: ``synced=True`` keeps snapshots already on
        ``remote`` (on any remote when it is None).
        """
        return self.catalog.query(
            since=since,
            until=until,
            source=source,
            source_type=source_type,
            tags=tags,
            host=host,
            synced=synced,
            remote=remote,
            limit=limit,
        )

    def query(
        self,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        source: str | None = None,
        type: str | None = None,
        tags: Iterable[str] = (),
        host: str | None = None,
        synced: bool | None = None,
        remote: str | None = None,
        limit: int | None = None,
    ) -> list[SnapshotManifest]:
        """Snapshots by date, source name, source type, tag, host and sync state, newest first.

        Answered by the catalog: once it is up to date, no manifest object is read.
        """
        return self.snapshots(
            since=since,
            until=until,
            source=source,
            source_type=type,
            tags=tags,
            host=host,
            synced=synced,
            remote=remote,
            limit=limit,
        )

    def resolve(self, ref: str) -> SnapshotManifest:
        """A snapshot by full id, unique prefix (of the id or its random suffix), or ``latest``."""
        if ref == "latest":
            found = self.snapshots(limit=1)
            if not found:
                raise SnapshotNotFoundError(f"{self.location} has no snapshots yet")
            return found[0]
        matches = [
            m
            for m in self.snapshots()
            if m.id == ref or m.id.startswith(ref) or m.short_id.startswith(ref)
        ]
        exact = [m for m in matches if m.id == ref]
        if exact:
            return exact[0]
        if not matches:
            raise SnapshotNotFoundError(
                f"no snapshot matches {ref!r}; `stcore snapshots` lists them"
            )
        if len(matches) > 1:
            ids = ", ".join(m.id for m in matches[:5])
            raise SnapshotNotFoundError(f"{ref!r} matches several snapshots ({ids}); be more exact")
        return matches[0]

    def forget(self, snapshot_ids: Iterable[str]) -> list[str]:
        """Remove snapshots (their manifests) and return the ids removed.

        The data only they referenced stays until prune reclaims it; forgetting never touches
        packs, so it is safe while other backups run.
        """
        removed = []
        for snapshot_id in snapshot_ids:
            try:
                self.backend.delete(object_key("snapshots", snapshot_id))
            except ObjectNotFoundError:
                continue  # already forgotten, perhaps by another process
            removed.append(snapshot_id)
        if self._catalog is not None:
            self._catalog.remove(removed)
        return removed

    def snapshot(self, ref: str) -> Any:
        """A lazy :class:`stcore.views.Snapshot` view of the snapshot ``ref`` names."""
        from stcore.views import Snapshot

        return Snapshot(self, self.resolve(ref))

    # --- backup ---------------------------------------------------------------------------------

    def backup(
        self,
        sources: Sequence[Source],
        *,
        tags: Iterable[str] = (),
        hostname: str | None = None,
        progress: ProgressCallback | None = None,
        time: dt.datetime | None = None,
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
        snapshot_id = _new_snapshot_id(now)
        self.host.notify_backup_started(self.location, snapshot_id, names)
        # A shared lock for the whole backup: prune (exclusive) cannot delete a pack this backup
        # dedups against between our index load and our manifest.
        with repository_lock(
            self.backend, exclusive=False, purpose="backup", wait=lock_wait_from_env()
        ):
            self._index = self._load_index()  # after the lock: what a prune left is current
            files_cache = FilesCache(self.cache_dir / "files.sqlite")
            try:
                return self._locked_backup(
                    sources, snapshot_id, now, tags, hostname, progress, files_cache
                )
            finally:
                files_cache.close()

    def _locked_backup(
        self,
        sources: Sequence[Source],
        snapshot_id: str,
        now: dt.datetime,
        tags: Iterable[str],
        hostname: str | None,
        progress: ProgressCallback | None,
        files_cache: FilesCache,
    ) -> BackupResult:
        written: list[int] = []
        session = _BackupSession(
            packer=Packer(
                self.backend,
                self.codec,
                pack_size=self.config.pack_size,
                workers=self.workers,
                # Over a network a write waits on latency, not the disk: keep more going.
                writes_in_flight=3 if is_remote_url(self.location) else 2,
                on_pack_written=written.append,
            ),
            progress=progress or _no_progress,
            started_ns=_time.time_ns(),
        )
        for source in sources:
            session.cached[source.name] = files_cache.load(source.name)
            session.record[source.name] = []
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
            body = encode_index(self.codec, entries)
            self._write_content_addressed("index", body)
            added += len(body)
            self.index.update(entries)
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
        payload = json.dumps(manifest.to_json(), sort_keys=True).encode()
        stored = self.codec.seal(payload, b"snapshot:" + snapshot_id.encode())
        self.backend.write(object_key("snapshots", snapshot_id), stored)
        if self._catalog is not None:
            self._catalog.add(manifest)
        # Recorded only now: every blob named in the cache is in an index object that exists.
        for name, recorded in session.record.items():
            files_cache.replace(name, recorded)
        self.host.notify_backup_finished(self.location, manifest)
        return BackupResult(manifest=manifest, errors=tuple(session.errors))

    def _write_content_addressed(self, kind: str, body: bytes) -> bytes:
        object_id = hash_id(body)
        try:
            self.backend.write(object_key(kind, object_id), body)
        except ObjectExistsError:
            pass  # same bytes, same id: already stored
        return object_id

    def _store_blob(self, session: _BackupSession, blob_type: Any, data: bytes) -> bytes:
        blob_id = self.codec.blob_id(data)
        if blob_id not in self.index and not session.packer.is_known(blob_id):
            session.packer.add(blob_id, blob_type, data)
        return blob_id

    def _backup_source(self, source: Source, session: _BackupSession) -> SourceSummary:
        chunker = Chunker(self.chunker_params)
        stack = [_DirBuilder(path=(), entry=None)]
        errors_before = len(session.errors)
        files_before, dirs_before, size_before = session.files, session.dirs, session.size

        def close_top() -> None:
            done = stack.pop()
            tree_id = self._store_blob(session, "tree", encode_tree(done.nodes))
            assert done.entry is not None
            stack[-1].nodes.append(
                TreeNode(
                    name=done.path[-1],
                    kind="dir",
                    mode=done.entry.mode,
                    mtime_ns=done.entry.mtime_ns,
                    subtree=tree_id,
                )
            )

        for entry in _read_ahead(source.scan(session.report), session, source.name):
            parent = entry.path[:-1]
            while stack[-1].path != parent:
                if len(stack) == 1:
                    raise SourceError(
                        f"source {source.name!r} yielded {'/'.join(entry.path)} before its "
                        "directory; sources must yield entries depth-first, sorted by name"
                    )
                close_top()
            name = entry.path[-1]
            if entry.kind == "dir":
                session.dirs += 1
                stack.append(_DirBuilder(path=entry.path, entry=entry))
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
                node = self._backup_file(entry, chunker, session, source.name)
                if node is not None:
                    stack[-1].nodes.append(node)
        while len(stack) > 1:
            close_top()
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
        self, entry: SourceEntry, chunker: Chunker, session: _BackupSession, source_name: str
    ) -> TreeNode | None:
        assert entry.opener is not None
        display = f"{source_name}:{'/'.join(entry.path)}"
        token = entry.change_token
        known = session.recorded_content(source_name, entry)
        if known is not None and all(b in self.index for b in known):
            session.unchanged_files += 1
            return self._file_node(entry, known, entry.size, session, source_name, token)
        content: list[bytes] = []
        size = unreported = 0
        try:
            with entry.opener() as stream:
                for chunk in chunker.chunks(stream, entry.size, entry.page_size):
                    content.append(self._store_blob(session, "data", chunk))
                    size += len(chunk)
                    unreported += len(chunk)
                    if unreported >= PROGRESS_STEP:  # not per 4 KiB page: a bar update is slow
                        session.progress("bytes", unreported)
                        unreported = 0
        except OSError as exc:
            session.report(display, exc)
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
    ) -> TreeNode:
        session.files += 1
        session.size += size
        session.progress("file", 1)
        if token is not None and entry.mtime_ns < session.started_ns - SAFETY_NS:
            session.record.setdefault(source_name, []).append(
                ("/".join(entry.path), token, content)
            )
        return TreeNode(
            name=entry.path[-1],
            kind="file",
            mode=entry.mode,
            mtime_ns=entry.mtime_ns,
            size=size,
            content=content,
        )

    # --- restore --------------------------------------------------------------------------------

    def restore(
        self,
        ref: str,
        target: str | os.PathLike[str],
        *,
        sources: Iterable[str] | None = None,
        include: Iterable[str] = (),
        progress: ProgressCallback | None = None,
    ) -> Any:
        """Restore snapshot ``ref`` into ``target/<source name>/...``; see :mod:`stcore.restore`."""
        from stcore.repo.restore import Restorer

        manifest = self.resolve(ref)
        return Restorer(self, manifest, Path(target), progress or _no_progress).run(
            sources=list(sources) if sources is not None else None, include=list(include)
        )

    def sync(
        self,
        remote: Any = None,
        snapshots: Iterable[str] | None = None,
        *,
        options: Any = None,
        progress: ProgressCallback | None = None,
    ) -> Any:
        """Upload what a remote lacks; see :mod:`stcore.sync`.

        ``remote`` is a :class:`~stcore.config.RemoteConfig`, a remote's name from stcore.toml
        (or the seed's ``CLOUD_PROVIDER``), a URL, or None for the only configured remote.
        Returns a :class:`~stcore.sync.SyncResult`.
        """
        from stcore.config import RemoteConfig, load_settings
        from stcore.sync import remote_from_url, sync

        if not isinstance(remote, RemoteConfig):
            if isinstance(remote, str) and ("://" in remote or os.sep in remote):
                remote = remote_from_url(remote)
            else:
                remote = load_settings().remote(remote)
        return sync(self, remote, snapshots, options=options, progress=progress)

    def prune(self, **kwargs: Any) -> Any:
        """Reclaim unreferenced data; see :func:`stcore.prune.prune`."""
        from stcore.prune import prune

        return prune(self, **kwargs)

    def referenced_blobs(self, snapshot_ids: Iterable[str]) -> set[bytes]:
        """Every blob (trees and data) the snapshots reference; each tree is read once."""
        used: set[bytes] = set()
        seen_trees: set[bytes] = set()

        def visit(tree_id: bytes) -> None:
            if tree_id in seen_trees:
                return
            seen_trees.add(tree_id)
            used.add(tree_id)
            for node in self.read_tree(tree_id):
                used.update(node.content)
                if node.subtree is not None:
                    visit(node.subtree)

        for snapshot_id in snapshot_ids:
            for summary in self.load_manifest(snapshot_id).sources.values():
                visit(summary.root)
        return used

    def walk(
        self, tree_id: bytes, prefix: tuple[str, ...] = ()
    ) -> Iterator[tuple[tuple[str, ...], TreeNode]]:
        """Every node below ``tree_id``, depth-first, with its path."""
        for node in self.read_tree(tree_id):
            path = (*prefix, node.name)
            yield path, node
            if node.kind == "dir" and node.subtree is not None:
                yield from self.walk(node.subtree, path)

    # --- check ----------------------------------------------------------------------------------

    def check(
        self, *, read_data: bool = False, progress: ProgressCallback | None = None
    ) -> CheckResult:
        """Verify structure (every referenced blob indexed, every indexed pack present and large
        enough) and, with ``read_data``, every byte of every pack against its hashes."""
        progress = progress or _no_progress
        errors: list[str] = []
        packs = {info.key.rsplit("/", 1)[-1]: info.size for info in self.backend.list("data/")}
        try:
            index = self._load_index(cached=False)
        except (CorruptObjectError, ObjectNotFoundError) as exc:
            return CheckResult(
                snapshots=0, packs=len(packs), blobs=0, read_data=read_data, errors=(str(exc),)
            )
        self._index = index
        for entry in index.values():
            size = packs.get(entry.pack_id.hex())
            if size is None:
                errors.append(
                    f"pack {object_key('data', entry.pack_id)} is missing "
                    f"(needed by blob {entry.blob_id.hex()})"
                )
            elif entry.offset + entry.stored_length + PACK_FOOTER.size > size:
                errors.append(
                    f"pack {object_key('data', entry.pack_id)} is truncated "
                    f"(blob {entry.blob_id.hex()} lies past its end)"
                )
        snapshot_ids = sorted(
            info.key.rsplit("/", 1)[-1] for info in self.backend.list("snapshots/")
        )
        seen_trees: set[bytes] = set()
        for snapshot_id in snapshot_ids:
            try:
                manifest = self.load_manifest(snapshot_id)
            except (CorruptObjectError, SnapshotNotFoundError) as exc:
                errors.append(str(exc))
                continue
            for summary in manifest.sources.values():
                errors.extend(
                    f"snapshot {snapshot_id}, source {summary.name}: {problem}"
                    for problem in self._check_tree(summary.root, index, seen_trees)
                )
        if read_data:
            for pack_hex, size in sorted(packs.items()):
                errors.extend(self._check_pack(pack_hex, size, index))
                progress("bytes", size)
        return CheckResult(
            snapshots=len(snapshot_ids),
            packs=len(packs),
            blobs=len(index),
            read_data=read_data,
            errors=tuple(errors),
        )

    def _check_tree(
        self, tree_id: bytes, index: Mapping[bytes, IndexEntry], seen: set[bytes]
    ) -> Iterator[str]:
        if tree_id in seen:
            return
        seen.add(tree_id)
        if tree_id not in index:
            yield f"tree {tree_id.hex()} is not in the index"
            return
        try:
            nodes = self.read_tree(tree_id)
        except (CorruptObjectError, ObjectNotFoundError) as exc:
            yield f"tree {tree_id.hex()} cannot be read: {exc}"
            return
        for node in nodes:
            for blob_id in node.content:
                if blob_id not in index:
                    yield f"{node.name}: data blob {blob_id.hex()} is not in the index"
            if node.kind == "dir" and node.subtree is not None:
                yield from self._check_tree(node.subtree, index, seen)

    def _check_pack(self, pack_hex: str, size: int, index: Mapping[bytes, IndexEntry]) -> list[str]:
        key = object_key("data", pack_hex)
        try:
            body = self.backend.read(key)
        except ObjectNotFoundError:
            return [f"pack {key} disappeared during the check"]
        if hash_id(body).hex() != pack_hex:
            problems = [f"pack {key} does not match its hash (its bytes were changed)"]
        else:
            problems = []
        try:
            trailer_length = decode_pack_footer(body[-PACK_FOOTER.size :], len(body))
            trailer_start = len(body) - PACK_FOOTER.size - trailer_length
            blobs = decode_pack_trailer(
                self.codec, body[trailer_start : len(body) - PACK_FOOTER.size]
            )
        except CorruptObjectError as exc:
            return [*problems, f"pack {key}: {exc}"]
        for blob in blobs:
            stored = body[blob.offset : blob.offset + blob.stored_length]
            try:
                self.codec.unseal_blob(blob.blob_id, stored, blob.raw_length)
            except CorruptObjectError as exc:
                problems.append(f"pack {key}, blob {blob.blob_id.hex()}: {exc}")
            entry = index.get(blob.blob_id)
            if (
                entry is not None
                and entry.pack_id.hex() == pack_hex
                and entry.offset != blob.offset
            ):
                problems.append(f"pack {key}: index and trailer disagree on {blob.blob_id.hex()}")
        return problems

    # --- statistics -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Sizes and counts: what is stored versus what the snapshots hold."""
        stored = {"data": 0, "index": 0, "snapshots": 0, "other": 0}
        objects = 0
        for info in self.backend.list():
            objects += 1
            kind = info.key.split("/", 1)[0]
            stored[kind if kind in stored else "other"] += info.size
        totals = self.catalog.totals()
        raw = self.index.raw_bytes("data")
        return {
            "repository": self.location,
            "id": self.id,
            "snapshots": totals["snapshots"],
            "objects": objects,
            "blobs": len(self.index),
            "stored_bytes": sum(stored.values()),
            "stored_by_kind": stored,
            "unique_data_bytes": raw,
            "snapshot_bytes_total": totals["size"],
            "compression": self.config.compression,
            "encryption": self.config.encryption,
        }


# --- opening ---------------------------------------------------------------------------------


def init_repository(
    url: str,
    *,
    compression: str = "zstd",
    compression_level: int | None = None,
    encryption: str = "none",
    create: bool = True,
    host: PluginHost | None = None,
    cache_root: Path | None = None,
    chunker: ChunkerParams | None = None,
    pack_size: int | None = None,
    options: Mapping[str, Any] | None = None,
    password: PasswordSource = None,
    kdf: KdfParams | None = None,
) -> Repository:
    """Create a new, empty repository at ``url`` and return it open.

    With an ``encryption`` other than ``none`` (``aes-256-gcm``, ``chacha20-poly1305``) a random
    master key is made and wrapped under ``password`` in ``keys/<id>``; everything but ``config``
    is then encrypted.
    """
    host = host or make_plugin_manager()
    host.compressors.get(compression)(compression_level)  # fail before writing anything
    encryptor_factory = host.encryptors.get(encryption)
    master: MasterKey | None = None
    secret: str | None = None
    if encryption != "none":
        secret = require_usable_password(resolve_password(password, url))
        master = MasterKey.generate()
        encryptor_factory(master.encryption)  # the key fits the cipher
    backend = open_backend(url, host, create=create, options=options)
    try:
        backend.stat("config")
    except ObjectNotFoundError:
        pass
    else:
        backend.close()
        raise RepositoryExistsError(f"a repository already exists at {backend.location}")
    key_id = None
    if master is not None and secret is not None:
        # The key goes first: a crash before `config` leaves no repository, only a stray key.
        key_id = add_key(backend, master, secret, kdf)
    config = RepositoryConfig(
        id=secrets.token_hex(16),
        chunker=(chunker or ChunkerParams()).to_json(),
        compression=compression,
        compression_level=compression_level,
        encryption=encryption,
        pack_size=pack_size or DEFAULT_PACK_SIZE,
    )
    try:
        backend.write("config", config.to_bytes())
    except ObjectExistsError:
        backend.close()
        raise RepositoryExistsError(f"a repository already exists at {backend.location}") from None
    return Repository(
        backend, config, host, cache_root=cache_root, master_key=master, key_id=key_id
    )


def open_repository(
    url: str,
    *,
    host: PluginHost | None = None,
    cache_root: Path | None = None,
    workers: int | None = None,
    options: Mapping[str, Any] | None = None,
    cache: bool | None = None,
    password: PasswordSource = None,
) -> Repository:
    """Open the existing repository at ``url`` (a path, or a URL such as ``s3://bucket/prefix``).

    ``cache`` keeps fetched index objects and blobs on local disk (bounded, see
    :mod:`stcore.cache`); by default it is on for every backend but the local one.
    ``password`` (a string, or a callable asked only if the repository is encrypted) opens an
    encrypted repository; a wrong one raises :class:`~stcore.keys.PasswordError`.
    """
    host = host or make_plugin_manager()
    backend = open_backend(url, host, options=options)
    try:
        raw = backend.read("config")
    except ObjectNotFoundError:
        backend.close()
        raise RepositoryNotFoundError(
            f"no stcore repository at {backend.location}; create one with "
            f"`stcore init --repo {url}`"
        ) from None
    try:
        config = RepositoryConfig.from_bytes(raw, backend.location)
    except Exception:
        backend.close()
        raise
    master: MasterKey | None = None
    key_id: str | None = None
    if config.encryption != "none":
        try:
            master, key_id = open_master_key(backend, password)
        except Exception:
            backend.close()
            raise
    if cache is None:
        cache = is_remote_url(url)
    return Repository(
        backend,
        config,
        host,
        cache_root=cache_root,
        workers=workers,
        object_cache=cache,
        master_key=master,
        key_id=key_id,
    )


def is_remote_url(url: str) -> bool:
    """Whether ``url`` names a backend other than a local directory."""
    return "://" in url and url.split("://", 1)[0] not in ("file", "local")
