"""The local object cache: bounded, shared between processes, and what makes remote reads cheap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import blake3
import pytest
from st_local.backend import LocalBackend

import stcore
from stcore.registry import Registration
from stcore.repo.objectcache import ObjectCache
from tests.conftest import run_cli


class CountingBackend(LocalBackend):
    reads: list[tuple[str, int, int | None]]

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        self.reads.append((key, offset, length))
        return super().read(key, offset, length)


def counting_host(reads: list[tuple[str, int, int | None]]) -> Any:
    """A plugin host where ``count:///path`` is a local directory that records every read."""

    def open_counting(url: str, *, options: Mapping[str, Any], create: bool = False) -> Any:
        backend = CountingBackend.open(url.replace("count://", "file://"), options=options,
                                       create=create)  # fmt: skip
        backend.reads = reads
        return backend

    def st_register_backends() -> list[Registration]:
        return [Registration(name="count", load=lambda: open_counting, schemes=("count",))]

    plugin = type("Counting", (), {"st_register_backends": staticmethod(
        stcore.hookimpl(st_register_backends))})  # fmt: skip
    return stcore.make_plugin_manager(extra_plugins=[("counting", plugin)])


def test_cache_stays_under_its_bound_and_keeps_recent_entries(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path / "c", max_bytes=100_000)
    cache.put("blob", "aa-first", os.urandom(10_000))
    for i in range(40):
        cache.put("blob", f"{i:02d}-filler", os.urandom(10_000))
        assert cache.get("blob", "aa-first") is not None  # used all the time: never evicted
        assert cache.stats()["bytes"] <= 100_000
    assert cache.get("blob", "00-filler") is None  # the least recently used went first
    assert cache.clear() > 0 and cache.stats()["entries"] == 0


def test_an_object_larger_than_the_bound_is_not_cached(tmp_path: Path) -> None:
    cache = ObjectCache(tmp_path / "c", max_bytes=1000)
    cache.put("blob", "big", b"x" * 5000)
    assert cache.get("blob", "big") is None


WORKER = """
import os, sys, blake3
from pathlib import Path
from stcore.repo.objectcache import ObjectCache
cache = ObjectCache(Path(sys.argv[1]), max_bytes=300_000)
for i in range(300):
    data = os.urandom(5_000 + i)
    name = blake3.blake3(data).hexdigest()
    cache.put("blob", name, data)
    got = cache.get("blob", name)
    assert got is None or got == data
"""


def test_two_processes_share_one_cache_without_corrupting_it(tmp_path: Path) -> None:
    processes = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "c")]) for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    cache = ObjectCache(tmp_path / "c", max_bytes=300_000)
    stats = cache.stats()
    assert 0 < stats["bytes"] <= 300_000 + 2 * 6000  # within one entry per writing process
    for path in (tmp_path / "c" / "blob").rglob("*"):
        if path.is_file():
            assert not path.name.startswith(".tmp-")
            assert blake3.blake3(path.read_bytes()).hexdigest() == path.name


@pytest.fixture
def remote_repo(tmp_path: Path) -> tuple[str, Path]:
    source = tmp_path / "src"
    source.mkdir()
    (source / "one.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (source / "two.json").write_text(json.dumps({"k": 1}))
    repo = stcore.init_repository(str(tmp_path / "remote"), pack_size=1 << 20)
    repo.backup(stcore.sources_for_paths([str(source)]))
    repo.close()
    return f"count://{tmp_path / 'remote'}", source


def test_a_second_read_from_a_remote_needs_no_requests(remote_repo: tuple[str, Path]) -> None:
    url, source = remote_repo
    reads: list[tuple[str, int, int | None]] = []
    repo = stcore.open_repository(url, host=counting_host(reads))
    assert repo.object_cache is not None
    view = repo.snapshot("latest").sources["src"]
    assert view.read_bytes("one.bin") == (source / "one.bin").read_bytes()
    assert any(key.startswith("data/") for key, _, _ in reads)
    assert all(length is not None for key, _, length in reads if key.startswith("data/"))
    repo.close()
    reads.clear()
    again = stcore.open_repository(url, host=counting_host(reads))  # a new process, same cache
    view = again.snapshot("latest").sources["src"]
    assert view.read_bytes("one.bin") == (source / "one.bin").read_bytes()
    assert [key for key, _, _ in reads if key.startswith(("data/", "index/"))] == []


def test_a_damaged_cache_entry_is_fetched_again(remote_repo: tuple[str, Path]) -> None:
    url, source = remote_repo
    reads: list[tuple[str, int, int | None]] = []
    repo = stcore.open_repository(url, host=counting_host(reads))
    repo.snapshot("latest").sources["src"].read_bytes("one.bin")
    assert repo.object_cache is not None
    repo.object_cache.flush()  # blobs are written behind the read: all of them, before damage
    for path in (repo.object_cache.root / "blob").rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")
    reads.clear()
    assert (
        repo.snapshot("latest").sources["src"].read_bytes("one.bin")
        == (source / "one.bin").read_bytes()
    )
    assert any(key.startswith("data/") for key, _, _ in reads)


def test_local_repositories_are_not_cached(repo: stcore.Repository) -> None:
    assert stcore.open_repository(repo.location).object_cache is None


def test_cli_cache_stats_and_clear(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_bytes(os.urandom(50_000))
    (tmp_path / "stcore.toml").write_text(f'[remotes.m]\nurl = "file://{mirror}"\n')
    mirror.mkdir()
    env = {"STCORE_REPO": str(tmp_path / "repo")}
    run_cli("init", env=env, cwd=tmp_path)
    run_cli("backup", str(tmp_path / "data"), env=env, cwd=tmp_path)
    assert run_cli("sync", env=env, cwd=tmp_path).returncode == 0
    restored = run_cli("restore", "--from", "m", "latest", "--target", str(tmp_path / "o"),
                       env=env, cwd=tmp_path)  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    stats = json.loads(run_cli("cache", "stats", "--from", "m", "--json", env=env,
                               cwd=tmp_path).stdout)  # fmt: skip
    assert stats["entries"] > 0 and stats["bytes"] > 50_000
    cleared = run_cli("cache", "clear", "--from", "m", env=env, cwd=tmp_path)
    assert cleared.returncode == 0 and "freed" in cleared.stdout
    stats = json.loads(run_cli("cache", "stats", "--from", "m", "--json", env=env,
                               cwd=tmp_path).stdout)  # fmt: skip
    assert stats["entries"] == 0
