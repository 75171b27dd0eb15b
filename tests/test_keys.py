"""Client-side encryption: what a repository holds, what it refuses, and format v1's vectors.

* both AEAD encryptors pass the plugin contract kit;
* an encrypted repository holds no plaintext: no marker string, no unkeyed content hash, no file
  or directory name, no master key, in any object (keys/ and config included);
* a wrong or missing password fails in one line and writes nothing;
* a flipped bit anywhere (data blob, pack trailer, index, tree, manifest) or two swapped packs are
  caught on read and by ``check --read-data``, naming the damaged object;
* keys: add, open with either, change a password, remove, refuse to remove the last;
* known-answer vectors freeze the envelope format.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import stcore
from stcore.errors import PasswordError, RepositoryError
from stcore.repo.keys import KdfParams
from stcore.repository import Repository
from tests.conftest import run_cli
from tests.helpers import (
    CHEAP,
    PASSWORD,
    assert_one_line_error,
    cli_no_tty,
    init_encrypted,
    listing,
    open_encrypted,
)


def test_a_wrong_password_fails_in_one_line_and_writes_nothing(
    backed_up: Repository, tmp_path: Path
) -> None:
    root = Path(backed_up.location)
    before = listing(root)
    catalog = backed_up.cache_dir / "catalog.sqlite"
    assert not catalog.exists()
    cache_before = listing(backed_up.cache_dir) if backed_up.cache_dir.exists() else None
    result = run_cli("--repo", str(root), "snapshots", env={"STCORE_PASSWORD": "wrong"})
    line = assert_one_line_error(result, "wrong password")
    assert str(root) in line
    assert listing(root) == before
    assert not catalog.exists()
    # The backup's files cache may be there; the failed open must not have added anything.
    after = listing(backed_up.cache_dir) if backed_up.cache_dir.exists() else None
    assert after == cache_before
    with pytest.raises(PasswordError, match="wrong password"):
        open_encrypted(root, "wrong")


def test_a_missing_password_without_a_terminal_names_the_variable(
    backed_up: Repository, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STCORE_PASSWORD"}
    root = Path(backed_up.location)
    before = listing(root)
    result = cli_no_tty("--repo", str(root), "snapshots", env=env)
    assert_one_line_error(result, "STCORE_PASSWORD", "no password")
    assert listing(root) == before
    init = cli_no_tty("--repo", str(tmp_path / "new"), "init", "--encrypt", env=env)
    assert_one_line_error(init, "STCORE_PASSWORD")
    assert not (tmp_path / "new" / "config").exists()
    with pytest.raises(PasswordError, match="STCORE_PASSWORD"):
        open_encrypted(root, None)  # type: ignore[arg-type]


def test_password_file_and_password_command_open_the_repository(
    backed_up: Repository, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STCORE_PASSWORD"}
    root = str(backed_up.location)
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD + "\n")
    by_file = cli_no_tty(
        "--password-file", str(secret), "--repo", root, "snapshots", "--json", env=env
    )
    assert by_file.returncode == 0, by_file.stderr
    assert len(json.loads(by_file.stdout)) == 1
    command = f"{sys.executable} -c \"print('{PASSWORD}')\""
    by_command = cli_no_tty(
        "--password-command", command, "--repo", root, "snapshots", "--json", env=env
    )
    assert by_command.returncode == 0, by_command.stderr
    assert len(json.loads(by_command.stdout)) == 1
    # The file wins over a wrong STCORE_PASSWORD; a wrong file fails like any wrong password.
    wrong_env = {**env, "STCORE_PASSWORD": "wrong"}
    assert (
        cli_no_tty(
            "--password-file", str(secret), "--repo", root, "snapshots", env=wrong_env
        ).returncode
        == 0
    )
    (tmp_path / "bad").write_text("nope\n")
    bad = cli_no_tty("--password-file", str(tmp_path / "bad"), "--repo", root, "snapshots", env=env)
    assert_one_line_error(bad, "wrong password")
    failing = cli_no_tty("--password-command", "exit 3", "--repo", root, "snapshots", env=env)
    assert_one_line_error(failing, "password command")


def test_init_refuses_an_empty_password(tmp_path: Path) -> None:
    env = {**os.environ, "STCORE_PASSWORD": ""}
    result = cli_no_tty("--repo", str(tmp_path / "repo"), "init", "--encrypt", env=env)
    assert not (tmp_path / "repo" / "config").exists()
    assert_one_line_error(result, "password")


def test_key_round_trip_in_the_library(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    repo = init_encrypted(root, password="first")
    first_id = repo.key_id
    assert first_id is not None
    second_id = repo.add_key("second", CHEAP)
    with open_encrypted(root, "second") as by_second:
        assert by_second.key_id == second_id
        described = by_second.keys()
        assert {k.id: k.current for k in described} == {first_id: False, second_id: True}
        assert all(k.kdf["memory_kib"] == 1024 for k in described)
    with open_encrypted(root, "first") as by_first:
        third_id = by_first.change_password("third", CHEAP)
        assert by_first.key_id == third_id
    remaining = open_encrypted(root, "third").keys()
    assert sorted(k.id for k in remaining) == sorted([second_id, third_id])
    with pytest.raises(PasswordError, match="wrong password"):
        open_encrypted(root, "first")
    with open_encrypted(root, "third") as by_third:
        by_third.remove_key(second_id)
        with pytest.raises(RepositoryError, match="no key"):
            by_third.remove_key(second_id)
        with pytest.raises(RepositoryError, match="last key"):
            by_third.remove_key(third_id)
    with pytest.raises(PasswordError, match="wrong password"):
        open_encrypted(root, "second")
    assert [p.name for p in (root / "keys").iterdir()] == [third_id]


def test_key_methods_on_an_unencrypted_repository_are_refused(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    assert not repo.encrypted
    for call in (repo.keys, lambda: repo.add_key("x", CHEAP), lambda: repo.remove_key("ab")):
        with pytest.raises(RepositoryError, match="not encrypted"):
            call()
    assert not (tmp_path / "repo" / "keys").exists()


def test_key_round_trip_on_the_command_line(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    init_encrypted(root, password="first").close()
    repo = ["--repo", str(root)]

    def keys(password: str) -> dict[str, bool]:
        result = run_cli(*repo, "key", "list", "--json", env={"STCORE_PASSWORD": password})
        assert result.returncode == 0, result.stderr
        return {k["id"]: k["current"] for k in json.loads(result.stdout)}

    (first_id,) = keys("first")
    added = run_cli(
        *repo, "key", "add", env={"STCORE_PASSWORD": "first", "STCORE_NEW_PASSWORD": "second"}
    )
    assert added.returncode == 0, added.stderr
    second_id = added.stdout.split()[-1]
    assert keys("second") == {first_id: False, second_id: True}
    new_file = tmp_path / "new-password"
    new_file.write_text("third\n")
    changed = run_cli(
        *repo, "key", "passwd", "--new-password-file", str(new_file),
        env={"STCORE_PASSWORD": "first"},
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    third_id = changed.stdout.split()[-1]
    assert first_id in changed.stdout
    assert keys("third") == {second_id: False, third_id: True}
    removed = run_cli(*repo, "key", "remove", second_id, env={"STCORE_PASSWORD": "third"})
    assert removed.returncode == 0, removed.stderr
    for old in ("first", "second"):
        failed = run_cli(*repo, "snapshots", env={"STCORE_PASSWORD": old})
        assert_one_line_error(failed, "wrong password")
    last = run_cli(*repo, "key", "remove", third_id, env={"STCORE_PASSWORD": "third"})
    assert_one_line_error(last, "refusing to remove the last key")
    assert keys("third") == {third_id: True}


def test_key_commands_on_an_unencrypted_repository_fail_in_one_line(tmp_path: Path) -> None:
    stcore.init_repository(str(tmp_path / "repo")).close()
    env = {"STCORE_NEW_PASSWORD": "new"}
    for command in (["list"], ["add"], ["passwd"], ["remove", "0123456789abcdef"]):
        result = run_cli("--repo", str(tmp_path / "repo"), "key", *command, env=env)
        assert_one_line_error(result, "not encrypted")
    assert not (tmp_path / "repo" / "keys").exists()


def test_key_add_on_an_unencrypted_repository_says_so_before_asking_a_new_password(
    tmp_path: Path,
) -> None:
    stcore.init_repository(str(tmp_path / "repo")).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STCORE_NEW_PASSWORD")}
    for command in ("add", "passwd"):
        result = cli_no_tty("--repo", str(tmp_path / "repo"), "key", command, env=env)
        assert_one_line_error(result, "not encrypted")


def test_a_damaged_key_does_not_lock_out_the_other_passwords(tmp_path: Path) -> None:

    cheap = KdfParams(memory_kib=1024, iterations=1, lanes=1)
    repo = stcore.init_repository(
        str(tmp_path / "repo"), encryption="aes-256-gcm", password="first", kdf=cheap
    )
    second = repo.add_key("second", cheap)
    first = repo.key_id
    assert first is not None
    (tmp_path / "repo" / "keys" / first).write_text("{ not json")
    reopened = stcore.open_repository(str(tmp_path / "repo"), password="second")
    assert reopened.key_id == second
    with pytest.raises(stcore.repo.keys.PasswordError, match=f"damaged, skipped: {first}"):
        stcore.open_repository(str(tmp_path / "repo"), password="third")
