"""The contracts plugins implement: Backend, Compressor, Encryptor and Source.

These are structural (:class:`typing.Protocol`): a plugin needs no stcore base class, only the
methods below. :mod:`stcore.testing` holds the contract tests that check an implementation
behaves as these docstrings say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO, Literal, Protocol, runtime_checkable

import attrs

#: Long operations report progress through one of these: called with an event name and an
#: amount, e.g. ("bytes", n) as data is read, ("file", n) as files are done (a backup sums
#: them per 64 files or MiB), ("object", 1) per upload, ("pack", 1) per pack checked, and
#: ("total", n) once, when the bytes to come are known.
ProgressCallback = Callable[[str, int], None]


def no_progress(event: str, amount: int) -> None:
    """The :data:`ProgressCallback` that reports nowhere."""


# --- backends ------------------------------------------------------------------------------------

#: What :meth:`Backend.write` accepts: any contiguous bytes-like object.
BytesLike = bytes | bytearray | memoryview


@attrs.frozen(kw_only=True)
class ObjectInfo:
    """What a backend knows about one stored object."""

    key: str
    size: int


@runtime_checkable
class Backend(Protocol):
    """Key -> bytes storage: small enough to implement in an afternoon.

    Keys are ``/``-separated relative names such as ``data/3f/3fa2...``. Every write is
    create-only: writing a key that exists raises :class:`~stcore.errors.ObjectExistsError` and
    leaves the stored object untouched. A write is atomic: readers see the whole object or none.
    """

    #: Where the objects live, for messages; never contains credentials.
    location: str

    def write(self, key: str, data: BytesLike) -> None:
        """Store ``data`` under ``key``; raise ``ObjectExistsError`` if ``key`` exists.

        ``data`` may be a ``memoryview`` of a buffer the caller reuses once ``write`` returns
        (packs are written that way), so keep no reference to it after returning.
        """
        ...

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return ``length`` bytes from ``offset`` (all remaining bytes when ``length`` is None).

        Fewer bytes come back only when the object ends first; an offset at or past the end gives
        ``b""``. A missing key raises :class:`~stcore.errors.ObjectNotFoundError`.
        """
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Size of ``key``; ``ObjectNotFoundError`` if it does not exist."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in no particular order."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; ``ObjectNotFoundError`` if it does not exist."""
        ...

    def close(self) -> None:
        """Release connections and handles. The backend is not used afterwards."""
        ...


@runtime_checkable
class ObjectWriter(Protocol):
    """An object written piece by piece and named when it is complete.

    Packs are named by the hash of their bytes, known only once the last byte is written, so a
    backend that can spool to its own storage (the local one writes a temporary file) lets the
    engine write a pack while filling it, instead of holding the whole pack in memory.
    """

    def write(self, data: BytesLike) -> None:
        """Append ``data`` (keep no reference to it after returning)."""
        ...

    def commit(self, key: str) -> None:
        """Store what was written under ``key``, with :meth:`Backend.write`'s guarantees:
        atomic, durable, create-only (``ObjectExistsError``). The writer is finished after."""
        ...

    def abort(self) -> None:
        """Drop what was written; safe to call after :meth:`commit` or twice."""
        ...


@runtime_checkable
class StreamingBackend(Protocol):
    """Optional for backends: :meth:`open_writer` for objects too large to hold in memory."""

    def open_writer(self) -> ObjectWriter: ...

    def discard_abandoned(self) -> int:
        """Remove what writers left behind when their process died before commit or abort, and
        return how many. Called only under the repository's exclusive lock (by prune), when no
        writer of this repository can be running."""
        ...

    def count_abandoned(self) -> int:
        """How many such leftovers :meth:`discard_abandoned` would remove now (for ``check``)."""
        ...


class BackendFactory(Protocol):
    """What a backend registration's ``load()`` returns."""

    def __call__(self, url: str, *, options: Mapping[str, Any], create: bool = False) -> Backend:
        """Open the backend at ``url``.

        ``create`` asks to create the bucket, container or directory when it is missing;
        without it a missing one raises :class:`~stcore.errors.ContainerNotFoundError`.
        """
        ...


# --- compressors ---------------------------------------------------------------------------------


@runtime_checkable
class Compressor(Protocol):
    """A lossless codec for blobs and metadata objects.

    ``code`` is written in front of every compressed frame so a reader knows how to decode it;
    it must never change once data has been written. Codes 0-63 are reserved for stcore.
    """

    name: str
    code: int

    def compress(self, data: bytes) -> bytes: ...

    def decompress(self, data: bytes, raw_size: int) -> bytes:
        """Decode ``data``; ``raw_size`` is the expected decoded length (a bound for buffers)."""
        ...


@runtime_checkable
class BatchCompressor(Compressor, Protocol):
    """A compressor that can also compress many inputs in one call (optional).

    ``compress_many(items)`` must return exactly ``[compress(x) for x in items]``. The packer
    uses it for its batches of small blobs: one call that releases the GIL once, not once per
    blob, keeps the sealing threads from queueing for the GIL behind the reading thread.
    """

    def compress_many(self, items: Sequence[bytes]) -> list[bytes]: ...


@runtime_checkable
class PagedCompressor(Compressor, Protocol):
    """A compressor that has other settings for database pages (optional).

    ``for_pages()`` returns the compressor to use for the runs of pages a paged file (a SQLite
    database) is cut into: small inputs of one or a few pages each, compressed one by one. Its
    frames must carry the same ``code`` and decode with the same ``decompress``: only how hard
    it compresses may differ. The built-in zstd compressor uses a level that suits such small
    inputs better, unless the repository sets a level.
    """

    def for_pages(self) -> Compressor: ...


class CompressorFactory(Protocol):
    """What a compressor registration's ``load()`` returns; ``level`` None means its default."""

    def __call__(self, level: int | None = None) -> Compressor: ...


# --- encryptors ----------------------------------------------------------------------------------


@runtime_checkable
class Encryptor(Protocol):
    """Seals stored bytes. ``associated_data`` names the object, so objects cannot be swapped.

    ``overhead`` is the number of bytes ``encrypt`` adds. The ``none`` encryptor adds 0 and
    returns its input unchanged.
    """

    name: str
    overhead: int

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes: ...

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        """Return the plaintext or raise :class:`~stcore.errors.CorruptObjectError`."""
        ...


class EncryptorFactory(Protocol):
    """What an encryptor registration's ``load()`` returns; ``key`` is the master key or None."""

    def __call__(self, key: bytes | None) -> Encryptor: ...


# --- sources -------------------------------------------------------------------------------------

EntryKind = Literal["file", "dir", "symlink"]


@attrs.frozen(kw_only=True)
class SourceEntry:
    """One item a source yields: a file, directory or symlink at a relative path.

    ``path`` is a tuple of names (no ``.``/``..``, no ``/``). A file entry carries ``opener``, which
    returns a binary stream of its bytes; the stream is read to the end and closed by the engine.
    ``page_size`` tells the chunker the bytes are made of fixed-size pages (SQLite), so chunk
    boundaries can fall on page boundaries. ``change_token`` identifies this version of the file
    (the files source uses size, mtime, ctime and inode): when it equals the token recorded at the
    previous backup, the file is not read again. Leave it None when no such token exists.
    ``prefetch``, when given, is called a few entries before the file is read, to start reading
    it in the background (the files source asks the kernel with ``posix_fadvise``): small files
    are read one after another, and without it each waits for the disk in turn. A negative
    ``size`` means unknown until the stream ends (standard input): such a file is read in
    chunks, never whole, and stored at whatever length it had.
    """

    path: tuple[str, ...]
    kind: EntryKind
    mode: int = 0o644
    mtime_ns: int = 0
    size: int = 0
    target: str | None = None
    opener: Callable[[], BinaryIO] | None = None
    page_size: int | None = None
    change_token: str | None = None
    prefetch: Callable[[], None] | None = None


ErrorReporter = Callable[[str, BaseException], None]


class Source(Protocol):
    """A configured data source that can be scanned into entries.

    ``scan`` yields entries depth-first with names sorted, a directory before its contents.
    An entry that cannot be read is passed to ``report_error`` and skipped, so one unreadable file
    does not stop a backup; a source that cannot be read at all raises
    :class:`~stcore.errors.SourceError`.
    """

    name: str
    type_name: str

    def describe(self) -> dict[str, Any]:
        """The options to record in the snapshot manifest (never secrets)."""
        ...

    def scan(self, report_error: ErrorReporter) -> Iterator[SourceEntry]: ...

    def close(self) -> None:
        """Remove any temporary state (such as a database copy)."""
        ...


class SourceFactory(Protocol):
    """What a source registration's ``load()`` returns.

    Calling it with the source's name and options gives a :class:`Source`. It may also define
    ``read_data(view)`` returning the source's data in parsed form (a ``json`` source returns the
    documents), which :attr:`stcore.SourceView.data` exposes.
    """

    def __call__(self, name: str, options: Mapping[str, Any]) -> Source: ...
