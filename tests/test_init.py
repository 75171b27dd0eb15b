"""Init: only init creates a repository, and it never overwrites one."""

from __future__ import annotations

from pathlib import Path

import pytest

import stcore
from stcore.errors import (
    ContainerNotFoundError,
    PasswordError,
    RepositoryExistsError,
    RepositoryNotFoundError,
)
from tests.helpers import CHEAP


def test_init_writes_a_config_and_opens_it(tmp_path: Path) -> None:
    with stcore.init_repository(str(tmp_path / "repo"), compression="gzip") as repo:
        assert (tmp_path / "repo" / "config").is_file()
        assert repo.config.compression == "gzip" and repo.snapshots() == []
    with stcore.open_repository(str(tmp_path / "repo")) as again:
        assert again.id == repo.id


def test_paths_may_be_given_as_path_objects_or_strings(tmp_path: Path) -> None:
    """A library user passes ``Path`` objects and strings alike, for the repository and for
    the cache: both reach the same repository and the cache folder asked for."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a")
    cache = tmp_path / "cache"
    with stcore.init_repository(tmp_path / "repo", cache_root=str(cache)) as repo:
        repo.backup([stcore.make_source("d", "files", {"path": str(tmp_path / "data")})])
    with stcore.open_repository(tmp_path / "repo", cache_root=str(cache)) as again:
        assert again.id == repo.id and len(again.snapshots()) == 1
    with stcore.open_repository(str(tmp_path / "repo"), cache_root=cache) as again:
        assert again.id == repo.id
    assert [p.name for p in cache.iterdir()] and all(
        p.name.startswith(repo.id) for p in cache.iterdir()
    )


def test_init_refuses_an_existing_repository_and_leaves_it_alone(tmp_path: Path) -> None:
    first = stcore.init_repository(str(tmp_path / "repo"))
    config = (tmp_path / "repo" / "config").read_bytes()
    with pytest.raises(RepositoryExistsError):
        stcore.init_repository(str(tmp_path / "repo"))
    assert (tmp_path / "repo" / "config").read_bytes() == config
    first.close()


def test_an_unknown_compressor_fails_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(stcore.errors.UnknownPluginError):
        stcore.init_repository(str(tmp_path / "repo"), compression="nope")
    assert not (tmp_path / "repo").exists()


def test_an_encrypted_init_needs_a_password(tmp_path: Path) -> None:
    with pytest.raises(PasswordError, match="no password"):
        stcore.init_repository(str(tmp_path / "repo"), encryption="aes-256-gcm", kdf=CHEAP)
    assert not (tmp_path / "repo").exists()


def test_opening_never_creates(tmp_path: Path) -> None:
    with pytest.raises(ContainerNotFoundError):
        stcore.open_repository(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RepositoryNotFoundError):
        stcore.open_repository(str(tmp_path / "empty"))
    assert not (tmp_path / "missing").exists() and not (tmp_path / "empty" / "config").exists()
