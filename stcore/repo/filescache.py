"""The files cache: a file whose change token is unchanged since the last backup is not read.

Per repository and source, a local SQLite table maps each path to the change token the source
gave (size, mtime, ctime, inode for the files source) and the blob ids of its content. A backup
that meets the same path with the same token, and whose index still holds every one of those
blobs, reuses the ids without opening the file. Like restic's, this trusts the file system's
timestamps; a token is only recorded for files whose mtime is at least a second older than the
backup's start, so a file written during the same second as a backup is always read again.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from stcore.localdb import open_local_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    token TEXT NOT NULL,
    content BLOB NOT NULL,           -- concatenated 32-byte blob ids
    PRIMARY KEY (source, path)
);
"""

#: files changed this recently before the backup started are never cached (racy timestamps)
SAFETY_NS = 1_000_000_000


class FilesCache:
    def __init__(self, path: Path) -> None:
        self._db = open_local_database(path, SCHEMA)

    def load(self, source: str) -> dict[str, tuple[str, tuple[bytes, ...]]]:
        rows = self._db.execute(
            "SELECT path, token, content FROM files WHERE source = ?", (source,)
        )
        return {
            _path_text(path): (
                token,
                tuple(content[i : i + 32] for i in range(0, len(content), 32)),
            )
            for path, token, content in rows
        }

    def replace(self, source: str, entries: Iterable[tuple[str, str, tuple[bytes, ...]]]) -> None:
        """Make ``entries`` the whole cache of ``source`` (files gone since are dropped)."""
        with self._db:
            self._db.execute("DELETE FROM files WHERE source = ?", (source,))
            self._db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                (
                    (source, _path_bytes(path), token, b"".join(content))
                    for path, token, content in entries
                ),
            )

    def close(self) -> None:
        self._db.close()


def _path_bytes(path: str) -> bytes:
    """A path as the bytes the file system gave: a name that is not UTF-8 reaches us with
    surrogate escapes, which SQLite's text type refuses, so paths are stored as blobs."""
    return path.encode("utf-8", "surrogateescape")


def _path_text(stored: str | bytes) -> str:
    return stored.decode("utf-8", "surrogateescape") if isinstance(stored, bytes) else stored
