"""Missing buckets on every cloud emulator: each hint, followed as written, works.

* ``stcore sync`` to a remote whose bucket (container) does not exist fails in one line naming
  ``stcore sync --remote NAME --create-bucket``; that command creates the bucket, makes the
  remote a copy of the local repository (the next sync would refuse another repository) and
  syncs; the next plain sync uploads nothing; the remote passes ``check --read-data`` and lists
  the local snapshots;
* a missing repository of one's own (``--repo s3://...``) names ``stcore init --create-bucket``
  with the repository, which creates it as written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

from integration.conftest import Remote


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stcore.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    return result.stderr.strip()


def hinted(line: str) -> list[str]:
    """The first `stcore ...` command in the message, split as a shell would, without `stcore`."""
    match = re.search(r"`stcore ([^`]+)`", line)
    assert match is not None, line
    return shlex.split(match.group(1))


def another_bucket(url: str) -> str:
    scheme = url.split("://", 1)[0]
    return f"{scheme}://stcore-own-{uuid.uuid4().hex[:12]}/repo"


def test_sync_to_a_missing_bucket_then_the_hinted_command_then_a_plain_sync(
    remote: Remote, tmp_path: Path
) -> None:
    url, env = remote
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f.bin").write_bytes(os.urandom(300_000))
    local = tmp_path / "local"
    (tmp_path / "stcore.toml").write_text(
        f'[repository]\nurl = "{local}"\n\n[remotes.cloud]\nurl = "{url}"\n'
    )
    assert cli("init", cwd=tmp_path, env=env).returncode == 0
    assert cli("backup", str(tmp_path / "data"), cwd=tmp_path, env=env).returncode == 0
    line = one_line_error(cli("sync", cwd=tmp_path, env=env))
    assert "does not exist" in line and "stcore init" not in line
    assert hinted(line) == ["sync", "--remote", "cloud", "--create-bucket"]
    created = cli(*hinted(line), cwd=tmp_path, env=env)
    assert created.returncode == 0, created.stderr
    again = cli("sync", "--json", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    (summary,) = json.loads(again.stdout)
    assert summary["snapshots_skipped"] == 1 and summary["objects_uploaded"] == 0
    checked = cli("--repo", url, "check", "--read-data", "--json", cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["snapshots"] == 1
    listed = cli("--repo", url, "snapshots", "--json", cwd=tmp_path, env=env)
    mine = cli("snapshots", "--json", cwd=tmp_path, env=env)
    assert [s["id"] for s in json.loads(listed.stdout)] == [
        s["id"] for s in json.loads(mine.stdout)
    ]


def test_a_missing_repository_of_ones_own_names_init_with_the_repository(
    remote: Remote, tmp_path: Path
) -> None:
    url, env = remote
    own = another_bucket(url)
    line = one_line_error(cli("--repo", own, "snapshots", cwd=tmp_path, env=env))
    words = hinted(line)
    assert "init" in words and "--create-bucket" in words and own in words, line
    created = cli(*words, cwd=tmp_path, env=env)  # from another folder, with no --repo given
    assert created.returncode == 0, created.stderr
    assert cli("--repo", own, "snapshots", cwd=tmp_path, env=env).returncode == 0
