"""What a hostile or merely unusual host puts under a `files` source, end to end through the CLI:
a tree 10,000 levels deep, names made of every byte but ``/``, a FIFO and a socket, and a live
SQLite database being written during the backup. Backup exits as documented; restore gives back
everything the backup says it stored, byte for byte."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import fsspec
import pytest

import stcore
from tests.conftest import run_cli

#: every byte a POSIX file name may hold: all but NUL and "/"
NAME_BYTES = bytes(b for b in range(1, 256) if b != ord("/"))


def _rm(*paths: Path) -> None:
    """rm -rf: shutil.rmtree (and so pytest's clean-up) recurses and stops at deep trees."""
    subprocess.run(["rm", "-rf", *map(str, paths)], check=True)


def _make_deep(root: Path, levels: int) -> None:
    """``levels`` nested directories named ``d``, with a file at a few depths; made relative
    to each directory's descriptor, since the full path outgrows PATH_MAX."""
    os.mkdir(root)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for depth in range(1, levels + 1):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            if depth % 2500 == 0:
                _write_at(fd, f"at-{depth}.txt", f"depth {depth}\n".encode())
    finally:
        os.close(fd)


def _write_at(dir_fd: int, name: str, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _read_deep(root: Path, levels: int) -> dict[int, bytes]:
    """The files found at each depth below ``root`` (walked by descriptor), checking that the
    chain of ``d`` directories is exactly ``levels`` long."""
    found: dict[int, bytes] = {}
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    depth = 0
    try:
        while True:
            names = sorted(os.listdir(fd))
            for name in names:
                if name != "d":
                    file_fd = os.open(name, os.O_RDONLY, dir_fd=fd)
                    with os.fdopen(file_fd, "rb") as stream:
                        found[depth] = stream.read()
            if "d" not in names:
                break
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
            depth += 1
    finally:
        os.close(fd)
    assert depth == levels
    return found


def test_a_tree_10000_levels_deep_backs_up_and_restores_exactly(tmp_path: Path) -> None:
    source, out, repo = tmp_path / "deep", tmp_path / "out", tmp_path / "repo"
    levels = 10_000
    _make_deep(source, levels)
    try:
        stcore.init_repository(str(repo)).close()
        backed = run_cli("--repo", str(repo), "backup", str(source), "--json")
        assert backed.returncode == 0, backed.stderr[-2000:]
        summary = json.loads(backed.stdout)
        assert summary["files"] == 4 and not summary["errors"]
        checked = run_cli("--repo", str(repo), "check", "--read-data")
        assert checked.returncode == 0, checked.stderr
        pruned = run_cli("--repo", str(repo), "prune")
        assert pruned.returncode == 0, pruned.stderr
        restored = run_cli("--repo", str(repo), "restore", "latest", "--target", str(out))
        assert restored.returncode == 0, restored.stderr[-2000:]
        assert _read_deep(out / "deep", levels) == {
            depth: f"depth {depth}\n".encode() for depth in (2500, 5000, 7500, 10000)
        }
        diffed = run_cli("--repo", str(repo), "diff", "latest", "latest")
        assert diffed.returncode == 0, diffed.stderr
        # read back without restoring: the views and fsspec's walk, find and glob
        deepest = "/".join(["d"] * levels) + f"/at-{levels}.txt"
        with stcore.open_repository(str(repo)) as opened:
            view = opened.snapshot("latest").sources["deep"]
            assert view.read_bytes(deepest) == f"depth {levels}\n".encode()
        fs = fsspec.filesystem("stcore", repo=str(repo), skip_instance_cache=True)
        # (find and glob list every full path: 50 MB of names here, fine but slow for a test)
        walked = list(fs.walk("latest/deep"))
        assert len(walked) == levels + 1 and sum(len(files) for _, _, files in walked) == 4
        assert fs.cat_file(f"latest/deep/{deepest}") == f"depth {levels}\n".encode()
    finally:
        _rm(source, out)


def _odd_names() -> list[bytes]:
    """One name holding every allowed byte, and one name per byte (``.`` alone is no name)."""
    names = [NAME_BYTES]
    names += [bytes([b]) for b in NAME_BYTES if b != ord(".")]
    names.append(b"..x")
    return names


def test_names_with_every_byte_round_trip_through_backup_listing_diff_and_restore(
    tmp_path: Path,
) -> None:
    source = tmp_path / "odd"
    source.mkdir()
    names = _odd_names()
    for number, name in enumerate(names):
        with open(os.path.join(os.fsencode(source), name), "wb") as stream:
            stream.write(b"file %d\n" % number)
    (source / "sub").mkdir()
    os.symlink(NAME_BYTES, os.path.join(os.fsencode(source / "sub"), NAME_BYTES))
    repo = str(tmp_path / "repo")
    stcore.init_repository(repo).close()
    first = run_cli("--repo", repo, "backup", str(source), "--json")
    assert first.returncode == 0, first.stderr
    # listing: --json carries each name as Python's surrogateescape string; fsencode gives
    # back the exact bytes
    shown = run_cli("--repo", repo, "show", "latest", "--files", "--json")
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)["files"]["odd"]
    paths = {os.fsencode(entry["path"]) for entry in listed}
    assert {name for name in names} <= paths
    assert b"sub/" + NAME_BYTES in paths
    human = run_cli("--repo", repo, "show", "latest", "--files")
    assert human.returncode == 0 and "Traceback" not in human.stderr
    # diff: change one odd file and remove another
    with open(os.path.join(os.fsencode(source), NAME_BYTES), "ab") as stream:
        stream.write(b"more\n")
    os.unlink(os.path.join(os.fsencode(source), b"\x01"))
    second = run_cli("--repo", repo, "backup", str(source), "--json")
    assert second.returncode == 0, second.stderr
    first_id, second_id = json.loads(first.stdout)["id"], json.loads(second.stdout)["id"]
    diffed = run_cli("--repo", repo, "diff", first_id, second_id, "--json")
    assert diffed.returncode == 0, diffed.stderr
    changes = {(c["change"], os.fsencode(c["path"])) for c in json.loads(diffed.stdout)}
    assert changes == {("modified", NAME_BYTES), ("removed", b"\x01")}
    # restore: every name, byte for byte, with its content
    out = tmp_path / "out"
    restored = run_cli("--repo", repo, "restore", first_id, "--target", str(out))
    assert restored.returncode == 0, restored.stderr
    back = os.fsencode(out / "odd")
    assert set(os.listdir(back)) == set(names) | {b"sub"}
    for number, name in enumerate(names):
        with open(os.path.join(back, name), "rb") as stream:
            assert stream.read() == b"file %d\n" % number
    assert os.readlink(os.path.join(back, b"sub", NAME_BYTES)) == NAME_BYTES


def test_a_fifo_and_a_socket_are_listed_and_the_rest_restores(tmp_path: Path) -> None:
    source = tmp_path / "special"
    source.mkdir()
    (source / "kept.txt").write_text("kept\n")
    os.mkfifo(source / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(source / "sock"))
    repo = str(tmp_path / "repo")
    try:
        stcore.init_repository(repo).close()
        backed = run_cli("--repo", repo, "backup", str(source))
    finally:
        server.close()
    # documented: exit 3, each special file named with what it is; never a hang, never silent
    assert backed.returncode == 3, backed.stderr
    assert "pipe" in backed.stderr and "FIFO" in backed.stderr
    assert "sock" in backed.stderr and "socket" in backed.stderr
    assert "Traceback" not in backed.stderr
    restored = run_cli("--repo", repo, "restore", "latest", "--target", str(tmp_path / "out"))
    assert restored.returncode == 0, restored.stderr
    assert sorted(os.listdir(tmp_path / "out" / "special")) == ["kept.txt"]


def _writer(path: str, stop: multiprocessing.synchronize.Event, journal: str) -> None:
    """Write rows into the database until told to stop: big transactions that touch many
    pages, so a byte copy taken meanwhile is torn."""
    db = sqlite3.connect(path, timeout=30)
    db.execute(f"PRAGMA journal_mode={journal}")
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB)")
    db.commit()
    number = 0
    while not stop.is_set():
        with db:
            db.executemany(
                "INSERT INTO t (body) VALUES (?)", [(os.urandom(600),) for _ in range(200)]
            )
            db.execute("DELETE FROM t WHERE id % 7 = ?", (number % 7,))
        number += 1
    db.close()


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_a_live_sqlite_database_under_a_files_source_restores_consistent(
    tmp_path: Path, journal: str
) -> None:
    source = tmp_path / "app"
    source.mkdir()
    (source / "notes.txt").write_text("notes\n")
    path = str(source / "state.db")
    repo = str(tmp_path / "repo")
    stcore.init_repository(repo).close()
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    writer = context.Process(target=_writer, args=(path, stop, journal))
    writer.start()
    try:
        while not os.path.exists(path) or os.path.getsize(path) < 200_000:
            assert writer.is_alive()
            os.sched_yield()
        ids = []
        for _ in range(4):
            backed = run_cli("--repo", repo, "backup", str(source), "--json")
            assert backed.returncode == 0, backed.stderr
            ids.append(json.loads(backed.stdout)["id"])
    finally:
        stop.set()
        writer.join(30)
    for number, snapshot in enumerate(ids):
        out = tmp_path / f"out{number}"
        restored = run_cli("--repo", repo, "restore", snapshot, "--target", str(out))
        assert restored.returncode == 0, restored.stderr
        names = sorted(os.listdir(out / "app"))
        # the database's -wal/-shm/-journal are in its consistent copy, not stored beside it
        assert names == ["notes.txt", "state.db"], names
        db = sqlite3.connect(out / "app" / "state.db")
        try:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert db.execute("SELECT count(*) FROM t").fetchone()[0] > 0
        finally:
            db.close()


def test_an_idle_database_is_read_byte_for_byte_under_a_read_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No companion (a rollback-journal database between two transactions): it is read as it
    is, while a read transaction keeps every writer out; a file that only looks like a journal
    of something that is not a database is stored as usual."""
    from stcore.builtins import sources as builtin_sources

    source = tmp_path / "app"
    source.mkdir()
    db = sqlite3.connect(source / "idle.db")
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    db.close()
    original = (source / "idle.db").read_bytes()
    (source / "notes.txt").write_text("notes\n")
    (source / "notes.txt-journal").write_text("my journal, not SQLite's\n")
    real = builtin_sources.open_scanned
    opened: list[str] = []
    writer_blocked: list[bool] = []

    def probing(path: str, *args: object, **kwargs: object) -> object:
        stream = real(path, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(path)
        if path == "idle.db" and opened.count(path) == 2:  # the reading one: writers wait
            writer = sqlite3.connect(source / "idle.db", timeout=0)
            try:
                writer.execute("INSERT INTO t VALUES (2)")
                writer.commit()
                writer_blocked.append(False)
            except sqlite3.OperationalError:
                writer_blocked.append(True)
            finally:
                writer.close()
        return stream

    monkeypatch.setattr(builtin_sources, "open_scanned", probing)
    monkeypatch.setattr(builtin_sources, "copy_database", None)  # never needed here
    repo = stcore.init_repository(str(tmp_path / "repo"))
    result = repo.backup(stcore.sources_for_paths([str(source)]))
    assert not result.partial, result.errors
    assert writer_blocked == [True]
    repo.restore("latest", tmp_path / "out")
    out = tmp_path / "out" / "app"
    assert sorted(os.listdir(out)) == ["idle.db", "notes.txt", "notes.txt-journal"]
    assert (out / "idle.db").read_bytes() == original


def test_a_wal_database_restores_in_wal_mode_as_one_file(tmp_path: Path) -> None:
    source = tmp_path / "app"
    source.mkdir()
    db = sqlite3.connect(source / "state.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (42)")
    db.commit()  # left open: the -wal and -shm are there, the row only in the -wal
    try:
        repo = stcore.init_repository(str(tmp_path / "repo"))
        assert not repo.backup(stcore.sources_for_paths([str(source)])).partial
    finally:
        db.close()
    repo.restore("latest", tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out" / "app")) == ["state.db"]
    restored = sqlite3.connect(tmp_path / "out" / "app" / "state.db")
    try:
        assert restored.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert restored.execute("SELECT x FROM t").fetchall() == [(42,)]
    finally:
        restored.close()


def test_a_journal_gone_between_listing_and_scan_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite deletes a rollback journal when its transaction commits, often between the
    directory listing and the scan of that name: that is not an unreadable file. Any other
    name that vanishes is still listed."""
    source = tmp_path / "app"
    source.mkdir()
    db = sqlite3.connect(source / "state.db")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    real = os.listdir

    def with_vanished(path: object) -> list[str]:
        names = real(path)  # type: ignore[arg-type]
        return [*names, "state.db-journal", "gone.txt"] if "state.db" in names else names

    monkeypatch.setattr(os, "listdir", with_vanished)
    repo = stcore.init_repository(str(tmp_path / "repo"))
    result = repo.backup(stcore.sources_for_paths([str(source)]))
    assert [os.path.basename(path) for path, _ in result.errors] == ["gone.txt"]
