"""Reading one file of a large snapshot on S3 moves only that file's bytes, then none at all.

A 501 MiB snapshot (500 compressible files of 1 MiB, each different, plus one 1 MiB file of
random bytes) is backed up straight into a repository on the moto S3 server. A reader behind a
counting reverse proxy reads the random file: at most 4 MiB cross the wire (counted both at the
proxy and as the bytes the backend's ``read`` returns). A second reader on the same cache
directory reads it again without a single request for an object.
"""

from __future__ import annotations

import functools
import io
import os
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stcore
from stcore.interfaces import SourceEntry
from stcore.repository import Repository
from testsupport.fault_proxy import CountingProxy
from testsupport.s3_server import MotoServer

MiB = 1024 * 1024
BULK_FILES = 500
TARGET = "target.bin"
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class GeneratedSource:
    """``bulk-NNNN.bin``: 1 MiB each of a per-file random 4 KiB block repeated (zstd shrinks it
    about 200 times, no two files share a chunk), then ``target.bin``: 1 MiB of random bytes."""

    type_name = "files"

    def __init__(self, name: str, target: bytes) -> None:
        self.name = name
        self.target = target

    def describe(self) -> dict[str, Any]:
        return {"generated": BULK_FILES}

    @staticmethod
    def _bulk(index: int) -> io.BytesIO:
        return io.BytesIO(random.Random(index).randbytes(4096) * (MiB // 4096))

    def scan(self, report_error: Any) -> Iterator[SourceEntry]:
        for index in range(BULK_FILES):
            yield SourceEntry(
                path=(f"bulk-{index:04d}.bin",),
                kind="file",
                size=MiB,
                mtime_ns=1_700_000_000_000_000_000,
                opener=functools.partial(self._bulk, index),
            )
        yield SourceEntry(
            path=(TARGET,),
            kind="file",
            size=len(self.target),
            mtime_ns=1_700_000_000_000_000_000,
            opener=functools.partial(io.BytesIO, self.target),
        )

    def close(self) -> None:
        pass


def _count_backend_reads(repo: Repository) -> dict[str, Any]:
    """Wrap the backend's ``read``: how many calls, which keys, how many bytes they returned."""
    counts: dict[str, Any] = {"calls": 0, "bytes": 0, "keys": []}
    original = repo.backend.read

    def read(key: str, offset: int = 0, length: int | None = None) -> bytes:
        data = original(key, offset, length)
        counts["calls"] += 1
        counts["bytes"] += len(data)
        counts["keys"].append(key)
        return data

    repo.backend.read = read  # type: ignore[method-assign]
    return counts


def _object_gets(requests: list[tuple[str, str, str]]) -> list[str]:
    """The paths of GETs that fetch an object (not a listing: those carry ``list-type``)."""
    return [
        path for method, path, query in requests if method == "GET" and "list-type" not in query
    ]


@pytest.fixture
def s3_env(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint_url)
    for key, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(key, value)


def test_one_file_of_a_500_mib_snapshot_costs_its_bytes_then_nothing(
    moto: MotoServer, s3_env: None, tmp_path: Path
) -> None:
    started = time.monotonic()
    url = f"s3://bucket-{uuid.uuid4().hex[:12]}/repo"
    target = os.urandom(MiB)
    writer = stcore.init_repository(url, create=True, cache_root=tmp_path / "writer-cache")
    result = writer.backup([GeneratedSource("bulk", target)])
    data_blobs = [e for e in writer.index.values() if e.blob_type == "data"]
    writer.close()
    backed_up = time.monotonic()
    manifest = result.manifest
    assert manifest.size == BULK_FILES * MiB + MiB  # 501 MiB of snapshot
    assert manifest.sources["bulk"].files == BULK_FILES + 1
    assert manifest.added_bytes < 40 * MiB  # compressible, so the upload stayed small
    assert len(data_blobs) >= BULK_FILES + 1  # ...but not dedupable: every file is stored
    assert sum(e.raw_length for e in data_blobs) >= BULK_FILES * MiB

    cache_root = tmp_path / "reader-cache"
    with CountingProxy(moto.endpoint_url) as proxy:
        options = {"endpoint_url": proxy.endpoint_url}

        # first reader: a cold cache, everything it needs comes over the wire
        repo = stcore.open_repository(url, options=options, cache_root=cache_root)
        assert repo.object_cache is not None  # remote repositories are cached by default
        backend = _count_backend_reads(repo)
        view = repo.snapshot("latest").sources["bulk"]
        assert view.info(TARGET).size == MiB
        with view.open(TARGET) as handle:
            assert handle.read() == target
        repo.close()
        proxy.wait_idle()
        first_bytes, first_requests = proxy.response_bytes, list(proxy.requests)
        first_backend = backend["bytes"]
        assert first_bytes <= 4 * MiB, f"{first_bytes} bytes crossed the proxy"
        assert backend["bytes"] <= 4 * MiB, f"the backend returned {backend['bytes']} bytes"
        assert first_bytes >= backend["bytes"] >= MiB  # the random MiB itself had to come over
        assert len(first_requests) < 20, first_requests

        # second reader, same cache directory (a new process would do the same)
        proxy.reset()
        again = stcore.open_repository(url, options=options, cache_root=cache_root)
        assert again.cache_dir == cache_root / again.cache_dir.name
        view = again.snapshot("latest").sources["bulk"]
        again.index  # noqa: B018 - opening: the index listing (its objects come from the cache)
        proxy.wait_idle()
        opening = list(proxy.requests)
        proxy.reset()
        backend = _count_backend_reads(again)
        with view.open(TARGET) as handle:
            handle.seek(MiB // 2)
            assert handle.read(1000) == target[MiB // 2 : MiB // 2 + 1000]
            handle.seek(0)
            assert handle.read() == target
        assert view.read_bytes(TARGET) == target
        proxy.wait_idle()
        second_requests = list(proxy.requests)
        second_bytes = proxy.response_bytes
        again.close()
    # the read itself: not a single request
    assert second_requests == [] and second_bytes == 0
    assert backend["calls"] == 0
    # opening the second reader only listed and read the config: no manifest, index, tree or pack
    assert _object_gets(opening) == [f"/{url.removeprefix('s3://')}/config"], opening
    elapsed = time.monotonic() - started
    print(
        f"\nbackup of {manifest.size / MiB:.0f} MiB: {backed_up - started:.1f} s, "
        f"{manifest.added_bytes / MiB:.2f} MiB uploaded; first read: {first_bytes} bytes at "
        f"the proxy ({len(first_requests)} requests), {first_backend} returned by the backend; "
        f"second read: "
        f"{len(second_requests)} requests, {second_bytes} bytes; opening: {len(opening)} "
        f"requests; total {elapsed:.1f} s"
    )
    assert elapsed < 60
