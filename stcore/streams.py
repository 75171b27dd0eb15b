"""Stream helpers shared by backend plugins, the chunker and the sources."""

from __future__ import annotations

import io
from typing import Any

#: the first 16 bytes of every SQLite 3 database file
SQLITE_MAGIC = b"SQLite format 3\x00"


class MemoryviewReader(io.RawIOBase):
    """A seekable, read-only file object over a memoryview, without copying it.

    SDK upload calls want a file object they can size, read in blocks and rewind on a retry;
    handing them a slice of a pack through this keeps memory at one socket buffer instead of a
    copy of the part.
    """

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view.cast("B") if view.format != "B" else view
        self._pos = 0

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        total = len(self._view)
        end = total if size is None or size < 0 else min(total, self._pos + size)
        chunk = bytes(self._view[self._pos : end])
        self._pos = max(self._pos, end)
        return chunk

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        count = max(0, min(len(target), len(self._view) - self._pos))
        target[:count] = self._view[self._pos : self._pos + count]
        self._pos += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def sqlite_page_size(header: bytes, size: int | None = None) -> int | None:
    """The page size a SQLite database header declares, or None if ``header`` is not one.

    With ``size`` (the file's length), a file that is not a whole number of pages is refused:
    it is being written, or it only looks like a database.
    """
    if len(header) < 18 or not header.startswith(SQLITE_MAGIC):
        return None
    page_size = int.from_bytes(header[16:18], "big")
    if page_size == 1:
        page_size = 65536
    if page_size < 512 or page_size & (page_size - 1):
        return None
    if size is not None and size % page_size:
        return None
    return page_size
