"""The Google Cloud Storage backend: a repository under ``gs://bucket/prefix``.

Why it is built the way it is:

* **Create-only writes** send the precondition ``ifGenerationMatch=0``, so the service itself
  refuses to replace an existing object, race-free between machines; its 412 becomes
  :class:`~stcore.errors.ObjectExistsError`.
* **Uploads are checked by the service.** Every upload declares the MD5 and CRC32C of its bytes
  in the object metadata; Google Cloud Storage recomputes them and rejects a body damaged on the
  way, storing nothing. Objects above ``resumable_threshold`` go up as a resumable upload in
  ``chunk_size`` pieces, so memory stays bounded and a dropped connection resumes a chunk
  instead of restarting the object; the SDK also compares the final CRC32C.
* **Whole-object reads are verified** against the CRC32C the service reports (``x-goog-hash``).
  Range reads cannot be verified here: the service only keeps checksums of whole objects. The
  repository verifies the hash of every blob it reads, which covers ranges.
* **Retries** use the SDK's policy (:mod:`google.api_core.retry`), bounded by ``retry_deadline``.
  A retried create-only write or delete can meet its own earlier attempt that did succeed
  although its answer was lost; that is recognised (the stored object has our CRC32C and size,
  or the object is gone) instead of being reported as a conflict or a missing key.
* **One error translation**: every SDK failure passes through :func:`map_gcs_error`, which returns
  one stcore error whose message is a single line that says how to fix it, and never contains
  credentials, tokens or the path of a credentials file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlparse

import attrs
import google_crc32c
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry, if_transient_error
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.cloud.storage.retry import DEFAULT_RETRY

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
    StcoreError,
    TransientBackendError,
)
from stcore.interfaces import BytesLike, ObjectInfo

MiB = 1024 * 1024
DEFAULT_ENDPOINT = "https://storage.googleapis.com"
#: The SDK sends anything larger than this as a resumable upload whatever we ask, so a
#: ``resumable_threshold`` above it could not be honoured.
SDK_MULTIPART_LIMIT = 8 * MiB
#: Resumable chunks must be a multiple of 256 KiB (a service rule).
CHUNK_ALIGN = 256 * 1024
#: The project emulators are given when none is configured; they accept any name.
EMULATOR_PROJECT = "stcore-emulator"
CONTENT_TYPE = "application/octet-stream"

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
#: The SDK's own "is this worth retrying" rule (429, 408, 5xx, dropped connections, timeouts).
_SDK_SHOULD_RETRY: Callable[[Exception], bool] = getattr(
    DEFAULT_RETRY, "_predicate", if_transient_error
)


# --- options -------------------------------------------------------------------------------------


def _positive_number(options: Mapping[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"gcs option {name!r} must be a number of seconds, not {value!r}"
        ) from None
    if number <= 0:
        raise ConfigError(f"gcs option {name!r} must be greater than 0, not {value!r}")
    return number


def _positive_int(options: Mapping[str, Any], name: str, default: int) -> int:
    value = options.get(name, default)
    if isinstance(value, bool):
        raise ConfigError(f"gcs option {name!r} must be a whole number, not {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"gcs option {name!r} must be a whole number, not {value!r}") from None
    if number <= 0:
        raise ConfigError(f"gcs option {name!r} must be greater than 0, not {value!r}")
    return number


def _optional_bool(options: Mapping[str, Any], name: str) -> bool | None:
    value = options.get(name)
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"gcs option {name!r} must be true or false, not {value!r}")


def _optional_str(options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"gcs option {name!r} must be a string")
    return value


@attrs.frozen(kw_only=True)
class GcsOptions:
    """The backend's options, validated; see the README for what each one is for."""

    project: str | None = None
    endpoint: str | None = None
    anonymous: bool | None = None
    # A path, not a secret, but it says where the key lives: kept out of repr and messages.
    credentials_file: str | None = attrs.field(default=None, repr=False)
    location: str | None = None
    retry_deadline: float = 120.0
    timeout: float = 60.0
    resumable_threshold: int = 8 * MiB
    chunk_size: int = 8 * MiB
    page_size: int = 1000

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> GcsOptions:
        threshold = _positive_int(options, "resumable_threshold", 8 * MiB)
        if threshold > SDK_MULTIPART_LIMIT:
            raise ConfigError(
                f"gcs option 'resumable_threshold' can be at most {SDK_MULTIPART_LIMIT} bytes "
                "(the SDK uploads larger objects resumably anyway); lower it"
            )
        chunk_size = _positive_int(options, "chunk_size", 8 * MiB)
        if chunk_size % CHUNK_ALIGN:
            raise ConfigError(
                f"gcs option 'chunk_size' must be a multiple of {CHUNK_ALIGN} bytes (256 KiB), "
                f"not {chunk_size}"
            )
        page_size = _positive_int(options, "page_size", 1000)
        if page_size > 1000:
            raise ConfigError("gcs option 'page_size' can be at most 1000 (the service's limit)")
        return cls(
            project=_optional_str(options, "project"),
            endpoint=_optional_str(options, "endpoint"),
            anonymous=_optional_bool(options, "anonymous"),
            credentials_file=_optional_str(options, "credentials_file"),
            location=_optional_str(options, "location"),
            retry_deadline=_positive_number(options, "retry_deadline", 120.0),
            timeout=_positive_number(options, "timeout", 60.0),
            resumable_threshold=threshold,
            chunk_size=chunk_size,
            page_size=page_size,
        )


def parse_url(url: str) -> tuple[str, str]:
    """``gs://bucket/some/prefix`` -> ``("bucket", "some/prefix")``.

    A URL without a bucket (``gs://``) takes it from ``GCP_BUCKET``.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("gs", "gcs"):
        raise BackendError("the gcs backend opens URLs of the form gs://BUCKET/PREFIX")
    if "@" in parsed.netloc:
        # Never echo the URL: the part before @ may be a secret someone pasted.
        raise BackendError(
            "a gs:// URL cannot carry credentials; remove the part before @ and use "
            "GOOGLE_APPLICATION_CREDENTIALS or application default credentials"
        )
    if parsed.query or parsed.fragment:
        raise BackendError(f"{url!r} has a query or fragment; use gs://BUCKET/PREFIX")
    bucket = parsed.netloc or os.environ.get("GCP_BUCKET", "").strip()
    if not bucket:
        raise ConfigError(
            f"{url!r} names no bucket and GCP_BUCKET is not set; use gs://BUCKET/PREFIX "
            "or set GCP_BUCKET"
        )
    if not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise ConfigError(
            f"{bucket!r} is not a valid bucket name: use 3-222 lowercase letters, digits, "
            "dashes, underscores and dots, starting and ending with a letter or digit"
        )
    prefix = parsed.path.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise BackendError(f"invalid prefix {prefix!r} in the repository URL")
    return bucket, prefix


# --- error translation ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ErrorContext:
    """What an error message may name: where, never with what credentials."""

    endpoint: str
    bucket: str
    location: str
    retry_deadline: float
    timeout: float
    #: Strings (credential file paths) that must never appear in a message.
    hidden: tuple[str, ...] = attrs.field(default=(), repr=False)


_SECRET_PATTERNS = (
    (re.compile(r"(?i)bearer\s+[^\s'\"]+"), "Bearer <redacted>"),
    (
        re.compile(r"(?i)(access_token|refresh_token|token|key|signature|sig)=[^&\s'\"]+"),
        r"\1=<redacted>",
    ),
    (
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)"),
        "<private key>",
    ),
)


def _scrub(text: str, ctx: ErrorContext) -> str:
    """``text`` on one line, without credential paths, tokens or keys, at most 300 characters."""
    for hidden in ctx.hidden:
        if hidden:
            text = text.replace(hidden, "<credentials file>")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _server_reason(exc: api_exceptions.GoogleAPICallError) -> str:
    """The service's own explanation, without the SDK's request dump."""
    message = str(getattr(exc, "message", "") or "")
    # Some servers put the raw JSON error body in the message.
    start = message.find("{")
    if start != -1:
        try:
            body = json.loads(message[start : message.rfind("}") + 1])
            error = body.get("error", body) if isinstance(body, dict) else {}
            if isinstance(error, dict) and error.get("message"):
                return str(error["message"])
        except ValueError:
            pass
    first = message.split("\n", 1)[0].strip().rstrip(":").strip()
    return first or getattr(exc, "reason", None) or type(exc).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps (cause, context, exception arguments, urllib3 reasons)."""
    seen: set[int] = set()
    pending = [exc]
    while pending and len(seen) < 32:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        nested.extend(current.args)
        if isinstance(current, api_exceptions.RetryError):
            nested.append(current.cause)
        pending.extend(item for item in nested if isinstance(item, BaseException))


_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\"\)\]]+)")


def _network_reason(exc: BaseException) -> str:
    """A short cause such as ``Connection refused`` for a network failure."""
    for item in _chain(exc):
        if isinstance(item, OSError) and item.strerror:
            return str(item.strerror)
        match = _ERRNO_TEXT.search(str(item))
        if match:
            return match.group(1).strip()
    for item in _chain(exc):
        name = type(item).__name__
        if name in ("NameResolutionError", "ConnectTimeoutError", "ConnectTimeout"):
            return {"NameResolutionError": "host name not resolved"}.get(name, "connect timed out")
    return type(exc).__name__


def _cannot_connect(exc: BaseException) -> bool:
    """True when no connection could be made at all (as opposed to one dropped mid-request)."""
    import urllib3.exceptions

    for item in _chain(exc):
        if isinstance(
            item,
            (
                urllib3.exceptions.NewConnectionError,  # refused, unresolvable, unreachable
                urllib3.exceptions.ConnectTimeoutError,
                requests.exceptions.ConnectTimeout,
                ConnectionRefusedError,
            ),
        ):
            return True
    return False


_CHECKSUM_WORDS = re.compile(r"(?i)crc32c|md5|checksum|hash")
_RETRYABLE_CODES = frozenset({408, 429, 500, 502, 503, 504})


def map_gcs_error(
    exc: BaseException, ctx: ErrorContext, *, action: str, key: str | None = None
) -> StcoreError:
    """Translate any failure of the Google SDK into one stcore error with a one-line message.

    ``action`` is what was being done (``write``, ``read``, ``stat``, ``list``, ``delete``,
    ``open``, ``create``); ``key`` the object concerned, without the repository prefix.
    """
    if isinstance(exc, StcoreError):
        return exc
    target = f"{key} in {ctx.location}" if key is not None else ctx.location
    retried = f"after retrying for up to {ctx.retry_deadline:g}s"

    if isinstance(exc, api_exceptions.RetryError):
        cause = exc.cause
        if isinstance(cause, BaseException) and cause is not exc:
            return map_gcs_error(cause, ctx, action=action, key=key)
        return TransientBackendError(
            f"Google Cloud Storage at {ctx.endpoint} did not complete the {action} of {target} "
            f"{retried}; try again later or raise the gcs 'retry_deadline' option"
        )

    if isinstance(exc, DataCorruption):
        if action == "write":
            return _upload_checksum_rejected(target)
        return CorruptObjectError(
            f"{target} failed its CRC32C check on download: the bytes received differ from the "
            "checksum Google Cloud Storage keeps for the object; retry, and if it persists the "
            "stored object is damaged and must be restored from another copy"
        )

    if isinstance(exc, auth_exceptions.InvalidOperation) and "nonymous" in str(exc):
        # The server answered 401 and the SDK tried to refresh anonymous credentials.
        return AuthenticationError(
            f"{ctx.endpoint} asked for credentials, but the backend sends none to it (anonymous "
            "mode is the default for emulators and plain-http endpoints); set the gcs "
            "'anonymous' option to false to use GOOGLE_APPLICATION_CREDENTIALS"
        )
    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        # args[0] is the SDK's sentence; the rest (a parser error and such) adds only noise.
        detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        return AuthenticationError(
            f"no usable Google Cloud credentials ({_scrub(detail, ctx).rstrip('.')}); point "
            "GOOGLE_APPLICATION_CREDENTIALS at a valid service-account key file or run "
            "`gcloud auth application-default login`"
        )
    if isinstance(exc, auth_exceptions.RefreshError):
        return AuthenticationError(
            f"Google rejected the credentials while fetching an access token "
            f"({_scrub(str(exc), ctx)}); check the key in GOOGLE_APPLICATION_CREDENTIALS is "
            "current and not revoked, or run `gcloud auth application-default login`"
        )
    if isinstance(exc, auth_exceptions.TransportError):
        return BackendUnavailableError(
            f"cannot reach Google's token service to authenticate ({_network_reason(exc)}); "
            "check the network and proxy settings"
        )

    code: int | None = None
    reason = ""
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        code = exc.code
        reason = _scrub(_server_reason(exc), ctx)
    elif isinstance(exc, InvalidResponse):
        code = getattr(getattr(exc, "response", None), "status_code", None)
        reason = _scrub(str(exc.args[0]) if exc.args else type(exc).__name__, ctx)

    if code is not None:
        if code == 404:
            # Without a JSON body the reason is the request line, whose URL holds the bucket's
            # name: "my-bucket/o/key: Not Found" is a missing object, not a missing bucket.
            said = re.sub(r"\S*://\S*", "", reason)
            bucket_missing = action in ("open", "create", "list") or re.search(
                r"(?i)bucket[^.]*(does not exist|not found)", said
            )
            if bucket_missing:
                return _bucket_missing(ctx)
            return ObjectNotFoundError(f"{key} does not exist in {ctx.location}")
        if code == 412:
            return ObjectExistsError(f"{key} already exists in {ctx.location}")
        if code == 401:
            return AuthenticationError(
                f"Google Cloud Storage rejected the credentials for {ctx.location} ({reason}); "
                "check GOOGLE_APPLICATION_CREDENTIALS or run "
                "`gcloud auth application-default login`"
            )
        if code == 403:
            return AccessDeniedError(
                f"the credentials may not {action} {target} ({reason}); grant their principal "
                f"roles/storage.objectAdmin on gs://{ctx.bucket} (roles/storage.admin to create "
                "buckets)"
            )
        if code == 400 and action == "write" and _CHECKSUM_WORDS.search(reason):
            return _upload_checksum_rejected(target)
        if code in _RETRYABLE_CODES:
            return TransientBackendError(
                f"Google Cloud Storage at {ctx.endpoint} kept failing the {action} of {target} "
                f"with HTTP {code} ({reason}) {retried}; try again later or raise the gcs "
                "'retry_deadline' option"
            )
        return BackendError(
            f"Google Cloud Storage refused the {action} of {target}: HTTP {code} ({reason})"
        )

    if isinstance(exc, requests.exceptions.RequestException | ConnectionError | TimeoutError):
        if _cannot_connect(exc):
            return BackendUnavailableError(
                f"cannot reach Google Cloud Storage at {ctx.endpoint} ({_network_reason(exc)}) "
                f"{retried}; check the network and proxy settings, and the gcs 'endpoint' option "
                "or STORAGE_EMULATOR_HOST"
            )
        if isinstance(exc, requests.exceptions.Timeout | TimeoutError):
            return TransientBackendError(
                f"Google Cloud Storage at {ctx.endpoint} did not answer the {action} of {target} "
                f"within {ctx.timeout:g}s {retried}; try again later or raise the gcs 'timeout' "
                "option"
            )
        return TransientBackendError(
            f"the connection to Google Cloud Storage at {ctx.endpoint} failed during the "
            f"{action} of {target} ({_network_reason(exc)}) {retried}; try again later"
        )

    return BackendError(
        f"Google Cloud Storage client failed during the {action} of {target}: "
        f"{type(exc).__name__}: {_scrub(str(exc), ctx)}"
    )


def _bucket_missing(ctx: ErrorContext) -> ContainerNotFoundError:
    return ContainerNotFoundError(
        f"bucket gs://{ctx.bucket} does not exist (at {ctx.endpoint}); create it with "
        f"`stcore --repo {ctx.location} init --create-bucket` or "
        f"`gcloud storage buckets create gs://{ctx.bucket}`"
    )


def _upload_checksum_rejected(target: str) -> BackendError:
    return BackendError(
        f"Google Cloud Storage rejected the upload of {target}: the checksum stcore declared "
        "does not match the bytes the service received (damaged in memory or on the network), "
        "so nothing was stored; retry the write, and check the machine's memory and network if "
        "it recurs"
    )


# --- checksums -----------------------------------------------------------------------------------


def _declared_checksums(data: bytes) -> tuple[str, str]:
    """(CRC32C, MD5) of ``data``, base64 as the JSON API wants them, declared on every upload."""
    crc = base64.b64encode(google_crc32c.Checksum(data).digest()).decode("ascii")
    md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")
    return crc, md5


# --- the backend ---------------------------------------------------------------------------------


class GcsBackend:
    """Objects in one bucket under an optional prefix: key ``data/ab/x`` is ``prefix/data/ab/x``."""

    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        prefix: str,
        options: GcsOptions,
        context: ErrorContext,
        *,
        anonymous: bool,
    ) -> None:
        self._client = client
        self._bucket = client.bucket(bucket)
        self._root = f"{prefix}/" if prefix else ""
        self._options = options
        self._ctx = context
        self._anonymous = anonymous
        self.location = context.location

    @classmethod
    def open(
        cls, url: str, *, options: Mapping[str, Any] | None = None, create: bool = False
    ) -> GcsBackend:
        """Open ``gs://bucket/prefix``; check the bucket exists (or create it with ``create``)."""
        opts = GcsOptions.parse(options or {})
        bucket, prefix = parse_url(url)
        emulator = os.environ.get("STORAGE_EMULATOR_HOST", "").strip() or None
        if emulator and "://" not in emulator:
            emulator = f"http://{emulator}"
        endpoint = (opts.endpoint or emulator or DEFAULT_ENDPOINT).rstrip("/")
        # Emulators take no credentials, and real Google Cloud Storage never speaks plain HTTP.
        anonymous = (
            opts.anonymous
            if opts.anonymous is not None
            else bool(emulator) or endpoint.startswith("http://")
        )
        hidden = tuple(
            p
            for p in (opts.credentials_file, os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))
            if p
        )
        location = f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"
        ctx = ErrorContext(
            endpoint=endpoint,
            bucket=bucket,
            location=location,
            retry_deadline=opts.retry_deadline,
            timeout=opts.timeout,
            hidden=hidden,
        )
        try:
            client = _make_client(
                opts, endpoint if endpoint != DEFAULT_ENDPOINT else None, anonymous
            )
        except Exception as exc:
            raise map_gcs_error(exc, ctx, action="open") from exc
        backend = cls(client, bucket, prefix, opts, ctx, anonymous=anonymous)
        try:
            backend._check_bucket(create)
        except BaseException:
            backend.close()
            raise
        return backend

    # --- helpers --------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        if not key or any(part in ("", ".", "..") for part in key.split("/")):
            raise BackendError(f"invalid object key {key!r}")
        return self._root + key

    def _retry(self, on_error: Callable[[Exception], Any] | None = None) -> Retry:
        deadline = self._options.retry_deadline
        return Retry(
            predicate=_SDK_SHOULD_RETRY,
            initial=min(1.0, max(deadline / 8, 0.05)),
            maximum=min(32.0, deadline),
            multiplier=2.0,
            timeout=deadline,
            on_error=on_error,
        )

    def _error(self, exc: BaseException, action: str, key: str | None = None) -> StcoreError:
        return map_gcs_error(exc, self._ctx, action=action, key=key)

    def _check_bucket(self, create: bool) -> None:
        # Listing one name needs only storage.objects.list, which using the repository needs
        # anyway; reading the bucket's metadata would need storage.buckets.get as well.
        try:
            self._probe()
            return
        except api_exceptions.NotFound as exc:
            if not create:
                raise _bucket_missing(self._ctx) from exc
        except Exception as exc:
            raise self._error(exc, "open") from exc
        project = self._client.project or (EMULATOR_PROJECT if self._anonymous else None)
        if project is None:
            raise ConfigError(
                f"creating bucket gs://{self._ctx.bucket} needs a Google Cloud project: set the "
                "gcs 'project' option or GCP_PROJECT_ID"
            )
        try:
            self._client.create_bucket(
                self._bucket.name,
                project=project,
                location=self._options.location,
                retry=self._retry(),
                timeout=self._options.timeout,
            )
        except api_exceptions.Conflict:
            pass  # created meanwhile by someone else; the probe below says if we may use it
        except Exception as exc:
            raise self._error(exc, "create") from exc
        try:
            self._probe()
        except Exception as exc:
            raise self._error(exc, "open") from exc

    def _probe(self) -> None:
        blobs = self._client.list_blobs(
            self._bucket,
            prefix=self._root or None,
            max_results=1,
            fields="items(name),nextPageToken",
            retry=self._retry(),
            timeout=self._options.timeout,
        )
        next(iter(blobs), None)

    def _holds(self, name: str, crc32c: str, size: int) -> bool:
        """True if ``name`` exists with exactly this CRC32C and size (our own earlier write)."""
        blob = self._bucket.blob(name)
        try:
            blob.reload(retry=self._retry(), timeout=self._options.timeout)
        except Exception:
            return False
        return bool(blob.crc32c == crc32c and blob.size == size)

    # --- Backend protocol -----------------------------------------------------------------------

    def write(self, key: str, data: BytesLike) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)  # the SDK's simple and resumable uploads want bytes
        name = self._name(key)
        crc32c, md5 = _declared_checksums(data)
        resumable = len(data) > self._options.resumable_threshold
        blob = self._bucket.blob(name, chunk_size=self._options.chunk_size if resumable else None)
        blob.crc32c = crc32c
        blob.md5_hash = md5
        retried: list[Exception] = []
        retry = self._retry(on_error=retried.append)
        try:
            if resumable:
                # size=None makes the SDK go resumable even below its own 8 MiB switch-over.
                blob.upload_from_file(
                    io.BytesIO(data),
                    size=len(data) if len(data) > SDK_MULTIPART_LIMIT else None,
                    content_type=CONTENT_TYPE,
                    if_generation_match=0,
                    checksum="crc32c",
                    retry=retry,
                    timeout=self._options.timeout,
                )
            else:
                blob.upload_from_string(
                    data,
                    content_type=CONTENT_TYPE,
                    if_generation_match=0,
                    checksum="crc32c",
                    retry=retry,
                    timeout=self._options.timeout,
                )
        except api_exceptions.PreconditionFailed as exc:
            if retried and self._holds(name, crc32c, len(data)):
                return  # an earlier attempt of this very write succeeded; its answer was lost
            raise self._error(exc, "write", key) from exc
        except Exception as exc:
            raise self._error(exc, "write", key) from exc

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        name = self._name(key)
        if offset < 0 or (length is not None and length < 0):
            raise BackendError(f"invalid range offset={offset} length={length} for {key}")
        if length == 0:
            self.stat(key)  # still report a missing key
            return b""
        blob = self._bucket.blob(name)
        try:
            if offset == 0 and length is None:
                # Whole object: verified against the CRC32C the service reports.
                return bytes(
                    blob.download_as_bytes(
                        raw_download=True,
                        checksum="crc32c",
                        retry=self._retry(),
                        timeout=self._options.timeout,
                    )
                )
            end = None if length is None else offset + length - 1
            # A range has no service-side checksum; the repository verifies blob hashes.
            return bytes(
                blob.download_as_bytes(
                    start=offset,
                    end=end,
                    raw_download=True,
                    checksum=None,
                    retry=self._retry(),
                    timeout=self._options.timeout,
                )
            )
        except api_exceptions.RequestRangeNotSatisfiable:
            return b""  # offset at or past the end
        except Exception as exc:
            raise self._error(exc, "read", key) from exc

    def stat(self, key: str) -> ObjectInfo:
        blob = self._bucket.blob(self._name(key))
        try:
            blob.reload(retry=self._retry(), timeout=self._options.timeout)
        except Exception as exc:
            raise self._error(exc, "stat", key) from exc
        return ObjectInfo(key=key, size=int(blob.size or 0))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        blobs = self._client.list_blobs(
            self._bucket,
            prefix=(self._root + prefix) or None,
            page_size=self._options.page_size,
            fields="items(name,size),nextPageToken",
            retry=self._retry(),
            timeout=self._options.timeout,
        )
        iterator = iter(blobs)  # the SDK follows nextPageToken from page to page
        while True:
            try:
                blob = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                raise self._error(exc, "list", prefix or None) from exc
            key = blob.name[len(self._root) :]
            if key:  # skip a "folder" placeholder named exactly like the prefix
                yield ObjectInfo(key=key, size=int(blob.size or 0))

    def delete(self, key: str) -> None:
        blob = self._bucket.blob(self._name(key))
        retried: list[Exception] = []
        try:
            blob.delete(retry=self._retry(on_error=retried.append), timeout=self._options.timeout)
        except api_exceptions.NotFound as exc:
            error = self._error(exc, "delete", key)
            if retried and isinstance(error, ObjectNotFoundError):
                return  # an earlier attempt of this delete succeeded; its answer was lost
            raise error from exc
        except Exception as exc:
            raise self._error(exc, "delete", key) from exc

    def close(self) -> None:
        # Closing idle connections cannot fail in a way worth reporting.
        with contextlib.suppress(Exception):
            self._client.close()

    def __repr__(self) -> str:
        return f"GcsBackend({self.location!r})"


def _load_credentials_file(path: str) -> tuple[Any, str | None]:
    """Credentials from a service-account or authorized-user JSON file named by an option.

    Only those two types are accepted (the generic loader is deprecated because a file of another
    type can make the SDK run commands or fetch URLs). Failures are one line without the path.
    """
    from google.oauth2 import credentials as user_credentials
    from google.oauth2 import service_account

    fix = "point the gcs 'credentials_file' option at a service-account key downloaded from IAM"
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except OSError as exc:
        raise AuthenticationError(
            f"cannot read the credentials file ({exc.strerror}); {fix}"
        ) from None
    except ValueError:
        raise AuthenticationError(f"the credentials file is not valid JSON; {fix}") from None
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            sa = service_account.Credentials.from_service_account_info(
                info, scopes=storage.Client.SCOPE
            )
            return sa, info.get("project_id")
        if kind == "authorized_user":
            user = user_credentials.Credentials.from_authorized_user_info(
                info, scopes=storage.Client.SCOPE
            )
            return user, info.get("quota_project_id")
    except (ValueError, KeyError) as exc:
        # The message names missing fields, never values; drop it if it is anything else.
        reason = str(exc) if "missing" in str(exc).lower() else type(exc).__name__
        raise AuthenticationError(
            f"the credentials file is not a usable {kind} key ({' '.join(reason.split())}); {fix}"
        ) from None
    raise AuthenticationError(
        f"the credentials file has type {kind!r}, but only service_account and authorized_user "
        "keys are accepted there; use GOOGLE_APPLICATION_CREDENTIALS for other kinds"
    )


def _make_client(opts: GcsOptions, endpoint: str | None, anonymous: bool) -> storage.Client:
    """A storage client for ``endpoint`` (None: Google's), with credentials resolved as documented.

    Order: anonymous for emulators; else the ``credentials_file`` option; else the SDK's
    application default credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud, metadata server).
    """
    kwargs: dict[str, Any] = {}
    project = opts.project or os.environ.get("GCP_PROJECT_ID") or None
    if anonymous:
        kwargs["credentials"] = AnonymousCredentials()
        kwargs["project"] = project  # None: no project, rather than asking for ADC to find one
    else:
        if opts.credentials_file:
            credentials, file_project = _load_credentials_file(opts.credentials_file)
            kwargs["credentials"] = credentials
            project = project or file_project
        if project:
            kwargs["project"] = project
    if endpoint:
        kwargs["client_options"] = {"api_endpoint": endpoint}
    return storage.Client(**kwargs)
