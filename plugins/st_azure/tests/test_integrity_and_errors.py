"""Integrity checks and error mapping, against Azurite over HTTP.

Damage is introduced either through the SDK's lower-level calls (a wrong Content-MD5 sent on
purpose), by changing a stored blob behind the backend's back, or by a ``requests`` session that
flips a byte on the wire after the SDK computed its checksum. The server side is always the real
emulator; where Azurite cannot produce a failure (a 5xx), a plain loopback HTTP server does.
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    ContentSettings,
    ExponentialRetry,
    generate_container_sas,
)
from st_azure.backend import AzureBackend, is_md5_rejection, translate_error

from stcore.errors import (
    AccessDeniedError,
    AuthenticationError,
    BackendUnavailableError,
    CorruptObjectError,
    ObjectNotFoundError,
    TransientBackendError,
)
from testsupport.azurite import ACCOUNT_KEY, AzuriteServer, connection_string, free_port

MiB = 1024 * 1024
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3Jvbmc="


def flip_first_byte(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:]


class CorruptingSession(requests.Session):
    """Flips one byte of request bodies that carry a Content-MD5, or of ranged GET responses.

    It sits below the SDK, after the MD5 was computed and the request signed, like a faulty
    proxy or NIC would.
    """

    def __init__(self, *, uploads: bool = False, downloads: bool = False) -> None:
        super().__init__()
        self.uploads = uploads
        self.downloads = downloads
        self.corrupted = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        headers = kwargs.get("headers") or {}
        data = kwargs.get("data")
        if self.uploads and method == "PUT" and "Content-MD5" in headers and data is not None:
            raw = data.read() if hasattr(data, "read") else bytes(data)
            if raw:
                kwargs["data"] = flip_first_byte(raw)
                self.corrupted += 1
        response = super().request(method, url, *args, **kwargs)
        if self.downloads and method == "GET" and "Content-MD5" in response.headers:
            body = response.content
            if body:
                response._content = flip_first_byte(body)
                self.corrupted += 1
        return response


def backend_over(
    azurite: AzuriteServer, container: str, session: requests.Session, **kwargs: Any
) -> AzureBackend:
    client = ContainerClient.from_connection_string(
        azurite.connection_string,
        container,
        transport=RequestsTransport(session=session, session_owner=True),
        retry_policy=ExponentialRetry(retry_total=0, initial_backoff=0, random_jitter_range=0),
    )
    return AzureBackend(client, prefix="repo", **kwargs)


@pytest.fixture
def backend(options: dict[str, Any], container_name: str) -> Iterator[AzureBackend]:
    backend = AzureBackend.open(f"az://{container_name}/repo", options=options, create=True)
    yield backend
    backend.close()


@pytest.fixture
def raw(azurite: AzuriteServer, container_name: str) -> ContainerClient:
    return ContainerClient.from_connection_string(azurite.connection_string, container_name)


# --- uploads: the service checks the MD5 -------------------------------------------------------


def test_azurite_rejects_a_put_blob_whose_md5_does_not_match(
    backend: AzureBackend, raw: ContainerClient
) -> None:
    blob = raw.get_blob_client("repo/forged")
    with pytest.raises(HttpResponseError) as info:
        blob._client.block_blob.upload(
            body=b"the real bytes",
            content_length=14,
            transactional_content_md5=hashlib.md5(b"other bytes").digest(),
        )
    assert info.value.status_code == 400 and is_md5_rejection(info.value)
    error = backend._error(info.value, "writing", "forged")
    assert isinstance(error, TransientBackendError)
    assert "Content-MD5" in str(error) and "\n" not in str(error)
    assert not blob.exists()


def test_azurite_rejects_a_staged_block_whose_md5_does_not_match(raw: ContainerClient) -> None:
    raw.create_container()
    blob = raw.get_blob_client("repo/forged-block")
    with pytest.raises(HttpResponseError) as info:
        blob._client.block_blob.stage_block(
            block_id="QUFBQQ==",
            content_length=5,
            body=b"block",
            transactional_content_md5=hashlib.md5(b"kcolb").digest(),
        )
    assert is_md5_rejection(info.value)
    blob.stage_block("QUFBQg==", b"good block", validate_content=True)  # a matching one is kept
    assert [b.size for b in blob.get_block_list("uncommitted")[1]] == [10]


@pytest.mark.parametrize("size", [1000, 3 * MiB], ids=["put-blob", "staged-blocks"])
def test_bytes_damaged_on_the_way_up_are_refused_and_nothing_is_stored(
    azurite: AzuriteServer, backend: AzureBackend, raw: ContainerClient, size: int
) -> None:
    session = CorruptingSession(uploads=True)
    damaged = backend_over(azurite, backend.container, session, block_threshold=MiB, block_size=MiB)
    with pytest.raises(TransientBackendError, match="Content-MD5") as info:
        damaged.write("data/cc/object", os.urandom(size))
    assert session.corrupted >= 1
    assert isinstance(info.value.__cause__, HttpResponseError)
    with pytest.raises(ObjectNotFoundError):
        backend.stat("data/cc/object")
    damaged.close()


# --- downloads: the client checks the MD5 ------------------------------------------------------


def test_a_blob_changed_behind_our_back_is_detected_on_read(
    backend: AzureBackend, raw: ContainerClient
) -> None:
    original = b"the bytes stcore wrote"
    backend.write("data/dd/obj", original)
    blob = raw.get_blob_client("repo/data/dd/obj")
    stored_md5 = blob.get_blob_properties().content_settings.content_md5
    assert bytes(stored_md5) == hashlib.md5(original).digest()
    blob.upload_blob(b"THE bytes stcore wrote", overwrite=True)  # same size, other bytes
    blob.set_http_headers(ContentSettings(content_md5=stored_md5))  # keep the old MD5
    with pytest.raises(CorruptObjectError, match="data/dd/obj") as info:
        backend.read("data/dd/obj")
    assert "\n" not in str(info.value)


def test_a_large_block_blob_changed_behind_our_back_is_detected(
    azurite: AzuriteServer, options: dict[str, Any], container_name: str, raw: ContainerClient
) -> None:
    opts = {**options, "block_threshold": MiB, "block_size": MiB}
    backend = AzureBackend.open(f"az://{container_name}/repo", options=opts, create=True)
    payload = os.urandom(2 * MiB + 5)
    backend.write("big", payload)
    blob = raw.get_blob_client("repo/big")
    stored_md5 = blob.get_blob_properties().content_settings.content_md5
    blob.upload_blob(flip_first_byte(payload), overwrite=True)
    blob.set_http_headers(ContentSettings(content_md5=stored_md5))
    with pytest.raises(CorruptObjectError):
        backend.read("big")
    backend.close()


@pytest.mark.parametrize("span", [(5, 100), (5, None)], ids=["range", "to-end"])
def test_a_range_damaged_on_the_way_down_is_detected(
    azurite: AzuriteServer, backend: AzureBackend, span: tuple[int, int | None]
) -> None:
    backend.write("data/ee/obj", os.urandom(4000))
    session = CorruptingSession(downloads=True)
    damaged = backend_over(azurite, backend.container, session)
    with pytest.raises(CorruptObjectError, match="data/ee/obj"):
        damaged.read("data/ee/obj", *span)
    assert session.corrupted == 1
    damaged.close()


# --- error mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize("wrong_key", [WRONG_KEY, "not*base64*at*all"], ids=["other", "garbled"])
def test_a_wrong_account_key_is_an_authentication_error_that_hides_the_key(
    azurite: AzuriteServer, container_name: str, wrong_key: str
) -> None:
    bad = connection_string(azurite.blob_endpoint, wrong_key)
    with pytest.raises(AuthenticationError) as info:
        AzureBackend.open(f"az://{container_name}", options={"connection_string": bad})
    message = str(info.value)
    assert "devstoreaccount1" in message and "\n" not in message
    for secret in (wrong_key, ACCOUNT_KEY, bad, "SharedKey", "RequestId", "<Error>"):
        assert secret not in message


def test_a_wrong_key_after_opening_is_also_mapped(
    azurite: AzuriteServer, container_name: str, backend: AzureBackend
) -> None:
    client = ContainerClient.from_connection_string(
        connection_string(azurite.blob_endpoint, WRONG_KEY), backend.container
    )
    with pytest.raises(AuthenticationError):
        AzureBackend(client).write("k", b"v")


def test_an_unreachable_endpoint_fails_fast_naming_only_the_host(container_name: str) -> None:
    port = free_port()  # nothing listens there
    endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
    cs = connection_string(endpoint)
    options = {"connection_string": cs, "retry_total": 0, "connection_timeout": 2}
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        AzureBackend.open(f"az://{container_name}", options=options)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "\n" not in message
    assert ACCOUNT_KEY not in message and "AccountKey" not in message
    assert isinstance(info.value.__cause__, Exception)


class _AlwaysBusy(http.server.BaseHTTPRequestHandler):
    requests_seen = 0

    def _busy(self) -> None:
        type(self).requests_seen += 1
        self.send_response(503)
        self.send_header("x-ms-error-code", "ServerBusy")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_HEAD = do_DELETE = _busy

    def log_message(self, *args: Any) -> None:
        pass


def test_a_5xx_after_the_sdk_retries_is_transient(container_name: str) -> None:
    # Azurite cannot be told to fail, so this one service is a loopback server that always
    # answers 503 ServerBusy, as Azure does under throttling.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AlwaysBusy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}/devstoreaccount1"
        options = {
            "connection_string": connection_string(endpoint),
            "retry_total": 2,
            "retry_backoff": 0,
        }
        with pytest.raises(TransientBackendError, match="503 ServerBusy") as info:
            AzureBackend.open(f"az://{container_name}", options=options)
        assert _AlwaysBusy.requests_seen == 3  # the first try and two retries
        assert "AccountKey" not in str(info.value)
    finally:
        server.shutdown()
        server.server_close()


def test_sdk_errors_never_leak_into_messages(azurite: AzuriteServer, backend: AzureBackend) -> None:
    # The SDK's own text for a failure includes the request id and the service's XML body.
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    try:
        service.get_container_client(backend.container).get_blob_client("x").download_blob()
    except HttpResponseError as exc:
        sdk_text = str(exc)
        error = translate_error(
            exc,
            action="reading",
            container=backend.container,
            account=backend.account,
            host=backend.host,
            location=backend.location,
            key="x",
        )
    assert "RequestId" in sdk_text
    assert isinstance(error, ObjectNotFoundError)
    assert str(error) == f"x does not exist in {backend.location}"
    service.close()


def test_a_sas_token_never_shows_in_location_errors_or_logs(
    azurite: AzuriteServer,
    backend: AzureBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sas = generate_container_sas(
        "devstoreaccount1",
        backend.container,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True, write=True, list=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    signature = parse_qs(sas)["sig"][0]
    caplog.set_level(logging.DEBUG)
    options = {"account_url": azurite.blob_endpoint, "credential": sas, "retry_total": 0}
    with_sas = AzureBackend.open(f"az://{backend.container}/repo", options=options)
    with_sas.write("k", b"v")
    assert with_sas.read("k") == b"v"
    with pytest.raises(ObjectNotFoundError) as missing:
        with_sas.read("absent")
    with pytest.raises(AccessDeniedError) as denied:  # the SAS does not allow delete
        with_sas.delete("k")
    texts = [with_sas.location, repr(with_sas), str(missing.value), str(denied.value), caplog.text]
    for text in texts:
        assert signature not in text and sas not in text and ACCOUNT_KEY not in text
    # urllib3 logged the request lines (with the signature blanked), so the check above bites.
    assert any(
        r.name == "urllib3.connectionpool" and "sig=REDACTED" in r.getMessage()
        for r in caplog.records
    )
    with_sas.close()
