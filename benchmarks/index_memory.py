"""The in-memory index's cost per blob: bytes held, and the time of a lookup and of an add.

    python benchmarks/index_memory.py [--blobs 1000000] [--repeat 3]

Fills a ``BlobIndex`` with random 32-byte ids (as BLAKE3 ids are) in one pack per 2,000 blobs,
then reports, as medians of ``--repeat`` runs:

- bytes per blob: what ``tracemalloc`` saw allocated for the filled index (ids, columns, table,
  pack ids), divided by the number of blobs; the issue's target is at most 100;
- the same for a plain ``dict`` from id to row number, the structure it replaced, as the peer;
- nanoseconds per lookup of a present id, of an absent one, and per add, for both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from array import array
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stcore.repo.index import BlobIndex


def _fill_index(ids: list[bytes], packs: list[bytes]) -> BlobIndex:
    index = BlobIndex()
    index.reserve(len(ids))  # as loading the index does: it knows each object's row count
    add = index.add_fields
    for n, blob_id in enumerate(ids):
        add(blob_id, 0, packs[n // 2000], n, 1000, 2000)
    return index


def _measure_index(ids: list[bytes]) -> tuple[float, float, float, float]:
    packs = [os.urandom(32) for _ in range(len(ids) // 2000 + 1)]
    tracemalloc.start()  # slows every allocation: the time is taken apart, below
    kept = _fill_index(ids, packs)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    started = time.perf_counter()
    index = _fill_index(ids, packs)
    added = time.perf_counter() - started
    present = _lookups(index, ids)
    absent = _lookups(index, [os.urandom(32) for _ in range(len(ids) // 10)])
    return held / len(ids), added / len(ids) * 1e9, present, absent


def _fill_dict(ids: list[bytes]) -> dict[bytes, int]:
    rows: dict[bytes, int] = {}
    columns = [array("I") for _ in range(4)] + [array("B")]
    for n, blob_id in enumerate(ids):
        rows[blob_id] = n
        for column in columns:
            column.append(0)
    return rows


def _measure_dict(ids: list[bytes]) -> tuple[float, float, float, float]:
    tracemalloc.start()
    kept = _fill_dict(ids)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    started = time.perf_counter()
    rows = _fill_dict(ids)
    added = time.perf_counter() - started
    present = _lookups(rows, ids)
    absent = _lookups(rows, [os.urandom(32) for _ in range(len(ids) // 10)])
    # the ids themselves are the caller's in this loop; the dict keeps them alive too
    per_blob = (held + sys.getsizeof(ids[0]) * len(ids)) / len(ids)
    return per_blob, added / len(ids) * 1e9, present, absent


def _lookups(table: object, probe: list[bytes]) -> float:
    started = time.perf_counter()
    for blob_id in probe:
        blob_id in table  # noqa: B015
    return (time.perf_counter() - started) / len(probe) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}")
    results: dict[str, list[tuple[float, float, float, float]]] = {"BlobIndex": [], "dict": []}
    for _ in range(args.repeat):
        ids = [os.urandom(32) for _ in range(args.blobs)]
        results["BlobIndex"].append(_measure_index(ids))
        results["dict"].append(_measure_dict(ids))
    print(f"{args.blobs:,} blobs, medians of {args.repeat} runs\n")
    print("| structure | bytes/blob | add ns | lookup ns (present) | lookup ns (absent) |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        cells = [statistics.median(run[i] for run in runs) for i in range(4)]
        print(f"| {name} | {cells[0]:.1f} | {cells[1]:.0f} | {cells[2]:.0f} | {cells[3]:.0f} |")


if __name__ == "__main__":
    main()
