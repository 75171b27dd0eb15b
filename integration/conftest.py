"""End-to-end fixtures: each cloud emulator as a real HTTP server, and the env to reach it.

These tests need every backend plugin installed (`scripts/test` installs them); the core suite in
`tests/` needs only st-local.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testsupport.azurite import start_azurite  # noqa: E402
from testsupport.gcs_server import start_fake_gcs_server  # noqa: E402
from testsupport.s3_server import MotoServer  # noqa: E402

CLOUD_VARIABLES = (
    "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_S3_BUCKET", "AWS_REGION", "AWS_SESSION_TOKEN",
    "STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GCP_BUCKET", "GCP_PROJECT_ID",
    "AZURE_STORAGE_CONNECTION_STRING", "AZURE_CONTAINER", "STCORE_REPO", "STCORE_CONFIG",
    "CLOUD_PROVIDER", "CLOUD_AUTO_SYNC", "CLOUD_SYNC_INTERVAL", "STCORE_BACKUP_INTERVAL",
)  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    server = start_fake_gcs_server(tmp_path_factory.mktemp("gcs-log"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    server = start_azurite(tmp_path_factory.mktemp("azurite-log"))
    yield server
    server.stop()


Remote = tuple[str, dict[str, str]]


@pytest.fixture(params=["s3", "gcs", "azure"])
def remote(request: pytest.FixtureRequest) -> Remote:
    """A fresh repository URL on one emulator, and the environment that reaches it."""
    name = f"stcore-e2e-{uuid.uuid4().hex[:12]}"
    factories: dict[str, Callable[[], Remote]] = {
        "s3": lambda: (
            f"s3://{name}/repo",
            {
                "AWS_ENDPOINT_URL": request.getfixturevalue("moto").endpoint_url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true",
            },
        ),
        "gcs": lambda: (
            f"gs://{name}/repo",
            {
                "STORAGE_EMULATOR_HOST": request.getfixturevalue("fake_gcs").endpoint,
                "GCP_PROJECT_ID": "stcore-test",
            },
        ),
        "azure": lambda: (
            f"az://{name}/repo",
            {
                "AZURE_STORAGE_CONNECTION_STRING": (
                    request.getfixturevalue("azurite").connection_string
                )
            },
        ),
    }
    url, env = factories[request.param]()
    for key, value in env.items():
        os.environ[key] = value
        request.addfinalizer(lambda key=key: os.environ.pop(key, None))
    return url, env
