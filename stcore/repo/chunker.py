"""Content-defined chunking: FastCDC (2020) from pyfastcdc, which cuts without holding the GIL.

An edit in the middle of a large file moves only the chunk boundaries around it, so the rest of
the file still dedupes. Files smaller than the minimum chunk size are one chunk without running
the cutter at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

import attrs
from pyfastcdc import FastCDC

ALGORITHM = "fastcdc2020"


@attrs.frozen(kw_only=True)
class ChunkerParams:
    """Recorded in the repository config so every writer cuts the same way."""

    min_size: int = 256 * 1024
    avg_size: int = 1024 * 1024
    max_size: int = 4 * 1024 * 1024
    seed: int = 0

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
        )


class Chunker:
    """Splits byte streams into content-defined chunks."""

    def __init__(self, params: ChunkerParams) -> None:
        self.params = params
        self._cdc = FastCDC(
            params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            seed=params.seed,
        )

    def chunks(self, stream: BinaryIO, size_hint: int | None = None) -> Iterator[bytes]:
        """Yield the chunks of ``stream`` in order; their concatenation is the stream's bytes."""
        if size_hint is not None and size_hint <= self.params.min_size:
            data = stream.read()
            if len(data) <= self.params.min_size:
                if data:
                    yield data
                return
            yield from (bytes(c.data) for c in self._cdc.cut_buf(data))
            return
        # cut_stream's views are only valid until the next chunk, so each is copied out.
        for chunk in self._cdc.cut_stream(stream):
            yield bytes(chunk.data)

    def chunk_bytes(self, data: bytes) -> Iterator[bytes]:
        if len(data) <= self.params.min_size:
            if data:
                yield data
            return
        for chunk in self._cdc.cut_buf(data):
            yield bytes(chunk.data)
