"""Built-in compressors: zstd (the default), gzip, lzma and none.

Each has a fixed frame code (written before every compressed frame). Decoding failures become
:class:`~stcore.errors.CorruptObjectError` so a damaged blob is reported, not crashed on.
"""

from __future__ import annotations

import lzma
import threading
import zlib
from collections.abc import Sequence

import zstandard

from stcore.errors import CorruptObjectError

ZSTD_DEFAULT_LEVEL = 3
#: the default level for database pages (runs of 4 KiB compressed one by one): on inputs this
#: small zstd's level-4 parameters find 2-5% more than level 3's, for half as much CPU again
#: (docs/format.md, "Compression levels")
ZSTD_PAGE_LEVEL = 4
#: the C backend has ``multi_compress_to_buffer``; the CFFI one (PyPy) does not
_MULTI = zstandard.backend == "cext"


class NoCompressor:
    name = "none"
    code = 0

    def compress(self, data: bytes) -> bytes:
        return bytes(data)

    def decompress(self, data: bytes, raw_size: int) -> bytes:
        if len(data) > raw_size:
            raise CorruptObjectError(f"frame holds more than its declared {raw_size} bytes")
        return bytes(data)


class ZstdCompressor:
    """zstd at a configurable level; contexts are per thread (they are not thread-safe)."""

    name = "zstd"
    code = 1

    def __init__(self, level: int | None = None) -> None:
        self.level = ZSTD_DEFAULT_LEVEL if level is None else level
        if not -7 <= self.level <= 22:
            raise ValueError(f"zstd level must be between -7 and 22, not {self.level}")
        self._chosen = level is not None
        self._local = threading.local()

    def for_pages(self) -> ZstdCompressor:
        """Database pages at :data:`ZSTD_PAGE_LEVEL`, unless a level was chosen: then that."""
        return self if self._chosen else ZstdCompressor(ZSTD_PAGE_LEVEL)

    def _contexts(self) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
        contexts = getattr(self._local, "contexts", None)
        if contexts is None:
            contexts = (
                zstandard.ZstdCompressor(level=self.level, write_content_size=True),
                zstandard.ZstdDecompressor(),
            )
            self._local.contexts = contexts
        return contexts

    def compress(self, data: bytes) -> bytes:
        return self._contexts()[0].compress(data)

    def compress_many(self, items: Sequence[bytes]) -> list[bytes]:
        """``[compress(x) for x in items]`` in one call that releases the GIL once (the C
        backend's ``multi_compress_to_buffer``, on this thread); the frames are the same bytes."""
        if not _MULTI or len(items) < 2 or not all(items):  # it refuses empty inputs
            return [self.compress(item) for item in items]
        frames = self._contexts()[0].multi_compress_to_buffer(list(items), threads=1)
        return [frames[i].tobytes() for i in range(len(frames))]

    def decompress(self, data: bytes, raw_size: int) -> bytes:
        # decompress() allocates what the frame header declares, which a damaged or hostile
        # frame sets to gigabytes: check the declaration first, and stream (bounded by
        # raw_size + 1) a frame that declares nothing.
        try:
            declared = zstandard.frame_content_size(data)
            if declared > raw_size:
                raise CorruptObjectError(
                    f"zstd frame declares {declared} bytes, more than the {raw_size} expected"
                )
            decoder = self._contexts()[1]
            if declared >= 0:
                return decoder.decompress(data, max_output_size=max(raw_size, 1))
            out = decoder.stream_reader(data, read_across_frames=False).read(raw_size + 1)
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(f"zstd frame cannot be decoded: {exc}") from exc
        if len(out) > raw_size:
            raise CorruptObjectError(f"zstd frame decodes to more than {raw_size} bytes")
        return out


class GzipCompressor:
    """DEFLATE (zlib framing) for interoperability where zstd is unwelcome."""

    name = "gzip"
    code = 2

    def __init__(self, level: int | None = None) -> None:
        self.level = 6 if level is None else level
        if not 0 <= self.level <= 9:
            raise ValueError(f"gzip level must be between 0 and 9, not {self.level}")

    def compress(self, data: bytes) -> bytes:
        return zlib.compress(data, self.level)

    def decompress(self, data: bytes, raw_size: int) -> bytes:
        try:
            decoder = zlib.decompressobj()
            out = decoder.decompress(data, raw_size + 1)  # at most one byte past the bound
        except zlib.error as exc:
            raise CorruptObjectError(f"gzip frame cannot be decoded: {exc}") from exc
        return _bounded(out, raw_size, decoder.eof, "gzip")


class LzmaCompressor:
    """LZMA/XZ: slowest, smallest; for archives written once and rarely read."""

    name = "lzma"
    code = 3

    def __init__(self, level: int | None = None) -> None:
        self.level = 6 if level is None else level
        if not 0 <= self.level <= 9:
            raise ValueError(f"lzma level must be between 0 and 9, not {self.level}")

    def compress(self, data: bytes) -> bytes:
        return lzma.compress(data, preset=self.level)

    def decompress(self, data: bytes, raw_size: int) -> bytes:
        try:
            decoder = lzma.LZMADecompressor()
            out = decoder.decompress(data, raw_size + 1)  # at most one byte past the bound
        except lzma.LZMAError as exc:
            raise CorruptObjectError(f"lzma frame cannot be decoded: {exc}") from exc
        return _bounded(out, raw_size, decoder.eof, "lzma")


def _bounded(out: bytes, raw_size: int, finished: bool, name: str) -> bytes:
    """What a streaming decoder produced, refused if it is longer than the frame declared or the
    stream did not end (truncated); the decoder never produced more than ``raw_size + 1``."""
    if len(out) > raw_size:
        raise CorruptObjectError(f"{name} frame decodes to more than its declared {raw_size} bytes")
    if not finished:
        raise CorruptObjectError(f"{name} frame is truncated")
    return out


def make_none(level: int | None = None) -> NoCompressor:
    return NoCompressor()
