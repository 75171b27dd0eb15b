"""polars reads backed-up files through ``stcore://``, by the routes docs/ai-access.md documents.

polars' native readers handle the cloud protocols they know themselves and take any other URL
for a local path, so ``pl.read_parquet("stcore://...")`` never reaches fsspec (the first test
pins that). What works: a file object from fsspec (``read_parquet``, ``read_ndjson``: the whole
file is read), and, for some columns only, pyarrow reading through the ``stcore`` filesystem
(``read_parquet(..., use_pyarrow=True)``, ``pl.from_arrow`` of a pyarrow table or dataset,
``pl.scan_pyarrow_dataset``), which fetches only the chunks holding those columns.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from functools import partialmethod
from pathlib import Path

import fsspec
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from st_local.backend import LocalBackend

import stcore
from stcore.access.fs import StcoreFileSystem
from stcore.repo.chunker import ChunkerParams
from stcore.repo.reader import BlobReader

ROWS = 40_000
ROW_GROUPS = 4
EVENTS = [{"n": i, "agent": f"agent-{i % 3}", "score": i * 0.25} for i in range(300)]
TABLE = "stcore://latest/tables/data.parquet"


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    """A Parquet table (a wide text column beside two numeric ones) and a JSON-lines log."""
    rng = random.Random(15)
    tables = tmp_path / "data" / "tables"
    tables.mkdir(parents=True)
    table = pa.table(
        {
            "id": list(range(ROWS)),
            "x": [rng.random() for _ in range(ROWS)],
            "text": [f"{rng.getrandbits(128):032x}-{i}" for i in range(ROWS)],
        }
    )
    pq.write_table(table, tables / "data.parquet", row_group_size=ROWS // ROW_GROUPS)
    logs = tmp_path / "data" / "logs"
    logs.mkdir()
    (logs / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    return {"tables": tables, "logs": logs}


@pytest.fixture
def location(tmp_path: Path, data: dict[str, Path]) -> str:
    """A local repository of one snapshot of ``data``, cut in small chunks (16 KiB on average)
    so that one column of the table spans different chunks from the others."""
    small = ChunkerParams(min_size=4 * 1024, avg_size=16 * 1024, max_size=64 * 1024)
    repository = stcore.init_repository(str(tmp_path / "repo"), chunker=small)
    try:
        result = repository.backup(
            [
                stcore.make_source("tables", "files", {"path": str(data["tables"])}),
                stcore.make_source("logs", "files", {"path": str(data["logs"])}),
            ]
        )
        assert not result.partial
    finally:
        repository.close()
    return repository.location


@pytest.fixture
def fs(location: str) -> Iterator[StcoreFileSystem]:
    filesystem = StcoreFileSystem(repo=location, skip_instance_cache=True, cache=False)
    yield filesystem
    filesystem.repository.close()


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the pack reads (``data/...``) made from now on, by any filesystem instance.

    Blob reads are not coalesced across gaps here: by default neighbours up to a mebibyte apart
    in a pack are read with one request, which in this small repository (one pack) would
    count chunks that were not asked for, and differently from run to run (the order of blobs
    in a pack is not fixed).
    """
    sizes: list[int] = []
    read = LocalBackend.read

    def counting_read(
        self: LocalBackend, key: str, offset: int = 0, length: int | None = None
    ) -> bytes:
        body = read(self, key, offset, length)
        if key.startswith("data/"):
            sizes.append(len(body))
        return body

    monkeypatch.setattr(LocalBackend, "read", counting_read)
    monkeypatch.setattr(BlobReader, "__init__", partialmethod(BlobReader.__init__, max_gap=0))
    return sizes


def _stored_bytes_of_chunks_under(location: str, ranges: list[tuple[int, int]]) -> int:
    """The stored size of the chunks of the backed-up table that overlap ``ranges`` of it."""
    repository = stcore.open_repository(location)
    try:
        root = repository.snapshot("latest").manifest.sources["tables"].root
        node = next(n for n in repository.read_tree(root) if n.name == "data.parquet")
        total = start = 0
        for blob in node.content:
            entry = repository.index.get(blob)
            assert entry is not None
            end = start + entry.raw_length
            if any(lo < end and start < hi for lo, hi in ranges):
                total += entry.stored_length
            start = end
        return total
    finally:
        repository.close()


def test_the_url_route_does_not_reach_fsspec(location: str) -> None:
    # polars takes a URL of a protocol it does not know for a local path: documented in
    # docs/ai-access.md ("Polars"); if this starts to pass, the docs can say so.
    with pytest.raises(FileNotFoundError, match=r"No such file or directory.*stcore://latest"):
        pl.read_parquet(TABLE, storage_options={"repo": location})
    with pytest.raises(FileNotFoundError, match="stcore://latest"):
        pl.scan_parquet(TABLE, storage_options={"repo": location}).collect()


def test_polars_reads_parquet_and_json_lines_from_an_fsspec_file(
    location: str, data: dict[str, Path]
) -> None:
    original = pl.read_parquet(data["tables"] / "data.parquet")
    with fsspec.open(TABLE, repo=location) as f:
        assert_frame_equal(pl.read_parquet(f), original)
    with fsspec.open("stcore://latest/logs/events.jsonl", repo=location) as f:
        events = pl.read_ndjson(f)
    assert events.to_dicts() == EVENTS
    assert events["score"].sum() == pytest.approx(sum(e["score"] for e in EVENTS))


def _reads(fs: StcoreFileSystem, location: str) -> dict[str, Callable[[list[str]], pl.DataFrame]]:
    """Each route that reads only some columns, as ``columns -> DataFrame``."""
    path = "latest/tables/data.parquet"
    return {
        "read_parquet(use_pyarrow=True)": lambda columns: pl.read_parquet(
            TABLE,
            columns=columns,
            use_pyarrow=True,
            storage_options={"repo": location, "cache": False},
        ),
        "from_arrow(pq.read_table)": lambda columns: pl.from_arrow(
            pq.read_table(path, filesystem=fs, columns=columns)
        ),
        "from_arrow(dataset.to_table)": lambda columns: pl.from_arrow(
            ds.dataset(path, filesystem=fs, format="parquet").to_table(columns=columns)
        ),
        "scan_pyarrow_dataset": lambda columns: (
            pl.scan_pyarrow_dataset(ds.dataset(path, filesystem=fs, format="parquet"))
            .select(columns)
            .collect()
        ),
    }


@pytest.mark.parametrize(
    "route",
    [
        "read_parquet(use_pyarrow=True)",
        "from_arrow(pq.read_table)",
        "from_arrow(dataset.to_table)",
        "scan_pyarrow_dataset",
    ],
)
def test_one_column_fetches_only_the_chunks_that_hold_it(
    route: str,
    fs: StcoreFileSystem,
    location: str,
    data: dict[str, Path],
    fetched: list[int],
) -> None:
    original = pl.read_parquet(data["tables"] / "data.parquet")
    read = _reads(fs, location)[route]

    everything = read(["id", "x", "text"])
    assert_frame_equal(everything, original)
    all_bytes = sum(fetched)
    fetched.clear()

    one = read(["x"])
    assert one.columns == ["x"] and one["x"].sum() == pytest.approx(original["x"].sum())
    one_bytes = sum(fetched)

    # What a reader of x needs: x's column chunk in each row group, and the footer (pyarrow
    # reads the last 64 KiB of the file first). The chunks (16 KiB on average) overlapping
    # those bytes are what may be fetched, and nothing else.
    parquet = data["tables"] / "data.parquet"
    size = parquet.stat().st_size
    ranges = [(size - 64 * 1024, size)]
    metadata = pq.ParquetFile(parquet).metadata
    for group in range(metadata.num_row_groups):
        column = metadata.row_group(group).column(1)
        assert column.path_in_schema == "x"
        first = column.dictionary_page_offset if column.has_dictionary_page else None
        start = first if first is not None else column.data_page_offset
        ranges.append((start, start + column.total_compressed_size))
    needed = _stored_bytes_of_chunks_under(location, ranges)
    assert needed < all_bytes / 3  # x is a small part of the table
    # (the dataset routes open the file twice, reading its footer twice)
    assert needed <= one_bytes <= 1.2 * needed, (one_bytes, needed, all_bytes)
