"""st-s3 against the backend contract on a real moto S3 server, plus what only S3 can show.

Every test talks HTTP to moto's server on loopback (``testsupport/moto_atomic.py``: its
conditional writes made atomic, as S3's are). Where a test needs the wire to
misbehave (a damaged download, a server without conditional writes, a 500 mid-upload) it uses a
botocore event hook on the backend's own client, so the rest of the stack stays real.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody
from st_s3.backend import MiB, S3Backend, parse_url

from stcore.errors import (
    AccessDeniedError,
    AuthenticationError,
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
from testsupport.s3_server import free_port


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def header(request: Any, name: str) -> str | None:
    """A header of a prepared (about to be sent) request; botocore holds them as bytes."""
    value = request.headers.get(name)
    return value.decode() if isinstance(value, bytes) else value


def body_of(request: Any) -> bytes:
    """The bytes a prepared request will send, leaving a stream body where it was."""
    body = request.body
    if hasattr(body, "read"):
        position = body.tell()
        data: bytes = body.read()
        body.seek(position)
        return data
    return bytes(body or b"")


class _RawBody:
    """Just enough of a urllib3 response for botocore to read a canned answer."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def canned_response(url: str, status: int, code: str, message: str) -> AWSResponse:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()
    headers: Any = {"Content-Type": "application/xml"}
    return AWSResponse(url, status, headers, _RawBody(body))


class TestS3Contract(BackendContract):
    listing_count = 1100  # more than one 1,000-key page of ListObjectsV2

    @pytest.fixture
    def backend(self, bucket: str, s3_options: dict[str, Any]) -> Iterator[S3Backend]:
        backend = S3Backend.open(f"s3://{bucket}/repo", options=s3_options)
        yield backend
        backend.close()


@pytest.fixture
def backend(bucket: str, s3_options: dict[str, Any]) -> Iterator[S3Backend]:
    backend = S3Backend.open(f"s3://{bucket}/repo", options=s3_options)
    yield backend
    backend.close()


# --- registration and URLs ----------------------------------------------------------------------


def test_is_registered_through_the_entry_point() -> None:
    host = make_plugin_manager()
    assert host.backends.by_scheme("s3") == "s3"
    assert host.backends.get("s3") == S3Backend.open
    plugin = next(p for p in host.plugins() if p.name == "s3")
    assert plugin.distribution == "st-s3"


def test_keys_are_stored_under_the_url_prefix(backend: S3Backend, raw_s3: Any, bucket: str) -> None:
    backend.write("data/ab/x", b"1")
    keys = [o["Key"] for o in raw_s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["repo/data/ab/x"]
    assert [o.key for o in backend.list()] == ["data/ab/x"]
    assert backend.location.startswith(f"s3://{bucket}/repo")


def test_bare_s3_url_takes_the_bucket_from_aws_s3_bucket(
    bucket: str, s3_options: dict[str, Any], raw_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_S3_BUCKET", bucket)
    backend = S3Backend.open("s3://", options=s3_options)
    backend.write("config", b"c")
    assert raw_s3.get_object(Bucket=bucket, Key="config")["Body"].read() == b"c"
    assert backend.location.startswith(f"s3://{bucket} ")


def test_url_without_bucket_or_with_credentials_is_refused() -> None:
    with pytest.raises(ConfigError, match="AWS_S3_BUCKET"):
        parse_url("s3://", environ={})
    with pytest.raises(ConfigError) as caught:
        parse_url("s3://AKIAEXAMPLE:supersecret@bucket/repo", environ={})
    assert "supersecret" not in str(caught.value) and "AKIAEXAMPLE" not in str(caught.value)


def test_endpoint_comes_from_aws_endpoint_url_when_no_option(
    bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    backend = S3Backend.open(f"s3://{bucket}", options={})
    backend.write("k", b"v")
    assert backend.read("k") == b"v"
    assert s3_endpoint in backend.location


# --- buckets -------------------------------------------------------------------------------------


def test_missing_bucket_without_create_says_how_to_create_it(
    bucket_name: str, s3_options: dict[str, Any]
) -> None:
    with pytest.raises(ContainerNotFoundError) as caught:
        S3Backend.open(f"s3://{bucket_name}/repo", options=s3_options)
    message = str(caught.value)
    assert "stcore init --create-bucket" in message
    assert f"aws s3 mb s3://{bucket_name}" in message
    assert "\n" not in message


def test_create_makes_the_missing_bucket(
    bucket_name: str, s3_options: dict[str, Any], raw_s3: Any
) -> None:
    backend = S3Backend.open(f"s3://{bucket_name}/repo", options=s3_options, create=True)
    raw_s3.head_bucket(Bucket=bucket_name)
    backend.write("k", b"v")
    # Opening again with create=True on the now existing bucket is fine.
    S3Backend.open(f"s3://{bucket_name}/repo", options=s3_options, create=True).close()
    backend.close()


# --- create-only writes --------------------------------------------------------------------------


def test_writes_are_conditional_on_the_wire(backend: S3Backend) -> None:
    sent: list[str | None] = []

    def capture(request: Any, **_: Any) -> None:
        sent.append(header(request, "If-None-Match"))

    backend.client.meta.events.register("before-send.s3.PutObject", capture)
    backend.write("once", b"1")
    with pytest.raises(ObjectExistsError):
        backend.write("once", b"2")
    assert sent == ["*", "*"]  # the server refused the second, no HEAD race involved
    assert backend.read("once") == b"1"


def test_server_without_conditional_writes_falls_back_to_head_then_put(
    backend: S3Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """moto implements If-None-Match; this emulates a server that answers it with 501."""
    attempts: list[str | None] = []

    def reject_conditional(request: Any, **_: Any) -> AWSResponse | None:
        attempts.append(header(request, "If-None-Match"))
        if header(request, "If-None-Match"):
            return canned_response(request.url, 501, "NotImplemented", "If-None-Match")
        return None

    backend.client.meta.events.register("before-send.s3.PutObject", reject_conditional)
    with caplog.at_level(logging.WARNING):
        backend.write("fallback", b"first")
    assert backend.conditional_writes is False
    assert "HEAD-then-PUT" in caplog.text
    assert attempts == ["*", None]  # one rejected conditional PUT, then a plain one
    with pytest.raises(ObjectExistsError):
        backend.write("fallback", b"second")
    assert attempts == ["*", None]  # the HEAD found it; no PUT was sent
    assert backend.read("fallback") == b"first"


# --- integrity -----------------------------------------------------------------------------------


def test_put_object_sends_a_correct_content_md5(backend: S3Backend) -> None:
    captured: list[tuple[str | None, bytes]] = []

    def capture(request: Any, **_: Any) -> None:
        captured.append((header(request, "Content-MD5"), body_of(request)))

    backend.client.meta.events.register("before-send.s3.PutObject", capture)
    payload = os.urandom(70_000)
    backend.write("data/md/5", payload)
    backend.write("empty", b"")
    assert captured == [(b64md5(payload), payload), (b64md5(b""), b"")]


def test_every_upload_part_sends_a_correct_content_md5(
    bucket: str, s3_options: dict[str, Any], raw_s3: Any
) -> None:
    options = {**s3_options, "multipart_threshold": 6 * MiB, "part_size": 5 * MiB}
    backend = S3Backend.open(f"s3://{bucket}/repo", options=options)
    parts: dict[int, str | None] = {}
    completes: list[str | None] = []
    single_puts: list[object] = []

    def capture_part(request: Any, **_: Any) -> None:
        number = int(parse_qs(urlsplit(request.url).query)["partNumber"][0])
        parts[number] = header(request, "Content-MD5")

    events = backend.client.meta.events
    events.register("before-send.s3.UploadPart", capture_part)
    events.register(
        "before-send.s3.CompleteMultipartUpload",
        lambda request, **_: completes.append(header(request, "If-None-Match")),
    )
    events.register("before-send.s3.PutObject", lambda request, **_: single_puts.append(request))
    payload = os.urandom(12 * MiB)
    backend.write("data/mp/big", payload)

    expected = {
        1: b64md5(payload[: 5 * MiB]),
        2: b64md5(payload[5 * MiB : 10 * MiB]),
        3: b64md5(payload[10 * MiB :]),
    }
    assert parts == expected
    assert completes == ["*"]  # the multipart upload is completed create-only too
    assert single_puts == []
    assert raw_s3.head_object(Bucket=bucket, Key="repo/data/mp/big")["ETag"].endswith('-3"')
    assert backend.read("data/mp/big") == payload
    with pytest.raises(ObjectExistsError):
        backend.write("data/mp/big", payload)
    assert raw_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    backend.close()


def test_a_failed_multipart_upload_is_aborted(
    bucket: str, s3_options: dict[str, Any], raw_s3: Any
) -> None:
    options = {
        **s3_options,
        "multipart_threshold": 6 * MiB,
        "part_size": 5 * MiB,
        "max_attempts": 1,
    }
    backend = S3Backend.open(f"s3://{bucket}/repo", options=options)

    def fail_second_part(request: Any, **_: Any) -> AWSResponse | None:
        if "partNumber=2" in request.url:
            return canned_response(request.url, 500, "InternalError", "try again")
        return None

    backend.client.meta.events.register("before-send.s3.UploadPart", fail_second_part)
    with pytest.raises(TransientBackendError, match="InternalError"):
        backend.write("data/mp/doomed", os.urandom(11 * MiB))
    assert raw_s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ObjectNotFoundError):
        backend.stat("data/mp/doomed")
    backend.close()


def test_a_stored_object_that_no_longer_matches_its_checksum_is_corrupt(
    backend: S3Backend, raw_s3: Any, bucket: str
) -> None:
    backend.write("index/1", b"original bytes")
    stored = raw_s3.head_object(Bucket=bucket, Key="repo/index/1")["Metadata"]
    # Another writer replaces the bytes but keeps our checksum: ETag and size look fine to S3.
    raw_s3.put_object(Bucket=bucket, Key="repo/index/1", Body=b"tampered bytes", Metadata=stored)
    with pytest.raises(CorruptObjectError, match="SHA-256"):
        backend.read("index/1")
    assert backend.read("index/1", 0, 8) == b"tampered"  # ranges are not whole-object checked


def test_a_download_damaged_in_transit_is_detected(backend: S3Backend) -> None:
    payload = os.urandom(4096)
    backend.write("data/tr/x", payload)

    def flip_a_bit(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        body = bytearray(parsed["Body"].read())
        body[100] ^= 0x01
        parsed["Body"] = StreamingBody(io.BytesIO(bytes(body)), len(body))

    backend.client.meta.events.register("after-call.s3.GetObject", flip_a_bit)
    with pytest.raises(CorruptObjectError):
        backend.read("data/tr/x")


def test_objects_without_our_checksum_are_checked_against_their_etag(
    backend: S3Backend, raw_s3: Any, bucket: str
) -> None:
    raw_s3.put_object(Bucket=bucket, Key="repo/foreign", Body=b"written by another tool")
    assert backend.read("foreign") == b"written by another tool"

    def truncate(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        body = parsed["Body"].read()[:-1] + b"?"
        parsed["Body"] = StreamingBody(io.BytesIO(body), len(body))

    backend.client.meta.events.register("after-call.s3.GetObject", truncate)
    with pytest.raises(CorruptObjectError, match="MD5"):
        backend.read("foreign")


# --- errors and credentials ----------------------------------------------------------------------


def test_unreachable_endpoint_fails_fast_naming_the_endpoint(bucket_name: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    options = {
        "endpoint_url": endpoint,
        "max_attempts": 1,
        "connect_timeout": 1,
        "read_timeout": 1,
        "access_key_id": "AKIAUNREACHABLE",
        "secret_access_key": "unreachable-secret-value",
    }
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as caught:
        S3Backend.open(f"s3://{bucket_name}", options=options)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert endpoint in message
    assert "unreachable-secret-value" not in message and "AKIAUNREACHABLE" not in message


def test_unknown_access_key_is_an_authentication_error(auth_s3: dict[str, str]) -> None:
    options = {
        "endpoint_url": auth_s3["endpoint_url"],
        "access_key_id": "AKIANOTAREALKEY00000",
        "secret_access_key": "not-the-secret-at-all",
    }
    with pytest.raises(AuthenticationError, match="InvalidAccessKeyId") as caught:
        S3Backend.open(f"s3://{auth_s3['bucket']}/repo", options=options)
    assert "AKIANOTAREALKEY00000" not in str(caught.value)
    assert "not-the-secret-at-all" not in str(caught.value)


def test_wrong_secret_is_an_authentication_error(auth_s3: dict[str, str]) -> None:
    options = {
        "endpoint_url": auth_s3["endpoint_url"],
        "access_key_id": auth_s3["access_key_id"],
        "secret_access_key": "wrong-secret-for-a-real-key",
    }
    with pytest.raises(AuthenticationError, match="SignatureDoesNotMatch"):
        S3Backend.open(f"s3://{auth_s3['bucket']}/repo", options=options)


def test_valid_credentials_without_permission_are_access_denied(
    auth_s3: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    options = {
        "endpoint_url": auth_s3["endpoint_url"],
        "access_key_id": auth_s3["access_key_id"],
        "secret_access_key": auth_s3["secret_access_key"],
    }
    # botocore's own DEBUG log shows the Authorization header (with the key id); ours must not.
    with caplog.at_level(logging.DEBUG, logger="st_s3"), pytest.raises(AccessDeniedError) as caught:
        S3Backend.open(f"s3://{auth_s3['bucket']}/repo", options=options)
    for secret in (auth_s3["access_key_id"], auth_s3["secret_access_key"]):
        assert secret not in str(caught.value)
        assert secret not in caplog.text
    assert caught.value.__cause__ is not None  # raised from the botocore error


def test_credentials_never_appear_in_location_repr_or_errors(
    bucket: str, s3_endpoint: str, raw_s3: Any
) -> None:
    key_id, secret = "AKIAVISIBLEKEYID0000", "s3cr3t-value-that-must-not-leak"
    # Credentials smuggled into the endpoint URL's user info are stripped from messages too.
    endpoint = s3_endpoint.replace("http://", f"http://{key_id}:{secret}@")
    options = {"endpoint_url": endpoint, "access_key_id": key_id, "secret_access_key": secret}
    backend = S3Backend.open(f"s3://{bucket}/repo", options=options)
    with pytest.raises(ObjectNotFoundError) as caught:
        backend.read("missing")
    for text in (backend.location, repr(backend), str(caught.value), repr(backend.settings)):
        assert secret not in text and key_id not in text
    backend.close()


def test_errors_are_one_line_and_chained(backend: S3Backend) -> None:
    with pytest.raises(ObjectNotFoundError) as caught:
        backend.delete("never-written")
    assert "\n" not in str(caught.value)
    with pytest.raises(ObjectNotFoundError) as caught:
        backend.read("never-written", 5, 10)
    assert caught.value.__cause__ is not None


def test_close_releases_the_connections(bucket: str, s3_options: dict[str, Any]) -> None:
    backend = S3Backend.open(f"s3://{bucket}", options=s3_options)
    backend.write("k", b"v")
    backend.close()
    pool = backend.client._endpoint.http_session._manager
    assert pool.pools.keys() == set() or len(pool.pools) == 0


def test_unknown_profile_is_reported_without_a_traceback(bucket: str, s3_endpoint: str) -> None:
    with pytest.raises(AuthenticationError, match="'no-such-profile' is not defined"):
        S3Backend.open(
            f"s3://{bucket}", options={"endpoint_url": s3_endpoint, "profile": "no-such-profile"}
        )


def test_bad_options_are_configuration_errors(bucket: str, s3_options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="part_size must be at least"):
        S3Backend.open(f"s3://{bucket}", options={**s3_options, "part_size": 1024})
    with pytest.raises(ConfigError, match="max_attempts must be an integer"):
        S3Backend.open(f"s3://{bucket}", options={**s3_options, "max_attempts": "many"})
    with pytest.raises(ConfigError, match="given together"):
        S3Backend.open(f"s3://{bucket}", options={"access_key_id": "AKIAONLYTHEID"})


# --- light range reads ---------------------------------------------------------------------------


def _get_object_calls(backend: S3Backend) -> list[str]:
    calls: list[str] = []
    backend.client.meta.events.register(
        "before-call.s3.GetObject", lambda **kwargs: calls.append("GetObject")
    )
    return calls


def test_range_reads_take_the_light_path_and_answer_as_the_regular_one(
    backend: S3Backend,
) -> None:
    payload = bytes(range(17))
    backend.write("data/ra/x", payload)
    calls = _get_object_calls(backend)
    lengths: list[int | None] = [None, *range(0, 20)]
    light = {
        (offset, length): backend.read("data/ra/x", offset, length)
        for offset in range(0, 20)
        for length in lengths
        if (offset, length) != (0, None)
    }
    past_end = sum(1 for offset, length in light if offset >= len(payload) and length != 0)
    # every read in range went the light way; past the end, S3 answers 416 and the regular
    # call (which knows what that means) takes over
    assert len(calls) == past_end
    backend.light_reads = False
    for (offset, length), body in light.items():
        end = None if length is None else offset + length
        assert body == payload[offset:end] == backend.read("data/ra/x", offset, length)


def test_a_light_read_that_fails_gives_the_regular_error(backend: S3Backend) -> None:
    calls = _get_object_calls(backend)
    with pytest.raises(ObjectNotFoundError, match="never-written") as caught:
        backend.read("data/ne/never-written", 5, 10)
    assert caught.value.__cause__ is not None and "\n" not in str(caught.value)
    assert calls == ["GetObject"]  # the 404 went to the regular call, which names the key


def test_light_reads_survive_a_server_that_drops_and_fails_requests(
    bucket: str, s3_endpoint: str, s3_options: dict[str, Any]
) -> None:
    from testsupport.fault_proxy import FaultProxy

    proxy = FaultProxy(s3_endpoint, rate=0.3, faults=("drop", "500", "503"), seed=3)
    proxy.start()
    try:
        options = {**s3_options, "endpoint_url": proxy.endpoint_url, "max_attempts": 8}
        backend = S3Backend.open(f"s3://{bucket}/repo", options=options)
        payload = os.urandom(50_000)
        backend.light_reads = False
        backend.write("data/fp/x", payload)
        backend.light_reads = True
        for offset in range(0, 50_000, 2_500):
            assert backend.read("data/fp/x", offset, 3_000) == payload[offset : offset + 3_000]
        backend.close()
    finally:
        proxy.stop()


def test_a_range_cut_short_is_a_transient_error_on_both_paths() -> None:
    """A server that drops the connection half-way through a 206 body: the light path must not
    pass the short body for the range, and the regular path must say so in one line."""
    import http.server
    import socketserver
    import threading

    payload = bytes(range(256)) * 64

    class CutShort(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            if rng is None:  # the bucket check at open
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            first, last = (int(x) for x in rng.split("=")[1].split("-"))
            body = payload[first : last + 1]
            self.send_response(206)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(payload)}")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), CutShort)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        options = {
            "endpoint_url": f"http://127.0.0.1:{server.server_address[1]}",
            "region": "us-east-1",
            "max_attempts": 2,
            "access_key_id": "testing",
            "secret_access_key": "testing",
        }
        backend = S3Backend.open("s3://bucket/repo", options=options)
        for light in (True, False):
            backend.light_reads = light
            with pytest.raises(TransientBackendError) as caught:
                backend.read("data/ab/pack", 1000, 4000)
            assert "\n" not in str(caught.value) and "try again" in str(caught.value)
        backend.close()
    finally:
        server.shutdown()
        server.server_close()
