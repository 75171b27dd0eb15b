"""Use cases that the CLI, the daemon and the seed facade share, written once.

- :func:`backup_configured`: back up the sources ``stcore.toml`` configures;
- :func:`forget_by_policy` and :func:`apply_retention`: forget what a retention policy drops,
  then prune;
- :func:`repository_status` and :func:`remote_status`: where a repository, its scheduler and
  each remote stand (``stcore status``, ``/api/cloud/status``), from the catalog and the
  scheduler's state file, never from a backend listing per remote.

Each takes an open :class:`~stcore.repository.Repository` and the
:class:`~stcore.config.Settings` it needs: nothing here reads a configuration file itself.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from stcore.config import RemoteConfig, Settings
from stcore.errors import ConfigError
from stcore.interfaces import ProgressCallback, Source
from stcore.localfiles import is_locked
from stcore.plugins import PluginHost
from stcore.repo.backup import BackupResult
from stcore.repo.forget import Decision, Policy, apply_policy
from stcore.repo.prune import PruneResult
from stcore.repository import Repository
from stcore.sources import make_source

#: the scheduler's state file and lock, in the repository's cache directory
STATE_FILE = "daemon.json"
DAEMON_LOCK = "daemon.lock"
#: the error a run stopped by the scheduler's shutdown records (not counted as a failure)
ABANDONED = "abandoned: the daemon is stopping"


# --- backup --------------------------------------------------------------------------------------


def configured_sources(
    settings: Settings, host: PluginHost, only: Iterable[str] = ()
) -> list[Source]:
    """The ``[sources.NAME]`` of ``settings`` (only those named in ``only``, if any), ready to
    back up; a name that is not configured, or nothing configured at all, is a ConfigError."""
    wanted = set(only)
    missing = wanted - {s.name for s in settings.sources}
    if missing:
        raise ConfigError(f"no source named {', '.join(sorted(missing))} in stcore.toml")
    chosen = [s for s in settings.sources if not wanted or s.name in wanted]
    if not chosen:
        raise ConfigError("nothing to back up: configure [sources.NAME] in stcore.toml")
    return [make_source(s.name, s.type, s.options, host=host) for s in chosen]


def backup_configured(
    repo: Repository,
    settings: Settings,
    *,
    only: Iterable[str] = (),
    tags: Iterable[str] = (),
    hostname: str | None = None,
    progress: ProgressCallback | None = None,
) -> BackupResult:
    """Back up the configured sources into one snapshot, tagged with the configured tags and
    ``tags``."""
    return repo.backup(
        configured_sources(settings, repo.host, only),
        tags=(*settings.tags, *tags),
        hostname=hostname,
        progress=progress,
    )


# --- forget and prune ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ForgetResult:
    """What a policy decided, what was forgotten, and what the prune after it freed."""

    decisions: tuple[Decision, ...]
    removed: tuple[str, ...]
    pruned: PruneResult | None = None

    @property
    def kept(self) -> int:
        return sum(1 for d in self.decisions if d.keep)

    def __repr__(self) -> str:
        freed = self.pruned.bytes_freed if self.pruned else 0
        return f"<ForgetResult {len(self.removed)} forgotten, {self.kept} kept, {freed} freed>"


def forget_by_policy(
    repo: Repository, policy: Policy, *, prune: bool = True, dry_run: bool = False
) -> ForgetResult:
    """Forget the snapshots ``policy`` does not keep, then (if any went and ``prune``) prune."""
    decisions = tuple(apply_policy(repo.snapshots(), policy))
    if dry_run:
        return ForgetResult(decisions=decisions, removed=())
    removed = repo.forget([d.manifest.id for d in decisions if not d.keep])
    pruned = repo.prune() if removed and prune else None
    return ForgetResult(decisions=decisions, removed=tuple(removed), pruned=pruned)


def apply_retention(repo: Repository, settings: Settings) -> ForgetResult | None:
    """``[retention]`` from stcore.toml: forget what the policy drops, then prune; None when no
    policy is configured."""
    if not settings.retention:
        return None
    return forget_by_policy(repo, Policy.from_mapping(settings.retention, "[retention]"))


# --- status --------------------------------------------------------------------------------------


def state_path(repo: Repository) -> Path:
    return repo.cache_dir / STATE_FILE


def daemon_running(repo: Repository) -> bool:
    """Whether some process holds the scheduler lock of this repository (probing, not taking)."""
    return is_locked(repo.cache_dir / DAEMON_LOCK)


def read_state(repo: Repository) -> dict[str, Any] | None:
    """The last scheduler's ``daemon.json``, with ``running`` true only if it still runs."""
    try:
        state = json.loads(state_path(repo).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    running = daemon_running(repo)
    state["running"] = running
    if not running:
        state["next_backup"] = state["next_sync"] = None
    return state


def remote_status(
    repo: Repository,
    remote: RemoteConfig,
    state: Mapping[str, Any] | None = None,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """Where one remote stands: last good sync, what is pending, the last error, the next run."""
    from stcore.sync import pending  # here: a backup, which imports this module, needs no sync

    now = time.time() if now is None else now
    catalog = repo.catalog
    summary = catalog.sync_summary(remote.name, not_failures=[ABANDONED])
    last_ok, last_failed, last_run = summary["last_ok"], summary["last_failed"], summary["last"]
    waiting = pending(catalog, remote)
    last_sync = str(last_ok["finished_at"]) if last_ok else None
    lag = None
    if last_sync is not None:
        lag = max(0.0, now - dt.datetime.fromisoformat(last_sync).timestamp())
    next_run = None
    if state and state.get("running") and state.get("auto_sync"):
        next_run = state.get("next_sync")
    return {
        "name": remote.name,
        "url": remote.url,
        "last_sync": last_sync,
        "lag_seconds": None if lag is None else round(lag, 3),
        "last_run_ok": bool(last_run["ok"]) if last_run else None,
        "pending_snapshots": waiting["snapshots"],
        "pending_bytes": waiting["bytes"],
        "synced_snapshots": catalog.sync_counts().get(remote.name, 0),
        "last_error": last_failed["error"] if last_failed else None,
        "last_error_at": last_failed["finished_at"] if last_failed else None,
        "failures": summary["failures"],
        "next_run": next_run,
    }


def repository_status(repo: Repository, remotes: Sequence[RemoteConfig]) -> dict[str, Any]:
    """``stcore status``: the repository, the scheduler, and :func:`remote_status` per remote."""
    state = read_state(repo)
    totals = repo.catalog.totals()
    latest = repo.snapshots(limit=1)
    daemon = {
        "running": bool(state and state["running"]),
        "pid": state.get("pid") if state else None,
        "next_backup": state.get("next_backup") if state else None,
        "next_sync": state.get("next_sync") if state else None,
        "last_runs": state.get("last_runs", {}) if state else {},
    }
    return {
        "repository": repo.location,
        "id": repo.id,
        "snapshots": totals["snapshots"],
        "latest_snapshot": latest[0].id if latest else None,
        "daemon": daemon,
        "remotes": [remote_status(repo, r, state) for r in remotes],
    }
