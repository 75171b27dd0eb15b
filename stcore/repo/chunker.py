"""Chunking: content-defined for ordinary bytes, page-aligned for paged files such as SQLite.

Content-defined chunking uses FastCDC (2020) from pyfastcdc, which cuts without holding the GIL:
an edit in the middle of a large file moves only the chunk boundaries around it, so the rest of
the file still dedupes. Files smaller than the minimum chunk size are one chunk without running
the cutter at all.

Paged files are different. A SQLite database changes in place, page by page, and never shifts
its bytes; updating 1% of its rows rewrites about a seventh of its pages, spread evenly across the
file, so every 1 MiB content-defined chunk changes and the whole database would be stored again.
Cutting such files into fixed runs of pages (``page_run_size``, 4 KiB by default: one page of a
default database) stores only the pages that changed. A source may say a file is paged
(``SourceEntry.page_size``); otherwise a file that starts with the SQLite header and whose size is
a whole number of its pages is recognised as one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import attrs
from pyfastcdc import FastCDC

from stcore.streams import sqlite_page_size

ALGORITHM = "fastcdc2020"
#: bytes read at a time when cutting page runs
_READ_SIZE = 1024 * 1024


@attrs.frozen(kw_only=True)
class ChunkerParams:
    """Recorded in the repository config so every writer cuts the same way."""

    min_size: int = 256 * 1024
    avg_size: int = 1024 * 1024
    max_size: int = 4 * 1024 * 1024
    seed: int = 0
    #: chunk size for paged files, rounded up to a whole number of pages
    page_run_size: int = 4096

    def to_json(self) -> dict[str, Any]:
        return {"algorithm": ALGORITHM, **attrs.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChunkerParams:
        algorithm = data.get("algorithm", ALGORITHM)
        if algorithm != ALGORITHM:
            raise ValueError(f"unknown chunker algorithm {algorithm!r}")
        return cls(
            min_size=int(data["min_size"]),
            avg_size=int(data["avg_size"]),
            max_size=int(data["max_size"]),
            seed=int(data.get("seed", 0)),
            page_run_size=int(data.get("page_run_size", 4096)),
        )


class Chunker:
    """Splits byte streams into chunks; see the module docstring for how."""

    def __init__(self, params: ChunkerParams) -> None:
        self.params = params
        self._cdc = FastCDC(
            params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            seed=params.seed,
        )

    def chunks(
        self, stream: BinaryIO, size_hint: int | None = None, page_size: int | None = None
    ) -> Iterator[bytes]:
        """Yield the chunks of ``stream`` in order; their concatenation is the stream's bytes.

        ``page_size`` says the stream is paged; when it is None, a SQLite header is looked for.
        """
        return self.cut(stream, size_hint, page_size)[1]

    def cut(
        self, stream: BinaryIO, size_hint: int | None = None, page_size: int | None = None
    ) -> tuple[bool, Iterator[bytes]]:
        """:meth:`chunks`, and whether they are page runs (a paged file's, cut at pages)."""
        if size_hint is not None and size_hint <= self.params.min_size:
            return False, self.chunk_bytes(stream.read())  # it may have grown since the hint
        if page_size is None:
            page_size = self._sniff_page_size(stream, size_hint)
        if page_size is not None:
            return True, self._page_runs(stream, self.run_size(page_size))
        return False, self._cut_stream(stream)

    def _cut_stream(self, stream: BinaryIO) -> Iterator[bytes]:
        # cut_stream's views are only valid until the next chunk, so each is copied out.
        for chunk in self._cdc.cut_stream(stream):
            yield bytes(chunk.data)

    def run_size(self, page_size: int) -> int:
        """The paged-file chunk size: ``page_run_size`` rounded up to whole pages."""
        pages = max(1, -(-self.params.page_run_size // page_size))
        return pages * page_size

    @staticmethod
    def _sniff_page_size(stream: BinaryIO, size_hint: int | None) -> int | None:
        peek = getattr(stream, "peek", None)
        if peek is None:
            return None  # cannot look ahead without consuming: treat as ordinary bytes
        try:
            header = peek(100)[:100]
        except (OSError, ValueError):
            return None
        return sqlite_page_size(header, size_hint)

    @staticmethod
    def _page_runs(stream: BinaryIO, run: int) -> Iterator[bytes]:
        block = max(run, _READ_SIZE - _READ_SIZE % run)
        while True:
            data = stream.read(block)
            if not data:
                return
            # A short read from an unusual stream must not shift later runs off page boundaries.
            while len(data) % run and (more := stream.read(block - len(data))):
                data += more
            if len(data) == run:
                yield data
                continue
            view = memoryview(data)
            for offset in range(0, len(data), run):
                yield bytes(view[offset : offset + run])

    def chunk_bytes(self, data: bytes) -> Iterator[bytes]:
        if len(data) <= self.params.min_size:
            if data:
                yield data
            return
        for chunk in self._cdc.cut_buf(data):
            yield bytes(chunk.data)
