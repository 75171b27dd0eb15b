"""The snapshot catalog: a local SQLite database answering queries without reading manifests.

It is a cache of the repository's ``snapshots/`` objects and can always be rebuilt from them
(``stcore catalog rebuild``). :meth:`Catalog.refresh` lists the snapshot keys, loads manifests it
has not seen and drops rows whose snapshot is gone, so writers on other machines show up.
WAL mode and a busy timeout let several processes share it. :func:`resolve_snapshot` answers
snapshot references (``latest~1``, ``@2026-11-30``, prefixes; parsed by :mod:`stcore.refs`)
from it.

For an encrypted repository the catalog holds no text of the snapshots: each manifest (source
names, their options with local paths, tags, host, error messages naming files) is sealed with
the repository's cipher under its own associated data, and the columns queries filter on (host,
source name and type, tag) hold keyed hashes (HMAC-SHA256 under a key derived from the master
key), so equality filters still run in SQL. Snapshot ids, times and sizes stay in the clear (the
ids, with their times, are the names of the repository's objects anyway), as do sync state and
the names of the configured remotes. A catalog written in the clear by an earlier version is
converted in place when it is first opened with the master key (sync state is kept) and its free
pages are wiped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from stcore.errors import CorruptObjectError, SnapshotNotFoundError
from stcore.localdb import open_local_database
from stcore.models import SnapshotManifest
from stcore.refs import SnapshotRef, parse_ref, show_time
from stcore.repo.format import Codec
from stcore.repo.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    time TEXT NOT NULL,          -- ISO 8601, UTC
    host TEXT NOT NULL,
    size INTEGER NOT NULL,
    added_bytes INTEGER NOT NULL,
    files INTEGER NOT NULL,
    partial INTEGER NOT NULL,
    manifest TEXT NOT NULL       -- the manifest's JSON, so reads never touch the backend
);
CREATE INDEX IF NOT EXISTS snapshots_time ON snapshots(time);
CREATE TABLE IF NOT EXISTS snapshot_sources (
    snapshot_id TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, name)
);
CREATE TABLE IF NOT EXISTS sync_state (
    snapshot_id TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    remote TEXT NOT NULL,
    synced_at TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, remote)
);
CREATE TABLE IF NOT EXISTS sync_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    remote TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    ok INTEGER,
    error TEXT,
    objects INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    snapshots INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS snapshot_tags (
    snapshot_id TEXT NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, tag)
);
CREATE TABLE IF NOT EXISTS catalog_meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""


#: manifests loaded at once when the catalog catches up with the repository
LOADERS = 8


class Protection:
    """How an encrypted repository's catalog keeps snapshot text: manifests sealed with the
    repository's codec, filterable fields as keyed hashes."""

    def __init__(self, codec: Codec, key: bytes) -> None:
        self._codec = codec
        self._key = key
        #: stored in the catalog: which key its rows are under
        self.check = self._mac(b"check")

    def _mac(self, *parts: bytes) -> bytes:
        return hmac.new(self._key, b"\0".join(parts), hashlib.sha256).digest()

    def hide(self, field: str, text: str) -> bytes:
        return self._mac(field.encode(), text.encode("utf-8", "surrogateescape"))

    def seal(self, snapshot_id: str, payload: bytes) -> bytes:
        return self._codec.seal(payload, _context(snapshot_id))

    def unseal(self, snapshot_id: str, stored: bytes) -> bytes:
        return self._codec.unseal(stored, _context(snapshot_id))


def _context(snapshot_id: str) -> bytes:
    return b"catalog:" + snapshot_id.encode()


def protection_for(store: Store) -> Protection | None:
    """The catalog protection ``store``'s repository needs: None if it is not encrypted."""
    if store.master_key is None:
        return None
    return Protection(store.codec, store.master_key.derive("catalog"))


def _storable(text: str) -> str:
    """``text`` as SQLite can store it. A name that was not UTF-8 (bytes kept as lone
    surrogates) becomes NUL and the hex of its bytes, which no real text starts with: equal
    names still compare equal, and nothing else collides with them."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return "\0" + text.encode("utf-8", "surrogateescape").hex()
    return text


def _utc(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat()


class Catalog:
    """Queries over the snapshots of one repository."""

    def __init__(self, path: Path, *, protection: Protection | None = None) -> None:
        self.path = path
        self._protection = protection
        self._db = open_local_database(path, SCHEMA)
        #: snapshot id -> why its manifest cannot be read, as of the last refresh; damaged
        #: snapshots are listed apart and never block listing, restoring or forgetting others
        self.damaged: dict[str, str] = {}
        try:
            self._db.execute("PRAGMA secure_delete=ON")  # deleted rows leave no bytes behind
            self._settle_protection()
        except BaseException:
            self._db.close()
            raise

    def _hide(self, field: str, text: str) -> str | bytes:
        return _storable(text) if self._protection is None else self._protection.hide(field, text)

    def _manifest(self, snapshot_id: str, stored: str | bytes) -> SnapshotManifest:
        if self._protection is not None:
            if not isinstance(stored, bytes):
                raise CorruptObjectError(
                    f"the catalog row of {snapshot_id} is not sealed; run `stcore catalog rebuild`"
                )
            stored = self._protection.unseal(snapshot_id, stored)
        return SnapshotManifest.from_json(json.loads(stored))

    def _settle_protection(self) -> None:
        """Bring the rows under this catalog's protection if they were written otherwise (by an
        earlier version, in the clear): each row is converted in place, so sync state stays; a
        row that cannot be read is dropped (the next refresh loads it again)."""
        row = self._db.execute(
            "SELECT value FROM catalog_meta WHERE name = 'protection'"
        ).fetchone()
        have = bytes(row[0]) if row is not None else None
        want = self._protection.check if self._protection is not None else None
        if have == want:
            return
        rows = self._db.execute("SELECT id, manifest FROM snapshots").fetchall()
        with self._db:
            for snapshot_id, stored in rows:
                try:
                    if have is not None or not isinstance(stored, str):
                        raise ValueError("sealed under another key")
                    manifest = SnapshotManifest.from_json(json.loads(stored))
                except (ValueError, TypeError, KeyError, RecursionError):
                    self._db.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))
                    continue
                self._db.execute(
                    "DELETE FROM snapshot_sources WHERE snapshot_id = ?", (snapshot_id,)
                )
                self._db.execute("DELETE FROM snapshot_tags WHERE snapshot_id = ?", (snapshot_id,))
                self._db.execute(
                    "UPDATE snapshots SET host = ?, manifest = ? WHERE id = ?",
                    (*self._hidden_row(manifest), snapshot_id),
                )
                self._add_children(manifest)
            if want is None:
                self._db.execute("DELETE FROM catalog_meta WHERE name = 'protection'")
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO catalog_meta VALUES ('protection', ?)", (want,)
                )
        if rows:
            self._db.execute("VACUUM")  # the text of the old rows must not linger in free pages
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _hidden_row(self, manifest: SnapshotManifest) -> tuple[str | bytes, str | bytes]:
        """(host, manifest) as stored."""
        payload = json.dumps(manifest.to_json())
        if self._protection is None:
            return _storable(manifest.host), payload
        return (
            self._protection.hide("host", manifest.host),
            self._protection.seal(manifest.id, payload.encode()),
        )

    def _add_children(self, manifest: SnapshotManifest) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO snapshot_sources VALUES (?, ?, ?)",
            [
                (manifest.id, self._hide("source", s.name), self._hide("type", s.type))
                for s in manifest.sources.values()
            ],
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO snapshot_tags VALUES (?, ?)",
            [(manifest.id, self._hide("tag", tag)) for tag in manifest.tags],
        )

    def close(self) -> None:
        self._db.close()

    def ids(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT id FROM snapshots")}

    def get(self, snapshot_id: str) -> SnapshotManifest | None:
        """One snapshot's manifest by its full id (one row read and decoded)."""
        if not snapshot_id.isascii():
            return None  # ids are ASCII; text that is not (even invalid UTF-8) names none
        row = self._db.execute(
            "SELECT manifest FROM snapshots WHERE id = ?", (snapshot_id,)
        ).fetchone()
        return None if row is None else self._manifest(snapshot_id, row[0])

    def add(self, manifest: SnapshotManifest) -> None:
        with self._db:
            self._insert(manifest)

    def _insert(self, manifest: SnapshotManifest) -> None:
        """Add one snapshot's rows inside the caller's transaction."""
        host, stored = self._hidden_row(manifest)
        self._db.execute(
            "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                manifest.id,
                _utc(manifest.time),
                host,
                manifest.size,
                manifest.added_bytes,
                sum(s.files for s in manifest.sources.values()),
                int(manifest.partial),
                stored,
            ),
        )
        self._add_children(manifest)

    def replace(self, old_id: str, manifest: SnapshotManifest) -> None:
        """``manifest`` in place of snapshot ``old_id`` (a tag change), in one transaction. The
        old row's sync state goes with it: a remote holds the old snapshot, not this one."""
        with self._db:
            self._insert(manifest)
            self._db.execute("DELETE FROM snapshots WHERE id = ?", (old_id,))

    def remove(self, snapshot_ids: Iterable[str]) -> None:
        with self._db:
            self._db.executemany("DELETE FROM snapshots WHERE id = ?", [(i,) for i in snapshot_ids])

    def refresh(
        self, stored_ids: Iterable[str], load: Callable[[str], SnapshotManifest]
    ) -> tuple[int, int]:
        """Bring the catalog in line with ``stored_ids``; return (added, removed).

        Missing manifests are loaded :data:`LOADERS` at a time (on a remote repository each is
        a request: a cold catalog of a hundred snapshots is a few round trips, not a hundred)
        and added in the order of their ids.
        """
        stored_ids = set(stored_ids)
        known = self.ids()
        missing = sorted(stored_ids - known)
        gone = known - stored_ids
        self.damaged = {}
        added = 0

        def attempt(snapshot_id: str) -> SnapshotManifest | str | None:
            try:
                return load(snapshot_id)
            except SnapshotNotFoundError:
                return None  # forgotten since it was listed
            except CorruptObjectError as exc:
                return str(exc)

        workers = min(LOADERS, len(missing))
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="stcore-catalog") as pool:
            for start in range(0, len(missing), 256):  # a slice at a time: bounded memory
                batch = missing[start : start + 256]
                with self._db:  # one transaction per slice, not one per snapshot
                    for snapshot_id, result in zip(batch, pool.map(attempt, batch), strict=True):
                        if isinstance(result, str):
                            self.damaged[snapshot_id] = result
                        elif result is not None:
                            self._insert(result)
                            added += 1
        if gone:
            self.remove(gone)
        return added, len(gone)

    def clear(self) -> None:
        with self._db:
            self._db.execute("DELETE FROM snapshots")

    def query(
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
        """Snapshots matching every filter given, newest first.

        ``synced`` True keeps snapshots synced to ``remote`` (to any remote when None); False
        keeps those not synced there.
        """
        clauses: list[str] = []
        params: list[str | bytes] = []
        if synced is not None:
            inner = "SELECT snapshot_id FROM sync_state"
            if remote is not None:
                inner += " WHERE remote = ?"
                params.append(remote)
            clauses.append(f"id {'IN' if synced else 'NOT IN'} ({inner})")
        if since is not None:
            clauses.append("time >= ?")
            params.append(_utc(since))
        if until is not None:
            clauses.append("time <= ?")
            params.append(_utc(until))
        if host is not None:
            clauses.append("host = ?")
            params.append(self._hide("host", host))
        if source is not None:
            clauses.append("id IN (SELECT snapshot_id FROM snapshot_sources WHERE name = ?)")
            params.append(self._hide("source", source))
        if source_type is not None:
            clauses.append("id IN (SELECT snapshot_id FROM snapshot_sources WHERE type = ?)")
            params.append(self._hide("type", source_type))
        for tag in tags:
            clauses.append("id IN (SELECT snapshot_id FROM snapshot_tags WHERE tag = ?)")
            params.append(self._hide("tag", tag))
        sql = "SELECT id, manifest FROM snapshots"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY time DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(str(int(limit)))
        return [self._manifest(row[0], row[1]) for row in self._db.execute(sql, params)]

    # --- sync state -----------------------------------------------------------------------------

    def mark_synced(self, snapshot_ids: Iterable[str], remote: str, when: dt.datetime) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO sync_state SELECT id, ?, ? FROM snapshots WHERE id = ?",
                [(remote, _utc(when), snapshot_id) for snapshot_id in snapshot_ids],
            )

    def synced_remotes(self, snapshot_id: str) -> dict[str, str]:
        """remote name -> when the snapshot reached it."""
        rows = self._db.execute(
            "SELECT remote, synced_at FROM sync_state WHERE snapshot_id = ?", (snapshot_id,)
        )
        return dict(rows.fetchall())

    def synced_remotes_of(self, snapshot_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """:meth:`synced_remotes` of many snapshots in one query: snapshot id -> remote name ->
        when it reached it (snapshots synced nowhere are left out)."""
        rows = self._db.execute(
            "SELECT snapshot_id, remote, synced_at FROM sync_state"
            " WHERE snapshot_id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(snapshot_ids)),),
        )
        found: dict[str, dict[str, str]] = {}
        for snapshot_id, remote, synced_at in rows:
            found.setdefault(snapshot_id, {})[remote] = synced_at
        return found

    def synced_count(self) -> int:
        """Snapshots synced to at least one remote."""
        row = self._db.execute("SELECT COUNT(DISTINCT snapshot_id) FROM sync_state").fetchone()
        return int(row[0])

    def sync_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT remote, COUNT(*) FROM sync_state GROUP BY remote")
        return dict(rows.fetchall())

    def start_sync_run(self, remote: str, when: dt.datetime) -> int:
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO sync_runs (remote, started_at) VALUES (?, ?)", (remote, _utc(when))
            )
        return int(cursor.lastrowid or 0)

    def finish_sync_run(
        self,
        run_id: int,
        when: dt.datetime,
        *,
        error: str | None,
        objects: int,
        bytes_uploaded: int,
        snapshots: int,
    ) -> None:
        with self._db:
            self._db.execute(
                "UPDATE sync_runs SET finished_at = ?, ok = ?, error = ?, objects = ?, bytes = ?, "
                "snapshots = ? WHERE id = ?",
                (_utc(when), int(error is None), error, objects, bytes_uploaded, snapshots, run_id),
            )

    def sync_runs(self, remote: str, limit: int = 10) -> list[dict[str, object]]:
        """The latest sync runs to ``remote``, newest first."""
        self._db.row_factory = sqlite3.Row
        try:
            rows = self._db.execute(
                "SELECT * FROM sync_runs WHERE remote = ? ORDER BY id DESC LIMIT ?",
                (remote, limit),
            ).fetchall()
        finally:
            self._db.row_factory = None
        return [dict(row) for row in rows]

    def sync_summary(self, remote: str, *, not_failures: Iterable[str] = ()) -> dict[str, Any]:
        """The last finished run, last successful run, last failed run and the failure count.

        Runs whose error is one of ``not_failures`` (a deliberate stop) count as neither.
        """
        excluded = list(not_failures)
        marks = ",".join("?" * len(excluded)) or "NULL"
        finished = "remote = ? AND finished_at IS NOT NULL"
        failed = f"{finished} AND ok = 0 AND COALESCE(error, '') NOT IN ({marks})"

        def one(where: str, *params: object) -> dict[str, Any] | None:
            self._db.row_factory = sqlite3.Row
            try:
                row = self._db.execute(
                    f"SELECT * FROM sync_runs WHERE {where} ORDER BY id DESC LIMIT 1", params
                ).fetchone()
            finally:
                self._db.row_factory = None
            return dict(row) if row else None

        count = self._db.execute(
            f"SELECT COUNT(*) FROM sync_runs WHERE {failed}", (remote, *excluded)
        ).fetchone()[0]
        return {
            "last": one(finished, remote),
            "last_ok": one(f"{finished} AND ok = 1", remote),
            "last_failed": one(failed, remote, *excluded),
            "failures": int(count),
        }

    def oldest(self) -> SnapshotManifest | None:
        """The first snapshot taken (None in an empty repository)."""
        row = self._db.execute(
            "SELECT id, manifest FROM snapshots ORDER BY time, id LIMIT 1"
        ).fetchone()
        return None if row is None else self._manifest(row[0], row[1])

    def totals(self) -> dict[str, int]:
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(added_bytes), 0) FROM snapshots"
        ).fetchone()
        return {"snapshots": row[0], "size": row[1], "added_bytes": row[2]}


def open_catalog(store: Store, *, refresh: bool = True) -> Catalog:
    """The catalog of ``store``'s repository on this machine, brought up to date (new snapshots
    loaded, forgotten ones dropped) unless ``refresh`` is False."""
    catalog = Catalog(store.cache_dir / "catalog.sqlite", protection=protection_for(store))
    if not refresh:
        return catalog
    try:
        catalog.refresh(store.snapshot_ids(), store.load_manifest)
    except BaseException:
        catalog.close()
        raise
    return catalog


def resolve_snapshot(
    catalog: Catalog, ref: str, location: str, *, as_of: dt.datetime | None = None
) -> SnapshotManifest:
    """The snapshot ``ref`` names (the grammar is in :mod:`stcore.refs`): a full id, a unique
    prefix (of the id or its random suffix), ``latest`` or ``@<time>`` (the newest snapshot
    taken at or before it), each optionally followed by ``~N``, N snapshots further back in
    time. ``as_of`` makes ``latest`` the newest snapshot taken at or before that moment; ids and
    ``@<time>`` name the same snapshot whatever it is."""
    parsed = parse_ref(ref)
    if parsed.kind == "id":
        base = _by_id(catalog, parsed.base)
        if not parsed.back:
            return base
        # the base and every snapshot older than it, newest first (ties ordered as listings are)
        line = catalog.query(until=base.time)
        line = line[[m.id for m in line].index(base.id) :]
        return _step_back(line, parsed, parsed.base)
    at = parsed.when if parsed.kind == "time" else as_of
    line = catalog.query(until=at, limit=parsed.back + 1)
    if not line:
        if at is None:
            raise SnapshotNotFoundError(f"{location} has no snapshots yet")
        oldest = catalog.oldest()
        where = f"{show_time(at)}{' (as_of)' if parsed.kind == 'latest' else ''}"
        raise SnapshotNotFoundError(
            f"{ref!r}: no snapshot was taken at or before {where}"
            + (f"; the oldest is {oldest.id}" if oldest else f"; {location} has none")
        )
    anchor = parsed.base
    if parsed.kind == "latest" and as_of is not None:
        anchor = f"latest as of {show_time(as_of)}"
    return _step_back(line, parsed, anchor)


def _step_back(line: list[SnapshotManifest], parsed: SnapshotRef, anchor: str) -> SnapshotManifest:
    """``line[parsed.back]``, where ``line`` starts with the base and goes back in time."""
    if parsed.back < len(line):
        return line[parsed.back]
    older = len(line) - 1
    raise SnapshotNotFoundError(
        f"{parsed.text!r} goes back {parsed.back} snapshot{'' if parsed.back == 1 else 's'} "
        f"but only {older} "
        f"{'is' if older == 1 else 'are'} older than {anchor}"
        f"{'' if anchor == line[0].id else f' ({line[0].id})'}; "
        f"{parsed.base}~{older} is the oldest"
    )


def _by_id(catalog: Catalog, ref: str) -> SnapshotManifest:
    """A snapshot by full id or unique prefix (of the id or its random suffix)."""
    exact = catalog.get(ref)
    if exact is not None:
        return exact
    # ids only: a manifest is decoded for the match, not for every snapshot
    candidates = sorted(
        (i for i in catalog.ids() if i.startswith(ref) or i.split("-")[-1].startswith(ref)),
        reverse=True,
    )
    matches = [m for m in (catalog.get(i) for i in candidates[:5]) if m is not None]
    if not matches:
        damaged = [
            i for i in catalog.damaged if i.startswith(ref) or i.split("-")[-1].startswith(ref)
        ]
        if damaged:
            raise CorruptObjectError(catalog.damaged[damaged[0]])
        raise SnapshotNotFoundError(f"no snapshot matches {ref!r}; `stcore snapshots` lists them")
    if len(candidates) > 1:
        ids = ", ".join(m.id for m in matches)
        raise SnapshotNotFoundError(f"{ref!r} matches several snapshots ({ids}); be more exact")
    return matches[0]


def resolve_snapshot_id(catalog: Catalog, ref: str, location: str) -> str:
    """Like :func:`resolve_snapshot`, but damaged snapshots count too (to forget one)."""
    try:
        return resolve_snapshot(catalog, ref, location).id
    except (SnapshotNotFoundError, CorruptObjectError):
        damaged = _damaged_matches(catalog, ref)
        if len(damaged) == 1:
            return damaged[0]
        raise


def _damaged_matches(catalog: Catalog, ref: str) -> list[str]:
    return [i for i in catalog.damaged if i.startswith(ref) or i.split("-")[-1].startswith(ref)]
