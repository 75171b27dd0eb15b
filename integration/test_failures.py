"""Missing bucket, wrong credentials and an unreachable endpoint: one line, non-zero exit, on
every cloud, through the real `stcore` command."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.conftest import Remote
from testsupport.azurite import connection_string
from testsupport.s3_server import MotoServer

#: Keep retries short so an unreachable endpoint fails in seconds, not minutes.
FAST_FAILURE = {
    "s3": "max_attempts = 1\nconnect_timeout = 2\nread_timeout = 2\n",
    "gcs": "retry_deadline = 2\ntimeout = 2\n",
    "azure": "retry_total = 0\nconnection_timeout = 2\n",
}


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "stcore.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    print(lines[0])  # shown with -s: what a user reads
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(tmp_path: Path, kind: str) -> Path:
    (tmp_path / "stcore.toml").write_text(f"[repository.options]\n{FAST_FAILURE[kind]}")
    return tmp_path


def _kind(url: str) -> str:
    return {"s3": "s3", "gs": "gcs", "az": "azure"}[url.split("://")[0]]


def test_missing_bucket_is_one_line_saying_how_to_create_it(remote: Remote, tmp_path: Path) -> None:
    url, env = remote
    result = cli("snapshots", "--repo", url, cwd=_config(tmp_path, _kind(url)), env=env)
    assert_one_line_error(result, "--create-bucket")


def test_unreachable_endpoint_is_one_line_and_quick(remote: Remote, tmp_path: Path) -> None:
    url, env = remote
    port = _closed_port()
    broken = {
        "s3": {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"},
        "gcs": {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"},
        "azure": {
            "AZURE_STORAGE_CONNECTION_STRING": connection_string(
                f"http://127.0.0.1:{port}/devstoreaccount1"
            )
        },
    }[_kind(url)]
    started = time.monotonic()
    result = cli("init", "--repo", url, cwd=_config(tmp_path, _kind(url)), env={**env, **broken})
    line = assert_one_line_error(result, f"127.0.0.1:{port}")
    assert "secret" not in line.lower() and "AccountKey" not in line
    assert time.monotonic() - started < 60


@pytest.fixture(scope="module")
def authenticating_moto() -> Iterator[str]:
    """moto checks credentials once its free requests are used up (none here)."""
    with MotoServer(env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as server:
        yield server.endpoint_url


def test_wrong_credentials_are_one_line_on_s3(authenticating_moto: str, tmp_path: Path) -> None:
    env = {
        "AWS_ENDPOINT_URL": authenticating_moto,
        "AWS_ACCESS_KEY_ID": "AKIANOTAREALKEY00000",
        "AWS_SECRET_ACCESS_KEY": "not-the-secret-at-all",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    result = cli(
        "init",
        "--repo",
        "s3://guarded/repo",
        "--create-bucket",
        cwd=_config(tmp_path, "s3"),
        env=env,
    )
    line = assert_one_line_error(result)
    assert "credential" in line.lower() or "access key" in line.lower()
    assert "not-the-secret-at-all" not in result.stderr


def test_wrong_credentials_are_one_line_on_azure(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    azurite = request.getfixturevalue("azurite")
    bad_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5LXdyb25nLWtleQ=="
    env = {"AZURE_STORAGE_CONNECTION_STRING": connection_string(azurite.blob_endpoint, bad_key)}
    result = cli(
        "init",
        "--repo",
        "az://guarded/repo",
        "--create-bucket",
        cwd=_config(tmp_path, "azure"),
        env=env,
    )
    line = assert_one_line_error(result)
    assert bad_key not in result.stderr
    assert "key" in line.lower() or "authent" in line.lower()


def test_wrong_credentials_are_one_line_on_gcs(tmp_path: Path) -> None:
    broken = tmp_path / "service-account.json"
    broken.write_text('{"type": "service_account", "private_key": "not a key"}')
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(broken), "GCP_PROJECT_ID": "p"}
    result = cli("snapshots", "--repo", "gs://guarded/repo", cwd=_config(tmp_path, "gcs"), env=env)
    line = assert_one_line_error(result)
    assert "credential" in line.lower()
    assert "not a key" not in result.stderr
