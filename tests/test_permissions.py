"""Private by default: what stcore writes is the user's alone, and an encrypted repository's
local caches name nothing that was backed up.

Modes are checked under a umask of 022, so a mode is right only if stcore set it explicitly.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import stcore
from stcore.access.catalog import Catalog
from stcore.builtins import sources as builtin_sources
from stcore.errors import ConfigError
from stcore.repo.filescache import FilesCache, files_cache_key
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.helpers import CHEAP, PASSWORD

#: names that appear nowhere but in the backed-up tree (and its source's path)
SECRET_DIR = "quokka-ledgers"
SECRET_FILE = "zanzibar-payroll.txt"
SECRET_SOURCE = "orchid-vault"
SECRET_TAG = "tagliatelle-audit"
SECRET_HOST = "marmalade-host"
SECRETS = (SECRET_DIR, SECRET_FILE, SECRET_SOURCE, SECRET_TAG, SECRET_HOST)


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    """The common default umask: anything stcore leaves to it comes out 0644 or 0755."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files the files source opens during a backup."""
    names: list[str] = []
    real = builtin_sources.open_scanned

    def counting(path: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        names.append(os.path.basename(path))
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtin_sources, "open_scanned", counting)
    return names


def _tree(root: Path) -> Path:
    """A source whose files are old enough for the files cache to record them."""
    (root / SECRET_DIR).mkdir(parents=True)
    files = [root / SECRET_FILE, root / SECRET_DIR / "notes.md", root / "plain.bin"]
    for i, path in enumerate(files):
        path.write_bytes(os.urandom(20_000 + i))
    old = time.time_ns() - 10 * 1_000_000_000
    for path in files:
        os.utime(path, ns=(old, old))
    return root


def _modes(root: Path) -> dict[str, int]:
    """Relative path -> permission bits of ``root`` ("." ) and everything below it."""
    found = {".": stat.S_IMODE(root.lstat().st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def _assert_modes(root: Path, file_mode: int, dir_mode: int) -> None:
    wrong = {
        path: oct(mode)
        for path, mode in _modes(root).items()
        if mode != (dir_mode if (root / path).is_dir() else file_mode)
    }
    assert not wrong, f"under {root}, expected {oct(file_mode)}/{oct(dir_mode)}: {wrong}"


def _exercise(location: Path, cache_root: Path, source: Path, **open_args: object) -> str:
    """Backup twice, check, query the catalog, read through the object cache; the snapshot id."""
    with stcore.open_repository(str(location), cache_root=cache_root, **open_args) as repo:  # type: ignore[arg-type]
        sources = stcore.sources_for_paths([str(source)])
        first = repo.backup(sources, tags=[SECRET_TAG], hostname=SECRET_HOST)
        repo.backup(stcore.sources_for_paths([str(source)]), hostname=SECRET_HOST)
        assert repo.check(read_data=True).ok
        found = repo.snapshots(tags=[SECRET_TAG], host=SECRET_HOST, source=SECRET_SOURCE)
        assert [m.id for m in found] == [first.manifest.id]
    # reading through the object cache (on for remote backends; asked for here)
    with stcore.open_repository(
        str(location),
        cache_root=cache_root,
        cache=True,
        **open_args,  # type: ignore[arg-type]
    ) as repo:
        view = repo.snapshot(first.manifest.id).sources[SECRET_SOURCE]
        names = {f.path for f in view.files()}
        assert f"{SECRET_DIR}/notes.md" in names and SECRET_FILE in names
        assert view.read_bytes(SECRET_FILE) == (source / SECRET_FILE).read_bytes()
        assert repo.object_cache is not None and repo.object_cache.stats()["entries"] > 0
    return first.manifest.id


def test_a_new_repository_and_its_caches_are_private(tmp_path: Path) -> None:
    location, cache_root = tmp_path / "repo", tmp_path / "cache"
    source = _tree(tmp_path / SECRET_SOURCE)
    stcore.init_repository(
        str(location), encryption="aes-256-gcm", password=PASSWORD, kdf=CHEAP, cache_root=cache_root
    ).close()
    _exercise(location, cache_root, source, password=PASSWORD)
    assert {"config", "keys", "data", "index", "snapshots"} <= set(os.listdir(location))
    _assert_modes(location, 0o600, 0o700)
    names = set(_modes(cache_root))
    for expected in ("catalog.sqlite", "files.sqlite", "objects", "encrypted"):
        assert any(n.endswith(expected) for n in names), f"{expected} not in {names}"
    _assert_modes(cache_root, 0o600, 0o700)


def test_an_unencrypted_repository_is_private_too(tmp_path: Path) -> None:
    location, cache_root = tmp_path / "repo", tmp_path / "cache"
    source = _tree(tmp_path / SECRET_SOURCE)
    stcore.init_repository(str(location), cache_root=cache_root).close()
    _exercise(location, cache_root, source)
    _assert_modes(location, 0o600, 0o700)
    _assert_modes(cache_root, 0o600, 0o700)


def test_group_access_lets_the_group_read_and_nobody_else(tmp_path: Path) -> None:
    location, cache_root = tmp_path / "repo", tmp_path / "cache"
    source = _tree(tmp_path / SECRET_SOURCE)
    result = run_cli(
        "--repo",
        str(location),
        "init",
        "--group-access",
        "--encrypt",
        env={"STCORE_PASSWORD": PASSWORD, "STCORE_CACHE_DIR": str(cache_root)},
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((location / "config").stat().st_mode) == 0o640
    _exercise(location, cache_root, source, password=PASSWORD)
    _assert_modes(location, 0o640, 0o750)
    _assert_modes(cache_root, 0o600, 0o700)  # the cache is this user's, shared or not


def test_group_access_opens_a_folder_made_beforehand_to_the_group(tmp_path: Path) -> None:
    location = tmp_path / "repo"
    location.mkdir(mode=0o700)
    stcore.init_repository(str(location), group_access=True).close()
    assert stat.S_IMODE(location.stat().st_mode) == 0o750
    _assert_modes(location, 0o640, 0o750)


def test_group_access_is_refused_for_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="local directory"):
        stcore.init_repository("s3://bucket/prefix", group_access=True)


@pytest.mark.parametrize(
    ("config_mode", "file_mode", "dir_mode"),
    [(0o600, 0o600, 0o700), (0o640, 0o640, 0o750), (0o660, 0o660, 0o770), (0o644, 0o640, 0o750)],
)
def test_new_files_take_their_modes_from_the_config(
    tmp_path: Path, config_mode: int, file_mode: int, dir_mode: int
) -> None:
    """A repository made by an earlier version (config 0644) keeps working, readable by its
    group as before but never by others; a group-writable config makes new files so too."""
    location = tmp_path / "repo"
    stcore.init_repository(str(location)).close()
    (location / "config").chmod(config_mode)
    source = _tree(tmp_path / SECRET_SOURCE)
    with stcore.open_repository(str(location)) as repo:
        repo.backup(stcore.sources_for_paths([str(source)]))
    for path in location.rglob("*"):
        if path.name == "config":
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (dir_mode if path.is_dir() else file_mode), path


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _assert_names_nowhere(root: Path, source: Path) -> None:
    data = _all_bytes(root)
    assert data, f"nothing under {root}"
    for needle in (*SECRETS, str(source)):
        for encoded in (needle.encode(), needle.encode("utf-16-le")):
            assert encoded not in data, f"{needle!r} is stored in the clear under {root}"


def test_an_encrypted_repositorys_caches_name_nothing_that_was_backed_up(
    tmp_path: Path, opened: list[str]
) -> None:
    location, cache_root = tmp_path / "repo", tmp_path / "cache"
    source = _tree(tmp_path / SECRET_SOURCE)
    stcore.init_repository(
        str(location), encryption="aes-256-gcm", password=PASSWORD, kdf=CHEAP, cache_root=cache_root
    ).close()
    _exercise(location, cache_root, source, password=PASSWORD)
    # the second backup took every file from the files cache
    assert sorted(opened) == sorted(["notes.md", "plain.bin", SECRET_FILE])
    _assert_names_nowhere(cache_root, source)


def test_an_unencrypted_repositorys_files_cache_spares_unchanged_files(
    tmp_path: Path, opened: list[str]
) -> None:
    source = _tree(tmp_path / SECRET_SOURCE)
    with stcore.init_repository(str(tmp_path / "repo")) as repo:
        repo.backup(stcore.sources_for_paths([str(source)]))
        assert len(opened) == 3
        opened.clear()
        repo.backup(stcore.sources_for_paths([str(source)]))
        assert opened == []


def _old_files_cache(path: Path, repo: Repository, source: Path) -> None:
    """Turn the files cache into what the previous version wrote: paths in the clear, with the
    tokens and blob ids that are right for the files (a cache that would be trusted if read)."""
    cache = FilesCache(path, files_cache_key(repo.store.master_key))
    recorded = cache.load(SECRET_SOURCE)
    rows = []
    for file in source.rglob("*"):
        relative = str(file.relative_to(source))
        found = recorded.get(relative)
        if found is not None:
            rows.append((SECRET_SOURCE, relative.encode(), found[0], b"".join(found[1])))
    cache.close()
    assert len(rows) == 3
    db = sqlite3.connect(path)
    with db:
        db.execute("DROP TABLE file_states")
        db.execute("DROP TABLE files_cache_meta")
        db.execute(
            "CREATE TABLE files (source TEXT NOT NULL, path TEXT NOT NULL, token TEXT NOT NULL,"
            " content BLOB NOT NULL, PRIMARY KEY (source, path))"
        )
        db.executemany("INSERT INTO files VALUES (?, ?, ?, ?)", rows)
    db.close()
    assert SECRET_FILE.encode() in path.read_bytes() + _wal(path)


def _wal(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_an_old_files_cache_with_plain_paths_is_dropped_and_rebuilt(
    tmp_path: Path, opened: list[str]
) -> None:
    location, cache_root = tmp_path / "repo", tmp_path / "cache"
    source = _tree(tmp_path / SECRET_SOURCE)
    repo = stcore.init_repository(
        str(location), encryption="aes-256-gcm", password=PASSWORD, kdf=CHEAP, cache_root=cache_root
    )
    with repo:
        repo.backup(stcore.sources_for_paths([str(source)]))
        path = repo.cache_dir / "files.sqlite"
        _old_files_cache(path, repo, source)
        opened.clear()
        repo.backup(stcore.sources_for_paths([str(source)]))
        assert len(opened) == 3  # not trusted: every file read again
        data = path.read_bytes() + _wal(path)
        for needle in (SECRET_FILE, SECRET_DIR, SECRET_SOURCE):
            assert needle.encode() not in data  # and its pages wiped
        opened.clear()
        repo.backup(stcore.sources_for_paths([str(source)]))
        assert opened == []  # rebuilt


def test_a_files_cache_under_another_key_is_not_used(tmp_path: Path, opened: list[str]) -> None:
    source = _tree(tmp_path / SECRET_SOURCE)
    with stcore.init_repository(str(tmp_path / "repo")) as repo:
        repo.backup(stcore.sources_for_paths([str(source)]))
        FilesCache(repo.cache_dir / "files.sqlite", b"another key" * 3).close()
        opened.clear()
        repo.backup(stcore.sources_for_paths([str(source)]))
        assert len(opened) == 3


def test_an_old_plaintext_catalog_is_sealed_in_place_and_keeps_sync_state(
    tmp_path: Path,
) -> None:
    location, cache_root = tmp_path / "repo", tmp_path / "cache"
    source = _tree(tmp_path / SECRET_SOURCE)
    repo = stcore.init_repository(
        str(location), encryption="aes-256-gcm", password=PASSWORD, kdf=CHEAP, cache_root=cache_root
    )
    with repo:
        result = repo.backup(
            stcore.sources_for_paths([str(source)]), tags=[SECRET_TAG], hostname=SECRET_HOST
        )
        cache_dir = repo.cache_dir
    (cache_dir / "files.sqlite").unlink()  # this test is about the catalog alone
    for leftover in cache_dir.glob("files.sqlite-*"):
        leftover.unlink()
    old = Catalog(cache_dir / "catalog.sqlite")  # as an earlier version wrote it: in the clear
    old.add(result.manifest)
    old.mark_synced([result.manifest.id], "mirror", dt.datetime.now(dt.UTC))
    old.close()
    assert SECRET_FILE.encode() not in _all_bytes(cache_dir)  # only the source and its path...
    assert str(source).encode() in _all_bytes(cache_dir)  # ...are in the manifest's text
    with stcore.open_repository(str(location), cache_root=cache_root, password=PASSWORD) as repo:
        found = repo.snapshots(tags=[SECRET_TAG], host=SECRET_HOST, source=SECRET_SOURCE)
        assert [m.id for m in found] == [result.manifest.id]
        assert (
            found[0].sources[SECRET_SOURCE].options
            == result.manifest.sources[SECRET_SOURCE].options
        )
        assert "mirror" in repo.catalog.synced_remotes(result.manifest.id)
        assert repo.snapshots(host="another-host") == []
    _assert_names_nowhere(cache_dir, source)
    _assert_modes(cache_root, 0o600, 0o700)


def test_an_old_cache_folder_is_narrowed(tmp_path: Path) -> None:
    cache_root = tmp_path / "cache"
    with stcore.init_repository(str(tmp_path / "repo"), cache_root=cache_root) as repo:
        cache_dir = repo.cache_dir
    cache_dir.chmod(0o755)  # as an earlier version left it
    stcore.open_repository(str(tmp_path / "repo"), cache_root=cache_root).close()
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
