"""The Azure Blob Storage backend: objects are block blobs in one container, under a prefix.

``az://container/prefix`` keeps ``data/ab/abcd...`` as the blob ``prefix/data/ab/abcd...``.

Guarantees the :class:`~stcore.interfaces.Backend` contract asks for, and how:

* **Create-only writes.** Every upload is conditional on the blob not existing (``If-None-Match:
  *``): ``upload_blob(overwrite=False)`` for small objects, ``commit_block_list(if_none_match="*")``
  for large ones. The service enforces it, so concurrent writers cannot both win.
* **Atomic writes.** A single Put Blob is atomic; staged blocks stay invisible until the block
  list is committed. Block IDs carry a random per-upload token, because uncommitted blocks are
  shared per blob name and two writers of the same key would otherwise overwrite each other's.
  Blocks of an upload that never commits are discarded by Azure after a week.
* **Integrity.** Every request body carries its Content-MD5, which Azure checks before storing
  anything; the whole object's MD5 is stored as its ``Content-MD5`` property. Ranged reads ask
  the service for the MD5 of the range (possible up to 4 MiB per request, so longer ranges are
  fetched in 4 MiB pieces); whole reads are checked against the stored MD5, which also catches a
  blob changed behind stcore's back.
* **Bounded memory for large objects.** Objects above ``block_threshold`` go up as blocks read
  from a :class:`memoryview` of the caller's bytes, so no slice of the object is ever copied.

Every SDK failure passes through :func:`translate_error`, which turns it into one
:mod:`stcore.errors` class with a one-line message. Azure SDK exception texts include request
details (URLs with SAS tokens, headers, the service's XML body), so none of that text is copied;
messages are built only from the status, the service's error code and names stcore already
knows (container, account, key, host).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import random
import re
import secrets
import shlex
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
    ExponentialRetry,
)

from st_azure import __version__
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
from stcore.streams import MemoryviewReader

log = logging.getLogger(__name__)


class _RedactSasFilter(logging.Filter):
    """Blank SAS signatures in urllib3's debug lines, which print each request's full URL.

    The Azure SDK's own HTTP logging already redacts query parameters; urllib3, underneath it,
    does not, and a SAS token is a bearer secret.
    """

    _SIG = re.compile(r"(?i)(\bsig=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "sig=" in message.lower():
            record.msg = self._SIG.sub(r"\1REDACTED", message)
            record.args = ()
        return True


def _install_log_redaction() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactSasFilter) for f in logger.filters):
        logger.addFilter(_RedactSasFilter())


MiB = 1024 * 1024
DEFAULT_BLOCK_THRESHOLD = 8 * MiB
DEFAULT_BLOCK_SIZE = 8 * MiB
MAX_BLOCK_SIZE = 4000 * MiB
MAX_BLOCKS = 50_000
DEFAULT_CONCURRENCY = 4

SCHEMES = ("az", "azure")
CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
CONTAINER_ENV = "AZURE_CONTAINER"
ACCOUNT_ENV = "AZURE_STORAGE_ACCOUNT"
ACCOUNT_KEY_ENV = "AZURE_STORAGE_KEY"
SAS_TOKEN_ENV = "AZURE_STORAGE_SAS_TOKEN"

# Lowercase letters, digits and single hyphens, 3-63 characters, starting with a letter or digit.
_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")

_AUTHENTICATION_CODES = frozenset(
    {"AuthenticationFailed", "InvalidAuthenticationInfo", "NoAuthenticationInformation"}
)
_AUTHORIZATION_CODES = frozenset(
    {
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationSourceIPMismatch",
        "InsufficientAccountPermissions",
        "KeyBasedAuthenticationNotPermitted",
    }
)
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


# --- URL and options --------------------------------------------------------------------------


def parse_url(url: str) -> tuple[str, str]:
    """``az://container/some/prefix`` -> ``("container", "some/prefix")``.

    ``az://`` alone takes the container from ``$AZURE_CONTAINER``, so a deployment can name it
    in its environment and keep one URL everywhere.
    """
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"the azure backend opens az://container/prefix URLs, not {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(
            "an az:// URL takes no query or fragment; pass credentials in the environment "
            "(AZURE_STORAGE_CONNECTION_STRING) or the backend options, never in the URL"
        )
    container = unquote(parts.netloc)
    if not container:
        container = os.environ.get(CONTAINER_ENV, "").strip()
        if not container:
            raise ConfigError(
                f"{url!r} names no container; use az://container/prefix or set {CONTAINER_ENV}"
            )
    if not _CONTAINER_RE.match(container):
        raise ConfigError(
            f"{container!r} is not a valid Azure container name: use 3-63 lowercase letters, "
            "digits and single hyphens, starting with a letter or digit"
        )
    prefix = "/".join(p for p in unquote(parts.path).split("/") if p)
    return container, prefix


def _int_option(options: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
    value = options.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = minimum - 1
    if isinstance(value, bool) or number < minimum:
        raise ConfigError(f"azure backend option {name!r} must be an integer >= {minimum}")
    return number


def _float_option(options: Mapping[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or number < 0:
        raise ConfigError(f"azure backend option {name!r} must be a number >= 0")
    return number


class _ScaledRetry(ExponentialRetry):
    """Backoff of ``b``, ``3b``, ``9b``, ... seconds (at most 60 each, +-20% jitter).

    The SDK's own formula adds ``3**n`` seconds to the initial delay, so even
    ``retry_backoff = 0`` would wait 3, 9, 27 s; here the whole schedule scales with ``b``.
    """

    def __init__(self, *, backoff: float, retry_total: int) -> None:
        super().__init__(initial_backoff=0, retry_total=retry_total, random_jitter_range=0)
        self.backoff = backoff

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        count = max(0, int(settings.get("count", 1)) - 1)
        delay = min(60.0, self.backoff * 3**count)
        return random.uniform(delay * 0.8, delay * 1.2)


def _client_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """Retry policy, timeouts and user agent for the SDK client, from the backend options.

    Without ``retry_total``/``retry_backoff`` the SDK's defaults apply (10 retries, 15 s growing
    backoff): generous, because a backup should ride out throttling rather than fail.
    """
    kwargs: dict[str, Any] = {"user_agent": f"stcore-st-azure/{__version__}"}
    if "retry_backoff" in options:
        kwargs["retry_policy"] = _ScaledRetry(
            backoff=_float_option(options, "retry_backoff", 15.0),
            retry_total=_int_option(options, "retry_total", 10, 0),
        )
    elif "retry_total" in options:
        kwargs["retry_policy"] = ExponentialRetry(
            retry_total=_int_option(options, "retry_total", 10, 0)
        )
    for name in ("connection_timeout", "read_timeout"):
        if name in options:
            kwargs[name] = _float_option(options, name, 0.0)
    return kwargs


def _account_name_from_url(account_url: str) -> str | None:
    """``https://acct.blob.core.windows.net`` -> ``acct``; path-style emulator URLs too."""
    parts = urlsplit(account_url)
    host = parts.hostname or ""
    if host.count(".") >= 2 and not host.replace(".", "").isdigit():
        return host.split(".", 1)[0]
    first = parts.path.strip("/").split("/", 1)[0]
    return first or None


def _service_client(options: Mapping[str, Any]) -> tuple[BlobServiceClient, Any]:
    """Build the SDK client from the options, else the environment; never log what was used.

    Order: ``connection_string`` option, ``account_url``/``account_name`` options,
    ``$AZURE_STORAGE_CONNECTION_STRING``, ``$AZURE_STORAGE_ACCOUNT``. Explicit options win over
    the environment. Returns the client and an owned credential to close (or None).
    """
    kwargs = _client_kwargs(options)
    connection_string = options.get("connection_string")
    account_url = options.get("account_url")
    account_name = options.get("account_name")
    if connection_string and (account_url or account_name):
        raise ConfigError(
            "azure backend options set both connection_string and account_url/account_name; "
            "keep one of them"
        )
    if not connection_string and not account_url and not account_name:
        connection_string = os.environ.get(CONNECTION_STRING_ENV)
        if not connection_string:
            account_name = os.environ.get(ACCOUNT_ENV)
    if connection_string:
        try:
            return BlobServiceClient.from_connection_string(str(connection_string), **kwargs), None
        except ValueError:
            raise ConfigError(
                "the Azure connection string is malformed; it needs AccountName=...;AccountKey=... "
                "(or SharedAccessSignature=...) and, for an emulator, BlobEndpoint=..."
            ) from None
    if not account_url and not account_name:
        raise ConfigError(
            "no Azure credentials: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT "
            "with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or the backend options "
            "connection_string / account_url with account_key or credential"
        )
    if not account_url:
        account_url = f"https://{account_name}.blob.core.windows.net"
    account_url = str(account_url)
    if urlsplit(account_url).scheme not in ("http", "https") or not urlsplit(account_url).netloc:
        raise ConfigError("azure backend option account_url must be an http(s) URL")
    using_env = not options.get("account_url") and not options.get("account_name")
    account_key = options.get("account_key") or (
        os.environ.get(ACCOUNT_KEY_ENV) if using_env else None
    )
    credential: Any = options.get("credential") or (
        os.environ.get(SAS_TOKEN_ENV) if using_env else None
    )
    owned = None
    if account_key:
        name = account_name or _account_name_from_url(account_url)
        if not name:
            raise ConfigError("set the azure backend option account_name to use account_key")
        credential = {"account_name": str(name), "account_key": str(account_key)}
    elif not credential:
        credential = owned = _default_credential()
    return BlobServiceClient(account_url=account_url, credential=credential, **kwargs), owned


def _default_credential() -> Any:
    """``DefaultAzureCredential`` (az login, managed identity, workload identity, ...).

    ``azure-identity`` is an optional dependency: key- and SAS-based setups do not need it, and
    it pulls in MSAL and cryptography.
    """
    try:
        identity = importlib.import_module("azure.identity")
    except ImportError:
        raise ConfigError(
            "no account key, SAS token or connection string for Azure, and azure-identity is not "
            "installed; set AZURE_STORAGE_CONNECTION_STRING or account_key/credential, or "
            "`pip install azure-identity` to sign in with DefaultAzureCredential (az login, "
            "managed identity)"
        ) from None
    return identity.DefaultAzureCredential()


# --- errors -------------------------------------------------------------------------------------


def _error_code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    if not code and exc.response is not None:
        code = getattr(exc.response, "headers", {}).get("x-ms-error-code")
    return str(getattr(code, "value", code) or "")


def _service_message(exc: HttpResponseError) -> str:
    # Read only to classify; never copied into a message (it can echo request details).
    return str(getattr(exc, "message", "") or "").lower()


def is_md5_rejection(exc: BaseException) -> bool:
    """Did the service refuse a body whose bytes do not match the Content-MD5 sent with it?

    Azure answers ``400 Md5Mismatch``; Azurite answers ``400 InvalidOperation`` with the message
    "Provided contentMD5 doesn't match.", so both are recognised.
    """
    if not isinstance(exc, HttpResponseError):
        return False
    code = _error_code(exc)
    if code in ("Md5Mismatch", "InvalidMd5", "Crc64Mismatch"):
        return True
    return code == "InvalidOperation" and "md5" in _service_message(exc)


def translate_error(
    exc: BaseException,
    *,
    action: str,
    container: str,
    account: str,
    host: str,
    location: str,
    key: str | None = None,
) -> StcoreError:
    """The one place an Azure SDK failure becomes an stcore error with a one-line message."""
    where = f"{key} in {location}" if key is not None else location
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = exc.status_code
        code = _error_code(exc)
        label = f"{status} {code}".strip()
        if code == "ContainerNotFound":
            return ContainerNotFoundError(
                f"container {container!r} does not exist in storage account {account!r}; create "
                f"it with `stcore init --create-bucket --repo {shlex.quote(location)}` or `az "
                f"storage container create --name {container} --account-name {account}`"
            )
        if code == "BlobNotFound" or (status == 404 and key is not None):
            return ObjectNotFoundError(f"{key or 'object'} does not exist in {location}")
        if code == "BlobAlreadyExists":
            return ObjectExistsError(f"{key or 'object'} already exists in {location}")
        # Azurite answers a bad shared-key signature with AuthorizationFailure rather than
        # Azure's AuthenticationFailed; its message still says the request failed to authenticate.
        if (
            code in _AUTHENTICATION_CODES
            or status == 401
            or (code == "AuthorizationFailure" and "to authenticate" in _service_message(exc))
        ):
            return AuthenticationError(
                f"Azure rejected the credentials for storage account {account!r} ({label}) while "
                f"{action} {where}; check the account key, SAS token or connection string "
                f"({CONNECTION_STRING_ENV}) and that it has not expired"
            )
        if code in _AUTHORIZATION_CODES or status == 403:
            return AccessDeniedError(
                f"access denied while {action} {where} ({label}): the credentials for storage "
                f"account {account!r} lack permission or the account's network rules block this "
                "client; grant the 'Storage Blob Data Contributor' role or use a SAS allowing "
                "read, add, create, write, delete and list"
            )
        if is_md5_rejection(exc):
            return TransientBackendError(
                f"Azure refused {where}: the bytes it received do not match their Content-MD5, so "
                "they were damaged on the way and nothing was stored; retry"
            )
        if status in _TRANSIENT_STATUSES:
            return TransientBackendError(
                f"Azure Blob Storage at {host} failed while {action} {where} ({label}) after "
                "retrying; try again later or raise the retry_total option"
            )
        return BackendError(f"Azure Blob Storage error while {action} {where}: {label}")
    if isinstance(exc, ServiceRequestError):
        return BackendUnavailableError(
            f"cannot reach Azure Blob Storage at {host} while {action} {where}; check the "
            "network, the account URL or the connection string's BlobEndpoint"
        )
    if isinstance(exc, ServiceResponseError):
        return TransientBackendError(
            f"the connection to Azure Blob Storage at {host} failed while {action} {where} "
            "(dropped or timed out); try again"
        )
    # The SDK raises AzureSigningError (private class) when the account key is not base64.
    if isinstance(exc, ClientAuthenticationError) and type(exc).__name__ == "AzureSigningError":
        return AuthenticationError(
            f"the account key for storage account {account!r} is malformed (requests cannot be "
            "signed with it); copy it again from the portal or `az storage account keys list`"
        )
    if isinstance(exc, ClientAuthenticationError):
        return AuthenticationError(
            f"could not obtain Azure credentials for storage account {account!r}: "
            f"{type(exc).__name__}; run `az login`, configure a managed identity, or set "
            f"{CONNECTION_STRING_ENV} or an account key / SAS token"
        )
    if isinstance(exc, AzureError) and "md5 mismatch" in str(exc.message).lower():
        return CorruptObjectError(
            f"{where} arrived corrupted: the downloaded bytes do not match the MD5 Azure sent"
        )
    return BackendError(
        f"Azure Blob Storage client error while {action} {where}: {type(exc).__name__}"
    )


# --- the backend --------------------------------------------------------------------------------


class AzureBackend:
    """Objects as block blobs under ``prefix/`` in one container."""

    def __init__(
        self,
        container_client: ContainerClient,
        *,
        prefix: str = "",
        service_client: BlobServiceClient | None = None,
        credential: Any = None,
        block_threshold: int = DEFAULT_BLOCK_THRESHOLD,
        block_size: int = DEFAULT_BLOCK_SIZE,
        max_concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self._container = container_client
        self._service = service_client
        self._credential = credential
        self._prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.container = container_client.container_name
        self.account = container_client.account_name or "?"
        # Only the host: the client's URL may carry a SAS token in its query string.
        self.host = urlsplit(container_client.url).netloc
        self.location = f"az://{self.container}/{self._prefix}".rstrip("/")
        self.block_threshold = block_threshold
        self.block_size = block_size
        self.max_concurrency = max_concurrency

    @classmethod
    def open(
        cls, url: str, *, options: Mapping[str, Any] | None = None, create: bool = False
    ) -> AzureBackend:
        """Open ``az://container/prefix``; create the container when missing if ``create``.

        Backend options (all optional): ``connection_string``; ``account_url``,
        ``account_name``, ``account_key``, ``credential`` (a SAS token or an azure-identity
        credential); ``retry_total``, ``retry_backoff`` (seconds), ``connection_timeout``,
        ``read_timeout``; ``block_threshold``, ``block_size`` (bytes) and ``max_concurrency``.
        """
        options = options or {}
        container, prefix = parse_url(url)
        _install_log_redaction()
        block_threshold = _int_option(options, "block_threshold", DEFAULT_BLOCK_THRESHOLD, 1)
        block_size = _int_option(options, "block_size", DEFAULT_BLOCK_SIZE, 1)
        if block_size > MAX_BLOCK_SIZE:
            raise ConfigError(f"azure backend option 'block_size' must be <= {MAX_BLOCK_SIZE}")
        max_concurrency = _int_option(options, "max_concurrency", DEFAULT_CONCURRENCY, 1)
        service, credential = _service_client(options)
        backend = cls(
            service.get_container_client(container),
            prefix=prefix,
            service_client=service,
            credential=credential,
            block_threshold=block_threshold,
            block_size=block_size,
            max_concurrency=max_concurrency,
        )
        try:
            backend._ensure_container(create)
        except BaseException:
            backend.close()
            raise
        return backend

    # --- helpers --------------------------------------------------------------------------------

    def _error(self, exc: BaseException, action: str, key: str | None = None) -> StcoreError:
        return translate_error(
            exc,
            action=action,
            container=self.container,
            account=self.account,
            host=self.host,
            location=self.location,
            key=key,
        )

    def _ensure_container(self, create: bool) -> None:
        # Probe with a one-item listing rather than Get Container Properties: a container-scoped
        # SAS may list (the backend needs that anyway) but not read container properties. And
        # probe before creating: such a SAS may not be allowed to create a container either.
        try:
            pages = self._container.list_blobs(name_starts_with=self._prefix, results_per_page=1)
            next(iter(pages.by_page()), None)
            return
        except HttpResponseError as exc:
            if not (create and _error_code(exc) == "ContainerNotFound"):
                raise self._error(exc, "opening") from exc
        except AzureError as exc:
            raise self._error(exc, "opening") from exc
        try:
            self._container.create_container()
            log.info("created Azure container %s in account %s", self.container, self.account)
        except HttpResponseError as exc:
            if _error_code(exc) != "ContainerAlreadyExists":  # created concurrently: fine
                raise self._error(exc, "creating the container for") from exc
        except AzureError as exc:
            raise self._error(exc, "creating the container for") from exc

    def _blob_name(self, key: str) -> str:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts):
            raise BackendError(f"invalid object key {key!r}")
        return self._prefix + key

    # --- Backend protocol -----------------------------------------------------------------------

    def write(self, key: str, data: BytesLike) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)  # upload_blob wants bytes; a memoryview is the caller's buffer
        blob = self._container.get_blob_client(self._blob_name(key))
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        try:
            if len(data) <= self.block_threshold:
                # One Put Blob: If-None-Match: * (overwrite=False) makes it create-only, and
                # validate_content sends Content-MD5, which the service checks before storing.
                blob.upload_blob(
                    data,
                    length=len(data),
                    overwrite=False,
                    validate_content=True,
                    content_settings=ContentSettings(content_md5=bytearray(digest)),
                    max_concurrency=1,
                )
            else:
                self._write_blocks(blob, key, memoryview(data), digest)
        except HttpResponseError as exc:
            if exc.status_code in (409, 412) and _error_code(exc) in (
                "BlobAlreadyExists",
                "ConditionNotMet",
            ):
                raise ObjectExistsError(f"{key} already exists in {self.location}") from exc
            raise self._error(exc, "writing", key) from exc
        except AzureError as exc:
            raise self._error(exc, "writing", key) from exc

    def _write_blocks(self, blob: Any, key: str, view: memoryview, digest: bytes) -> None:
        """Stage ``view`` in blocks, then commit them only if the blob still does not exist."""
        if blob.exists():  # saves sending megabytes only to be refused at the commit
            raise ObjectExistsError(f"{key} already exists in {self.location}")
        size = self.block_size
        count = -(-len(view) // size)
        if count > MAX_BLOCKS:
            raise BackendError(
                f"{key} needs {count} blocks, more than Azure's {MAX_BLOCKS}; "
                "raise the block_size option"
            )
        token = secrets.token_hex(8)
        block_ids = [f"{token}-{index:06d}" for index in range(count)]

        def stage(index: int) -> None:
            chunk = view[index * size : (index + 1) * size]
            blob.stage_block(
                block_ids[index], MemoryviewReader(chunk), length=len(chunk), validate_content=True
            )

        if self.max_concurrency == 1 or count == 1:
            for index in range(count):
                stage(index)
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, count)) as pool:
                list(pool.map(stage, range(count)))
        blob.commit_block_list(
            block_ids,
            content_settings=ContentSettings(content_md5=bytearray(digest)),
            if_none_match="*",
        )

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise BackendError(f"invalid range offset={offset} length={length} for {key}")
        if length == 0:
            self.stat(key)  # a missing key must still raise ObjectNotFoundError
            return b""
        blob = self._container.get_blob_client(self._blob_name(key))
        whole = offset == 0 and length is None
        try:
            # Whole reads: one large GET, checked against the stored MD5 below. Ranges: the
            # service returns each (<= 4 MiB) piece's MD5, which the SDK checks.
            downloader = blob.download_blob(
                offset=None if whole else offset,
                length=None if whole else length,
                validate_content=not whole,
                max_concurrency=self.max_concurrency,
            )
            data = downloader.readall()
            stored_md5 = downloader.properties.content_settings.content_md5
        except HttpResponseError as exc:
            if exc.status_code == 416:  # InvalidRange: offset at or past the end
                return b""
            raise self._error(exc, "reading", key) from exc
        except AzureError as exc:
            raise self._error(exc, "reading", key) from exc
        if whole:
            if stored_md5:
                actual = hashlib.md5(data, usedforsecurity=False).digest()
                if actual != bytes(stored_md5):
                    raise CorruptObjectError(
                        f"{key} in {self.location} is corrupt: its bytes do not match the "
                        "Content-MD5 stored with it (changed outside stcore or damaged in transit)"
                    )
            else:
                log.debug("%s in %s has no stored Content-MD5; not verified", key, self.location)
        return data

    def stat(self, key: str) -> ObjectInfo:
        blob = self._container.get_blob_client(self._blob_name(key))
        try:
            properties = blob.get_blob_properties()
        except AzureError as exc:
            raise self._error(exc, "checking", key) from exc
        return ObjectInfo(key=key, size=int(properties.size))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # The SDK's pager follows continuation markers, so listings longer than one page
        # (5,000 on Azure) come back whole.
        skip = len(self._prefix)
        try:
            for item in self._container.list_blobs(name_starts_with=self._prefix + prefix):
                yield ObjectInfo(key=item.name[skip:], size=int(item.size))
        except AzureError as exc:
            raise self._error(exc, f"listing {prefix!r} in") from exc

    def delete(self, key: str) -> None:
        blob = self._container.get_blob_client(self._blob_name(key))
        try:
            blob.delete_blob()
        except AzureError as exc:
            raise self._error(exc, "deleting", key) from exc

    def close(self) -> None:
        self._container.close()
        if self._service is not None:
            self._service.close()
        close = getattr(self._credential, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"AzureBackend({self.location!r}, account={self.account!r}, host={self.host!r})"
