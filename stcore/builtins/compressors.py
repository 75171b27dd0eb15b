"""Built-in compressors: zstd (the default), gzip, lzma and none.

Each has a fixed frame code (written before every compressed frame). Decoding failures become
:class:`~stcore.errors.CorruptObjectError` so a damaged blob is reported, not crashed on.
"""

from __future__ import annotations

import lzma
import threading
import zlib

import zstandard

from stcore.errors import CorruptObjectError

ZSTD_DEFAULT_LEVEL = 3


class NoCompressor:
    name = "none"
    code = 0

    def compress(self, data: bytes) -> bytes:
        return bytes(data)

    def decompress(self, data: bytes, raw_size: int) -> bytes:
        return bytes(data)


class ZstdCompressor:
    """zstd at a configurable level; contexts are per thread (they are not thread-safe)."""

    name = "zstd"
    code = 1

    def __init__(self, level: int | None = None) -> None:
        self.level = ZSTD_DEFAULT_LEVEL if level is None else level
        if not -7 <= self.level <= 22:
            raise ValueError(f"zstd level must be between -7 and 22, not {self.level}")
        self._local = threading.local()

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

    def decompress(self, data: bytes, raw_size: int) -> bytes:
        try:
            return self._contexts()[1].decompress(data, max_output_size=max(raw_size, 1))
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(f"zstd frame cannot be decoded: {exc}") from exc


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
            return zlib.decompress(data, bufsize=max(raw_size, 1))
        except zlib.error as exc:
            raise CorruptObjectError(f"gzip frame cannot be decoded: {exc}") from exc


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
            return lzma.decompress(data)
        except lzma.LZMAError as exc:
            raise CorruptObjectError(f"lzma frame cannot be decoded: {exc}") from exc


def make_none(level: int | None = None) -> NoCompressor:
    return NoCompressor()
