"""Repository locks: shared for writers that add data, exclusive for prune, which deletes it.

A lock is an object ``locks/<id>`` (JSON: host, pid, time, exclusive). Taking one means writing
it, then listing ``locks/``: a shared lock conflicts with any exclusive lock, an exclusive lock
with any other lock. On a conflict the new lock is removed again and the caller waits or gives
up, so two parties that race both back off rather than both proceeding. A holder refreshes its
lock (writes a new object, deletes the old one) every ``REFRESH`` seconds; a lock not refreshed
for ``STALE_AFTER`` seconds, or held by a process that no longer exists on this host, is stale
and ignored (and removed by the next exclusive locker, or by :func:`remove_locks`, which is
``stcore unlock``). So a backup killed with SIGKILL can never block prune for long, and a prune
killed the same way never blocks backups.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from stcore.errors import CorruptObjectError, ObjectNotFoundError, RepositoryLockedError
from stcore.interfaces import Backend
from stcore.models import default_host
from stcore.repo.format import is_checked, open_checked, seal_checked

log = logging.getLogger("stcore.locks")
#: no lock object is larger than this; a larger one is damage
MAX_LOCK_BYTES = 64 * 1024

LOCK_PREFIX = "locks/"
REFRESH = 300.0
STALE_AFTER = 1800.0
#: seconds between attempts while refreshing a lock fails
REFRESH_RETRY = 10.0


#: how long a writer waits for a conflicting lock by default, in seconds
DEFAULT_LOCK_WAIT = 600.0
#: how long prune and repair, which take the exclusive lock, wait for running backups by default
EXCLUSIVE_LOCK_WAIT = 300.0


def _now() -> float:
    return time.time()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and -N name process groups, never the holder: damage
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # beyond any pid: no such process
        return False
    except PermissionError:
        return True
    return True


def read_lock(backend: Backend, key: str) -> dict[str, Any] | None:
    """A lock object's fields, or None if it is damaged or malformed (reported in the log and
    treated as stale: a lock nobody can read must never block a backup or a prune forever).
    ObjectNotFoundError if it is gone."""
    raw = backend.read(key, 0, MAX_LOCK_BYTES + 1)
    try:
        if len(raw) > MAX_LOCK_BYTES:
            raise ValueError(f"{len(raw)} bytes is too large for a lock")
        document = json.loads(open_checked(key, raw) if is_checked(raw) else raw)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        if not math.isfinite(float(document.get("time", 0))):  # NaN: every age test is false
            raise ValueError(f"time {document.get('time')!r} is not a finite number")
        int(document.get("pid", 0))
    except (ValueError, TypeError, OverflowError, RecursionError, CorruptObjectError) as exc:
        log.warning("%s is damaged (%s); treating it as stale", key, str(exc)[:200])
        return None
    return document


def stale_reason(document: dict[str, Any] | None, now: float) -> str | None:
    """Why a lock (as :func:`read_lock` gave it) is stale, or None while it is live: damaged,
    not refreshed for :data:`STALE_AFTER` seconds, or its process is gone (this host only)."""
    if document is None:
        return "damaged"
    age = now - float(document.get("time", 0))
    if age > STALE_AFTER or age < -STALE_AFTER:  # far in the future: a bad clock or damage
        return "not refreshed" if age > 0 else "from the future"
    if document.get("host") == default_host() and not _pid_alive(int(document.get("pid", 0))):
        return "process gone"
    return None


def _is_stale(document: dict[str, Any] | None, now: float) -> bool:
    return stale_reason(document, now) is not None


class Lock:
    """One held lock; refreshed in the background until released."""

    def __init__(self, backend: Backend, exclusive: bool, purpose: str) -> None:
        self._backend = backend
        self.exclusive = exclusive
        self.purpose = purpose
        self.key = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _document(self) -> bytes:
        return json.dumps(
            {
                "host": default_host(),
                "pid": os.getpid(),
                "time": _now(),
                "exclusive": self.exclusive,
                "purpose": self.purpose,
            }
        ).encode()

    def _write(self) -> str:
        key = f"{LOCK_PREFIX}{secrets.token_hex(16)}"
        self._backend.write(key, seal_checked(key, self._document()))
        return key

    def _conflicts(self) -> list[dict[str, Any]]:
        now = _now()
        found = []
        for info in self._backend.list(LOCK_PREFIX):
            if info.key == self.key:
                continue
            try:
                document = read_lock(self._backend, info.key)
            except ObjectNotFoundError:
                continue
            if _is_stale(document, now):
                if self.exclusive:
                    try:
                        self._backend.delete(info.key)
                    except ObjectNotFoundError:
                        pass
                continue
            assert document is not None
            if self.exclusive or document.get("exclusive"):
                found.append(document)
        return found

    def try_acquire(self) -> list[dict[str, Any]]:
        """Take the lock; return the conflicting holders (empty when it was taken)."""
        self.key = self._write()
        conflicts = self._conflicts()
        if conflicts:
            self._delete(self.key)
            self.key = ""
            return conflicts
        self._thread = threading.Thread(target=self._refresh, name="st-lock", daemon=True)
        self._thread.start()
        return []

    def _refresh(self) -> None:
        """Rewrite the lock every :data:`REFRESH` seconds until released. A refresh that fails
        (a full disk, a network error) is logged and tried again :data:`REFRESH_RETRY` seconds
        later, never the end of refreshing: a lock left to go stale lets a prune delete data a
        running backup is still writing. The old lock object stays until a new one is written."""
        wait = REFRESH
        failing_since: float | None = None
        while not self._stop.wait(wait):
            try:
                new = self._write()
            except Exception as exc:  # the backend's one-line error, or the host's
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                log.warning(
                    "could not refresh the %s lock %s for %.0f s (%s); trying again",
                    "exclusive" if self.exclusive else "shared",
                    self.key,
                    now - failing_since,
                    str(exc)[:200],
                )
                wait = REFRESH_RETRY
                continue
            old, self.key = self.key, new
            failing_since, wait = None, REFRESH
            try:
                self._delete(old)
            except Exception as exc:  # ours, and stale once we are gone: harmless
                log.warning("could not delete the old lock %s (%s)", old, str(exc)[:200])

    def _delete(self, key: str) -> None:
        try:
            self._backend.delete(key)
        except ObjectNotFoundError:
            pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.key:
            self._delete(self.key)
            self.key = ""


def _describe(holders: list[dict[str, Any]]) -> str:
    parts = []
    for holder in holders[:3]:
        try:
            when = dt.datetime.fromtimestamp(float(holder.get("time", 0)), dt.UTC).isoformat()
        except (ValueError, TypeError, OverflowError, OSError):
            when = "an unknown time"
        kind = "exclusive" if holder.get("exclusive") else "shared"
        parts.append(
            f"{holder.get('purpose', '?')} ({kind}) by pid {holder.get('pid')} on "
            f"{holder.get('host')} since {when}"
        )
    return "; ".join(parts)


@contextmanager
def repository_lock(
    backend: Backend, *, exclusive: bool, purpose: str, wait: float = 0.0
) -> Iterator[Lock]:
    """Hold a shared or exclusive lock for the ``with`` block, waiting up to ``wait`` seconds."""
    lock = Lock(backend, exclusive, purpose)
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        holders = lock.try_acquire()
        if not holders:
            break
        if time.monotonic() >= deadline:
            raise RepositoryLockedError(
                f"{backend.location} is locked: {_describe(holders)}; try again later "
                "(stale locks expire on their own)"
            )
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 2.0)
    try:
        yield lock
    finally:
        lock.release()


@attrs.frozen(kw_only=True)
class LockInfo:
    """One lock object as ``stcore unlock`` reports it."""

    id: str
    host: str | None
    pid: int | None
    #: when it was written (its holder rewrites it every :data:`REFRESH` seconds), epoch seconds
    time: float | None
    exclusive: bool
    purpose: str | None
    #: why it is stale (``damaged``, ``not refreshed``, ``from the future``, ``process gone``),
    #: or None while its holder is alive
    stale: str | None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _lock_info(key: str, document: dict[str, Any] | None, now: float) -> LockInfo:
    fields = document or {}

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value if isinstance(value, str) else None

    return LockInfo(
        id=key.removeprefix(LOCK_PREFIX),
        host=text("host"),
        pid=int(fields["pid"]) if "pid" in fields else None,
        time=float(fields["time"]) if "time" in fields else None,
        exclusive=bool(fields.get("exclusive", False)),
        purpose=text("purpose"),
        stale=stale_reason(document, now),
    )


def list_locks(backend: Backend) -> list[LockInfo]:
    """Every lock object in ``locks/``, read and judged (a damaged one counts as stale)."""
    now = _now()
    found = []
    for info in backend.list(LOCK_PREFIX):
        try:
            document = read_lock(backend, info.key)
        except ObjectNotFoundError:
            continue  # released, or refreshed under a new name, since the listing
        found.append(_lock_info(info.key, document, now))
    return found


def remove_locks(
    backend: Backend, *, remove_all: bool = False
) -> tuple[list[LockInfo], list[LockInfo]]:
    """Delete the stale locks (every lock with ``remove_all``); return (removed, kept).

    A lock already gone when it is deleted (its holder released or refreshed it) is left out of
    both lists. A holder whose lock ``remove_all`` deleted writes a new one at its next refresh;
    meanwhile nothing stops a prune from running beside it.
    """
    removed: list[LockInfo] = []
    kept: list[LockInfo] = []
    for lock in list_locks(backend):
        if lock.stale is None and not remove_all:
            kept.append(lock)
            continue
        try:
            backend.delete(LOCK_PREFIX + lock.id)
        except ObjectNotFoundError:
            continue
        removed.append(lock)
    return removed, kept
