"""``stcore sync --create-bucket``, and every missing-bucket hint works when followed as written.

The remote here is a local directory (the st-local backend's "bucket"); the S3 emulator and the
other clouds are in integration/test_sync_create_bucket.py.

* a sync to a remote whose directory is missing fails in one line naming
  ``stcore sync --remote NAME --create-bucket`` (not ``stcore init``, which would make a
  repository of its own there that the next sync refuses); that command, run as written, creates
  it and syncs, and the next plain sync works; the remote is a copy of this repository;
* reading a configured remote that was never synced (``prune --remote``) says the same;
* a missing repository of one's own still names ``stcore init --repo PATH``, which works as written
  (paths and remote names that need quoting are quoted);
* the library: ``SyncOptions(create_bucket=True)``.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

import stcore
from stcore.config import RemoteConfig
from stcore.errors import ContainerNotFoundError
from stcore.sync import SyncOptions
from tests.conftest import run_cli


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    return result.stderr.strip()


def hinted_command(line: str) -> list[str]:
    """The first `stcore ...` command the message names, split as a shell would."""
    match = re.search(r"`(stcore [^`]+)`", line)
    assert match is not None, line
    return shlex.split(match.group(1))


def follow(line: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    words = hinted_command(line)
    assert words[0] == "stcore"
    return run_cli(*words[1:], **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A local repository with one snapshot, run from a folder whose stcore.toml the tests
    write; the environment names the repository."""
    env = {"STCORE_REPO": str(tmp_path / "repo")}
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f.txt").write_text("some data")
    assert run_cli("init", env=env).returncode == 0
    assert run_cli("backup", str(tmp_path / "data"), env=env).returncode == 0
    return tmp_path, env


def configure(folder: Path, name: str, url: Path) -> None:
    (folder / "stcore.toml").write_text(
        f"[remotes.{json.dumps(name)}]\nurl = {json.dumps(str(url))}\n"
    )


@pytest.mark.parametrize("name", ["usb", "my usb [x]"])
def test_a_missing_remote_directory_hint_creates_it_and_the_next_sync_works(
    project: tuple[Path, dict[str, str]], name: str
) -> None:
    folder, env = project
    target = folder / "not yet [here]" / "remote"
    configure(folder, name, target)
    line = one_line_error(run_cli("sync", env=env, cwd=folder))
    assert "does not exist" in line and "stcore init" not in line
    assert f"stcore sync --remote {shlex.quote(name)} --create-bucket" in line
    assert not target.exists()
    created = follow(line, env=env, cwd=folder)
    assert created.returncode == 0, created.stderr
    assert target.is_dir() and f"{name}: 1 snapshot" in created.stdout
    again = run_cli("sync", "--json", env=env, cwd=folder)
    assert again.returncode == 0, again.stderr
    (summary,) = json.loads(again.stdout)
    assert summary["snapshots_skipped"] == 1 and summary["objects_uploaded"] == 0
    with (
        stcore.open_repository(env["STCORE_REPO"]) as local,
        stcore.open_repository(str(target)) as copy,
    ):
        assert copy.id == local.id  # the same repository: a sync mirror, not a new one
        assert [m.id for m in copy.snapshots()] == [m.id for m in local.snapshots()]
        assert copy.check(read_data=True).ok


def test_reading_a_remote_never_synced_names_the_same_command(
    project: tuple[Path, dict[str, str]],
) -> None:
    folder, env = project
    configure(folder, "usb", folder / "gone")
    line = one_line_error(run_cli("prune", "--remote", "usb", env=env, cwd=folder))
    assert hinted_command(line) == ["stcore", "sync", "--remote", "usb", "--create-bucket"]
    assert follow(line, env=env, cwd=folder).returncode == 0
    assert run_cli("prune", "--remote", "usb", env=env, cwd=folder).returncode == 0


def test_create_bucket_on_an_existing_remote_is_a_plain_sync(
    project: tuple[Path, dict[str, str]],
) -> None:
    folder, env = project
    configure(folder, "usb", folder / "remote")
    first = run_cli("sync", "--create-bucket", "--json", env=env, cwd=folder)
    assert first.returncode == 0, first.stderr
    second = run_cli("sync", "--create-bucket", "--json", env=env, cwd=folder)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)[0]["snapshots_skipped"] == 1


def test_a_remote_path_that_is_a_file_is_not_hinted_at(
    project: tuple[Path, dict[str, str]],
) -> None:
    folder, env = project
    (folder / "a-file").write_text("not a directory")
    configure(folder, "usb", folder / "a-file")
    for args in (("sync",), ("sync", "--create-bucket")):
        line = one_line_error(run_cli(*args, env=env, cwd=folder))
        assert "is not a directory" in line and "--create-bucket`" not in line


def test_a_missing_repository_of_ones_own_names_init_which_works_as_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "odd name; [x]" / "repo"
    line = one_line_error(run_cli("--repo", str(path), "snapshots"))
    assert hinted_command(line) == ["stcore", "init", "--repo", str(path)]
    created = follow(line)
    assert created.returncode == 0, created.stderr
    assert run_cli("--repo", str(path), "snapshots").returncode == 0


def test_the_library_creates_the_remote_with_create_bucket(tmp_path: Path) -> None:
    source = tmp_path / "data"
    source.mkdir()
    (source / "f").write_text("x")
    with stcore.init_repository(str(tmp_path / "repo")) as repo:
        repo.backup(stcore.sources_for_paths([str(source)]))
        remote = RemoteConfig(name="usb", url=str(tmp_path / "deep" / "remote"))
        with pytest.raises(ContainerNotFoundError, match="--remote usb --create-bucket"):
            repo.sync(remote)
        assert repo.sync(remote, options=SyncOptions(create_bucket=True)).snapshots
        assert repo.sync(remote).snapshots_skipped == 1
