"""Bad input gets a clear error and loses nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

import stcore
from stcore.errors import (
    CorruptObjectError,
)
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.helpers import backup_small, only_pack


def test_flipped_byte_is_named_by_check_read_data(repo: Repository, tmp_path: Path) -> None:
    backup_small(repo, tmp_path)
    pack = only_pack(repo)
    body = bytearray(pack.read_bytes())
    body[100] ^= 0xFF
    pack.write_bytes(bytes(body))
    result = repo.check(read_data=True)
    assert not result.ok
    text = "\n".join(result.errors)
    assert pack.name in text
    assert "does not match its hash" in text
    assert "blob " in text  # the damaged blob is named too


def test_cli_check_exits_one_and_names_the_pack(repo: Repository, tmp_path: Path) -> None:
    backup_small(repo, tmp_path)
    pack = only_pack(repo)
    body = bytearray(pack.read_bytes())
    body[10] ^= 0x01
    pack.write_bytes(bytes(body))
    result = run_cli("--repo", repo.location, "check", "--read-data")
    assert result.returncode == 1
    assert pack.name in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_index_is_reported(repo: Repository, tmp_path: Path) -> None:
    backup_small(repo, tmp_path)
    (index_key,) = [info.key for info in repo.backend.list("index/")]
    path = Path(repo.location) / index_key
    path.write_bytes(path.read_bytes()[:-7])
    reopened = stcore.open_repository(repo.location)
    assert not reopened.check().ok
    with pytest.raises(CorruptObjectError, match=index_key):
        reopened.restore("latest", tmp_path / "out")
