"""st-azure against the backend contract on Azurite, plus URLs, credentials and large objects."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from st_azure.backend import AzureBackend, parse_url

from stcore.errors import ConfigError, ContainerNotFoundError, ObjectExistsError
from stcore.plugins import make_plugin_manager
from stcore.testing import BackendContract
from testsupport.azurite import ACCOUNT_KEY, AzuriteServer

MiB = 1024 * 1024


def raw_container(azurite: AzuriteServer, name: str) -> ContainerClient:
    """The SDK's own client, to look at what the backend stored without going through it."""
    return ContainerClient.from_connection_string(azurite.connection_string, name)


class TestAzureContract(BackendContract):
    listing_count = 1100  # Azure pages hold 5,000: following them is the SDK's job

    @pytest.fixture
    def backend(self, options: dict[str, Any], container_name: str) -> Iterator[AzureBackend]:
        backend = AzureBackend.open(f"az://{container_name}/repo", options=options, create=True)
        yield backend
        backend.close()


def test_is_registered_through_the_entry_point() -> None:
    host = make_plugin_manager()
    assert "azure" in host.backends
    assert host.backends.by_scheme("az") == "azure"
    assert host.backends.by_scheme("azure") == "azure"
    assert host.backends.get("azure") == AzureBackend.open
    plugin = next(p for p in host.plugins() if p.name == "azure")
    assert plugin.distribution == "st-azure"


# --- URLs and containers ------------------------------------------------------------------------


def test_url_forms() -> None:
    assert parse_url("az://box") == ("box", "")
    assert parse_url("az://box/") == ("box", "")
    assert parse_url("azure://box/a/b/") == ("box", "a/b")
    for bad in ("s3://box", "az://Upper", "az://ab", "az://a--b", "az://box/p?sig=secret"):
        with pytest.raises(ConfigError):
            parse_url(bad)


def test_a_bare_url_takes_the_container_from_the_environment(
    options: dict[str, Any], container_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_CONTAINER", container_name)
    backend = AzureBackend.open("az://", options=options, create=True)
    backend.write("k", b"v")
    assert backend.location == f"az://{container_name}"
    backend.close()
    monkeypatch.delenv("AZURE_CONTAINER")
    with pytest.raises(ConfigError, match="AZURE_CONTAINER"):
        AzureBackend.open("az://", options=options)


def test_missing_container_says_how_to_create_it(
    options: dict[str, Any], container_name: str
) -> None:
    with pytest.raises(ContainerNotFoundError) as info:
        AzureBackend.open(f"az://{container_name}/repo", options=options)
    message = str(info.value)
    assert container_name in message and "devstoreaccount1" in message
    assert "stcore init --create-bucket" in message and "az storage container create" in message
    assert "\n" not in message


def test_create_makes_the_container_and_is_idempotent(
    azurite: AzuriteServer, options: dict[str, Any], container_name: str
) -> None:
    assert not raw_container(azurite, container_name).exists()
    AzureBackend.open(f"az://{container_name}", options=options, create=True).close()
    assert raw_container(azurite, container_name).exists()
    AzureBackend.open(f"az://{container_name}", options=options, create=True).close()
    AzureBackend.open(f"az://{container_name}", options=options).close()


def test_keys_live_under_the_prefix(
    azurite: AzuriteServer, options: dict[str, Any], container_name: str
) -> None:
    inner = AzureBackend.open(f"az://{container_name}/team/repo", options=options, create=True)
    inner.write("data/aa/1", b"one")
    names = [b.name for b in raw_container(azurite, container_name).list_blobs()]
    assert names == ["team/repo/data/aa/1"]
    assert [(o.key, o.size) for o in inner.list()] == [("data/aa/1", 3)]
    outer = AzureBackend.open(f"az://{container_name}", options=options)
    outer.write("team/repository-sibling", b"x")  # shares the name prefix, not the directory
    assert [o.key for o in inner.list()] == ["data/aa/1"]
    assert outer.read("team/repo/data/aa/1") == b"one"
    inner.close()
    outer.close()


# --- credentials --------------------------------------------------------------------------------


def test_connection_string_from_the_environment(
    azurite: AzuriteServer, container_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    backend = AzureBackend.open(f"azure://{container_name}", options={}, create=True)
    backend.write("k", b"v")
    assert backend.read("k") == b"v"
    backend.close()


def test_account_url_with_account_key(azurite: AzuriteServer, container_name: str) -> None:
    options = {"account_url": azurite.blob_endpoint, "account_key": ACCOUNT_KEY, "retry_total": 0}
    backend = AzureBackend.open(f"az://{container_name}/p", options=options, create=True)
    backend.write("k", b"v")
    assert backend.stat("k").size == 1
    assert ACCOUNT_KEY not in repr(backend) and ACCOUNT_KEY not in backend.location
    backend.close()


def test_no_credentials_at_all_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        AzureBackend.open("az://box", options={})


def test_token_credentials_need_azure_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # as if it were not installed
    with pytest.raises(ConfigError, match="pip install azure-identity"):
        AzureBackend.open("az://box", options={"account_url": "https://acct.blob.core.windows.net"})


def test_a_malformed_connection_string_is_not_echoed() -> None:
    secret = "AccountKey=c2VjcmV0LXNlY3JldC1zZWNyZXQ="
    with pytest.raises(ConfigError) as info:
        AzureBackend.open("az://box", options={"connection_string": f"nonsense;{secret}"})
    assert "malformed" in str(info.value) and secret not in str(info.value)


# --- large objects ------------------------------------------------------------------------------


@pytest.fixture
def block_backend(options: dict[str, Any], container_name: str) -> Iterator[AzureBackend]:
    """Blocks from 1 MiB on, so the staged-block path is exercised with small payloads."""
    opts = {**options, "block_threshold": MiB, "block_size": MiB}
    backend = AzureBackend.open(f"az://{container_name}/repo", options=opts, create=True)
    yield backend
    backend.close()


def test_large_objects_go_up_as_blocks_with_a_stored_md5(
    azurite: AzuriteServer, container_name: str, block_backend: AzureBackend
) -> None:
    payload = os.urandom(3 * MiB + 17)
    block_backend.write("data/bb/big", payload)
    blob = raw_container(azurite, container_name).get_blob_client("repo/data/bb/big")
    committed, uncommitted = blob.get_block_list("all")
    assert [b.size for b in committed] == [MiB, MiB, MiB, 17] and not uncommitted
    stored = blob.get_blob_properties().content_settings.content_md5
    assert bytes(stored) == hashlib.md5(payload).digest()
    assert block_backend.read("data/bb/big") == payload
    # A range longer than 4 MiB is fetched in validated pieces.
    assert block_backend.read("data/bb/big", 1, 3 * MiB) == payload[1 : 3 * MiB + 1]
    assert block_backend.read("data/bb/big", 3 * MiB) == payload[3 * MiB :]


def test_block_uploads_are_create_only(block_backend: AzureBackend) -> None:
    first = os.urandom(2 * MiB)
    block_backend.write("big", first)
    with pytest.raises(ObjectExistsError):
        block_backend.write("big", os.urandom(2 * MiB))
    assert block_backend.read("big") == first


def test_concurrent_block_uploads_never_mix_blocks(block_backend: AzureBackend) -> None:
    # Uncommitted blocks are shared per blob name: block IDs must be unique per upload.
    payloads = [bytes([i]) * (3 * MiB) for i in range(3)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(payloads))

    def attempt(payload: bytes) -> None:
        barrier.wait()
        try:
            block_backend.write("contended-big", payload)
            outcomes.append("won")
        except ObjectExistsError:
            outcomes.append("lost")

    threads = [threading.Thread(target=attempt, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost", "lost", "won"]
    assert block_backend.read("contended-big") in payloads


def test_option_values_are_checked(options: dict[str, Any]) -> None:
    for bad in ({"block_size": 0}, {"max_concurrency": "many"}, {"retry_total": -1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            AzureBackend.open("az://box", options={**options, **bad})
