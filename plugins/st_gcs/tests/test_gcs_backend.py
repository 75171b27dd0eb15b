"""st-gcs against real storage emulators on loopback: the contract, and what only GCS can show.

fake-gcs-server runs the contract (it enforces preconditions, ranges and paging);
gcp-storage-emulator runs the integrity tests because, unlike fake-gcs-server, it checks the
checksums a client declares.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import google_crc32c
import pytest
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from st_gcs import backend as backend_module
from st_gcs.backend import ErrorContext, GcsBackend, map_gcs_error

from stcore.errors import (
    AccessDeniedError,
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    ConfigError,
    ContainerNotFoundError,
    CorruptObjectError,
    ObjectExistsError,
    ObjectNotFoundError,
    TransientBackendError,
)
from stcore.plugins import make_plugin_manager
from stcore.testing import BackendContract
from testsupport.gcs_server import EmulatorServer, free_port, start_fake_gcs_server


def server_options(server: EmulatorServer, **extra: Any) -> dict[str, Any]:
    """Backend options pointing at ``server``, with a retry deadline short enough for tests."""
    return {"endpoint": server.endpoint, "project": "test-project", "retry_deadline": 10, **extra}


def raw_client(server: EmulatorServer) -> storage.Client:
    """A plain SDK client, to look at or tamper with what the backend stored."""
    return storage.Client(
        project="test-project",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": server.endpoint},
    )


def assert_one_line(error: BaseException) -> str:
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message
    return message


class TestGcsContract(BackendContract):
    listing_count = 1100  # more than one 1,000-result page

    @pytest.fixture
    def backend(self, fake_gcs: EmulatorServer, bucket_name: str) -> Iterator[GcsBackend]:
        backend = GcsBackend.open(
            f"gs://{bucket_name}/repo", options=server_options(fake_gcs), create=True
        )
        yield backend
        backend.close()


# --- registration and configuration ------------------------------------------------------------


def test_is_registered_through_the_entry_point() -> None:
    host = make_plugin_manager()
    assert "gcs" in host.backends
    assert host.backends.by_scheme("gs") == "gcs"
    assert host.backends.by_scheme("gcs") == "gcs"
    assert host.backends.get("gcs") == GcsBackend.open
    plugin = next(p for p in host.plugins() if p.name == "gcs")
    assert plugin.distribution == "st-gcs"


def test_seed_variables_and_storage_emulator_host_are_honoured(
    fake_gcs: EmulatorServer, bucket_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.endpoint)
    monkeypatch.setenv("GCP_BUCKET", bucket_name)
    monkeypatch.setenv("GCP_PROJECT_ID", "seeded-project")
    backend = GcsBackend.open("gs://", options={}, create=True)
    try:
        assert backend.location == f"gs://{bucket_name}"
        backend.write("config", b"seeded")
        assert raw_client(fake_gcs).bucket(bucket_name).blob("config").download_as_bytes() == (
            b"seeded"
        )
    finally:
        backend.close()


def test_url_without_bucket_or_seed_says_what_to_set() -> None:
    with pytest.raises(ConfigError, match="GCP_BUCKET"):
        GcsBackend.open("gs://", options={})


def test_credentials_in_the_url_are_refused_without_being_echoed() -> None:
    with pytest.raises(BackendError) as caught:
        GcsBackend.open("gs://someone:hunter2@bucket/repo", options={})
    assert "hunter2" not in assert_one_line(caught.value)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"chunk_size": 1000}, "multiple of 262144"),
        ({"resumable_threshold": 64 * 1024 * 1024}, "at most"),
        ({"retry_deadline": "soon"}, "number of seconds"),
        ({"page_size": 5000}, "at most 1000"),
        ({"anonymous": "perhaps"}, "true or false"),
    ],
)
def test_invalid_options_say_what_is_wrong(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        GcsBackend.open("gs://bucket", options=options)


# --- buckets and prefixes ------------------------------------------------------------------------


def test_missing_bucket_without_create_says_how_to_create_it(
    fake_gcs: EmulatorServer, bucket_name: str
) -> None:
    with pytest.raises(ContainerNotFoundError) as caught:
        GcsBackend.open(f"gs://{bucket_name}/repo", options=server_options(fake_gcs))
    message = assert_one_line(caught.value)
    assert f"stcore --repo gs://{bucket_name}/repo init --create-bucket" in message
    assert f"gcloud storage buckets create gs://{bucket_name}" in message


def test_a_missing_object_in_a_bucket_named_bucket_is_a_missing_object(
    fake_gcs: EmulatorServer,
) -> None:
    """fake-gcs-server answers a missing object with the request's URL as the reason; the
    bucket's name in it ("my-bucket") must not read as "bucket ... Not Found"."""
    backend = GcsBackend.open("gs://my-bucket/repo", options=server_options(fake_gcs), create=True)
    with pytest.raises(ObjectNotFoundError):
        backend.stat("config")
    with pytest.raises(ObjectNotFoundError):
        backend.read("config")
    backend.close()


def test_create_true_creates_the_missing_bucket(fake_gcs: EmulatorServer, bucket_name: str) -> None:
    created = GcsBackend.open(f"gs://{bucket_name}", options=server_options(fake_gcs), create=True)
    created.write("config", b"v1")
    created.close()
    assert raw_client(fake_gcs).lookup_bucket(bucket_name) is not None
    reopened = GcsBackend.open(f"gs://{bucket_name}", options=server_options(fake_gcs))
    assert reopened.read("config") == b"v1"
    # Asking to create a bucket that exists is fine: it is simply used.
    again = GcsBackend.open(f"gs://{bucket_name}", options=server_options(fake_gcs), create=True)
    assert [o.key for o in again.list()] == ["config"]


def test_keys_live_under_the_prefix_and_neighbours_are_not_listed(
    fake_gcs: EmulatorServer, bucket_name: str
) -> None:
    backend = GcsBackend.open(
        f"gs://{bucket_name}/team/repo", options=server_options(fake_gcs), create=True
    )
    bucket = raw_client(fake_gcs).bucket(bucket_name)
    bucket.blob("team/repo2/config").upload_from_string(b"another repository")
    bucket.blob("team/repository").upload_from_string(b"a neighbour")
    backend.write("data/aa/1", b"one")
    backend.write("config", b"cfg")
    assert sorted(b.name for b in bucket.list_blobs(prefix="team/repo/")) == [
        "team/repo/config",
        "team/repo/data/aa/1",
    ]
    assert sorted((o.key, o.size) for o in backend.list()) == [("config", 3), ("data/aa/1", 3)]
    for escaping in ("../repo2/config", "a//b", "", "./config"):
        with pytest.raises(BackendError, match="invalid object key"):
            backend.read(escaping)


def test_listing_follows_pages_of_any_size(fake_gcs: EmulatorServer, bucket_name: str) -> None:
    backend = GcsBackend.open(
        f"gs://{bucket_name}", options=server_options(fake_gcs, page_size=3), create=True
    )
    keys = {f"index/{i:02d}" for i in range(10)}
    for key in keys:
        backend.write(key, key.encode())
    assert {o.key for o in backend.list("index/")} == keys
    # Four pages of at most three, each asked for with the previous page's token.
    pages = [
        line
        for line in fake_gcs.log_text().splitlines()
        if f"GET /storage/v1/b/{bucket_name}/o?" in line and "prefix=index%2F" in line
    ]
    assert len(pages) == 4
    assert sum("pageToken=" in line for line in pages) == 3


# --- large objects -------------------------------------------------------------------------------


def test_resumable_upload_goes_in_chunks_with_the_create_only_precondition(
    fake_gcs: EmulatorServer, bucket_name: str
) -> None:
    backend = GcsBackend.open(
        f"gs://{bucket_name}",
        options=server_options(fake_gcs, resumable_threshold=512 * 1024, chunk_size=256 * 1024),
        create=True,
    )
    payload = os.urandom(1_300_000)  # above the threshold: five chunks, the last one partial
    backend.write("data/bi/big", payload)
    assert backend.stat("data/bi/big").size == len(payload)
    assert backend.read("data/bi/big") == payload
    assert backend.read("data/bi/big", 700_000, 10) == payload[700_000:700_010]
    # fake-gcs-server ignores ifGenerationMatch on resumable uploads (real GCS enforces it), so
    # its access log is where to check the precondition is sent and the body went in chunks.
    requests = [line for line in fake_gcs.log_text().splitlines() if f"/b/{bucket_name}/o" in line]
    starts = [line for line in requests if "uploadType=resumable" in line and "POST" in line]
    assert len(starts) == 1 and "ifGenerationMatch=0" in starts[0]
    chunk_puts = [line for line in requests if "upload_id=" in line and "PUT" in line]
    assert len(chunk_puts) == 5
    assert sum('" 308 ' in line for line in chunk_puts) == 4


def test_small_objects_go_in_one_request_with_the_create_only_precondition(
    fake_gcs: EmulatorServer, bucket_name: str
) -> None:
    backend = GcsBackend.open(f"gs://{bucket_name}", options=server_options(fake_gcs), create=True)
    backend.write("config", b"small")
    requests = [line for line in fake_gcs.log_text().splitlines() if f"/b/{bucket_name}/o" in line]
    uploads = [line for line in requests if "POST /upload/" in line]
    assert len(uploads) == 1
    assert "uploadType=multipart" in uploads[0] and "ifGenerationMatch=0" in uploads[0]


# --- integrity (gcp-storage-emulator verifies declared checksums) --------------------------------


def test_correct_checksums_are_accepted_by_a_verifying_server(
    gcs_emulator: EmulatorServer, bucket_name: str
) -> None:
    backend = GcsBackend.open(
        f"gs://{bucket_name}", options=server_options(gcs_emulator), create=True
    )
    payload = os.urandom(100_000)
    backend.write("data/ok/blob", payload)
    assert backend.read("data/ok/blob") == payload
    stored = raw_client(gcs_emulator).bucket(bucket_name).get_blob("data/ok/blob")
    assert stored is not None
    assert stored.md5_hash == base64.b64encode(hashlib.md5(payload).digest()).decode()


@pytest.mark.parametrize("size", [10_000, 700_000], ids=["multipart", "resumable"])
def test_upload_whose_declared_checksum_is_wrong_is_rejected(
    gcs_emulator: EmulatorServer,
    bucket_name: str,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
) -> None:
    backend = GcsBackend.open(
        f"gs://{bucket_name}",
        options=server_options(gcs_emulator, resumable_threshold=512 * 1024, chunk_size=256 * 1024),
        create=True,
    )
    honest = backend_module._declared_checksums
    # Declare the checksums of different bytes, as if the body had been damaged after hashing.
    monkeypatch.setattr(backend_module, "_declared_checksums", lambda data: honest(b"other"))
    with pytest.raises((BackendError, CorruptObjectError)) as caught:
        backend.write("data/ba/bad", os.urandom(size))
    message = assert_one_line(caught.value)
    assert "checksum" in message and "rejected" in message
    assert not isinstance(caught.value, ObjectExistsError)
    monkeypatch.undo()
    with pytest.raises(ObjectNotFoundError):
        backend.stat("data/ba/bad")


def test_corrupted_download_is_detected(gcs_emulator: EmulatorServer, bucket_name: str) -> None:
    backend = GcsBackend.open(
        f"gs://{bucket_name}", options=server_options(gcs_emulator), create=True
    )
    payload = b"the original bytes " * 100
    backend.write("index/rotten", payload)
    # Bit rot: the stored checksum no longer describes the stored bytes. Done over the raw
    # JSON API, the way another client would.
    damaged = payload.replace(b"original", b"0riginal", 1)
    patch = {
        "crc32c": base64.b64encode(google_crc32c.Checksum(damaged).digest()).decode(),
        "md5Hash": base64.b64encode(hashlib.md5(damaged).digest()).decode(),
    }
    name = urllib.parse.quote("index/rotten", safe="")
    request = urllib.request.Request(
        f"{gcs_emulator.endpoint}/storage/v1/b/{bucket_name}/o/{name}",
        data=json.dumps(patch).encode(),
        method="PATCH",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    with pytest.raises(CorruptObjectError) as caught:
        backend.read("index/rotten")
    assert "CRC32C" in assert_one_line(caught.value)
    # Ranges are not verified here (the repository checks blob hashes); they still read.
    assert backend.read("index/rotten", 4, 8) == payload[4:12]


# --- failures ------------------------------------------------------------------------------------


def test_unreachable_endpoint_fails_fast_naming_the_endpoint() -> None:
    port = free_port()  # nothing listens here
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as caught:
        GcsBackend.open(
            "gs://bucket/repo",
            options={"endpoint": f"http://127.0.0.1:{port}", "retry_deadline": 1, "timeout": 2},
        )
    assert time.monotonic() - started < 10
    message = assert_one_line(caught.value)
    assert f"127.0.0.1:{port}" in message and "Connection refused" in message


def test_server_that_goes_away_mid_session_is_reported_as_unavailable(
    tmp_path: Path, bucket_name: str
) -> None:
    server = start_fake_gcs_server(tmp_path)
    try:
        backend = GcsBackend.open(
            f"gs://{bucket_name}", options=server_options(server, retry_deadline=1), create=True
        )
        backend.write("config", b"x")
    finally:
        server.stop()
    for operation in (
        lambda: backend.read("config"),
        lambda: backend.write("other", b"y"),
        lambda: list(backend.list()),
    ):
        with pytest.raises(BackendUnavailableError, match=server.host_port):
            operation()


class _StatusHandler(BaseHTTPRequestHandler):
    """Answers every request with the server's fixed status and a GCS-style JSON error."""

    def _answer(self) -> None:
        status = self.server.status  # type: ignore[attr-defined]
        body = json.dumps({"error": {"code": status, "message": f"stub says {status}"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "expected", "fragment"),
    [
        (503, TransientBackendError, "stub says 503"),
        (429, TransientBackendError, "stub says 429"),
        (500, TransientBackendError, "retry_deadline"),
        (403, AccessDeniedError, "stub says 403"),
        (401, AuthenticationError, "'anonymous' option"),
    ],
)
def test_http_failures_map_to_stcore_errors(
    status: int, expected: type[Exception], fragment: str
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    server.status = status  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(expected) as caught:
            GcsBackend.open(
                "gs://bucket",
                options={"endpoint": f"http://127.0.0.1:{server.server_port}", "retry_deadline": 1},
            )
        assert time.monotonic() - started < 10
        assert fragment in assert_one_line(caught.value)
    finally:
        server.shutdown()
        server.server_close()


# --- credentials ---------------------------------------------------------------------------------


@pytest.fixture
def secret_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "SECRET-DIRECTORY-NAME"
    directory.mkdir()
    return directory


@pytest.mark.parametrize(
    "content",
    [
        '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nTOPSECRET',
        '{"type": "service_account", "private_key": "TOPSECRET"}',
        "TOPSECRET not json at all",
    ],
    ids=["truncated", "incomplete", "garbage"],
)
def test_malformed_credentials_file_is_one_line_authentication_error(
    secret_dir: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    key_file = secret_dir / "key.json"
    key_file.write_text(content)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    with pytest.raises(AuthenticationError) as caught:
        GcsBackend.open("gs://bucket/repo", options={"project": "p"})
    message = assert_one_line(caught.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert "TOPSECRET" not in message and "SECRET-DIRECTORY-NAME" not in message
    assert caught.value.__cause__ is not None  # raised from the SDK's error


def test_credentials_file_option_is_never_shown(
    secret_dir: Path, fake_gcs: EmulatorServer, bucket_name: str
) -> None:
    key_file = secret_dir / "key.json"
    key_file.write_text('{"type": "authorized_user", "client_id": "TOPSECRET"}')
    with pytest.raises(AuthenticationError) as caught:
        GcsBackend.open(
            "gs://bucket", options={"credentials_file": str(key_file), "anonymous": False}
        )
    message = assert_one_line(caught.value)
    assert "TOPSECRET" not in message and "SECRET-DIRECTORY-NAME" not in message
    # An anonymous backend opened with the same option never reveals it either.
    options = server_options(fake_gcs, credentials_file=str(key_file))
    backend = GcsBackend.open(f"gs://{bucket_name}/r", options=options, create=True)
    with pytest.raises(ObjectNotFoundError) as missing:
        backend.read("snapshots/none")
    for text in (repr(backend), backend.location, str(missing.value)):
        assert "SECRET-DIRECTORY-NAME" not in text and "TOPSECRET" not in text


def test_error_translation_covers_sdk_failures_not_reachable_through_emulators() -> None:
    ctx = ErrorContext(
        endpoint="https://storage.googleapis.com",
        bucket="b",
        location="gs://b/r",
        retry_deadline=5,
        timeout=5,
        hidden=("/home/me/SECRET/key.json",),
    )
    refresh = auth_exceptions.RefreshError(
        "invalid_grant: Bad Request for /home/me/SECRET/key.json access_token=ya29.TOPSECRET"
    )
    cases: list[tuple[BaseException, type[Exception]]] = [
        (refresh, AuthenticationError),
        (api_exceptions.NotFound("The specified bucket does not exist."), ContainerNotFoundError),
        (api_exceptions.NotFound("No such object: b/r/k"), ObjectNotFoundError),
        (api_exceptions.ServiceUnavailable("backend overloaded"), TransientBackendError),
        (api_exceptions.RetryError("Timeout of 5.0s exceeded", None), TransientBackendError),
        (
            api_exceptions.RetryError("deadline", api_exceptions.InternalServerError("boom")),
            TransientBackendError,
        ),
    ]
    for exc, expected in cases:
        error = map_gcs_error(exc, ctx, action="read", key="k")
        assert isinstance(error, expected), (exc, error)
        message = assert_one_line(error)
        assert "SECRET" not in message and "ya29" not in message
