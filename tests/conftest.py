"""Shared fixtures: an isolated cache and config per test, repositories and generated trees."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import stcore
from stcore.repository import Repository

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.trees import make_sample_tree  # noqa: E402


def _listing(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


#: the developer's real stcore cache and data folders, as they were before the run
_REAL_FOLDERS = [
    Path(os.environ.get("STCORE_CACHE_DIR") or Path.home() / ".cache" / "stcore"),
    Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "stcore",
]
_REAL_BEFORE = {folder: _listing(folder) for folder in _REAL_FOLDERS}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if anything was written to the developer's own stcore folders."""
    written = sorted(
        str(folder / name)
        for folder, before in _REAL_BEFORE.items()
        for name in _listing(folder) - before
    )
    if written:
        print(f"\ntests wrote outside their temporary folders: {written}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _isolate(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("STCORE_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("HOME", str(home))
    for name in (
        "STCORE_REPO", "STCORE_CONFIG", "CLOUD_PROVIDER", "CLOUD_AUTO_SYNC", "CLOUD_SYNC_INTERVAL",
        "STCORE_BACKUP_INTERVAL", "AWS_S3_BUCKET", "GCP_BUCKET", "AZURE_CONTAINER",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session", autouse=True)
def isolated_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The same for module- and session-scoped fixtures, which are set up before any test's
    own isolation: without it their backups wrote files caches into the real ~/.cache."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _isolate(monkeypatch, tmp_path_factory.mktemp("session-home"))
        yield


@pytest.fixture(autouse=True)
def isolated_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads the developer's stcore.toml, cache, repository or cloud settings."""
    home = tmp_path_factory.mktemp("home")
    _isolate(monkeypatch, home)
    monkeypatch.chdir(home)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    repository = stcore.init_repository(str(tmp_path / "repo"))
    yield repository
    repository.close()


@pytest.fixture
def sample_tree(tmp_path: Path) -> Path:
    return make_sample_tree(tmp_path / "sample")


def unprivileged_prefix() -> list[str]:
    """A command prefix that makes file permissions apply even when the tests run as root.

    Root reads any file, so a "permission denied" test would prove nothing; dropping the
    capabilities that bypass permission checks restores ordinary behaviour for that process.
    """
    if os.geteuid() != 0:
        return []
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    unprivileged: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the real `stcore` command in a subprocess (exit codes and output as a user sees)."""
    prefix = unprivileged_prefix() if unprivileged else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "stcore.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def backed_up(tmp_path: Path) -> Iterator[Repository]:
    """An encrypted repository with one snapshot of a small tree (its catalog never opened)."""
    from tests.helpers import init_encrypted

    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.bin").write_bytes(os.urandom(120_000))
    (source / "sub" / "b.txt").write_text("bee " * 50)
    repo = init_encrypted(tmp_path / "repo")
    repo.backup(stcore.sources_for_paths([str(source)]))
    yield repo
    repo.close()
