"""Local-first sync: copy what a remote lacks, in an order that keeps the remote consistent.

A remote is a full stcore repository (same config, same id) on any backend. A sync lists the
remote once, then uploads

1. the repository ``config``, if the remote is new;
2. every pack the selected snapshots need that the remote lacks (concurrently);
3. the index objects describing those packs, only once all of their packs are up;
4. the snapshot manifests, last.

Then it deletes the remote's index objects that a local compaction replaced
(:mod:`stcore.repo.compact`): one whose every entry is also in an index object both places
hold, decided and deleted under the remote's exclusive lock. A local index object deleted by a
compaction while the sync plans is replaced by one the sync lists again, so the plan is made
again.

So at every instant, even if the process is killed, every snapshot on the remote has all its data;
a killed sync simply resumes: what finished is listed on the remote and skipped. Writes are
create-only and the only deletes happen under the remote's exclusive lock, so two syncs racing
each other cannot damage anything either. Transient failures are
retried with exponential backoff and jitter (tenacity); permanent ones (access denied, missing
bucket) stop the sync at once with the backend's one-line message.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from stcore.access.catalog import Catalog
from stcore.config import RemoteConfig
from stcore.errors import (
    BackendUnavailableError,
    ContainerNotFoundError,
    CorruptObjectError,
    IndexReplacedError,
    ObjectExistsError,
    ObjectNotFoundError,
    RepositoryError,
    RepositoryLockedError,
    SyncBusyError,
    TransientBackendError,
)
from stcore.interfaces import Backend, ProgressCallback, no_progress
from stcore.localfiles import file_lock
from stcore.repo.format import RepositoryConfig, object_key
from stcore.repo.keys import KEY_PREFIX, key_ids
from stcore.repo.locks import repository_lock
from stcore.repo.prune import PruneResult, prune
from stcore.repo.store import Store, open_backend

if TYPE_CHECKING:
    from tenacity import Retrying

log = logging.getLogger("stcore.sync")

RETRYABLE = (TransientBackendError, BackendUnavailableError)
#: plans made at most, if local index objects keep being replaced (compacted) meanwhile
PLANS = 5


@attrs.frozen(kw_only=True)
class SyncOptions:
    """How a sync behaves; every field has a sensible default."""

    concurrency: int = 4
    #: bytes per second across all uploads; None for no limit
    bandwidth_limit: int | None = None
    #: attempts per object (the first included) for transient errors
    attempts: int = 6
    #: longest wait between two attempts, in seconds
    max_backoff: float = 30.0
    #: also forget on the remote the snapshots forgotten locally, then prune the remote
    prune: bool = False
    #: create the remote's bucket, container or directory if it is missing
    create_bucket: bool = False


@attrs.frozen(kw_only=True)
class SyncResult:
    remote: str
    url: str
    snapshots: tuple[str, ...]
    objects_uploaded: int
    bytes_uploaded: int
    snapshots_skipped: int
    seconds: float
    #: what ``SyncOptions(prune=True)`` reclaimed on the remote, when it ran
    pruned: PruneResult | None = None

    @property
    def throughput(self) -> float:
        """Uploaded bytes per second."""
        return self.bytes_uploaded / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "remote": self.remote,
            "url": self.url,
            "snapshots": list(self.snapshots),
            "objects_uploaded": self.objects_uploaded,
            "bytes_uploaded": self.bytes_uploaded,
            "snapshots_skipped": self.snapshots_skipped,
            "seconds": round(self.seconds, 3),
            "throughput_bytes_per_second": round(self.throughput),
            "pruned": self.pruned.to_json() if self.pruned is not None else None,
        }


class _Throttle:
    """A shared token bucket: uploads sleep so the total stays under ``rate`` bytes/second."""

    def __init__(self, rate: int | None) -> None:
        self._rate = rate
        self._lock = threading.Lock()
        self._next_free = time.monotonic()

    def take(self, amount: int) -> None:
        if not self._rate:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_free)
            self._next_free = start + amount / self._rate
        delay = start - now
        if delay > 0:
            time.sleep(delay)


@contextmanager
def _sync_lock(cache_dir: Path, remote: str) -> Iterator[None]:
    """One sync per remote per machine: a second one fails fast instead of doubling traffic."""
    with file_lock(cache_dir / f"sync-{remote}.lock", wait=0) as locked:
        if not locked:
            raise SyncBusyError(
                f"another sync to {remote!r} is running on this machine; wait for it to finish"
            )
        yield


def _list_ids(backend: Backend, prefix: str) -> set[str]:
    return {info.key.rsplit("/", 1)[-1] for info in backend.list(prefix)}


class Syncer:
    """Syncs one local repository to one remote. Use :func:`sync` for the one-call form."""

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        remote: RemoteConfig,
        *,
        options: SyncOptions | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.remote = remote
        self.options = options or SyncOptions()
        self.progress = progress or no_progress
        self._throttle = _Throttle(self.options.bandwidth_limit)
        self._counter_lock = threading.Lock()
        self._uploaded = 0
        self._uploaded_bytes = 0
        #: set on the first failure, so queued uploads stop instead of piling on more errors
        self._failed = threading.Event()
        #: what ``prune=True`` reclaimed on the remote, if it ran
        self.pruned: PruneResult | None = None
        #: local index id -> its (blob id, pack id) entries, as the last plan read them
        self._local_entries: dict[str, set[tuple[bytes, bytes]]] = {}

    # --- plumbing -------------------------------------------------------------------------------

    def _retrying(self) -> Retrying:
        # imported here: tenacity loads asyncio (and tornado, when installed) at import, 14 MiB
        # that a backup, which never syncs, should not carry
        from tenacity import (
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_random_exponential,
        )

        return Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_random_exponential(multiplier=0.2, max=self.options.max_backoff),
            stop=stop_after_attempt(max(1, self.options.attempts)),
            reraise=True,
        )

    def _open_remote(self) -> Backend:
        create = self.options.create_bucket
        try:
            for attempt in self._retrying():
                with attempt:
                    return open_backend(
                        self.remote.url, self.store.host, create=create, options=self.remote.options
                    )
        except ContainerNotFoundError as exc:
            raise remote_container_missing(self.remote, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover - Retrying re-raises

    def _call(self, function: Callable[[], Any]) -> Any:
        for attempt in self._retrying():
            with attempt:
                return function()
        raise AssertionError("unreachable")  # pragma: no cover

    def _copy(self, remote: Backend, key: str) -> None:
        """Copy one object; an object that is already there (a resumed sync) counts as done."""
        if self._failed.is_set():
            return
        try:
            data = self.store.backend.read(key)
        except ObjectNotFoundError:
            if key.startswith("index/"):
                raise IndexReplacedError(f"{key} was replaced while syncing") from None
            raise
        self._throttle.take(len(data))
        attempts = 0

        def write() -> None:
            nonlocal attempts
            attempts += 1
            remote.write(key, data)

        try:
            self._call(write)
        except ObjectExistsError:
            if attempts == 1:
                return  # there before we tried: a resumed sync, or another writer's copy
            # An earlier attempt stored it but its answer was lost: it was our upload.
        except BaseException:
            self._failed.set()
            raise
        with self._counter_lock:
            self._uploaded += 1
            self._uploaded_bytes += len(data)
        self.progress("bytes", len(data))
        self.progress("object", 1)

    def _copy_all(self, remote: Backend, keys: list[str]) -> None:
        if not keys:
            return
        with ThreadPoolExecutor(
            max_workers=max(1, self.options.concurrency), thread_name_prefix="st-sync"
        ) as pool:
            futures = [pool.submit(self._copy, remote, key) for key in keys]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in done:
                future.result()  # re-raise the first failure

    def _ensure_keys(self, remote: Backend) -> None:
        """Key objects go up before the config, so a remote is never unopenable.

        Keys added locally later are copied on the next sync; a key removed locally stays on
        the remote until removed there (``stcore key remove`` with ``--repo`` on the remote).
        """
        local = set(key_ids(self.store.backend))
        missing = sorted(local - set(self._call(lambda: key_ids(remote))))
        self._copy_all(remote, [KEY_PREFIX + key_id for key_id in missing])

    def _ensure_config(self, remote: Backend) -> None:
        self._ensure_keys(remote)
        try:
            raw = self._call(lambda: remote.read("config"))
        except ObjectNotFoundError:
            try:
                self._call(lambda: remote.write("config", self.store.config.to_bytes()))
                return
            except ObjectExistsError:
                # A retried write whose first answer was lost, or another writer: see what is there.
                raw = self._call(lambda: remote.read("config"))
        theirs = RepositoryConfig.from_bytes(raw, remote.location)
        if theirs.id != self.store.id:
            raise RepositoryError(
                f"remote {self.remote.name!r} ({remote.location}) holds another repository "
                f"({theirs.id}, not {self.store.id}); point it at an empty prefix"
            )

    # --- planning -------------------------------------------------------------------------------

    def _plan(
        self, snapshot_ids: list[str], remote_packs: set[str], remote_indexes: set[str]
    ) -> tuple[list[str], list[str]]:
        """Pack keys and index keys to upload so ``snapshot_ids`` are complete on the remote.

        An index object goes up with every pack it lists, so the remote never holds an index
        entry pointing at a pack it lacks.
        """
        local_indexes = sorted(self.store.list_ids("index/"))
        needed_blobs = self._needed_blobs(snapshot_ids)
        packs: set[str] = set()
        indexes: list[str] = []
        self._local_entries = {}
        for index_id in local_indexes:
            try:
                entries = self.store.read_index_entries(object_key("index", index_id))
            except ObjectNotFoundError:
                raise IndexReplacedError(f"index/{index_id} was replaced while syncing") from None
            self._local_entries[index_id] = {(e.blob_id, e.pack_id) for e in entries}
            if needed_blobs is not None and not any(e.blob_id in needed_blobs for e in entries):
                continue
            pack_ids = {e.pack_id.hex() for e in entries}
            packs |= pack_ids - remote_packs
            if index_id not in remote_indexes:
                indexes.append(index_id)
        return (
            [object_key("data", p) for p in sorted(packs)],
            [object_key("index", i) for i in indexes],
        )

    def _copy_data(self, remote: Backend, todo: list[str]) -> None:
        """Upload the packs, then the index objects, that ``todo`` needs; plan again if a
        compaction replaced a local index object meanwhile."""
        for _ in range(PLANS):
            remote_packs = self._call(lambda: _list_ids(remote, "data/"))
            remote_indexes = self._call(lambda: _list_ids(remote, "index/"))
            try:
                packs, indexes = self._plan(todo, remote_packs, remote_indexes)
                self._report_total([*packs, *indexes, *(object_key("snapshots", s) for s in todo)])
                self._copy_all(remote, packs)
                self._copy_all(remote, indexes)
                return
            except IndexReplacedError:
                continue  # its entries are in a new object, which the next listing shows
        raise RepositoryError(
            f"the index of {self.store.location} kept changing during the sync "
            f"({PLANS} plans); retry"
        )

    def _report_total(self, keys: list[str]) -> None:
        """Announce the bytes this sync uploads in all (a ``total`` progress event): what went
        up so far, and the local objects ``keys`` name."""
        if self.progress is no_progress:
            return  # nobody is watching: spare the listings
        names: dict[str, list[str]] = {}
        for key in keys:
            names.setdefault(key.split("/", 1)[0] + "/", []).append(key.rsplit("/", 1)[-1])
        with self._counter_lock:
            total = self._uploaded_bytes
        for prefix, wanted in names.items():
            sizes = self.store.object_sizes(prefix)
            total += sum(sizes.get(name, 0) for name in wanted)
        self.progress("total", total)

    def _drop_replaced_indexes(self, remote: Backend) -> None:
        """Delete the remote's index objects a local compaction replaced: those this repository
        no longer has whose every entry is in an index object both places hold. Anything else
        (a remote prune's index, a damaged object) stays.

        Deciding and deleting happen under the remote's exclusive lock, on a listing made
        inside it: two syncs of this repository to one remote (under two remote names) that
        planned on either side of a compaction would otherwise each delete the objects the
        other counted on, and leave the remote without an index. If the remote is locked
        (a backup or prune there, or another sync doing this), the tidying waits for the
        next sync; nothing depends on it.
        """
        if not self._call(lambda: _list_ids(remote, "index/")) - set(self._local_entries):
            return
        try:
            with repository_lock(remote, exclusive=True, purpose="sync: drop replaced index"):
                self._drop_covered(remote)
        except RepositoryLockedError:
            log.info("%s is locked; replaced index objects stay for a later sync", remote.location)

    def _drop_covered(self, remote: Backend) -> None:
        remote_indexes = self._call(lambda: _list_ids(remote, "index/"))
        extra = sorted(remote_indexes - set(self._local_entries))
        shared: set[tuple[bytes, bytes]] = set()
        for index_id in remote_indexes & set(self._local_entries):
            shared |= self._local_entries[index_id]
        # Remote index objects are read through this machine's cache: one kept because it is
        # not covered (a remote prune wrote it) is not fetched again on every sync.
        mirror = self.store.mirror(remote, object_cache=self.store.local_cache)
        for index_id in extra:
            key = object_key("index", index_id)
            try:
                rows = self._call(partial(mirror.read_index_rows, key))
            except (CorruptObjectError, ObjectNotFoundError):
                continue  # damaged (check on the remote reports it) or gone already
            if all((row[0], row[2]) in shared for row in rows):
                try:
                    self._call(partial(remote.delete, key))
                except ObjectNotFoundError:
                    pass

    def _needed_blobs(self, snapshot_ids: list[str]) -> set[bytes] | None:
        """Every blob the snapshots reference; None means "all of them" (a full sync)."""
        if set(snapshot_ids) >= self.catalog.ids():
            return None
        return self.store.referenced_blobs(snapshot_ids)

    def _propagate_forgets(self, remote: Backend, local: set[str]) -> None:
        """Forget on the remote what was forgotten here, then prune it (``sync --prune``)."""
        extra = sorted(self._call(lambda: _list_ids(remote, "snapshots/")) - local)
        for key in [object_key("snapshots", snapshot_id) for snapshot_id in extra]:
            try:
                self._call(partial(remote.delete, key))
            except ObjectNotFoundError:
                pass
        if extra:
            # The mirror has our config and master key: open it with them, no password needed.
            self.pruned = prune(self.store.mirror(remote))

    # --- the sync -------------------------------------------------------------------------------

    def run(self, snapshot_ids: Iterable[str] | None = None) -> SyncResult:
        started = time.monotonic()
        catalog = self.catalog
        run_id = catalog.start_sync_run(self.remote.name, dt.datetime.now(dt.UTC))
        error: str | None = None
        synced: list[str] = []
        skipped = 0
        try:
            with _sync_lock(self.store.cache_dir, self.remote.name):
                remote = self._open_remote()
                try:
                    self._ensure_config(remote)
                    remote_snapshots = self._call(lambda: _list_ids(remote, "snapshots/"))
                    local = catalog.ids()
                    catalog.mark_synced(
                        local & remote_snapshots, self.remote.name, dt.datetime.now(dt.UTC)
                    )
                    wanted = sorted(local if snapshot_ids is None else set(snapshot_ids))
                    unknown = set(wanted) - local
                    if unknown:
                        raise RepositoryError(
                            f"no local snapshot {sorted(unknown)[0]!r} to sync; "
                            "`stcore snapshots` lists them"
                        )
                    todo = [s for s in wanted if s not in remote_snapshots]
                    if todo:
                        self._copy_data(remote, todo)  # 1. data, 2. where the data is
                        for snapshot_id in todo:  # 3. what refers to it, last
                            self._copy(remote, object_key("snapshots", snapshot_id))
                            catalog.mark_synced(
                                [snapshot_id], self.remote.name, dt.datetime.now(dt.UTC)
                            )
                            synced.append(snapshot_id)
                        self._drop_replaced_indexes(remote)
                    skipped = len(wanted) - len(todo)
                    if self.options.prune and snapshot_ids is None:
                        self._propagate_forgets(remote, local)
                finally:
                    remote.close()
        except BaseException as exc:
            error = str(exc) or type(exc).__name__
            raise
        finally:
            catalog.finish_sync_run(
                run_id,
                dt.datetime.now(dt.UTC),
                error=error,
                objects=self._uploaded,
                bytes_uploaded=self._uploaded_bytes,
                snapshots=len(synced),
            )
        return SyncResult(
            remote=self.remote.name,
            url=self.remote.url,
            snapshots=tuple(synced),
            objects_uploaded=self._uploaded,
            bytes_uploaded=self._uploaded_bytes,
            snapshots_skipped=skipped,
            seconds=time.monotonic() - started,
            pruned=self.pruned,
        )


def sync(
    store: Store,
    catalog: Catalog,
    remote: RemoteConfig,
    snapshot_ids: Iterable[str] | None = None,
    *,
    options: SyncOptions | None = None,
    progress: ProgressCallback | None = None,
) -> SyncResult:
    """Upload what ``remote`` lacks so that ``snapshot_ids`` (default: all) are complete there."""
    syncer = Syncer(store, catalog, remote, options=options, progress=progress)
    return syncer.run(snapshot_ids)


#: how a backend's message about a missing bucket goes on to say how to create it (for a
#: repository of its own: ``stcore init``, which is not the way for a sync remote)
_INIT_HINT = re.compile(r"; (?:create it with|run) `")


def remote_container_missing(
    remote: RemoteConfig, exc: ContainerNotFoundError
) -> ContainerNotFoundError:
    """The error for a remote whose bucket, container or directory does not exist, saying how
    to create it for a sync: ``stcore init`` would make a repository of its own there, with
    another id, which the next sync would refuse. (Not for a path that is not a directory.)"""
    message = str(exc)
    if "is not a directory" in message:
        return exc
    fact = _INIT_HINT.split(message, maxsplit=1)[0]
    return ContainerNotFoundError(
        f"remote {remote.name!r}: {fact}; `stcore sync --remote {shlex.quote(remote.name)} "
        "--create-bucket` creates it and syncs"
    )


def pending(catalog: Catalog, remote: RemoteConfig) -> dict[str, int]:
    """Snapshots not yet synced to ``remote`` (per the catalog) and the bytes they added."""
    unsynced = catalog.query(synced=False, remote=remote.name)
    return {"snapshots": len(unsynced), "bytes": sum(m.added_bytes for m in unsynced)}


def remote_from_url(url: str, options: Mapping[str, Any] | None = None) -> RemoteConfig:
    """An ad-hoc remote for a URL given on the command line."""
    name = url.split("://", 1)[0] if "://" in url else os.path.basename(url.rstrip("/")) or "remote"
    return RemoteConfig(name=name, url=url, options=dict(options or {}))
