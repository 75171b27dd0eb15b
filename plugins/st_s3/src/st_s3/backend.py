"""The S3 backend: a repository under ``s3://bucket/prefix`` on AWS or any S3-compatible store.

How the :class:`~stcore.interfaces.Backend` promises are kept on S3:

* **Create-only writes.** Every ``PutObject`` (and ``CompleteMultipartUpload`` for large
  objects) carries ``If-None-Match: *``, so S3 itself refuses to replace an existing key
  (412 ``PreconditionFailed``, or 409 ``ConditionalRequestConflict`` while a racing write is in
  flight) and two machines writing the same key cannot both win. A server that answers the
  header with 501 ``NotImplemented`` is remembered and served by HEAD-then-PUT instead; that
  fallback has a race window between the two requests, which is logged once as a warning. A
  server that silently *ignores* the header cannot be detected; see the README.
* **Integrity in transit.** Every upload (single ``PutObject`` or each ``UploadPart``) sends a
  ``Content-MD5`` we compute, so S3 rejects a body damaged on the way. The SHA-256 of the whole
  object is stored as ``x-amz-meta-stcore-sha256`` and checked on every whole-object read; an
  object without it (written by another tool) is checked against its ``ETag`` when that is a
  plain MD5 (single part, no SSE-KMS/SSE-C). Range reads cannot be checked against a whole-object
  digest; stcore verifies the blobs it reads by their content hash anyway.
* **Atomic writes.** S3 makes an object visible only once it is complete; a failed multipart
  upload is aborted so no parts linger (and cost money).
* **Bounded memory.** Large objects go up in parts read from a :class:`memoryview` of the
  caller's bytes; no second copy of the body is made.
* **Light range reads.** A range read (most reads: a blob or a run of blobs in a pack) is a
  GET of a URL botocore presigned, sent on the client's own connection pool (same TLS,
  proxies and timeouts). A ``get_object`` call costs about 2.5 ms of Python under the GIL
  (event hooks, parameter building, response parsing); this costs about 1 ms, and a loop
  that parses what it reads while threads fetch ahead runs a third faster (measured by
  ``benchmarks/ai_access.py``). Any answer but 206 (or 200) and any transport error falls
  back to the regular ``get_object`` call, so retries and error messages are what they were.

Every botocore/S3 failure goes through :func:`map_error`, the one place that turns it into a
one-line :class:`~stcore.errors.BackendError` that says how to fix it and never contains the
credentials.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import shlex
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import attrs
import boto3
import botocore.exceptions
from botocore.awsrequest import AWSRequest
from botocore.config import Config

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
from stcore.interfaces import BytesLike, ObjectInfo
from stcore.streams import MemoryviewReader

log = logging.getLogger(__name__)

#: how long a presigned URL for a range read is valid; it is used at once
PRESIGNED_SECONDS = 900

MiB = 1024 * 1024
#: Objects larger than this go up as multipart uploads (option ``multipart_threshold``).
DEFAULT_MULTIPART_THRESHOLD = 8 * MiB
#: Size of each uploaded part (option ``part_size``); S3 refuses parts below 5 MiB but the last.
DEFAULT_PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
#: User metadata holding the hex SHA-256 of the whole object (``x-amz-meta-stcore-sha256``).
CHECKSUM_METADATA = "stcore-sha256"

_CREATE_HINT = (
    "create it with `stcore init --create-bucket --repo {url}` or `aws s3 mb s3://{bucket}`"
)
_AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "AuthorizationHeaderMalformed",
    }
)
_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "403"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_EXISTS_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
    }
)


# --- configuration ---------------------------------------------------------------------------


def parse_url(url: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``.

    A bare ``s3://`` takes the bucket from ``AWS_S3_BUCKET`` (the variable the seed application
    already sets), so a deployment does not have to repeat it.
    """
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ConfigError(f"the s3 backend opens s3://bucket/prefix URLs, not {parts.scheme}://")
    if "@" in parts.netloc:
        # Never echo the URL here: the part before "@" is probably a secret.
        raise ConfigError(
            "credentials do not belong in an s3:// URL; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the access_key_id/secret_access_key options"
        )
    bucket = unquote(parts.netloc) or env.get("AWS_S3_BUCKET", "")
    if not bucket:
        raise ConfigError(
            "the s3:// URL names no bucket; use s3://bucket/prefix or set AWS_S3_BUCKET"
        )
    prefix = unquote(parts.path).strip("/")
    if any(p in ("", ".", "..") for p in prefix.split("/")) and prefix:
        raise ConfigError(f"invalid key prefix {prefix!r} in the s3:// URL")
    return bucket, prefix


def _redact_endpoint(endpoint: str) -> str:
    """The endpoint URL without user info, query or fragment, safe to show in messages."""
    parts = urlsplit(endpoint)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _content_range(header: str | None) -> tuple[int, int] | None:
    """``(first byte, length)`` of a ``Content-Range: bytes a-b/total`` header."""
    if not header or not header.startswith("bytes "):
        return None
    span = header[6:].split("/", 1)[0]
    first, _, last = span.partition("-")
    if not (first.isdigit() and last.isdigit()) or int(last) < int(first):
        return None
    return int(first), int(last) - int(first) + 1


def _range_start(byte_range: str) -> int:
    """The first byte of a ``bytes=a-b`` request header."""
    return int(byte_range[6:].split("-", 1)[0])


def _int_option(options: Mapping[str, Any], name: str, default: int | None) -> int | None:
    value = options.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"s3 option {name} must be an integer, not {value!r}") from None
    if number < 1:
        raise ConfigError(f"s3 option {name} must be at least 1, not {number}")
    return number


def _float_option(options: Mapping[str, Any], name: str) -> float | None:
    value = options.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"s3 option {name} must be a number of seconds, not {value!r}") from None
    if number <= 0:
        raise ConfigError(f"s3 option {name} must be positive, not {number}")
    return number


@attrs.frozen(kw_only=True)
class S3Settings:
    """Resolved options. ``repr`` leaves the secrets out so it can be logged."""

    bucket: str
    prefix: str
    endpoint_url: str | None = attrs.field(
        repr=lambda url: repr(_redact_endpoint(url)) if url else "None"
    )
    region: str | None
    profile: str | None
    access_key_id: str | None = attrs.field(repr=False)
    secret_access_key: str | None = attrs.field(repr=False)
    session_token: str | None = attrs.field(repr=False)
    max_attempts: int | None
    connect_timeout: float | None
    read_timeout: float | None
    addressing_style: str | None
    multipart_threshold: int
    part_size: int

    @classmethod
    def resolve(
        cls, url: str, options: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> S3Settings:
        """Options first, then the environment; what neither sets is left to boto3's chain."""
        env = os.environ if environ is None else environ
        bucket, prefix = parse_url(url, env)
        access_key_id = options.get("access_key_id") or None
        secret_access_key = options.get("secret_access_key") or None
        if bool(access_key_id) != bool(secret_access_key):
            raise ConfigError(
                "s3 options access_key_id and secret_access_key must be given together"
            )
        addressing_style = options.get("addressing_style") or None
        if addressing_style not in (None, "auto", "path", "virtual"):
            raise ConfigError(
                "s3 option addressing_style must be auto, path or virtual, "
                f"not {addressing_style!r}"
            )
        part_size = _int_option(options, "part_size", DEFAULT_PART_SIZE) or DEFAULT_PART_SIZE
        if part_size < MIN_PART_SIZE:
            raise ConfigError(f"s3 option part_size must be at least {MIN_PART_SIZE} (5 MiB)")
        threshold = _int_option(options, "multipart_threshold", DEFAULT_MULTIPART_THRESHOLD)
        return cls(
            bucket=bucket,
            prefix=prefix,
            # None lets botocore apply AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 itself.
            endpoint_url=options.get("endpoint_url") or None,
            region=options.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            # None lets boto3 apply AWS_PROFILE itself.
            profile=options.get("profile") or None,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=options.get("session_token") or None,
            max_attempts=_int_option(options, "max_attempts", None),
            connect_timeout=_float_option(options, "connect_timeout"),
            read_timeout=_float_option(options, "read_timeout"),
            addressing_style=addressing_style,
            multipart_threshold=threshold or DEFAULT_MULTIPART_THRESHOLD,
            part_size=part_size,
        )

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never reach a message (an access key id is an identifier too)."""
        values = (self.access_key_id, self.secret_access_key, self.session_token)
        return tuple(v for v in values if v and len(v) >= 4)

    def client_config(self) -> Config:
        retries: dict[str, Any] = {"mode": "standard"}
        if self.max_attempts is not None:
            # Total attempts including the first, like AWS_MAX_ATTEMPTS and ~/.aws/config.
            retries["total_max_attempts"] = self.max_attempts
        kwargs: dict[str, Any] = {"retries": retries}
        if self.connect_timeout is not None:
            kwargs["connect_timeout"] = self.connect_timeout
        if self.read_timeout is not None:
            kwargs["read_timeout"] = self.read_timeout
        if self.addressing_style is not None:
            kwargs["s3"] = {"addressing_style": self.addressing_style}
        if "request_checksum_calculation" in Config.OPTION_DEFAULTS:
            # We send Content-MD5 ourselves; botocore's default extra CRC32 (sent as an
            # aws-chunked trailer for streamed bodies) breaks several S3-compatible servers.
            kwargs["request_checksum_calculation"] = "when_required"
            kwargs["response_checksum_validation"] = "when_required"
        return Config(**kwargs)


# --- errors --------------------------------------------------------------------------------------


def map_error(
    exc: BaseException,
    *,
    bucket: str,
    location: str,
    endpoint: str,
    key: str | None = None,
    secrets: tuple[str, ...] = (),
    url: str | None = None,
) -> BackendError:
    """The single translation of a botocore/S3 failure into a one-line stcore error.

    ``endpoint`` must already be redacted; ``secrets`` are scrubbed from the message in case a
    server echoes them back (some put the access key id in their error text). ``url`` is the
    repository's ``s3://bucket/prefix``, for the hint that creates a missing bucket.
    """
    what = f"{key} in {location}" if key else location
    message: str
    error: type[BackendError]
    if isinstance(exc, botocore.exceptions.ClientError):
        details = exc.response.get("Error", {})
        code = str(details.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        server_text = str(details.get("Message", "")).strip()
        label = f"{code or 'error'}, HTTP {status}" if status else code or "error"
        if code == "NoSuchBucket":
            error = ContainerNotFoundError
            message = f"bucket {bucket!r} does not exist at {endpoint}; " + _CREATE_HINT.format(
                bucket=bucket, url=shlex.quote(url or f"s3://{bucket}")
            )
        elif code in _AUTH_CODES:
            error = AuthenticationError
            message = (
                f"{endpoint} rejected the credentials ({code}); check AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, the AWS_PROFILE in use, or the access_key_id/"
                "secret_access_key options"
            )
        elif code in _DENIED_CODES or status == 403:
            error = AccessDeniedError
            message = (
                f"access denied to {what} ({label}); the credentials lack permission for this "
                "(s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject) - check the IAM "
                "and bucket policies"
            )
        elif code in _NOT_FOUND_CODES or status == 404:
            error = ObjectNotFoundError
            message = f"{what} does not exist"
        elif code in _EXISTS_CODES or status == 412:
            error = ObjectExistsError
            message = f"{what} already exists (objects are create-only)"
        elif code == "BucketAlreadyExists":
            error = BackendError
            message = (
                f"bucket name {bucket!r} is taken by another account (bucket names are global); "
                "choose another bucket name"
            )
        elif code in _TRANSIENT_CODES or status >= 500 or status == 429:
            error = TransientBackendError
            message = (
                f"S3 at {endpoint} kept failing ({label}) for {what} after retrying; try again "
                "later or raise the max_attempts option"
            )
        else:
            error = BackendError
            message = f"S3 refused the request for {what} ({label}): {server_text or 'no detail'}"
    elif isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        error = AuthenticationError
        message = (
            f"no usable AWS credentials for {location}; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the access_key_id/secret_access_key options"
        )
    elif isinstance(exc, botocore.exceptions.ProfileNotFound):
        error = AuthenticationError
        message = (
            f"the AWS profile {getattr(exc, 'kwargs', {}).get('profile', '')!r} is not defined in "
            "~/.aws/config or ~/.aws/credentials; fix the profile option or AWS_PROFILE"
        )
    elif isinstance(
        exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError
    ):
        error = BackendUnavailableError
        message = (
            f"cannot reach the S3 endpoint {endpoint}; check endpoint_url/AWS_ENDPOINT_URL, "
            "the network and any proxy"
        )
    elif isinstance(
        exc,
        botocore.exceptions.ReadTimeoutError
        | botocore.exceptions.ConnectionClosedError
        | botocore.exceptions.ResponseStreamingError
        | botocore.exceptions.IncompleteReadError
        | botocore.exceptions.HTTPClientError,
    ):
        error = TransientBackendError
        message = (
            f"the connection to {endpoint} failed while transferring {what} "
            f"({type(exc).__name__}); try again"
        )
    elif isinstance(exc, botocore.exceptions.ParamValidationError):
        error = BackendError
        message = f"invalid S3 request for {what}: {exc}"
    else:
        error = BackendError
        message = f"S3 failure for {what}: {type(exc).__name__}: {exc}"
    message = " ".join(message.split())  # one line, whatever the server sent
    for secret in secrets:
        message = message.replace(secret, "***")
    return error(message)


def _error_code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _rejects_conditional_header(exc: botocore.exceptions.ClientError) -> bool:
    """True when the server says it does not implement ``If-None-Match`` (not that it failed)."""
    code, status = _error_code(exc)
    return code == "NotImplemented" or status == 501


# --- bodies --------------------------------------------------------------------------------------


def _content_md5(data: bytes | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


# --- the backend ---------------------------------------------------------------------------------


class S3Backend:
    """Objects under ``prefix/`` in one bucket; key ``data/ab/abcd...`` is ``prefix/data/ab/...``.

    ``client`` is the boto3 S3 client; it is public so tests and embedding applications can
    register botocore event hooks on it.
    """

    def __init__(self, settings: S3Settings, client: Any) -> None:
        self.settings = settings
        self.client = client
        self.bucket = settings.bucket
        self._root = f"{settings.prefix}/" if settings.prefix else ""
        self.endpoint = _redact_endpoint(str(client.meta.endpoint_url))
        location = f"s3://{settings.bucket}/{settings.prefix}".rstrip("/")
        custom_endpoint = (
            settings.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        if custom_endpoint:
            location += f" at {self.endpoint}"
        self.location = self._redact(location)
        #: False once the server has answered ``If-None-Match: *`` with 501 Not Implemented.
        self.conditional_writes = True
        #: range reads go through :meth:`_light_range_read` first (tests turn it off to
        #: compare the two paths)
        self.light_reads = True

    @classmethod
    def open(
        cls, url: str, *, options: Mapping[str, Any] | None = None, create: bool = False
    ) -> S3Backend:
        """Connect, check the bucket exists (creating it if ``create``), return the backend.

        The check is a one-key ``ListObjectsV2`` rather than ``HeadBucket``: a HEAD answer has no
        body, so a 403 could not tell wrong credentials from missing permissions, and listing is
        a permission the backend needs anyway.
        """
        settings = S3Settings.resolve(url, options or {})
        location = f"s3://{settings.bucket}/{settings.prefix}".rstrip("/")
        try:
            session = boto3.session.Session(
                profile_name=settings.profile,
                region_name=settings.region,
                aws_access_key_id=settings.access_key_id,
                aws_secret_access_key=settings.secret_access_key,
                aws_session_token=settings.session_token,
            )
            client = session.client(
                "s3", endpoint_url=settings.endpoint_url, config=settings.client_config()
            )
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            endpoint = _redact_endpoint(settings.endpoint_url or "the default AWS endpoint")
            raise map_error(
                exc,
                bucket=settings.bucket,
                location=location,
                endpoint=endpoint,
                secrets=settings.secrets(),
            ) from exc
        backend = cls(settings, client)
        try:
            backend._ensure_bucket(create)
        except BaseException:
            backend.close()
            raise
        return backend

    # --- helpers --------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for secret in self.settings.secrets():
            text = text.replace(secret, "***")
        return text

    def _error(self, exc: BaseException, key: str | None = None) -> BackendError:
        return map_error(
            exc,
            bucket=self.bucket,
            location=self.location,
            endpoint=self.endpoint,
            key=key,
            secrets=self.settings.secrets(),
            url=self._redact(f"s3://{self.bucket}/{self.settings.prefix}".rstrip("/")),
        )

    def _object_key(self, key: str) -> str:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise BackendError(f"invalid object key {key!r}")
        return self._root + key

    def _ensure_bucket(self, create: bool) -> None:
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._root, MaxKeys=1)
            return
        except botocore.exceptions.ClientError as exc:
            if not create or _error_code(exc)[0] != "NoSuchBucket":
                raise self._error(exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc) from exc
        region = self.client.meta.region_name
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region and region not in ("us-east-1", "aws-global"):
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**kwargs)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc)[0] != "BucketAlreadyOwnedByYou":
                raise self._error(exc) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc) from exc
        log.info("created bucket %s for %s", self.bucket, self.location)

    def _exists(self, object_key: str, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=object_key)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            error = self._error(exc, key)
            if isinstance(error, ObjectNotFoundError):
                return False
            raise error from exc
        return True

    def _fall_back_to_head_then_put(self) -> None:
        if self.conditional_writes:
            self.conditional_writes = False
            log.warning(
                "%s does not implement conditional writes (If-None-Match); falling back to "
                "HEAD-then-PUT, which cannot stop two writers racing for the same key",
                self.endpoint,
            )

    # --- Backend protocol -----------------------------------------------------------------------

    def write(self, key: str, data: BytesLike) -> None:
        object_key = self._object_key(key)
        if len(data) > self.settings.multipart_threshold:
            self._write_multipart(key, object_key, data)
            return
        body: Any = data if isinstance(data, bytes) else MemoryviewReader(memoryview(data))
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": object_key,
            "Body": body,
            "ContentMD5": _content_md5(data),
            "Metadata": {CHECKSUM_METADATA: hashlib.sha256(data).hexdigest()},
        }
        try:
            if self.conditional_writes:
                try:
                    self.client.put_object(**args, IfNoneMatch="*")
                    return
                except botocore.exceptions.ClientError as exc:
                    if not _rejects_conditional_header(exc):
                        raise
                    self._fall_back_to_head_then_put()
                    if isinstance(body, io.IOBase):
                        body.seek(0)
            if self._exists(object_key, key):
                raise ObjectExistsError(f"{key} in {self.location} already exists")
            self.client.put_object(**args)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(exc, key) from exc

    def _write_multipart(self, key: str, object_key: str, data: BytesLike) -> None:
        """Upload in parts from a memoryview; complete create-only; abort on any failure."""
        # Fail before uploading megabytes when the key is already there; the conditional
        # complete below is what makes it race-free.
        if self._exists(object_key, key):
            raise ObjectExistsError(f"{key} in {self.location} already exists")
        view = memoryview(data).cast("B")
        part_size = max(self.settings.part_size, -(-len(view) // MAX_PARTS))
        try:
            upload = self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=object_key,
                Metadata={CHECKSUM_METADATA: hashlib.sha256(view).hexdigest()},
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(exc, key) from exc
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, len(view), part_size), start=1):
                chunk = view[start : start + part_size]
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=object_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=MemoryviewReader(chunk),
                    ContentLength=len(chunk),
                    ContentMD5=_content_md5(chunk),
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            self._complete(key, object_key, upload_id, parts)
        except BaseException as exc:
            self._abort(upload_id, object_key)
            if isinstance(exc, botocore.exceptions.ClientError | botocore.exceptions.BotoCoreError):
                raise self._error(exc, key) from exc
            raise

    def _complete(
        self, key: str, object_key: str, upload_id: str, parts: list[dict[str, Any]]
    ) -> None:
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": object_key,
            "UploadId": upload_id,
            "MultipartUpload": {"Parts": parts},
        }
        if self.conditional_writes:
            try:
                self.client.complete_multipart_upload(**args, IfNoneMatch="*")
                return
            except botocore.exceptions.ClientError as exc:
                if not _rejects_conditional_header(exc):
                    raise
                self._fall_back_to_head_then_put()
        if self._exists(object_key, key):
            raise ObjectExistsError(f"{key} in {self.location} already exists")
        self.client.complete_multipart_upload(**args)

    def _abort(self, upload_id: str, object_key: str) -> None:
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=object_key, UploadId=upload_id
            )
        except Exception as exc:  # the original failure matters more; a lifecycle rule cleans up
            log.warning(
                "could not abort multipart upload of %s in %s (%s); its parts are billed until a "
                "lifecycle rule removes them",
                object_key,
                self.location,
                type(exc).__name__,
            )

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        object_key = self._object_key(key)
        if offset < 0 or (length is not None and length < 0):
            raise BackendError(f"invalid range offset={offset} length={length} for {key}")
        if length == 0:
            self.stat(key)  # still report a missing key
            return b""
        whole = offset == 0 and length is None
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": object_key}
        if not whole:
            end = "" if length is None else str(offset + length - 1)
            args["Range"] = f"bytes={offset}-{end}"
        if not whole:
            light = self._light_range_read(object_key, args["Range"])
            if light is not None:
                status, sent = light
                if status == 200:  # a server that ignores Range sends the whole object
                    return sent[offset:] if length is None else sent[offset : offset + length]
                return sent
        try:
            response = self.client.get_object(**args)
            stream = response["Body"]
            try:
                # StreamingBody.read, not the raw stream its context manager gives: it checks
                # the length and turns a connection cut mid-body into a botocore error.
                body: bytes = stream.read()
            finally:
                stream.close()
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc)[0] == "InvalidRange" or _error_code(exc)[1] == 416:
                return b""  # offset at or past the end
            raise self._error(exc, key) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, key) from exc
        if not whole and "ContentRange" not in response:
            # A server that ignores Range sends the whole object; cut the slice ourselves.
            body = body[offset:] if length is None else body[offset : offset + length]
        if whole:
            self._verify(key, body, response)
        return body

    def _light_range_read(self, object_key: str, byte_range: str) -> tuple[int, bytes] | None:
        """``(status, body)`` of a ranged GET sent without botocore's per-call machinery, or
        None when anything is unusual (an error status, a transport error, a client without
        the pool this relies on): the caller then makes the regular call."""
        endpoint = getattr(self.client, "_endpoint", None)
        session = getattr(endpoint, "http_session", None)
        if session is None or not self.light_reads:
            return None
        try:
            url = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": object_key},
                ExpiresIn=PRESIGNED_SECONDS,
            )
            request = AWSRequest(method="GET", url=url, headers={"Range": byte_range})
            response = session.send(request.prepare())
        except (botocore.exceptions.BotoCoreError, OSError, ValueError):
            return None
        if response.status_code not in (200, 206):
            return None
        body = bytes(response.content)
        # botocore's session does not check the length (its StreamingBody does, which this
        # skips): a connection cut mid-body would otherwise pass for a short object.
        declared = response.headers.get("content-length")
        if declared is None or not declared.isdigit() or int(declared) != len(body):
            return None
        if response.status_code == 206:
            sent = _content_range(response.headers.get("content-range"))
            if sent is None or sent[0] != _range_start(byte_range) or sent[1] != len(body):
                return None
        return response.status_code, body

    def _verify(self, key: str, body: bytes, response: Mapping[str, Any]) -> None:
        """Check a whole download against the stored SHA-256, else a plain-MD5 ETag."""
        expected = response.get("Metadata", {}).get(CHECKSUM_METADATA)
        if expected:
            actual = hashlib.sha256(body).hexdigest()
            algorithm = "SHA-256"
        else:
            etag = str(response.get("ETag", "")).strip('"')
            encrypted = response.get("SSECustomerAlgorithm") or str(
                response.get("ServerSideEncryption", "")
            ).startswith("aws:kms")
            if len(etag) != 32 or "-" in etag or encrypted:
                return  # multipart or encrypted: the ETag is not the MD5 of the bytes
            expected, actual = etag.lower(), hashlib.md5(body).hexdigest()
            algorithm = "MD5 (ETag)"
        if actual != expected:
            raise CorruptObjectError(
                f"{key} in {self.location} is corrupt: the downloaded bytes do not match the "
                f"stored {algorithm}; retry, and if it persists the stored object is damaged "
                "and must be restored from another copy"
            )

    def stat(self, key: str) -> ObjectInfo:
        object_key = self._object_key(key)
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=object_key)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(exc, key) from exc
        return ObjectInfo(key=key, size=int(response["ContentLength"]))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self._root)
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._root + prefix):
                for item in page.get("Contents", ()):
                    key = item["Key"][strip:]
                    if not key or key.endswith("/"):
                        continue  # "folder" markers made by consoles are not objects
                    yield ObjectInfo(key=key, size=int(item["Size"]))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(exc, prefix or None) from exc

    def delete(self, key: str) -> None:
        object_key = self._object_key(key)
        # DeleteObject succeeds on a missing key, so only a HEAD can report it as missing.
        if not self._exists(object_key, key):
            raise ObjectNotFoundError(f"{key} in {self.location} does not exist")
        try:
            self.client.delete_object(Bucket=self.bucket, Key=object_key)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(exc, key) from exc

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"S3Backend({self.location!r})"
