"""Session-wide emulators for the st-gcs tests, and per-test isolation from the environment.

The servers are real HTTP servers on loopback ports (see :mod:`testsupport.gcs_server`):
fake-gcs-server for the contract, gcp-storage-emulator where the server must verify checksums.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from testsupport.gcs_server import (  # noqa: E402 - needs the repository root on sys.path
    EmulatorServer,
    start_fake_gcs_server,
    start_gcp_storage_emulator,
)

#: Variables that would change which server, project, bucket or credentials a test uses.
GOOGLE_ENVIRONMENT = (
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "GCP_PROJECT_ID",
    "GCP_BUCKET",
    "API_ENDPOINT_OVERRIDE",
)


@pytest.fixture(autouse=True)
def _isolated_google_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test sees the developer's credentials or emulator settings, nor gcloud's config."""
    for name in GOOGLE_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path_factory.mktemp("gcloud-config")))
    # Keep application default credentials from asking a metadata server that is not there.
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("NO_GCE_CHECK", "True")


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """fake-gcs-server: fast, complete preconditions, ranges and paging; trusts client checksums."""
    server = start_fake_gcs_server(tmp_path_factory.mktemp("fake-gcs-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """gcp-storage-emulator: verifies declared MD5/CRC32C against the uploaded body."""
    server = start_gcp_storage_emulator(tmp_path_factory.mktemp("gcp-storage-emulator"))
    yield server
    server.stop()


@pytest.fixture
def bucket_name() -> str:
    """A bucket name no other test uses, so every test starts from an empty bucket."""
    return f"st-test-{uuid.uuid4().hex[:16]}"
