"""The built-in sources: files with globs, JSON read back parsed, SQLite copied while written."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import stcore
from stcore.builtins.sources import FilesSource
from stcore.errors import ConfigError, SourceError
from stcore.repository import Repository


def _paths(source: FilesSource) -> list[str]:
    return ["/".join(e.path) for e in source.scan(lambda p, e: None)]


def test_files_include_and_exclude_globs(tmp_path: Path) -> None:
    (tmp_path / "logs" / "old").mkdir(parents=True)
    (tmp_path / "logs" / "a.jsonl").write_text("{}")
    (tmp_path / "logs" / "old" / "b.jsonl").write_text("{}")
    (tmp_path / "logs" / "skip.tmp").write_text("")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "x.jsonl").write_text("{}")
    source = FilesSource(
        "s", {"path": str(tmp_path), "include": ["*.jsonl"], "exclude": ["cache", "logs/old/**"]}
    )
    assert _paths(source) == ["logs", "logs/a.jsonl", "logs/old"]


def test_star_does_not_cross_directories_but_double_star_does(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "top.json").write_text("{}")
    (tmp_path / "a" / "b" / "deep.json").write_text("{}")
    shallow = FilesSource("s", {"path": str(tmp_path), "include": ["a/*.json"]})
    assert [p for p in _paths(shallow) if p.endswith(".json")] == ["a/top.json"]
    deep = FilesSource("s", {"path": str(tmp_path), "include": ["a/**/*.json"]})
    assert [p for p in _paths(deep) if p.endswith(".json")] == ["a/b/deep.json", "a/top.json"]


def test_a_single_file_can_be_a_source(repo: Repository, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("just me")
    repo.backup(stcore.sources_for_paths([str(tmp_path / "notes.txt")]))
    assert repo.snapshot("latest").sources["notes.txt"].read_text("notes.txt") == "just me"


def test_json_source_reads_back_parsed(repo: Repository, tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"agents": ["a", "b"]}))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "events.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    single = stcore.make_source("ai_hub", "json", {"path": str(tmp_path / "state.json")})
    many = stcore.make_source("logs", "json", {"paths": [str(tmp_path / "logs")]})
    repo.backup([single, many])
    snapshot = repo.snapshot("latest")
    assert snapshot.sources["ai_hub"].data == {"agents": ["a", "b"]}
    assert snapshot.sources["logs"].data == {"logs/events.jsonl": [{"n": 1}, {"n": 2}]}
    assert list(snapshot.sources["logs"].iter_jsonl("logs/events.jsonl")) == [{"n": 1}, {"n": 2}]


def test_invalid_json_is_reported_but_still_stored(repo: Repository, tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    source = stcore.make_source("j", "json", {"path": str(tmp_path / "broken.json")})
    result = repo.backup([source])
    assert result.partial and "not valid JSON" in result.errors[0][1]
    assert repo.snapshot("latest").sources["j"].read_bytes("broken.json") == b"{not json"


def test_source_option_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a `path`"):
        stcore.make_source("x", "files", {})
    with pytest.raises(SourceError, match="does not exist"):
        stcore.make_source("x", "sqlite", {"path": str(tmp_path / "none.db")})
    with pytest.raises(ConfigError, match="must be a string or a list"):
        stcore.make_source("x", "files", {"path": str(tmp_path), "include": 3})


def test_sqlite_that_is_not_a_database_is_a_clear_error(repo: Repository, tmp_path: Path) -> None:
    (tmp_path / "fake.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SourceError, match="cannot copy SQLite database"):
        repo.backup([stcore.make_source("db", "sqlite", {"path": str(tmp_path / "fake.db")})])


WRITER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
deadline = time.time() + float(sys.argv[2])
n = 0
while time.time() < deadline:
    db.execute("BEGIN IMMEDIATE")
    for _ in range(20):
        db.execute("INSERT INTO items (payload) VALUES (randomblob(200))")
    db.execute("UPDATE totals SET n = n + 20")
    db.execute("COMMIT")
    n += 1
print(n)
"""


def test_sqlite_copy_is_consistent_while_another_process_writes(
    repo: Repository, tmp_path: Path
) -> None:
    path = tmp_path / "live.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, payload BLOB)")
    db.execute("CREATE TABLE totals (n INTEGER)")
    db.execute("INSERT INTO totals VALUES (0)")
    db.commit()
    db.close()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "4"], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.5)
        for _ in range(3):
            repo.backup([stcore.make_source("db", "sqlite", {"path": str(path)})])
    finally:
        transactions = int(writer.communicate(timeout=60)[0])
    assert transactions > 10, "the writer should have been busy during the backups"
    for manifest in repo.snapshots():
        out = tmp_path / f"out-{manifest.short_id}"
        repo.restore(manifest.id, out)
        # one self-contained file (still in WAL mode: opening it makes a new -wal)
        assert sorted(os.listdir(out / "db")) == ["live.db"]
        copy = sqlite3.connect(out / "db" / "live.db")
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        items = copy.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        total = copy.execute("SELECT n FROM totals").fetchone()[0]
        assert items == total  # a consistent point in time, never half a transaction
        copy.close()
