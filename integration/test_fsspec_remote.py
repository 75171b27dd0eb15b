"""pandas reads a JSON-lines log and a Parquet file straight from a snapshot on a remote.

The repository lives on the S3 emulator (moto, over real HTTP on 127.0.0.1); nothing is restored
to disk first: ``stcore://`` fetches the trees and blobs it needs through the S3 backend.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import stcore
from stcore.access.fs import StcoreFileSystem
from testsupport.s3_server import MotoServer

EVENTS = [{"n": i, "agent": f"agent-{i % 3}"} for i in range(200)]


@pytest.fixture
def s3_repo(moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A repository on the emulator holding one snapshot of a log directory and a table."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    url = f"s3://bucket-{uuid.uuid4().hex[:12]}/repo"

    logs = tmp_path / "data" / "logs"
    logs.mkdir(parents=True)
    (logs / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    tables = tmp_path / "data" / "tables"
    tables.mkdir()
    table = pa.table({"id": list(range(500)), "score": [i * 0.5 for i in range(500)]})
    pq.write_table(table, tables / "scores.parquet", row_group_size=100)

    repository = stcore.init_repository(url, create=True)
    try:
        result = repository.backup(
            [
                stcore.make_source("logs", "files", {"path": str(logs)}),
                stcore.make_source("tables", "files", {"path": str(tables)}),
            ]
        )
        assert not result.partial
    finally:
        repository.close()
    return url


def test_pandas_reads_jsonl_and_parquet_from_a_snapshot_on_s3(s3_repo: str) -> None:
    options = {"repo": s3_repo}
    events = pd.read_json("stcore://latest/logs/events.jsonl", lines=True, storage_options=options)
    assert events.to_dict("records") == EVENTS

    scores = pd.read_parquet("stcore://latest/tables/scores.parquet", storage_options=options)
    assert len(scores) == 500 and scores["score"].sum() == pytest.approx(sum(range(500)) * 0.5)

    fs = fsspec.filesystem("stcore", repo=s3_repo)
    assert isinstance(fs, StcoreFileSystem)
    assert fs.repository.location.startswith(s3_repo)  # the remote itself, not a local copy
    assert fs.glob("stcore://latest/**/*.parquet") == ["latest/tables/scores.parquet"]
    whole = fs.cat_file("latest/tables/scores.parquet")
    assert whole[:4] == b"PAR1" and len(whole) == fs.size("latest/tables/scores.parquet")
    assert fs.cat_file("latest/tables/scores.parquet", start=-4) == b"PAR1"
    assert pq.read_table("latest/tables/scores.parquet", filesystem=fs).num_rows == 500
    with pytest.raises(FileNotFoundError, match=r"latest/logs/missing\.jsonl"):
        fs.open("latest/logs/missing.jsonl")
    with pytest.raises(PermissionError, match="read-only"):
        fs.open("latest/logs/events.jsonl", "wb")
