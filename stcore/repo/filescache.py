"""The files cache: a file whose change token is unchanged since the last backup is not read.

Per repository and source, a local SQLite table maps each path to the change token the source
gave (size, mtime, ctime, inode for the files source) and the blob ids of its content. A backup
that meets the same path with the same token, and whose index still holds every one of those
blobs, reuses the ids without opening the file. Like restic's, this trusts the file system's
timestamps; a token is only recorded for files whose mtime is at least a second older than the
backup's start, so a file written during the same second as a backup is always read again.

No name is stored: source names and paths are kept as keyed hashes (keyed BLAKE2b, a MAC in
one call: Python's ``hmac`` costs more than the rest of a no-change backup's lookup). For an
encrypted repository the key is derived from the master key (:meth:`MasterKey.derive`), so the
cache tells someone who reads it neither what was backed up nor, by guessing, whether a given
path was; for an unencrypted one (plaintext in the repository anyway) the key is a constant. A
cache written under another key, or by a version that stored paths (table ``files``), is dropped
and its pages wiped: the next backup reads every file once and records them again.
"""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

from stcore.localdb import open_local_database
from stcore.repo.idtable import IdTable
from stcore.repo.keys import MasterKey

SCHEMA = """
CREATE TABLE IF NOT EXISTS file_states (
    source BLOB NOT NULL,            -- keyed hash of the source name
    path BLOB NOT NULL,              -- keyed hash of the source name and the path
    token TEXT NOT NULL,
    content BLOB NOT NULL,           -- concatenated 32-byte blob ids
    PRIMARY KEY (source, path)
);
CREATE TABLE IF NOT EXISTS files_cache_meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""

#: files changed this recently before the backup started are never cached (racy timestamps)
SAFETY_NS = 1_000_000_000

#: the hashing key of an unencrypted repository's cache (its paths are no secret there)
PLAIN_KEY = b"stcore files cache of an unencrypted repository"

#: a file's recorded (change token, content blob ids)
Recorded = tuple[str, tuple[bytes, ...]]
#: a row as stored: token, and the content's blob ids joined (split only when asked for)
StoredRow = tuple[str, bytes]


def files_cache_key(master: MasterKey | None) -> bytes:
    """The key the files cache of a repository hashes names with."""
    return master.derive("files cache") if master is not None else PLAIN_KEY


#: rows :class:`RecordedFiles` loads at a time
_BATCH = 4096

#: how tokens are held as bytes: any ``str`` round-trips, lone surrogates included
_TOKEN_ERRORS = "surrogatepass"


def _split_ids(joined: bytes) -> tuple[bytes, ...]:
    """Blob ids stored joined, one 32-byte id each again."""
    if len(joined) == 32:  # most files are one blob
        return (joined,)
    return tuple(joined[i : i + 32] for i in range(0, len(joined), 32))


class _PackedBytes:
    """A list of byte strings held in one ``bytearray`` with their end offsets: 8 bytes of
    overhead each, where a ``bytes`` object costs 33 and a list slot 8 more."""

    __slots__ = ("_data", "_ends")

    def __init__(self) -> None:
        self._data = bytearray()
        self._ends = array("Q")

    def append(self, item: bytes) -> None:
        self._data += item
        self._ends.append(len(self._data))

    def extend(self, items: list[bytes]) -> None:
        """:meth:`append` of each item in turn."""
        ends = itertools.accumulate(map(len, items), initial=len(self._data))
        next(ends)  # where the first item starts: not an end
        self._ends.extend(ends)
        self._data += b"".join(items)

    def __getitem__(self, row: int) -> bytes:
        start = self._ends[row - 1] if row else 0
        return bytes(self._data[start : self._ends[row]])

    def __len__(self) -> int:
        return len(self._ends)


class NewRows:
    """The rows a backup records for one source, held packed until its snapshot is written
    (then :meth:`FilesCache.replace` writes them): about 110 bytes for a file of one blob, where
    a list of tuples cost about 250."""

    def __init__(self) -> None:
        self._keys = _PackedBytes()
        self._tokens = _PackedBytes()
        self._content = _PackedBytes()

    def add(self, key: bytes, token: str, content: tuple[bytes, ...]) -> None:
        self._keys.append(key)
        self._tokens.append(token.encode("utf-8", _TOKEN_ERRORS))
        self._content.append(b"".join(content))

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[tuple[bytes, str, tuple[bytes, ...]]]:
        for key, token, joined in self.joined_rows():
            yield key, token, _split_ids(joined)

    def joined_rows(self) -> Iterator[tuple[bytes, str, bytes]]:
        """``(key, token, blob ids joined)``: the rows as :meth:`FilesCache.replace` stores
        them, without splitting the ids to join them again."""
        keys, tokens, content = self._keys, self._tokens, self._content
        for row in range(len(keys)):
            yield keys[row], tokens[row].decode("utf-8", _TOKEN_ERRORS), content[row]


class RecordedFiles:
    """What the last backup of one source recorded, looked up by path (hashed on lookup).

    Rows are held packed, as the index's are: path keys in an :class:`IdTable`, tokens and
    blob ids in two byte arenas with end offsets, about 60 bytes a file plus its token and ids,
    where a dict of tuples cost about 350 (36 MiB for the Linux tree's 78,579 files). A backup
    marks the rows it reuses unchanged (:meth:`keep`) instead of recording them again, so a
    no-change backup holds no second copy of the cache.
    """

    def __init__(
        self,
        cache: FilesCache,
        source: str,
        rows: Iterable[tuple[bytes, str, bytes]] = (),
        *,
        count: int = 0,
    ) -> None:
        self._cache = cache
        self._source = source
        self._rows = IdTable()
        self._tokens = _PackedBytes()
        self._content = _PackedBytes()
        self._rows.reserve(count)  # ``count`` rows expected: the table is not rebuilt
        rows = iter(rows)  # checked by the query (FilesCache.load)
        while batch := list(itertools.islice(rows, _BATCH)):
            found = self._rows.insert_all([key for key, _, _ in batch])
            if min(found) < 0:  # a path twice (not from FilesCache.load): the first one wins
                batch = [row for row, at in zip(batch, found, strict=True) if at >= 0]
            self._tokens.extend([token.encode("utf-8", _TOKEN_ERRORS) for _, token, _ in batch])
            self._content.extend([content for _, _, content in batch])
        self._kept = bytearray(self._rows.rows)

    def key(self, path: str) -> bytes:
        """``path``'s hashed key."""
        return self._cache.path_key(self._source, path)

    def find(self, path: str) -> int:
        """The row recorded for ``path``, or -1."""
        return self._rows.find(self.key(path))

    def unchanged(self, path: str, token: str) -> tuple[int, tuple[bytes, ...]] | None:
        """``(row, blob ids)`` recorded for ``path`` if it was recorded with ``token``: what a
        backup asks for each file (one call; the token compared as stored)."""
        row = self._rows.find(self._cache.path_key(self._source, path))
        if row < 0:
            return None
        if self._tokens[row] != token.encode("utf-8", _TOKEN_ERRORS):
            return None
        return row, _split_ids(self._content[row])

    def token(self, row: int) -> str:
        return self._tokens[row].decode("utf-8", _TOKEN_ERRORS)

    def joined(self, row: int) -> bytes:
        """The row's blob ids, joined as stored."""
        return self._content[row]

    def content(self, row: int) -> tuple[bytes, ...]:
        return _split_ids(self._content[row])

    def get(self, path: str) -> Recorded | None:
        row = self.find(path)
        return None if row < 0 else (self.token(row), self.content(row))

    def keep(self, row: int) -> None:
        """This backup found the row's file unchanged: it stays in the cache as it is."""
        self._kept[row] = 1

    def stored(self, key: bytes) -> StoredRow | None:
        """The row under a path key as stored: token and the blob ids joined."""
        row = self._rows.find(key)
        return None if row < 0 else (self.token(row), self.joined(row))

    def __len__(self) -> int:
        return len(self._rows)

    def dropped_keys(self, recorded: set[bytes]) -> Iterator[bytes]:
        """Path keys neither kept nor in ``recorded``: files gone, or no longer cacheable."""
        rows, kept = self._rows, self._kept
        for row in rows.live_rows():
            if not kept[row]:
                key = rows.key(row)
                if key not in recorded:
                    yield key


class FilesCache:
    def __init__(self, path: Path, key: bytes = PLAIN_KEY) -> None:
        self._key = key
        self._path_prefixes: dict[str, hashlib.blake2b] = {}
        self._db = open_local_database(path, SCHEMA)
        try:
            # no secure_delete: the rows hold keyed hashes only, and zeroing every page that a
            # backup's rewrite frees cost a no-change backup time; old plaintext is wiped in
            # _settle, by VACUUM
            self._settle()
        except BaseException:
            self._db.close()
            raise

    def _mac(self, *parts: bytes) -> bytes:
        return hashlib.blake2b(b"\0".join(parts), key=self._key, digest_size=32).digest()

    def source_key(self, source: str) -> bytes:
        return self._mac(b"source", _path_bytes(source))

    def path_key(self, source: str, path: str) -> bytes:
        """``_mac(b"path", source, path)``, from a hash state that has taken in all but the
        path already (one per source): a backup asks for a key per file."""
        prefix = self._path_prefixes.get(source)
        if prefix is None:
            prefix = hashlib.blake2b(key=self._key, digest_size=32)
            prefix.update(b"path\0" + _path_bytes(source) + b"\0")
            self._path_prefixes[source] = prefix
        state = prefix.copy()
        state.update(_path_bytes(path))
        return state.digest()

    def _settle(self) -> None:
        """Drop what cannot be used: an earlier version's table of plaintext paths, rows hashed
        under another key. Their pages are wiped, not just unlinked."""
        check = self._mac(b"check")
        old = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'files'"
        ).fetchone()
        row = self._db.execute(
            "SELECT value FROM files_cache_meta WHERE name = 'key_check'"
        ).fetchone()
        if old is None and row is not None and bytes(row[0]) == check:
            return
        with self._db:
            self._db.execute("DROP TABLE IF EXISTS files")
            self._db.execute("DELETE FROM file_states")
            self._db.execute(
                "INSERT OR REPLACE INTO files_cache_meta VALUES ('key_check', ?)", (check,)
            )
        if old is not None:
            _wipe_free_pages(self._db)

    def load(self, source: str) -> RecordedFiles:
        source_key = (self.source_key(source),)
        # an upper bound, from the primary key's index alone, to size the table once
        (count,) = self._db.execute(
            "SELECT count(*) FROM file_states WHERE source = ?", source_key
        ).fetchone()
        (total,) = self._db.execute("SELECT count(*) FROM file_states").fetchone()
        # Through the (source, path) index, each row costs a read of its table page, in hash
        # order: 78k reads of 4 KiB for the Linux tree, 0.25 s warm and 1.5 s more from a cold
        # disk. A scan of the table in its own order reads each page once (0.09 s), so it is
        # used unless the source holds only a small part of the table (one of many sources).
        scan = "NOT INDEXED" if count * 4 >= total else ""
        # rows this version did not write (damage) are left out here, in C, not per row in
        # Python: their files are read again
        rows = self._db.execute(
            f"SELECT path, token, content FROM file_states {scan}"
            " WHERE source = ? AND typeof(path) = 'blob' AND length(path) = 32"
            " AND typeof(token) = 'text' AND typeof(content) = 'blob'"
            " AND length(content) % 32 = 0",
            source_key,
        )
        return RecordedFiles(self, source, rows, count=count)

    def replace(
        self,
        source: str,
        entries: Iterable[tuple[bytes, str, tuple[bytes, ...]]],
        previous: RecordedFiles | None = None,
    ) -> None:
        """Make ``entries`` (path key from :meth:`RecordedFiles.key`, token, content), and the
        rows of ``previous`` marked with :meth:`RecordedFiles.keep`, the whole cache of
        ``source`` (files gone since are dropped). Given what was ``previous``ly loaded, only the
        rows that differ are written and only the gone ones deleted: a backup that changed
        nothing writes nothing (rewriting 78k rows cost a no-change backup of a source tree half
        a second)."""
        source_key = self.source_key(source)
        recorded: set[bytes] = set()
        changed: list[tuple[bytes, bytes, str, bytes]] = []
        rows = (
            entries.joined_rows()
            if isinstance(entries, NewRows)
            else ((key, token, b"".join(content)) for key, token, content in entries)
        )
        for key, token, joined in rows:
            recorded.add(key)
            if previous is None or previous.stored(key) != (token, joined):
                changed.append((source_key, key, token, joined))
        with self._db:
            if previous is None:
                self._db.execute("DELETE FROM file_states WHERE source = ?", (source_key,))
            else:
                self._db.executemany(
                    "DELETE FROM file_states WHERE source = ? AND path = ?",
                    ((source_key, key) for key in previous.dropped_keys(recorded)),
                )
            self._db.executemany("INSERT OR REPLACE INTO file_states VALUES (?, ?, ?, ?)", changed)

    def close(self) -> None:
        self._db.close()


def _wipe_free_pages(db: sqlite3.Connection) -> None:
    """Rewrite the database so dropped rows survive neither in free pages nor in the WAL."""
    db.execute("VACUUM")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _path_bytes(path: str) -> bytes:
    """A path as the bytes the file system gave (a name that is not UTF-8 reaches us with
    surrogate escapes)."""
    return path.encode("utf-8", "surrogateescape")
