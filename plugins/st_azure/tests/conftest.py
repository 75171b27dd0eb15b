"""Fixtures for the st-azure tests: one Azurite for the session, a fresh container per test.

Azurite is a real Azure Blob Storage emulator answering HTTP on a loopback port; nothing in
these tests replaces the SDK or the network layer in-process.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from testsupport.azurite import AzuriteServer, start_azurite  # noqa: E402

#: Variables a developer's shell may hold that would change which account the tests reach.
AZURE_ENV = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CONTAINER",
)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    server = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_ambient_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AZURE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def options(azurite: AzuriteServer) -> dict[str, Any]:
    """Backend options for Azurite with fast failure: one immediate retry, short timeouts."""
    return {
        "connection_string": azurite.connection_string,
        "retry_total": 1,
        "retry_backoff": 0,
        "connection_timeout": 5,
        "read_timeout": 30,
    }


@pytest.fixture
def container_name(azurite: AzuriteServer) -> Iterator[str]:
    """A container name unique to the test; the container is deleted afterwards if created."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    name = f"t-{uuid.uuid4().hex[:20]}"
    yield name
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    with service, contextlib.suppress(ResourceNotFoundError):
        service.delete_container(name)  # frees Azurite's memory between tests
