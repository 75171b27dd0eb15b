"""The public facade: :class:`Repository`, :func:`open_repository` and :func:`init_repository`.

A Repository is thin: it holds a :class:`~stcore.repo.store.Store` (the engine's access to the
objects) and the snapshot catalog, and each method hands its work to one operation: backup,
restore, check, prune, forget, stats, keys (``stcore/repo/``), the lazy views
(``stcore/access/``) or sync. Defaults a library user expects (the cache directory, the lock
wait, ``STCORE_PASSWORD``) are resolved here, from the environment, and passed down; the engine
itself reads neither the environment nor the current directory, and nothing here reads
``stcore.toml``: a remote is given as a :class:`~stcore.config.RemoteConfig` or a URL, or by name
together with the :class:`~stcore.config.Settings` that define it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stcore.access.catalog import Catalog, open_catalog, resolve_snapshot, resolve_snapshot_id
from stcore.config import (
    RemoteConfig,
    Settings,
    cache_limit_from_env,
    default_cache_root,
    lock_wait_from_env,
    password_from_env,
)
from stcore.durations import as_time
from stcore.errors import (
    ConfigError,
    ContainerNotFoundError,
    RepositoryError,
    SnapshotNotFoundError,
)
from stcore.interfaces import Backend, ProgressCallback, Source
from stcore.models import SNAPSHOT_ID, SnapshotManifest, TreeNode
from stcore.plugins import PluginHost, make_plugin_manager
from stcore.repo import backup as _backup
from stcore.repo import prune as _prune
from stcore.repo.backup import BackupResult
from stcore.repo.chunker import ChunkerParams
from stcore.repo.format import Codec, RepositoryConfig
from stcore.repo.index import BlobIndex
from stcore.repo.init import create_store
from stcore.repo.keys import KdfParams, KeyInfo, PasswordSource, add_key, describe_keys, remove_key
from stcore.repo.locks import EXCLUSIVE_LOCK_WAIT, LockInfo, list_locks, remove_locks
from stcore.repo.objectcache import ObjectCache
from stcore.repo.prune import DEFAULT_REPACK_THRESHOLD, PruneResult
from stcore.repo.store import Store, open_store

# Imported where used: a backup (the command most often run) need not load restore, check,
# repair or sync (the command line's start-up time, docs/architecture.md).
if TYPE_CHECKING:
    from stcore.access.views import Snapshot
    from stcore.repo.check import CheckResult, ReadSubset
    from stcore.repo.repair import RepairIndexResult, RepairPacksResult, RepairSnapshotsResult
    from stcore.repo.restore import Overwrite, RestoreResult
    from stcore.repo.stats import RepositoryStats
    from stcore.repo.tag import TagResult
    from stcore.sync import SyncOptions, SyncResult


def _default_workers() -> int:
    return max(2, os.cpu_count() or 2)


def _password_or_env(password: PasswordSource) -> PasswordSource:
    """``password`` (asked only when needed), falling back on ``STCORE_PASSWORD``."""

    def ask() -> str | None:
        given = password() if callable(password) else password
        return given if given is not None else password_from_env()

    return ask


class Repository:
    """An open repository. Use :func:`open_repository` or :func:`init_repository` to get one."""

    def __init__(self, store: Store, *, lock_wait: float | None = None) -> None:
        self.store = store
        #: seconds a backup waits for a prune's lock (``STCORE_LOCK_WAIT``, default 600)
        self.lock_wait = lock_wait_from_env() if lock_wait is None else lock_wait
        self._catalog: Catalog | None = None

    # --- what it is -----------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return self.store.location

    @property
    def id(self) -> str:
        return self.store.id

    @property
    def encrypted(self) -> bool:
        return self.store.encrypted

    @property
    def backend(self) -> Backend:
        return self.store.backend

    @property
    def config(self) -> RepositoryConfig:
        return self.store.config

    @property
    def host(self) -> PluginHost:
        return self.store.host

    @property
    def codec(self) -> Codec:
        return self.store.codec

    @property
    def index(self) -> BlobIndex:
        return self.store.index

    @property
    def cache_dir(self) -> Path:
        return self.store.cache_dir

    @property
    def object_cache(self) -> ObjectCache | None:
        return self.store.object_cache

    @property
    def workers(self) -> int:
        return self.store.workers

    @property
    def key_id(self) -> str | None:
        return self.store.key_id

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None
        self.store.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Repository {self.location} ({self.id})>"

    # --- reading objects ------------------------------------------------------------------------

    def read_blob(self, blob_id: bytes) -> bytes:
        """The plaintext of one blob, verified against its id."""
        return self.store.read_blob(blob_id)

    def read_blobs(
        self, blob_ids: Iterable[bytes], *, cached: bool = True
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(blob id, plaintext)`` for many blobs, few backend reads; see
        :meth:`stcore.repo.store.Store.read_blobs`."""
        return self.store.read_blobs(blob_ids, cached=cached)

    def read_tree(self, tree_id: bytes) -> list[TreeNode]:
        return self.store.read_tree(tree_id)

    def walk(
        self, tree_id: bytes, prefix: tuple[str, ...] = ()
    ) -> Iterator[tuple[tuple[str, ...], TreeNode]]:
        """Every node below ``tree_id``, depth-first, with its path."""
        return self.store.walk(tree_id, prefix)

    def load_manifest(self, snapshot_id: str) -> SnapshotManifest:
        return self.store.load_manifest(snapshot_id)

    def referenced_blobs(self, snapshot_ids: Iterable[str]) -> set[bytes]:
        """Every blob (trees and data) the snapshots reference."""
        return self.store.referenced_blobs(snapshot_ids)

    # --- snapshots and the catalog --------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        """The snapshot catalog, brought up to date with the repository on first use (and by
        :meth:`refresh`); this Repository's own backups and forgets update it as they happen."""
        if self._catalog is None:
            if self.store.remote:
                self.store.prefetch_index()  # read the index while the manifests are listed
            self._catalog = open_catalog(self.store)
        return self._catalog

    def rebuild_catalog(self) -> int:
        """Drop the catalog and rebuild it from the repository; return the snapshot count."""
        if self._catalog is None:  # opened without the refresh that clear() would undo
            self._catalog = open_catalog(self.store, refresh=False)
        self._catalog.clear()
        self._catalog.refresh(self.store.snapshot_ids(), self.store.load_manifest)
        return len(self._catalog.ids())

    def snapshots(
        self,
        *,
        since: dt.datetime | dt.date | str | None = None,
        until: dt.datetime | dt.date | str | None = None,
        source: str | None = None,
        source_type: str | None = None,
        tags: str | Iterable[str] = (),
        host: str | None = None,
        synced: bool | None = None,
        remote: str | None = None,
        limit: int | None = None,
    ) -> list[SnapshotManifest]:
        """Snapshot manifests matching every filter given, newest first (from the catalog).

        ``since``/``until`` take a datetime, a date or text (``2026-11-24``, or ``7d`` for seven
        days ago); ``tags`` one tag or several (all must be present). ``synced``/``remote``
        filter on sync state: ``synced=True`` keeps snapshots already on ``remote`` (on any
        remote when it is None).
        """
        if isinstance(tags, str):
            tags = (tags,)  # one tag, not its letters
        tags = tuple(tags)
        if not all(isinstance(tag, str) for tag in tags):
            raise ConfigError(f"tags must be text, got {tags!r}")
        return self.catalog.query(
            since=None if since is None else as_time(since, "since"),
            until=None if until is None else as_time(until, "until"),
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
        since: dt.datetime | dt.date | str | None = None,
        until: dt.datetime | dt.date | str | None = None,
        source: str | None = None,
        type: str | None = None,
        tags: str | Iterable[str] = (),
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

    def resolve(
        self, ref: str, *, as_of: dt.datetime | dt.date | str | None = None
    ) -> SnapshotManifest:
        """The snapshot ``ref`` names: a full id, a unique prefix (of the id or its random
        suffix), ``latest``, or ``@<time>`` (the newest taken at or before it: ``@2026-11-30``,
        ``@7d``), each optionally followed by ``~N`` (N snapshots earlier); see
        :mod:`stcore.refs`. ``as_of`` (a datetime, a date, ``2026-11-30`` or ``7d`` ago) makes
        ``latest`` the newest snapshot taken at or before then.

        Answered by the catalog as of its last refresh (the first use of this Repository, or
        :meth:`refresh`), plus what this Repository backed up or forgot itself since.
        """
        when = None
        if as_of is not None:
            try:
                when = as_time(as_of, "as_of")
            except ConfigError as exc:
                if not isinstance(as_of, str):
                    raise  # its message names as_of
                raise ConfigError(f"as_of: {exc}") from None
        if self._catalog is None and SNAPSHOT_ID.fullmatch(ref):
            # One full id, before this Repository has listed anything: one manifest read,
            # not a catalog of every snapshot (a first get_backup(id) on a cloud copy).
            if self.store.remote:
                self.store.prefetch_index()  # read the index meanwhile
            try:
                return self.store.load_manifest(ref)
            except SnapshotNotFoundError:
                pass  # the catalog says what there is instead
        return resolve_snapshot(self.catalog, ref, self.location, as_of=when)

    def resolve_id(self, ref: str) -> str:
        """The snapshot id ``ref`` names, damaged snapshots included (to forget one)."""
        return resolve_snapshot_id(self.catalog, ref, self.location)

    def damaged_snapshots(self) -> dict[str, str]:
        """Snapshot id -> why its manifest cannot be read. Damaged snapshots are left out of
        :meth:`snapshots` and never stop the others from being listed, restored or forgotten."""
        return dict(self.catalog.damaged)

    def snapshot(self, ref: str, *, as_of: dt.datetime | dt.date | str | None = None) -> Snapshot:
        """A lazy view of the snapshot ``ref`` names (see :meth:`resolve`, ``as_of`` too):
        nothing is fetched until data is read."""
        from stcore.access.views import Snapshot

        return Snapshot(self.store, self.resolve(ref, as_of=as_of))

    def refresh(self) -> tuple[int, int]:
        """Bring the catalog up to date with the repository: snapshots other processes made or
        forgot since it was last read now count (``latest`` moves). One listing of
        ``snapshots/`` plus the manifests not seen before; returns (added, removed). When either
        is non-zero the index is read again on next use, so the new snapshots' data is found.
        """
        if self._catalog is None:
            self._catalog = open_catalog(self.store, refresh=False)
        added, removed = self._catalog.refresh(self.store.snapshot_ids(), self.store.load_manifest)
        if added or removed:
            self.store.forget_index()
        return added, removed

    def forget(self, snapshot_ids: Iterable[str]) -> list[str]:
        """Remove snapshots (their manifests) and return the ids removed; see
        :func:`stcore.repo.forget.forget`."""
        from stcore.repo import forget as _forget

        removed = _forget.forget(self.store, snapshot_ids)
        if self._catalog is not None:
            self._catalog.remove(removed)
        return removed

    def tag(
        self,
        refs: Iterable[str],
        *,
        add: str | Iterable[str] = (),
        remove: str | Iterable[str] = (),
        set_tags: str | Iterable[str] | None = None,
        wait: float | None = None,
    ) -> TagResult:
        """Change the tags of the snapshots ``refs`` name (see :meth:`resolve`): ``add`` and
        ``remove`` tags, or ``set_tags`` to replace them all (``""``: none). Each changed
        snapshot gets a new id (same time part); the catalog follows. Takes the exclusive lock,
        waiting up to ``wait`` seconds (default :attr:`lock_wait`); see :mod:`stcore.repo.tag`.
        """
        from stcore.repo import tag as _tag

        def listed(tags: str | Iterable[str]) -> tuple[str, ...]:
            return (tags,) if isinstance(tags, str) else tuple(tags)  # one tag, not its letters

        ids = [self.resolve(ref).id for ref in refs]

        def follow(old_id: str, new: SnapshotManifest) -> None:
            if self._catalog is not None:
                self._catalog.replace(old_id, new)

        return _tag.tag(
            self.store,
            ids,
            add=listed(add),
            remove=listed(remove),
            set_tags=None if set_tags is None else listed(set_tags),
            wait=self.lock_wait if wait is None else wait,
            on_replace=follow,
        )

    def locks(self) -> list[LockInfo]:
        """The repository's lock objects, each marked stale or live."""
        return list_locks(self.store.backend)

    def unlock(self, *, remove_all: bool = False) -> tuple[list[LockInfo], list[LockInfo]]:
        """Remove stale locks (every lock with ``remove_all``); return (removed, kept). See
        :func:`stcore.repo.locks.remove_locks`."""
        return remove_locks(self.store.backend, remove_all=remove_all)

    # --- operations -----------------------------------------------------------------------------

    def backup(
        self,
        sources: Sequence[Source],
        *,
        tags: str | Iterable[str] = (),
        hostname: str | None = None,
        progress: ProgressCallback | None = None,
        time: dt.datetime | None = None,
    ) -> BackupResult:
        """Back up ``sources`` into one new snapshot and return it with any per-entry errors.

        Unreadable entries are skipped and listed in the result (the manifest is marked
        ``partial``); a source that cannot be read at all raises
        :class:`~stcore.errors.SourceError` and nothing is written.
        """
        result = _backup.backup(
            self.store,
            sources,
            tags=tags,
            hostname=hostname,
            progress=progress,
            time=time,
            lock_wait=self.lock_wait,
        )
        if self._catalog is not None:
            self._catalog.add(result.manifest)
        return result

    def restore(
        self,
        ref: str,
        target: str | os.PathLike[str],
        *,
        sources: Iterable[str] | None = None,
        include: Iterable[str] = (),
        overwrite: Overwrite = "if-changed",
        delete: bool = False,
        dry_run: bool = False,
        progress: ProgressCallback | None = None,
    ) -> RestoreResult:
        """Restore snapshot ``ref`` into ``target/<source name>/...``. What the target already
        has is kept if it matches, else replaced (``overwrite``: ``always``, ``if-changed``,
        ``if-newer``, ``never``); ``delete`` removes what the restored directories hold beyond
        the snapshot; ``dry_run`` only plans. See :mod:`stcore.repo.restore`."""
        from stcore.repo import restore as _restore

        return _restore.restore(
            self.store,
            self.resolve(ref),
            target,
            sources=sources,
            include=include,
            overwrite=overwrite,
            delete=delete,
            dry_run=dry_run,
            progress=progress,
        )

    def check(
        self,
        *,
        read_data: bool = False,
        read_subset: ReadSubset | str | None = None,
        progress: ProgressCallback | None = None,
    ) -> CheckResult:
        """Verify structure and, with ``read_data``, every byte; with ``read_subset`` (``2/5``,
        ``10%``, ``500M``: restic's forms), the bytes of some packs. See
        :mod:`stcore.repo.check`."""
        from stcore.repo import check as _check

        if isinstance(read_subset, str):
            read_subset = _check.ReadSubset.parse(read_subset)
        return _check.check(
            self.store, read_data=read_data, read_subset=read_subset, progress=progress
        )

    def prune(
        self,
        *,
        repack_threshold: float = DEFAULT_REPACK_THRESHOLD,
        dry_run: bool = False,
        wait: float = EXCLUSIVE_LOCK_WAIT,
        progress: ProgressCallback | None = None,
        ignore_snapshots: Iterable[str] = (),
    ) -> PruneResult:
        """Reclaim the space of data no snapshot references; see :mod:`stcore.repo.prune`.

        ``ignore_snapshots`` (with ``dry_run`` only) reports what a prune would free once those
        snapshots are forgotten, as ``forget --prune --dry-run`` shows it.
        """
        return _prune.prune(
            self.store,
            repack_threshold=repack_threshold,
            dry_run=dry_run,
            wait=wait,
            progress=progress,
            ignore_snapshots=set(ignore_snapshots),
        )

    def repair_index(
        self, *, dry_run: bool = False, progress: ProgressCallback | None = None
    ) -> RepairIndexResult:
        """Rebuild the index from the packs' own trailers; see :mod:`stcore.repo.repair`."""
        from stcore.repo import repair as _repair

        return _repair.repair_index(self.store, dry_run=dry_run, progress=progress)

    def repair_packs(
        self, pack_ids: Iterable[str] = (), *, progress: ProgressCallback | None = None
    ) -> RepairPacksResult:
        """Salvage what still verifies of damaged packs and delete them."""
        from stcore.repo import repair as _repair

        return _repair.repair_packs(self.store, pack_ids, progress=progress)

    def repair_snapshots(
        self, *, dry_run: bool = False, forget: bool = False
    ) -> RepairSnapshotsResult:
        """Rewrite the snapshots that reference lost data (tagged ``repaired``)."""
        from stcore.repo import repair as _repair

        result = _repair.repair_snapshots(
            self.store, dry_run=dry_run, forget=forget, lock_wait=self.lock_wait
        )
        self._catalog_stale()
        return result

    def _catalog_stale(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def stats(self) -> RepositoryStats:
        """Sizes and counts: what is stored versus what the snapshots hold."""
        from stcore.repo import stats as _stats

        totals = self.catalog.totals()
        return _stats.stats(
            self.store, snapshots=totals["snapshots"], snapshot_bytes=totals["size"]
        )

    def sync(
        self,
        remote: RemoteConfig | str | None = None,
        snapshots: Iterable[str] | None = None,
        *,
        settings: Settings | None = None,
        options: SyncOptions | None = None,
        progress: ProgressCallback | None = None,
    ) -> SyncResult:
        """Upload what a remote lacks; see :mod:`stcore.sync`.

        ``remote`` is a :class:`~stcore.config.RemoteConfig`, a URL, or a remote's name (None:
        the only one) from ``settings`` (:func:`stcore.config.load_settings`), which the caller
        passes: a library does not read stcore.toml from its working directory.

        The catalog is brought up to date first (:meth:`refresh`): a long-lived Repository (the
        in-app scheduler's) must also upload the snapshots other processes made since it opened.
        """
        from stcore.sync import remote_from_url, sync

        if not isinstance(remote, RemoteConfig):
            if isinstance(remote, str) and ("://" in remote or os.sep in remote):
                remote = remote_from_url(remote)
            elif settings is not None:
                remote = settings.remote(remote)
            else:
                raise ConfigError(
                    "name the remote with a URL or a RemoteConfig, or pass settings= "
                    "(stcore.config.load_settings()) to look its name up"
                )
        self.refresh()
        return sync(self.store, self.catalog, remote, snapshots, options=options, progress=progress)

    # --- keys -----------------------------------------------------------------------------------

    def _require_encrypted(self) -> None:
        if self.store.master_key is None:
            raise RepositoryError(f"{self.location} is not encrypted: it has no keys")

    def keys(self) -> list[KeyInfo]:
        """The key objects (id, created, host, KDF parameters); ``current`` marks ours."""
        self._require_encrypted()
        return describe_keys(self.store.backend, current=self.store.key_id)

    def add_key(self, password: str, kdf: KdfParams | None = None) -> str:
        """Let ``password`` open the repository too; returns the new key's id."""
        self._require_encrypted()
        assert self.store.master_key is not None
        return add_key(
            self.store.backend, self.store.master_key, password, kdf, checked=self.store.checked
        )

    def remove_key(self, key_id: str) -> None:
        """Delete a key object; removing the last one is refused."""
        self._require_encrypted()
        remove_key(self.store.backend, key_id)

    def change_password(self, password: str, kdf: KdfParams | None = None) -> str:
        """Add a key for ``password`` and remove the one this repository was opened with."""
        new_id = self.add_key(password, kdf)
        if self.store.key_id is not None:
            remove_key(self.store.backend, self.store.key_id)
        self.store.key_id = new_id
        return new_id


# --- opening ---------------------------------------------------------------------------------


def init_repository(
    url: str | os.PathLike[str],
    *,
    compression: str = "zstd",
    compression_level: int | None = None,
    encryption: str = "none",
    create: bool = True,
    host: PluginHost | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    chunker: ChunkerParams | None = None,
    pack_size: int | None = None,
    options: Mapping[str, Any] | None = None,
    password: PasswordSource = None,
    kdf: KdfParams | None = None,
    group_access: bool = False,
) -> Repository:
    """Create a new, empty repository at ``url`` and return it open.

    With an ``encryption`` other than ``none`` (``aes-256-gcm``, ``chacha20-poly1305``) a random
    master key is made and wrapped under ``password`` (default: ``STCORE_PASSWORD``) in
    ``keys/<id>``; everything but ``config`` is then encrypted. A local repository is private
    (files ``0600``, folders ``0700``); ``group_access`` lets its group read it (``0640``,
    ``0750``).
    """
    store = create_store(
        os.fspath(url),
        host or make_plugin_manager(),
        cache_root=_cache_root(cache_root),
        compression=compression,
        compression_level=compression_level,
        encryption=encryption,
        create=create,
        chunker=chunker,
        pack_size=pack_size,
        options=options,
        password=_password_or_env(password),
        kdf=kdf,
        workers=_default_workers(),
        group_access=group_access,
    )
    return Repository(store)


def open_repository(
    url: str | os.PathLike[str],
    *,
    host: PluginHost | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    options: Mapping[str, Any] | None = None,
    cache: bool | None = None,
    password: PasswordSource = None,
) -> Repository:
    """Open the existing repository at ``url`` (a path, or a URL such as ``s3://bucket/prefix``).

    ``cache`` keeps fetched index objects and blobs on local disk (bounded by
    ``STCORE_CACHE_MAX_BYTES``, see :mod:`stcore.repo.objectcache`); by default it is on for
    every backend but the local one. ``password`` (a string, or a callable asked only if the
    repository is encrypted; default ``STCORE_PASSWORD``) opens an encrypted repository; a wrong
    one raises :class:`~stcore.errors.PasswordError`.
    """
    store = open_store(
        os.fspath(url),
        host or make_plugin_manager(),
        cache_root=_cache_root(cache_root),
        workers=workers or _default_workers(),
        options=options,
        cache=cache,
        cache_limit=cache_limit_from_env(),
        password=_password_or_env(password),
    )
    return Repository(store)


def _cache_root(given: str | os.PathLike[str] | None) -> Path:
    """Where local caches go: ``given`` (a path, as a string or a ``Path``) or the default."""
    return Path(given) if given is not None and os.fspath(given) else default_cache_root()


def open_remote_repository(
    remote: RemoteConfig,
    *,
    host: PluginHost | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    password: PasswordSource = None,
) -> Repository:
    """The remote as a repository of its own (restore and reads straight from the cloud).

    Fetched index objects and blobs are kept in the local object cache, so reading the same
    data again costs no requests. An encrypted remote opens with the same password as the local
    repository (``password``, else ``STCORE_PASSWORD``).
    """
    try:
        return open_repository(
            remote.url,
            host=host,
            cache_root=cache_root,
            options=remote.options,
            cache=True,
            password=password,
        )
    except ContainerNotFoundError as exc:  # nothing was synced there: say how to start
        from stcore.sync import remote_container_missing

        raise remote_container_missing(remote, exc) from exc
