"""Opening the local SQLite files stcore keeps in its cache directory (catalog, files cache)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from stcore.localfiles import PRIVATE_FILE, create_private, make_dirs, set_mode

#: the files SQLite keeps beside a database: WAL, shared memory, rollback journal
COMPANIONS = ("-wal", "-shm", "-journal")


def open_local_database(path: Path, schema: str, *, wait: float = 30.0) -> sqlite3.Connection:
    """A WAL-mode connection with ``schema`` applied, shared safely by several processes.

    Switching to WAL and creating the schema need the write lock, and SQLite does not apply its
    busy timeout to the journal-mode switch: retry while another process holds it.

    The database is ``0600`` (created so before SQLite opens it, narrowed if an earlier version
    left it wider); SQLite gives its ``-wal``, ``-shm`` and journal files the database's mode.
    """
    make_dirs(path.parent)
    create_private(path)
    for suffix in COMPANIONS:
        companion = path.with_name(path.name + suffix)
        try:
            if companion.stat().st_mode & 0o777 != PRIVATE_FILE:
                set_mode(companion, PRIVATE_FILE)
        except FileNotFoundError:
            pass
    db = sqlite3.connect(path, timeout=wait, check_same_thread=False)
    deadline = time.monotonic() + wait
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(schema)
            return db
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(0.05)
