"""The seed application's storage API, kept working on top of stcore.

    from cloud_storage_manager import cloud_storage

    result = cloud_storage.backup_all_data()
    backups = cloud_storage.list_backups(limit=10)
    data = cloud_storage.get_backup(result["backup_id"])["data_sources"]["ai_hub"]

Configuration comes from the environment and ``.env`` (see ``.env.example``) and from
``stcore.toml`` for the data sources. Importing this module does no I/O: the repository is opened
(and, for a local path, created) on first use. Methods return plain dicts and lists as the seed's
did; expected failures come back as ``{"success": False, "error": "..."}`` instead of raising.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from stcore.access.readahead import ReadAhead
from stcore.access.views import Snapshot, SourceView
from stcore.config import Settings, load_dotenv_file, load_settings
from stcore.durations import parse_duration
from stcore.errors import ContainerNotFoundError, RepositoryNotFoundError, StcoreError
from stcore.models import SnapshotManifest
from stcore.repo.forget import Policy
from stcore.repository import (
    Repository,
    init_repository,
    open_remote_repository,
    open_repository,
)
from stcore.tasks import backup_configured, forget_by_policy, read_state, remote_status


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


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

    def __init__(self, repository: str | None = None, config: str | None = None) -> None:
        self._explicit_repository = repository
        self._explicit_config = config
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
        except StcoreError as exc:
            return {"success": False, "error": str(exc)}
        return {"success": True, "repository": self._repo.location, "id": self._repo.id}

    def close(self) -> None:
        with self._lock:
            if self._read_ahead is not None:
                self._read_ahead[1].close()
                self._read_ahead = None
            for repo in (self._repo, self._remote_repo):
                if repo is not None:
                    repo.close()
            self._repo = self._remote_repo = None

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

    def _remote_repository(self) -> Repository:
        """The cloud remote opened as a repository, kept open for later reads."""
        if self._remote_repo is None:
            remote = self.settings.remote(None)
            self._remote_repo = open_remote_repository(remote, host=self.repository.host)
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
        that only have the cloud copy.
        """
        with self._lock:
            repo = self._remote_repository() if from_cloud else self.repository
            try:
                snapshot = self._synced_copy(repo, backup_id) if from_cloud else None
                snapshot = snapshot or repo.snapshot(backup_id)
            except StcoreError:
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
        """Backups matching every filter given, newest first."""
        if unknown:
            raise TypeError(f"query_backups() got unknown filters: {', '.join(sorted(unknown))}")
        with self._lock:
            found = self.repository.snapshots(
                since=start_date,  # a datetime, a date, 2026-11-24 or 7d (ago)
                until=end_date,
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
        if keep_days < 0:
            raise ValueError("keep_days must be >= 0")
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
        summary: what was synced, objects and bytes uploaded, seconds.
        """
        try:
            remotes = self.settings.remotes
            if not remotes:
                return {
                    "success": False,
                    "error": f"CLOUD_PROVIDER is {self.provider!r} and no [remotes] are "
                    "configured in stcore.toml: there is no cloud remote to sync to. Backups "
                    "stay in " + self.repository_url,
                    "synced": [],
                }
            with self._lock:
                repo = self.repository
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
        """Statistics, the newest backups, and per remote: last sync, pending, last error, next
        scheduled sync (see ``stcore status`` and docs/sync.md)."""
        stats = self.get_statistics()
        with self._lock:
            repo = self.repository
            state = read_state(repo)
            remotes = [remote_status(repo, r, state) for r in self.settings.remotes]
        return {
            "success": True,
            "statistics": stats,
            "recent_backups": self.list_backups(5),
            "remotes": remotes,
        }


#: The object the seed application imports.
cloud_storage = CloudStorageManager()


def _main() -> int:
    import json

    try:
        print(json.dumps(cloud_storage.status(), indent=2, default=str))
    except StcoreError as exc:
        print(f"cloud_storage_manager: error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
