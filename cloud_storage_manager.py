"""The seed application's storage API, kept working on top of stcore.

    from cloud_storage_manager import cloud_storage

    result = cloud_storage.backup_all_data()
    backups = cloud_storage.list_backups(limit=10)
    data = cloud_storage.get_backup(result["backup_id"])["data_sources"]["ai_hub"]

Configuration comes from the environment and ``.env`` (see ``.env.example``) and from
``stcore.toml`` for the data sources. Importing this module does no I/O: the repository is opened
on first use (never created: :meth:`CloudStorageManager.init_repository` or ``stcore init`` does).

Errors, one contract (docs/sync.md, "The seed facade"): the calls that act and answer with a
``"success"`` key (``init_repository``, ``backup_all_data``, ``sync_to_cloud``,
``cleanup_old_backups``, ``status``) never raise :class:`~stcore.errors.StcoreError`: a failure,
a bad argument included, is ``{"success": False, "error": "one line"}``. The calls that return
data (``list_backups``, ``get_backup``, ``query_backups``, ``get_statistics``) raise a
``StcoreError`` subclass with a one-line message (``ConfigError`` for a bad argument, a bad
setting or no cloud remote; ``RepositoryNotFoundError`` before the repository exists; a
``BackendError`` when the cloud fails). A keyword a method does not have is a ``TypeError``, as
for any Python function.

``CLOUD_AUTO_SYNC=true`` (or ``[daemon] auto_sync = true``) makes the first call that opens the
repository start one background sync thread for the process (:class:`stcore.daemon.AutoSync`,
sync only, every ``CLOUD_SYNC_INTERVAL`` seconds, the first at once). It cooperates with a
``stcore daemon`` and with other processes through the repository's locks (a run another one is
making is skipped), shows in ``status()["auto_sync"]``, stops with ``close()`` or
``stop_auto_sync()``, and at interpreter exit after the object in progress.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from stcore.access.readahead import ReadAhead
from stcore.access.views import Snapshot, SourceView
from stcore.config import (
    RemoteConfig,
    Settings,
    load_dotenv_file,
    load_settings,
    suggested,
)
from stcore.daemon import AutoSync, daemon_config
from stcore.durations import as_time, parse_duration
from stcore.errors import (
    ConfigError,
    ContainerNotFoundError,
    RepositoryNotFoundError,
    SnapshotNotFoundError,
    StcoreError,
)
from stcore.models import SnapshotManifest
from stcore.repo.forget import Policy
from stcore.repository import (
    Repository,
    init_repository,
    open_remote_repository,
    open_repository,
)
from stcore.tasks import backup_configured, forget_by_policy, read_state, remote_status

__all__ = [
    "CloudStorageManager",
    "ConfigError",
    "StcoreError",
    "cloud_storage",
    "describe_backup",
    "describe_backups",
]

log = logging.getLogger("cloud_storage_manager")

#: seconds the interpreter's exit, ``close()`` and ``stop_auto_sync()`` wait for the in-app sync
#: to stop after the object in progress (the thread is a daemon thread: it never blocks exit)
STOP_WAIT = 10.0

#: query_backups' filters, for the message about one it does not have
FILTERS = (
    "start_date",
    "end_date",
    "source",
    "source_type",
    "tags",
    "host",
    "cloud_synced",
    "limit",
)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _moment(value: object, argument: str) -> dt.datetime | None:
    """A date argument as an aware time; a ConfigError naming the argument and the forms it
    takes otherwise."""
    if value is None:
        return None
    try:
        return as_time(value, argument)
    except ConfigError as exc:
        if isinstance(value, str):
            raise ConfigError(f"{argument}: {exc}") from None
        raise


# --- the in-app scheduler (CLOUD_AUTO_SYNC) ---------------------------------------------------

_auto_lock = threading.Lock()
#: the process's one in-app scheduler, whichever CloudStorageManager started it
_auto: AutoSync | None = None
_exit_hooks_registered = False


def _request_stop_at_exit() -> None:
    auto = _auto
    if auto is not None:
        auto.request_stop()


def _stop_at_exit() -> None:
    _stop_process_auto_sync(STOP_WAIT)


def _register_exit_hooks() -> None:
    """Stop the scheduler when the interpreter exits. Python joins the worker threads of
    concurrent.futures (a sync's uploads) in threading's exit hooks, which run before atexit's:
    asking the scheduler to stop there first ends a sync after the objects being uploaded,
    instead of after every object queued (about 1 s instead of 5 s measured mid-sync). That
    hook, ``threading._register_atexit``, is CPython's own and private, so it is looked up and
    used only where it exists; without it only the atexit hook runs, and exit waits for the
    queued uploads. The atexit hook then waits for the scheduler and closes it."""
    global _exit_hooks_registered
    if _exit_hooks_registered:
        return
    _exit_hooks_registered = True
    atexit.register(_stop_at_exit)
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_request_stop_at_exit)
        except RuntimeError:  # the interpreter is already shutting down
            pass


def _stop_process_auto_sync(timeout: float | None) -> bool:
    """Stop the process's in-app scheduler after the object in progress; True once it has
    stopped (or none ran). One that is still stopping after ``timeout`` finishes on its own."""
    global _auto
    with _auto_lock:
        auto, _auto = _auto, None
    if auto is None:
        return True
    if not auto.stop(timeout):
        return False
    auto.close()
    return True


class LazyDataSources(Mapping[str, Any]):
    """``data_sources[name]``: loads that one source when it is first asked for, then keeps it.

    JSON sources give their parsed documents; other sources give a
    :class:`~stcore.access.views.SourceView` (``.files()``, ``.read_bytes(path)``...).
    """

    def __init__(
        self, views: Mapping[str, SourceView], on_read: Callable[[str], None] | None = None
    ) -> None:
        self._views = views
        self._loaded: dict[str, Any] = {}
        self._on_read = on_read

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            view = self._views[name]
            if self._on_read is not None:
                self._on_read(name)
            try:
                self._loaded[name] = view.data
            except AttributeError:
                self._loaded[name] = view
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __repr__(self) -> str:
        return f"<data_sources {list(self._views)} (loaded: {list(self._loaded)})>"


def describe_backup(
    repository: Repository, manifest: SnapshotManifest, synced: dict[str, str] | None = None
) -> dict[str, Any]:
    """One backup as :meth:`CloudStorageManager.list_backups` shows it (from the catalog only;
    the status server uses it too). ``synced`` is its remotes when the caller already has them."""
    if synced is None:
        synced = repository.catalog.synced_remotes(manifest.id)
    return {
        "backup_id": manifest.id,
        "timestamp": _iso(manifest.time),
        "host": manifest.host,
        "tags": list(manifest.tags),
        "size_bytes": manifest.size,
        "stored_bytes": manifest.added_bytes,
        "sources": manifest.source_types,
        "files": manifest.files,
        "partial": manifest.partial,
        "cloud_synced": bool(synced),
        "synced_to": synced,
        "local_path": repository.location,
    }


def describe_backups(
    repository: Repository, manifests: list[SnapshotManifest]
) -> list[dict[str, Any]]:
    """:func:`describe_backup` of many backups, with one catalog query for their remotes."""
    synced = repository.catalog.synced_remotes_of(m.id for m in manifests)
    return [describe_backup(repository, m, synced.get(m.id, {})) for m in manifests]


class CloudStorageManager:
    """The seed's ``cloud_storage`` object, backed by an stcore repository."""

    def __init__(
        self,
        repository: str | None = None,
        config: str | None = None,
        *,
        auto_sync: bool | None = None,
    ) -> None:
        """``auto_sync``: None to follow ``CLOUD_AUTO_SYNC`` / ``[daemon] auto_sync``; True to
        sync on a schedule whatever they say; False never to start the scheduler from here."""
        self._explicit_repository = repository
        self._explicit_config = config
        self._auto_sync = auto_sync
        #: whether this object already decided about the scheduler since it opened the repository
        self._auto_decided = False
        #: whether this object started the process's scheduler (close() stops it then)
        self._auto_owner = False
        #: why the scheduler this object should have started is not running
        self._auto_error: str | None = None
        self._repo: Repository | None = None
        self._remote_repo: Repository | None = None
        self._settings: Settings | None = None
        self._lock = threading.RLock()
        #: the last list_backups, in order: get_backup reads ahead along it
        self._listed: list[SnapshotManifest] = []
        #: backup id -> how the last listing described it (get_backup from_cloud starts there)
        self._described: dict[str, dict[str, Any]] = {}
        #: the snapshots the cloud copy holds, listed once per listing (get_backup from_cloud)
        self._cloud_ids: set[str] | None = None
        #: (repository, read-ahead along the listing) for the repository get_backup last read
        self._read_ahead: tuple[Repository, ReadAhead] | None = None

    # --- configuration --------------------------------------------------------------------------

    @property
    def provider(self) -> str:
        return os.environ.get("CLOUD_PROVIDER", "local").strip().lower() or "local"

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            load_dotenv_file()
            self._settings = load_settings(self._explicit_config)
        return self._settings

    @property
    def repository_url(self) -> str:
        return self.settings.repository_url(self._explicit_repository)

    @property
    def repository(self) -> Repository:
        """The open repository. Nothing is created implicitly (a missing folder may be an
        unmounted disk): :meth:`init_repository` or ``stcore init`` creates one."""
        with self._lock:
            if self._repo is None:
                url = self.repository_url
                try:
                    self._repo = open_repository(url)
                except (RepositoryNotFoundError, ContainerNotFoundError) as exc:
                    raise RepositoryNotFoundError(
                        f"{exc} (the seed facade never creates a repository: run `stcore init` "
                        "or call cloud_storage.init_repository() once)"
                    ) from exc
                self._start_auto_sync(self._repo)
            return self._repo

    def init_repository(self) -> dict[str, Any]:
        """Create the configured repository (as ``stcore init`` does) and open it."""
        try:
            with self._lock:
                if self._repo is None:
                    self._repo = init_repository(
                        self.repository_url,
                        compression=self.settings.compression,
                        compression_level=self.settings.compression_level,
                    )
                    self._start_auto_sync(self._repo)
        except StcoreError as exc:
            return {"success": False, "error": str(exc)}
        return {"success": True, "repository": self._repo.location, "id": self._repo.id}

    def close(self) -> None:
        """Close the repositories, and stop the in-app scheduler if this object started it
        (using the object again reopens both)."""
        with self._lock:
            if self._read_ahead is not None:
                self._read_ahead[1].close()
                self._read_ahead = None
            for repo in (self._repo, self._remote_repo):
                if repo is not None:
                    repo.close()
            self._repo = self._remote_repo = None
            self._auto_decided = False
            owner, self._auto_owner = self._auto_owner, False
        if owner:
            _stop_process_auto_sync(STOP_WAIT)

    # --- the in-app scheduler ---------------------------------------------------------------------

    def _auto_sync_wanted(self) -> tuple[bool, float | None]:
        """Whether this object syncs on a schedule, and how often (ConfigError: a bad value)."""
        if self._auto_sync is False:
            return False, None
        config = daemon_config(self.settings, auto_sync=self._auto_sync)
        return config.auto_sync, config.sync_interval

    def _start_auto_sync(self, repo: Repository) -> None:
        """Start the process's scheduler when the repository is opened, if asked for and none
        runs yet. Never raises: what stops it is logged once and shown by ``status()``."""
        global _auto
        if self._auto_decided:
            return
        self._auto_decided = True
        self._auto_error = None
        try:
            wanted, interval = self._auto_sync_wanted()
            if not wanted or interval is None:
                return
            with _auto_lock:
                if _auto is not None:  # one per process: maybe another object's
                    return
                auto = AutoSync(
                    self.repository_url,
                    self.settings,
                    sync_interval=interval,
                    auto_sync=True,
                    host=repo.host,
                    exclusive=False,
                )
                auto.start()
                _auto = auto
                self._auto_owner = True
                _register_exit_hooks()
        except StcoreError as exc:
            self._auto_error = str(exc)
            log.warning("CLOUD_AUTO_SYNC: the app cannot sync on a schedule: %s", exc)

    def stop_auto_sync(self, timeout: float | None = STOP_WAIT) -> bool:
        """Stop the process's in-app scheduler (whichever object started it) after the object
        in progress, and start none from this object again. True once it has stopped."""
        with self._lock:
            self._auto_sync = False
            self._auto_owner = False
        return _stop_process_auto_sync(timeout)

    def auto_sync_status(self) -> dict[str, Any]:
        """The in-app scheduler: ``enabled`` (asked for by the settings or ``auto_sync=True``),
        ``running``, the ``repository`` it syncs, ``sync_interval``, ``next_sync``, the last run
        per remote (``last_runs``, a skipped one with ``"skipped": why``), and ``error``."""
        error: str | None = self._auto_error
        try:
            enabled = self._auto_sync_wanted()[0]
        except StcoreError as exc:
            enabled, error = False, str(exc)
        document: dict[str, Any] = {
            "enabled": enabled,
            "running": False,
            "repository": None,
            "sync_interval": None,
            "next_sync": None,
            "last_runs": {},
            "error": error,
        }
        auto = _auto
        if auto is not None:
            state = auto.state()
            for key in ("running", "repository", "sync_interval", "next_sync", "last_runs"):
                document[key] = state[key]
            if auto.error is not None:
                document["error"] = f"the scheduler stopped: {auto.error}"
        return document

    # --- the seed's API -------------------------------------------------------------------------

    def backup_all_data(self, tags: list[str] | None = None) -> dict[str, Any]:
        """Back up every configured source into one snapshot."""
        try:
            settings = self.settings
            if not settings.sources:
                return {
                    "success": False,
                    "error": "no data sources configured: add [sources.NAME] tables to "
                    "stcore.toml (see docs/configuration.md)",
                }
            with self._lock:
                repo = self.repository
                result = backup_configured(repo, settings, tags=tags or ())
        except StcoreError as exc:
            return {"success": False, "error": str(exc)}
        manifest = result.manifest
        return {
            "success": True,
            "backup_id": manifest.id,
            "timestamp": _iso(manifest.time),
            "size_bytes": manifest.size,
            "stored_bytes": manifest.added_bytes,
            "local_path": self.repository.location,
            "cloud_synced": False,
            "sources": list(manifest.sources),
            "errors": [f"{path}: {message}" for path, message in result.errors],
        }

    def _describe(self, manifest: SnapshotManifest) -> dict[str, Any]:
        return describe_backup(self.repository, manifest)

    def _cloud_remotes(self) -> tuple[RemoteConfig, ...]:
        """The configured cloud remotes; a ConfigError saying how to configure one if none is."""
        remotes = self.settings.remotes
        if not remotes:
            raise ConfigError(
                f"no cloud remote is configured: CLOUD_PROVIDER is {self.provider!r} and "
                "stcore.toml has no [remotes.NAME]; set CLOUD_PROVIDER (aws, gcp or azure) and "
                'its bucket variable, or add [remotes.NAME] url = "s3://bucket/prefix"'
            )
        return remotes

    def _remote_repository(self) -> Repository:
        """The cloud remote opened as a repository, kept open for later reads."""
        if self._remote_repo is None:
            remotes = self._cloud_remotes()
            if len(remotes) > 1:
                names = ", ".join(r.name for r in remotes)
                raise ConfigError(
                    f"several cloud remotes are configured ({names}): get_backup(from_cloud=True) "
                    "reads from the only one; read another with stcore.open_repository(its url)"
                )
            self._remote_repo = open_remote_repository(remotes[0], host=self.repository.host)
        return self._remote_repo

    def list_backups(self, limit: int | None = 10) -> list[dict[str, Any]]:
        """The newest ``limit`` backups (all with ``None``), newest first."""
        with self._lock:
            manifests = self.repository.snapshots(limit=limit)
            if [m.id for m in manifests] != [m.id for m in self._listed]:
                self._listed = manifests
                self._cloud_ids = None
                if self._read_ahead is not None:
                    self._read_ahead[1].close()
                    self._read_ahead = None
            described = describe_backups(self.repository, manifests)
            self._described = {d["backup_id"]: d for d in described}
            return [copy.deepcopy(d) for d in described]

    def _synced_copy(self, remote: Repository, backup_id: str) -> Snapshot | None:
        """The cloud copy of a backup this machine listed, from the manifest it already has
        (sync copies a manifest as it is, so it is the same object in both places) once one
        listing of the cloud's snapshots shows it is there: no request per backup just to
        learn its trees. None otherwise: the cloud is asked."""
        listed = next((m for m in self._listed if m.id == backup_id), None)
        if listed is None:
            return None
        if self._cloud_ids is None:
            remote.store.prefetch_index()  # read ahead needs it next: both at once
            self._cloud_ids = set(remote.store.snapshot_ids())
        if backup_id not in self._cloud_ids:
            return None
        return Snapshot(remote.store, listed)

    def _describe_read(self, manifest: SnapshotManifest, from_cloud: bool) -> dict[str, Any]:
        """get_backup's metadata. From the cloud, a backup the last listing showed keeps that
        description, as of the listing (this object's own syncs refresh it): while read-ahead
        threads run, each catalog query waits its turn for the GIL behind them, which cost the
        seed's analytics loop a tenth of its time. Otherwise the catalog is asked afresh."""
        listed = self._described.get(manifest.id) if from_cloud else None
        if listed is not None:
            described = copy.deepcopy(listed)
        else:
            described = self._describe(manifest)
        described["from_cloud"] = from_cloud
        return described

    def _reader_for(self, repo: Repository) -> ReadAhead:
        """Read-ahead along the last listing, for reads from ``repo``."""
        if self._read_ahead is None or self._read_ahead[0] is not repo:
            if self._read_ahead is not None:
                self._read_ahead[1].close()
            self._read_ahead = (repo, ReadAhead(repo.store, self._listed))
        return self._read_ahead[1]

    def get_backup(self, backup_id: str, from_cloud: bool = False) -> dict[str, Any] | None:
        """One backup's metadata and lazily loaded ``data_sources``; None if it does not exist.

        ``from_cloud=True`` reads the backup from the configured cloud remote instead of the local
        repository (a :class:`~stcore.errors.ConfigError` if none is configured), for machines
        that only have the cloud copy. A remote that cannot be read raises its
        :class:`~stcore.errors.BackendError`: it is not a backup that does not exist.
        """
        with self._lock:
            repo = self._remote_repository() if from_cloud else self.repository
            try:
                snapshot = self._synced_copy(repo, backup_id) if from_cloud else None
                snapshot = snapshot or repo.snapshot(backup_id)
            except SnapshotNotFoundError:
                return None
            described = self._describe_read(snapshot.manifest, from_cloud)
            reader = self._reader_for(repo)
        snapshot_id = snapshot.id
        described["data_sources"] = LazyDataSources(
            snapshot.sources, on_read=lambda name: reader.reading(snapshot_id, name)
        )
        return described

    def query_backups(
        self,
        start_date: str | dt.datetime | dt.date | None = None,
        end_date: str | dt.datetime | dt.date | None = None,
        source: str | None = None,
        source_type: str | None = None,
        tags: list[str] | None = None,
        host: str | None = None,
        cloud_synced: bool | None = None,
        limit: int | None = None,
        **unknown: Any,
    ) -> list[dict[str, Any]]:
        """Backups matching every filter given, newest first.

        ``start_date``/``end_date``: a datetime, a date, or text (``2026-11-24``,
        ``2026-11-24T13:00``, or a duration ago: ``7d``, ``12h``, ``30min``); anything else is a
        ConfigError naming the argument and those forms.
        """
        if unknown:
            raise TypeError(
                f"query_backups() got unknown filters: {suggested(unknown, FILTERS)}; "
                f"filters: {', '.join(FILTERS)}"
            )
        since, until = _moment(start_date, "start_date"), _moment(end_date, "end_date")
        with self._lock:
            found = self.repository.snapshots(
                since=since,
                until=until,
                source=source,
                source_type=source_type,
                tags=tags or (),
                host=host,
                synced=cloud_synced,
                limit=limit,
            )
            return describe_backups(self.repository, found)

    def get_statistics(self) -> dict[str, Any]:
        with self._lock:
            stats = self.repository.stats()
            latest = self.repository.snapshots(limit=1)
            # snapshots synced to at least one remote, per the catalog
            cloud_synced = self.repository.catalog.synced_count()
        return {
            "total_backups": stats.snapshots,
            "total_size_mb": round(stats.snapshot_bytes_total / 1e6, 3),
            "stored_size_mb": round(stats.stored_bytes / 1e6, 3),
            "cloud_synced": cloud_synced,
            "provider": self.provider,
            "repository": stats.repository,
            "latest_backup": latest[0].id if latest else None,
        }

    def cleanup_old_backups(self, keep_days: int = 30) -> dict[str, Any]:
        """Forget backups older than ``keep_days`` days and reclaim their space.

        Applies the policy ``--keep-within {keep_days}d`` (measured from the newest backup, so a
        machine that stopped backing up does not lose its history), then prunes.
        """
        if isinstance(keep_days, bool) or not isinstance(keep_days, int) or keep_days < 0:
            return {
                "success": False,
                "error": "keep_days must be a whole number of days, 0 or more, not "
                + repr(keep_days)[:60],
            }
        try:
            with self._lock:
                policy = Policy(within=parse_duration(f"{keep_days}d"))
                outcome = forget_by_policy(self.repository, policy)
        except StcoreError as exc:
            return {"success": False, "error": str(exc)}
        return {
            "success": True,
            "removed": len(outcome.removed),
            "kept": outcome.kept,
            "removed_ids": list(outcome.removed),
            "bytes_freed": outcome.pruned.bytes_freed if outcome.pruned else 0,
        }

    def sync_to_cloud(self, backup_id: str | None = None) -> dict[str, Any]:
        """Upload one backup (or every unsynced one) to the configured cloud remote.

        The remote comes from ``CLOUD_PROVIDER`` and its bucket variable (``AWS_S3_BUCKET``,
        ``GCP_BUCKET``, ``AZURE_CONTAINER``) or ``[remotes.NAME]`` in stcore.toml. Returns a
        summary: what was synced, objects and bytes uploaded, seconds. A sync the in-app
        scheduler is making in this process is waited for, not run twice at once.
        """
        try:
            remotes = self._cloud_remotes()
            repo = self.repository  # opened first: that may start the in-app scheduler
            auto = _auto
            runs = auto.holding_runs() if auto is not None else contextlib.nullcontext()
            with self._lock, runs:
                ids = [repo.resolve(backup_id).id] if backup_id else None
                try:
                    results = [repo.sync(remote, ids) for remote in remotes]
                finally:
                    self._described = {}  # what the listing said about syncing is out of date
        except StcoreError as exc:
            return {"success": False, "error": str(exc), "synced": []}
        return {
            "success": True,
            "synced": sorted({s for r in results for s in r.snapshots}),
            "remotes": [r.to_json() for r in results],
            "objects_uploaded": sum(r.objects_uploaded for r in results),
            "bytes_uploaded": sum(r.bytes_uploaded for r in results),
        }

    def status(self) -> dict[str, Any]:
        """Statistics, the newest backups, per remote its last sync, pending, last error and next
        scheduled sync (see ``stcore status`` and docs/sync.md), and, when it is asked for or
        runs, the in-app scheduler (``auto_sync``: :meth:`auto_sync_status`)."""
        try:
            stats = self.get_statistics()
            with self._lock:
                repo = self.repository
                state = read_state(repo)
                remotes = [remote_status(repo, r, state) for r in self.settings.remotes]
            recent = self.list_backups(5)
            auto_sync = self.auto_sync_status()
        except StcoreError as exc:
            return {"success": False, "error": str(exc)}
        if auto_sync["running"] and auto_sync["repository"] in (repo.location, self.repository_url):
            for remote in remotes:
                if remote["next_run"] is None:
                    remote["next_run"] = auto_sync["next_sync"]
        document = {
            "success": True,
            "statistics": stats,
            "recent_backups": recent,
            "remotes": remotes,
        }
        if auto_sync["enabled"] or auto_sync["running"] or auto_sync["error"]:
            document["auto_sync"] = auto_sync  # the seed's shape stays as it was otherwise
        return document


#: The object the seed application imports.
cloud_storage = CloudStorageManager()


def _main() -> int:
    """``python -m cloud_storage_manager``: the status as JSON (it never starts a sync)."""
    import json
    import sys

    storage = CloudStorageManager(auto_sync=False)
    try:
        status = storage.status()
    finally:
        storage.close()
    if not status["success"]:
        print(f"cloud_storage_manager: error: {status['error']}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
