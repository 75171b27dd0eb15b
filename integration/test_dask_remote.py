"""Dask distributed reads a repository on S3 through ``stcore://``, in worker processes.

A snapshot of a few Parquet and JSON-lines files is backed up into a repository on the moto S3
server. A ``LocalCluster`` with two worker *processes* reads them with ``dd.read_parquet`` and
``dd.read_json``: the client builds the graph (globbing and reading footers through its own
filesystem), the filesystem and the open-file descriptions are pickled into the tasks, and each
worker unpickles them and opens the repository on S3 itself. The workers are spawned with the
environment set here (S3 endpoint and credentials, ``STCORE_CACHE_DIR`` and ``TMPDIR`` inside
the test's folder), which is why it is set before the cluster starts.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

import stcore
from testsupport.s3_server import MotoServer

PARTS = 3
ROWS = 2_000
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def make_data(root: Path) -> Path:
    """``tables/part-N.parquet`` and ``logs/events-N.jsonl`` under ``root``."""
    (root / "tables").mkdir(parents=True)
    (root / "logs").mkdir()
    for part in range(PARTS):
        ids = range(part * ROWS, (part + 1) * ROWS)
        table = pa.table(
            {
                "id": list(ids),
                "agent": [f"agent-{i % 5}" for i in ids],
                "score": [i * 0.25 for i in ids],
            }
        )
        pq.write_table(table, root / "tables" / f"part-{part}.parquet", row_group_size=500)
        events = [{"n": i, "part": part, "ok": i % 3 != 0} for i in range(100 * (part + 1))]
        (root / "logs" / f"events-{part}.jsonl").write_text(
            "".join(json.dumps(e) + "\n" for e in events)
        )
    return root


@pytest.fixture
def s3_repo(moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A repository on the emulator holding one snapshot of the ``warehouse`` source.

    The environment is set with ``monkeypatch`` (and so is inherited by the worker processes the
    cluster fixture spawns afterwards); the integration conftest already points
    ``STCORE_CACHE_DIR`` and ``HOME`` into ``tmp_path``.
    """
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint_url)
    for key, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    url = f"s3://bucket-{uuid.uuid4().hex[:12]}/repo"
    data = make_data(tmp_path / "warehouse")
    repository = stcore.init_repository(url, create=True)
    try:
        result = repository.backup([stcore.make_source("warehouse", "files", {"path": str(data)})])
        assert not result.partial
    finally:
        repository.close()
    return url


@pytest.fixture
def client(s3_repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """Two worker processes (spawned, so they inherit the environment as it is now), one
    thread each; their scratch space and temporary files stay inside ``tmp_path``. Closed
    when the test ends, whether it passed or not."""
    scratch = tmp_path / "dask-tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # the workers' tempfile module
    monkeypatch.setenv("DASK_TEMPORARY_DIRECTORY", str(scratch))
    with dask.config.set({"temporary-directory": str(scratch)}):
        cluster = LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            local_directory=str(tmp_path / "dask-workers"),
        )
        try:
            with Client(cluster) as connected:
                yield connected
        finally:
            cluster.close()


def _tell_and_read_rest(handle: Any) -> tuple[int, int, bytes]:
    """Run on a worker: where an unpickled open file stands, its process, and the rest of it."""
    return handle.tell(), os.getpid(), handle.read()


def _cat_on_worker(fs: Any, path: str) -> tuple[int, bytes]:
    return os.getpid(), fs.cat_file(path)


@pytest.mark.slow
def test_dask_workers_read_parquet_and_json_lines_from_a_snapshot_on_s3(
    s3_repo: str, client: Client, tmp_path: Path
) -> None:
    options = {"repo": s3_repo}
    here = os.getpid()
    workers = client.run(os.getpid)
    assert len(workers) == 2 and here not in workers.values()
    # the workers were started with this test's environment
    assert set(client.run(lambda: os.environ["STCORE_CACHE_DIR"]).values()) == {
        os.environ["STCORE_CACHE_DIR"]
    }

    local = tmp_path / "warehouse"
    tables = pd.concat(
        [pd.read_parquet(p) for p in sorted((local / "tables").glob("*.parquet"))],
        ignore_index=True,
    )
    events = pd.concat(
        [pd.read_json(p, lines=True) for p in sorted((local / "logs").glob("*.jsonl"))],
        ignore_index=True,
    )

    frame = dd.read_parquet("stcore://latest/warehouse/tables/*.parquet", storage_options=options)
    assert len(frame) == len(tables) == PARTS * ROWS
    assert frame["score"].sum().compute() == pytest.approx(tables["score"].sum())
    assert frame["id"].max().compute() == tables["id"].max()
    per_agent = frame.groupby("agent")["score"].sum().compute()
    assert per_agent.to_dict() == pytest.approx(tables.groupby("agent")["score"].sum().to_dict())

    log = dd.read_json(
        "stcore://latest/warehouse/logs/*.jsonl", lines=True, storage_options=options
    )
    assert log.npartitions == PARTS
    assert len(log) == len(events)
    assert log["n"].sum().compute() == events["n"].sum()
    assert log["ok"].sum().compute() == events["ok"].sum()

    # The reads ran in the worker processes: the pid of the process that read each partition
    # (map_partitions is fused into the task that reads it).
    def with_pid(part: pd.DataFrame) -> pd.DataFrame:
        return part.assign(pid=os.getpid())

    for collection in (frame, log):
        readers = set(collection.map_partitions(with_pid)["pid"].unique().compute())
        assert readers and readers <= set(workers.values()), (readers, workers, here)

    # The filesystem and an open stcore file, pickled to a worker, work there: the worker opens
    # the repository on S3 itself and carries on from where the file stood.
    path = "latest/warehouse/tables/part-1.parquet"
    original = (local / "tables" / "part-1.parquet").read_bytes()
    fs = fsspec.filesystem("stcore", **options)
    pid, body = client.submit(_cat_on_worker, fs, path, pure=False).result()
    assert pid in workers.values() and body == original
    with fs.open(path) as handle:
        handle.seek(100)
        loc, pid, rest = client.submit(_tell_and_read_rest, handle, pure=False).result()
    assert pid in workers.values() and (loc, rest) == (100, original[100:])
