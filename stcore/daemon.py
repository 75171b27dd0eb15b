"""Auto-sync: back up and sync on a schedule, one run at a time, and report where things stand.

:class:`AutoSync` is the scheduler behind ``stcore daemon``; a long-running worker can embed it::

    with AutoSync(backup_interval=600, sync_interval=3600) as auto:
        ...                                   # backups and syncs happen in a background thread

Why it is shaped this way:

- **One run at a time.** A backup and a sync of the same repository compete for the disk and the
  uplink, and two schedulers would write one state file. So a scheduler holds ``daemon.lock`` in
  the repository's cache directory for its lifetime (a second one is refused), and every run takes
  ``runs.lock`` (a one-off :meth:`AutoSync.run_once` elsewhere waits for it). Inside one process a
  thread lock serialises the scheduler thread and ``run_once``. A slow run delays the next one; it
  is never started concurrently.
- **Stopping is always safe.** A backup writes its manifest last and a sync uploads manifests
  last, so abandoning either halfway leaves no broken snapshot. On :meth:`AutoSync.stop` the run
  in progress stops after the object it is working on.
- **Observable.** Each run is one JSON line (``{"event": "backup"|"sync", "ok", ...}``), and
  ``daemon.json`` in the cache directory holds the next scheduled times, which ``stcore status``
  and the web API show.
- **Alongside a daemon.** ``AutoSync(..., exclusive=False)`` is the scheduler an application
  runs in its own process (the seed facade's ``CLOUD_AUTO_SYNC``): it takes no ``daemon.lock``
  and writes no ``daemon.json``, so a ``stcore daemon`` can still start. A run it is due to make
  while another scheduler holds ``daemon.lock`` and makes that kind of run, while ``runs.lock``
  is held, or while another sync to the same remote runs, is *skipped*: recorded with
  ``"skipped": reason``, not as an error, and tried again at the next interval.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import attrs

from stcore.config import Settings, load_settings
from stcore.errors import (
    ConfigError,
    DaemonBusyError,
    RepositoryLockedError,
    RunAbandoned,
    StcoreError,
    SyncBusyError,
)
from stcore.localfiles import FileLock, atomic_write, file_lock
from stcore.plugins import PluginHost
from stcore.repository import Repository, open_repository
from stcore.sync import SyncOptions
from stcore.tasks import (
    ABANDONED,
    DAEMON_LOCK,
    apply_retention,
    backup_configured,
    read_state,
    state_path,
)

__all__ = [
    "ABANDONED",
    "AutoSync",
    "DaemonBusyError",
    "DaemonConfig",
    "RunAbandoned",
    "RunRecord",
    "daemon_config",
]

log = logging.getLogger("stcore.daemon")

RUN_LOCK = "runs.lock"
DEFAULT_SYNC_INTERVAL = 3600.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


# --- configuration -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DaemonConfig:
    """When the daemon backs up and syncs: ``[daemon]`` in stcore.toml, overridden by env vars."""

    #: seconds between backups; None for no backups
    backup_interval: float | None = None
    sync_interval: float = DEFAULT_SYNC_INTERVAL
    auto_sync: bool = False


def _interval(value: object, where: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number of seconds, not {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"{where} must be a positive number of seconds, not {value!r}")
    return seconds


def _flag(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where} must be true or false, not {value!r}")


def daemon_config(
    settings: Settings,
    *,
    backup_interval: float | None = None,
    sync_interval: float | None = None,
    auto_sync: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> DaemonConfig:
    """Arguments > ``STCORE_BACKUP_INTERVAL``/``CLOUD_SYNC_INTERVAL``/``CLOUD_AUTO_SYNC`` >
    ``[daemon]`` in stcore.toml > defaults (no backups; sync hourly, only if auto-sync is on)."""
    env = os.environ if environ is None else environ
    table = settings.daemon
    backup: float | None = None
    if backup_interval is not None:
        backup = _interval(backup_interval, "--backup-interval")
    elif env.get("STCORE_BACKUP_INTERVAL", "").strip():
        backup = _interval(env["STCORE_BACKUP_INTERVAL"], "STCORE_BACKUP_INTERVAL")
    elif "backup_interval" in table:
        backup = _interval(table["backup_interval"], "[daemon] backup_interval")
    if sync_interval is not None:
        sync_every = _interval(sync_interval, "--sync-interval")
    elif env.get("CLOUD_SYNC_INTERVAL", "").strip():
        sync_every = _interval(env["CLOUD_SYNC_INTERVAL"], "CLOUD_SYNC_INTERVAL")
    else:
        sync_every = _interval(
            table.get("sync_interval", DEFAULT_SYNC_INTERVAL), "[daemon] sync_interval"
        )
    if auto_sync is not None:
        auto = auto_sync
    elif env.get("CLOUD_AUTO_SYNC", "").strip():
        auto = _flag(env["CLOUD_AUTO_SYNC"], "CLOUD_AUTO_SYNC")
    else:
        auto = _flag(table.get("auto_sync", False), "[daemon] auto_sync")
    return DaemonConfig(backup_interval=backup, sync_interval=sync_every, auto_sync=auto)


# --- runs and state ------------------------------------------------------------------------------


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()


@attrs.frozen(kw_only=True)
class RunRecord:
    """One backup, or one sync to one remote, as the daemon logs it."""

    event: str  # "backup" or "sync"
    ok: bool
    #: wall-clock start and end (seconds since the epoch)
    started: float
    finished: float
    bytes: int = 0
    snapshot: str | None = None
    remote: str | None = None
    error: str | None = None
    #: why the run was not made (``exclusive=False``: another process was at it); ``ok`` is True
    skipped: str | None = None

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"event": self.event, "ok": self.ok, "time": _iso(self.started)}
        if self.event == "backup":
            document["snapshot"] = self.snapshot
        else:
            document["remote"] = self.remote
        document.update(
            {"seconds": round(self.seconds, 3), "bytes": self.bytes, "error": self.error}
        )
        if self.skipped is not None:
            document["skipped"] = self.skipped
        return document


# --- the scheduler -------------------------------------------------------------------------------


OnRun = Callable[[RunRecord], None]


class AutoSync:
    """Backs up every ``backup_interval`` seconds and syncs every ``sync_interval`` seconds.

    Backups use the settings' ``[sources.*]``; syncs go to every configured remote. ``start()``
    runs the schedule in a background thread (first backup and sync at once), ``stop()`` ends it
    after the object in progress, ``run_once()`` does one backup and one sync right now. Each
    finished run is logged as one JSON line (to ``log_stream`` if given, and to the
    ``stcore.daemon`` logger) and handed to ``on_run``.

    ``exclusive=False`` makes it the in-application scheduler described in the module docstring:
    no ``daemon.lock``, no ``daemon.json``, and a scheduled run that would collide with another
    process's is skipped instead of waited for.
    """

    def __init__(
        self,
        repo_url: str | None = None,
        settings: Settings | None = None,
        backup_interval: float | None = None,
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
        auto_sync: bool = True,
        on_run: OnRun | None = None,
        *,
        host: PluginHost | None = None,
        cache_root: Path | None = None,
        sync_options: SyncOptions | None = None,
        log_stream: IO[str] | None = None,
        exclusive: bool = True,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.repo_url = self.settings.repository_url(repo_url)
        self.backup_interval = (
            None if backup_interval is None else _interval(backup_interval, "backup_interval")
        )
        self.sync_interval = _interval(sync_interval, "sync_interval")
        self.auto_sync = auto_sync
        self.on_run = on_run
        self.host = host
        self.cache_root = cache_root
        self.sync_options = sync_options
        self.log_stream = log_stream
        self.exclusive = exclusive
        self._repo: Repository | None = None
        self._run_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._daemon_lock: FileLock | None = None
        self._next: dict[str, float] = {}  # "backup"/"sync" -> time.monotonic() when due
        self._last_runs: dict[str, dict[str, Any]] = {}
        self._started_at: float | None = None
        #: set when the scheduler thread died of an unexpected error
        self.error: BaseException | None = None

    @classmethod
    def from_config(
        cls,
        repo_url: str | None = None,
        settings: Settings | None = None,
        *,
        backup_interval: float | None = None,
        sync_interval: float | None = None,
        auto_sync: bool | None = None,
        **kwargs: Any,
    ) -> AutoSync:
        """An AutoSync configured like ``stcore daemon``: env vars and ``[daemon]``."""
        settings = settings if settings is not None else load_settings()
        config = daemon_config(
            settings,
            backup_interval=backup_interval,
            sync_interval=sync_interval,
            auto_sync=auto_sync,
        )
        return cls(
            repo_url,
            settings,
            backup_interval=config.backup_interval,
            sync_interval=config.sync_interval,
            auto_sync=config.auto_sync,
            **kwargs,
        )

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def repository(self) -> Repository:
        if self._repo is None:
            self._repo = open_repository(
                self.repo_url,
                host=self.host,
                cache_root=self.cache_root,
                options=self.settings.backend_options,
            )
        return self._repo

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check_config(self) -> None:
        """ConfigError unless there is something to do and what it needs is configured."""
        if self.backup_interval is None and not self.auto_sync:
            raise ConfigError(
                "nothing to do: set STCORE_BACKUP_INTERVAL (or [daemon] backup_interval) and/or "
                "CLOUD_AUTO_SYNC=true (or [daemon] auto_sync = true)"
            )
        if self.backup_interval is not None and not self.settings.sources:
            raise ConfigError("backups are scheduled but no [sources.NAME] are in stcore.toml")
        if self.auto_sync and not self.settings.remotes:
            self.settings.remote(None)  # raises the "no remote is configured" error

    def start(self) -> AutoSync:
        """Start the schedule in a background thread; DaemonBusyError if one already runs here
        (``exclusive`` only: otherwise the repository is opened by the first run, in the
        scheduler's thread)."""
        if self.running:
            return self
        self.check_config()
        if self.exclusive:
            repo = self.repository
            lock = FileLock(repo.cache_dir / DAEMON_LOCK)
            # Held until stop; a `stcore status` probe holds it for an instant, hence the wait.
            if not lock.acquire(0.5):
                raise DaemonBusyError(
                    f"another stcore daemon is running for {repo.location} on this machine"
                )
            self._daemon_lock = lock
        self._stop.clear()
        self.error = None
        self._started_at = time.time()
        now = time.monotonic()
        self._next = {}
        if self.backup_interval is not None:
            self._next["backup"] = now
        if self.auto_sync:
            self._next["sync"] = now
        self._write_state()
        self._thread = threading.Thread(target=self._loop, name="stcore-autosync", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the scheduler to stop, without waiting (safe in a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop after the object in progress; True once the scheduler thread has ended."""
        self._stop.set()
        return self.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the scheduler thread to end; True if it has (or never started)."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def close(self) -> None:
        """Stop, and close the repository."""
        self.stop()
        with self._run_lock:
            if self._repo is not None:
                self._repo.close()
                self._repo = None

    @contextmanager
    def holding_runs(self) -> Iterator[None]:
        """Hold this scheduler's runs off while the caller makes its own in this process (the
        seed facade's ``sync_to_cloud``): waits for a run in progress to end, and the next run
        waits for the block to end."""
        with self._run_lock:
            yield

    def __enter__(self) -> AutoSync:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the schedule ---------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                kind = min(self._next, key=lambda k: self._next[k])
                delay = self._next[kind] - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                    continue
                started = time.monotonic()
                self._run(kind)
                finished = time.monotonic()
                interval = self.backup_interval if kind == "backup" else self.sync_interval
                assert interval is not None
                # A run longer than the interval delays the next one; it never overlaps it.
                self._next[kind] = max(started + interval, finished)
                self._write_state()
        except BaseException as exc:
            self.error = exc
            log.exception("the auto-sync scheduler stopped on an unexpected error")
        finally:
            self._next = {}
            try:
                self._write_state()
            finally:
                if self._daemon_lock is not None:
                    self._daemon_lock.release()
                    self._daemon_lock = None

    def state(self) -> dict[str, Any]:
        """Where the schedule stands: what ``daemon.json`` holds (pid, intervals, the next
        backup and sync as ISO times, the last run of each kind) and whether it is running."""
        now_wall, now_mono = time.time(), time.monotonic()
        due = dict(self._next)

        def wall(kind: str) -> str | None:
            when = due.get(kind)
            return None if when is None else _iso(now_wall + max(0.0, when - now_mono))

        with self._state_lock:
            last_runs = dict(self._last_runs)
        return {
            "pid": os.getpid(),
            "repository": self._repo.location if self._repo is not None else self.repo_url,
            "running": self.running,
            "started_at": _iso(self._started_at),
            "updated_at": _iso(now_wall),
            "backup_interval": self.backup_interval,
            "sync_interval": self.sync_interval,
            "auto_sync": self.auto_sync,
            "next_backup": wall("backup"),
            "next_sync": wall("sync"),
            "last_runs": last_runs,
        }

    def _write_state(self) -> None:
        repo = self._repo
        if repo is None or not self.exclusive:
            return
        document = self.state()
        del document["running"]  # read_state works it out from the lock, when it is read
        try:
            with self._state_lock:
                atomic_write(state_path(repo), json.dumps(document, indent=2, sort_keys=True))
        except OSError as exc:  # status loses "next run"; the backups themselves go on
            log.warning("cannot write %s: %s", state_path(repo), exc)

    # --- runs -----------------------------------------------------------------------------------

    def run_once(self, *, backup: bool = True, sync: bool = True) -> list[RunRecord]:
        """One backup (if sources are configured) then one sync per remote (if auto-sync is on),
        now, after any run in progress; returns their records."""
        records: list[RunRecord] = []
        if backup and self.settings.sources:
            records += self._run("backup", wait_forever=True)
        if sync and self.auto_sync and self.settings.remotes:
            records += self._run("sync", wait_forever=True)
        return records

    def _run(self, kind: str, *, wait_forever: bool = False) -> list[RunRecord]:
        def keep_waiting() -> bool:
            return wait_forever or not self._stopping()

        waits = self.exclusive or wait_forever
        with self._run_lock:
            try:
                repo = self.repository
            except StcoreError as exc:
                if waits:
                    raise
                # exclusive=False opens it in the scheduler's thread: the next run tries again
                records = self._records(kind, time.time(), error=str(exc))
            else:
                wait = keep_waiting if waits else 0
                records = self._locked_run(kind, repo, wait, cooperate=not waits)
            for record in records:
                self._report(record)
        return records

    def _locked_run(
        self, kind: str, repo: Repository, wait: float | Callable[[], bool], *, cooperate: bool
    ) -> list[RunRecord]:
        """The run under ``runs.lock``; [] if the scheduler stopped while waiting for it. A
        ``cooperate`` run (a scheduled one, ``exclusive=False``) waits for nothing: if another
        process is at it, its records say it was skipped."""
        started = time.time()
        if cooperate:
            reason = self._taken_by_daemon(repo, kind)
            if reason is not None:
                return self._records(kind, started, skipped=reason)
        with file_lock(repo.cache_dir / RUN_LOCK, wait=wait) as locked:
            if not locked:
                if not cooperate:
                    return []
                return self._records(
                    kind, started, skipped="another backup or sync of this repository is running"
                )
            if kind == "backup":
                return [self._backup(repo)]
            return self._sync(repo)

    def _taken_by_daemon(self, repo: Repository, kind: str) -> str | None:
        """Why a scheduler that holds ``daemon.lock`` makes this kind of run, if one does."""
        state = read_state(repo)
        if not state or not state.get("running"):
            return None
        makes = state.get("auto_sync") if kind == "sync" else state.get("backup_interval")
        if not makes:
            return None
        return f"stcore daemon (pid {state.get('pid')}) makes this repository's {kind}s"

    def _records(
        self, kind: str, started: float, *, error: str | None = None, skipped: str | None = None
    ) -> list[RunRecord]:
        """Records of a run that was not made: one for a backup, one per remote for a sync."""
        remotes: list[str | None] = [None]
        if kind == "sync":
            remotes = [remote.name for remote in self.settings.remotes] or [None]
        return [
            RunRecord(
                event=kind,
                ok=error is None,
                started=started,
                finished=time.time(),
                remote=remote,
                error=error,
                skipped=skipped,
            )
            for remote in remotes
        ]

    def _stopping(self) -> bool:
        """Whether the scheduler is shutting down (a later ``run_once`` is not affected)."""
        return self._stop.is_set() and self.running

    def _check_stop(self, event: str, amount: int) -> None:
        """The progress callback: abandon the run (after the current object) when stopping."""
        if self._stopping():
            raise RunAbandoned(ABANDONED)

    def _backup(self, repo: Repository) -> RunRecord:
        started = time.time()
        snapshot, added, error = None, 0, None
        try:
            result = backup_configured(repo, self.settings, progress=self._check_stop)
            snapshot, added = result.manifest.id, result.manifest.added_bytes
            apply_retention(repo, self.settings)
            if result.partial:
                path, message = result.errors[0]
                error = (
                    f"{len(result.errors)} entries could not be read (first: {path}: {message}); "
                    "the snapshot holds everything else"
                )
        except StcoreError as exc:
            error = str(exc)
        except Exception as exc:  # a daemon reports a broken run and goes on with the next
            error = f"{type(exc).__name__}: {exc}"
        return RunRecord(
            event="backup",
            ok=error is None,
            started=started,
            finished=time.time(),
            bytes=added,
            snapshot=snapshot,
            error=error,
        )

    def _sync(self, repo: Repository) -> list[RunRecord]:
        records = []
        for remote in self.settings.remotes:
            if self._stopping():
                break
            started = time.time()
            uploaded, error, skipped = 0, None, None
            try:
                result = repo.sync(remote, options=self.sync_options, progress=self._check_stop)
                uploaded = result.bytes_uploaded
            except (SyncBusyError, RepositoryLockedError) as exc:
                if self.exclusive:
                    error = str(exc)
                else:  # another process syncs this remote: its sync is as good as ours
                    skipped = str(exc)
            except StcoreError as exc:
                error = str(exc)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            records.append(
                RunRecord(
                    event="sync",
                    ok=error is None,
                    started=started,
                    finished=time.time(),
                    bytes=uploaded,
                    remote=remote.name,
                    error=error,
                    skipped=skipped,
                )
            )
        return records

    def _report(self, record: RunRecord) -> None:
        document = record.to_json()
        key = f"sync:{record.remote}" if record.event == "sync" and record.remote else record.event
        with self._state_lock:
            self._last_runs[key] = document
        line = json.dumps(document, sort_keys=True)
        log.info("%s", line)
        if self.log_stream is not None:
            self.log_stream.write(line + "\n")
            self.log_stream.flush()
        if self.on_run is not None:
            try:
                self.on_run(record)
            except Exception:
                log.exception("the on_run callback failed")
