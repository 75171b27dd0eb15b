"""Reading history from a repository in the cloud: issue 15's table, in requests, bytes and time.

    python benchmarks/ai_access.py [--scale 1.0] [--repeat 3] [--work DIR] [--json FILE]
                                   [--cases data,cat,sqlite,parquet,local,analytics]
                                   [--profile DIR]

A deterministic dataset is backed up with the stcore API into two local repositories, which are
then synced to the S3 emulator (moto's server on loopback): the cloud copy every remote case
reads. A counting reverse proxy (``testsupport.fault_proxy.FaultProxy``, injecting nothing) sits
between the readers and moto and counts GET requests (listings included) and response body
bytes. Every measured read runs in a fresh interpreter with a fresh, empty cache directory
(``STCORE_CACHE_DIR``), so "cold cache" means nothing on this machine yet: no object cache, no
catalog. The child reports its phases to this process (``@mark`` lines on its stdout, answered
on its stdin once the proxy is idle), so the requests of opening the repository (config, index,
catalog) are counted apart from the read that is the case.

Cases (scale 1.0):

``data``
    ``.data`` of a ``json`` source holding 3,000 small documents (a directory), cold cache;
    peer: ``json.loads`` of the same 3,000 local files.
``cat``
    ``fs.cat()`` of a list of 1,000 of those documents through the ``stcore://`` filesystem,
    cold cache; peer: reading the same 1,000 local files.
``sqlite``
    ``.connect()`` on an 85 MiB SQLite database (a ``sqlite`` source: 21,806 page blobs), cold
    cache; peer: the same with ``open_repository(..., cache=False)``.
``parquet``
    column ``c3`` of a 139 MiB Parquet file (7 columns, 10 row groups) through ``stcore://`` with
    pyarrow, pandas and duckdb (polars when installed: skipped otherwise, with a note), cold
    cache; compared with the whole content-defined chunks that overlap the column's byte ranges.
``local``
    a local repository, warm (a run first, then a timed one): ``pd.read_parquet`` of all
    columns, of 2 columns, and a raw ``fs.open().read()``; peer: the same on the original file.
``analytics``
    the seed facade's loop ``for b in list_backups(100): get_backup(b["backup_id"],
    from_cloud=True)["data_sources"]["ai_hub"]`` over 100 snapshots of a 1.6 MB JSON document,
    the cloud copy read with a cold cache (the local repository's catalog is warmed first by a
    ``list_backups(1)``, as on the machine that made the backups); peer: ``json.loads`` of the
    same 100 documents from local files.

Times are medians of ``--repeat`` runs, ratios are against the peer measured in the same run.
``--scale`` shrinks every dataset (``--scale 0.05`` is a smoke run of a minute or so).
``--profile DIR`` runs every selected case once more, unmeasured, with its read under
pyinstrument, and writes ``DIR/<case>.txt``.

A child that aborts *after* it reported a correct result (issue 15's exit 134 at interpreter
exit, after a Parquet read through ``stcore://``) does not stop the benchmark: its exit status
is listed under the table, so the bug stays visible. A child that fails before reporting does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# testsupport lives at the top of the checkout. Appended, not prepended: a PYTHONPATH that points
# at another checkout (a worktree of an older commit, for "before" figures) must win for stcore.
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from dataset import WORDS  # noqa: E402 - beside this script, as run.py's dataset.py

MiB = 1024 * 1024
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: variables that would point a child at another repository, remote or endpoint
CLEARED_ENV = (
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_S3_BUCKET",
    "AWS_REGION",
    "AWS_SESSION_TOKEN",
    "STCORE_REPO",
    "STCORE_CONFIG",
    "STCORE_PASSWORD",
    "CLOUD_PROVIDER",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    # Set on some machines; an installed package has its bytecode, and the children must too
    # (testsupport.bytecode), or every child compiles stcore again while it is being timed.
    "PYTHONDONTWRITEBYTECODE",
)
#: the snapshot times: fixed, so ids sort the same way in every run
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PARQUET_COLUMN = "c3"
PARQUET_TWO_COLUMNS = ["c1", "c3"]
ENGINES = ("pyarrow", "pandas", "duckdb", "polars")
CASE_KEYS = ("data", "cat", "sqlite", "parquet", "local", "analytics")


def now() -> float:
    return time.perf_counter()


# --- the dataset ----------------------------------------------------------------------------------


class Sizes:
    """How big everything is at one scale (1.0: the issue's figures)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.documents = max(30, round(3000 * scale))
        self.cat_paths = max(10, round(1000 * scale))
        self.sqlite_rows = max(2000, round(348_000 * scale))  # 21,806 pages of 4 KiB at 1.0
        self.parquet_rows = max(10_000, round(2_430_000 * scale))  # 139 MiB at 1.0
        self.hub_records = max(50, round(4000 * scale))  # ~1.6 MB of JSON at 1.0
        self.hub_snapshots = max(3, round(100 * scale))


def _document(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "id": i,
        "agent": f"agent-{i % 97}",
        "state": rng.choice(WORDS),
        "scores": [round(rng.random(), 5) for _ in range(12)],
        "notes": " ".join(rng.choice(WORDS) for _ in range(30)),
    }


def make_documents(directory: Path, count: int, seed: int = 11) -> None:
    """``count`` small JSON documents (about 0.6 KiB each)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True)
    for i in range(count):
        (directory / f"doc-{i:05d}.json").write_text(json.dumps(_document(rng, i), indent=1))


def make_database(path: Path, rows: int, seed: int = 12) -> int:
    """A SQLite database of ``rows`` rows (4 KiB pages, rollback journal); its page count."""
    import sqlite3

    rng = random.Random(seed)
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA page_size=4096")
        con.execute("PRAGMA journal_mode=DELETE")
        con.execute(
            "CREATE TABLE runs(id INTEGER PRIMARY KEY, agent TEXT, score REAL, payload TEXT)"
        )
        con.executemany(
            "INSERT INTO runs VALUES (?, ?, ?, ?)",
            (
                (i, f"agent-{i % 97}", rng.random(), " ".join(rng.choices(WORDS, k=36)))
                for i in range(rows)
            ),
        )
        con.commit()
        pages: int = con.execute("PRAGMA page_count").fetchone()[0]
    finally:
        con.close()
    return pages


def make_parquet(path: Path, rows: int, seed: int = 13) -> None:
    """7 columns of random numbers and bytes (incompressible), 10 row groups, no dictionaries:
    c3 (float32) is the narrow column read alone."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    table = pa.table(
        {
            "c0": rng.integers(0, 2**62, rows),
            "c1": rng.random(rows),
            "c2": rng.standard_normal(rows),
            "c3": rng.random(rows, dtype=np.float32),
            "c4": rng.integers(0, 2**62, rows),
            "c5": rng.random(rows),
            "c6": pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(16), rows, [None, pa.py_buffer(rng.bytes(16 * rows))]
            ),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=-(-rows // 10), use_dictionary=False)


def hub_versions(records: int, count: int, seed: int = 14) -> Iterator[bytes]:
    """``count`` versions of one JSON document (~400 bytes a record): each rewrites 20 records
    and appends one."""
    rng = random.Random(seed)

    def record(k: int) -> dict[str, Any]:
        return {
            "id": k,
            "agent": f"agent-{k % 97}",
            "state": rng.choice(WORDS),
            "score": round(rng.random(), 6),
            "tags": rng.sample(WORDS, 3),
            "notes": " ".join(rng.choice(WORDS) for _ in range(45)),
        }

    items = [record(k) for k in range(records)]
    for version in range(count):
        if version:
            for k in rng.sample(range(len(items)), 20):
                items[k] = record(k)
            items.append(record(len(items)))
        document = {
            "version": version,
            "updated": (EPOCH + dt.timedelta(hours=version)).isoformat(),
            "records": items,
        }
        yield json.dumps(document).encode()


# --- the counting proxy ---------------------------------------------------------------------------


def counting_proxy(upstream: str) -> Any:
    """A :class:`~testsupport.fault_proxy.CountingProxy` in front of ``upstream`` whose
    ``totals()`` are GET requests (listings included, and apart), other requests and response
    body bytes."""
    from testsupport.fault_proxy import CountingProxy

    class Totals(CountingProxy):
        def totals(self) -> dict[str, int]:
            """What crossed the proxy so far, once no request is in flight."""
            requests, response_bytes = self.counted(timeout=120)
            methods = Counter(method for method, _, _ in requests)
            kinds = Counter(
                _object_kind(path)
                for m, path, query in requests
                if m == "GET" and "list-type" not in query
            )
            return {
                "get": methods["GET"],
                **{f"get:{kind}": n for kind, n in kinds.items()},
                "list": sum(1 for m, _, query in requests if m == "GET" and "list-type" in query),
                "other": sum(n for method, n in methods.items() if method != "GET"),
                "bytes": response_bytes,
            }

    # FaultProxy stops itself after ``lifetime`` seconds; a run at full scale is longer.
    return Totals(upstream, lifetime=12 * 3600, upstream_timeout=120)


_KINDS = ("config", "keys", "index", "snapshots", "data", "locks")


def _object_kind(path: str) -> str:
    """Which kind of repository object a request's path names (``/bucket/prefix/index/...``)."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    return next((part for part in parts if part in _KINDS), "other")


# --- setup ----------------------------------------------------------------------------------------


class Dataset:
    """Everything the cases read: local files, local repositories and their cloud copies."""

    def __init__(self, work: Path, sizes: Sizes) -> None:
        self.work = work
        self.sizes = sizes
        self.data = work / "data"
        self.docs = self.data / "docs"
        self.database = self.data / "state.db"
        self.parquet = self.data / "tables" / "data.parquet"
        self.hub_file = self.data / "hub" / "ai_hub.json"
        self.hub_copies = self.data / "hub-versions"
        self.main_repo = work / "repo-main"
        self.hub_repo = work / "repo-hub"
        self.hub_config = work / "stcore.toml"
        self.main_snapshot = ""
        self.main_url = ""
        self.hub_url = ""
        self.facts: dict[str, Any] = {}

    def generate(self) -> None:
        sizes = self.sizes
        started = now()
        make_documents(self.docs, sizes.documents)
        pages = make_database(self.database, sizes.sqlite_rows)
        try:
            make_parquet(self.parquet, sizes.parquet_rows)
        except ImportError as exc:
            self.facts["parquet_skipped"] = f"pyarrow/numpy missing: {exc}"
        self.hub_copies.mkdir(parents=True)
        self.hub_file.parent.mkdir(parents=True)
        self.facts.update(
            documents=sizes.documents,
            documents_bytes=sum(p.stat().st_size for p in self.docs.iterdir()),
            sqlite_pages=pages,
            sqlite_bytes=self.database.stat().st_size,
            parquet_bytes=self.parquet.stat().st_size if self.parquet.exists() else 0,
            hub_snapshots=sizes.hub_snapshots,
            generate_seconds=round(now() - started, 1),
        )

    def back_up(self, cache_root: Path) -> None:
        import stcore

        started = now()
        main = stcore.init_repository(str(self.main_repo), cache_root=cache_root)
        try:
            sources = [
                stcore.make_source("docs", "json", {"paths": [str(self.docs)]}),
                stcore.make_source("state", "sqlite", {"path": str(self.database)}),
            ]
            if self.parquet.exists():
                sources.append(
                    stcore.make_source("tables", "files", {"path": str(self.parquet.parent)})
                )
            result = main.backup(sources, time=EPOCH)
            assert not result.partial, result.errors
            self.main_snapshot = result.manifest.id
        finally:
            main.close()
        hub = stcore.init_repository(str(self.hub_repo), cache_root=cache_root)
        sizes: list[int] = []
        try:
            versions = hub_versions(self.sizes.hub_records, self.sizes.hub_snapshots)
            for version, body in enumerate(versions):
                self.hub_file.write_bytes(body)
                (self.hub_copies / f"ai_hub-{version:03d}.json").write_bytes(body)
                sizes.append(len(body))
                source = stcore.make_source("ai_hub", "json", {"path": str(self.hub_file)})
                hub.backup([source], time=EPOCH + dt.timedelta(days=1, hours=version))
        finally:
            hub.close()
        self.facts.update(
            hub_document_bytes=round(statistics.mean(sizes)),
            backup_seconds=round(now() - started, 1),
        )

    def sync(self, endpoint: str, bucket: str, cache_root: Path) -> None:
        """Create the bucket and sync both repositories to it (straight to moto, not counted)."""
        import stcore
        from stcore.config import RemoteConfig
        from stcore.repo.store import open_backend

        started = now()
        options = {"endpoint_url": endpoint}
        self.main_url = f"s3://{bucket}/main"
        self.hub_url = f"s3://{bucket}/hub"
        open_backend(
            self.main_url, stcore.make_plugin_manager(), create=True, options=options
        ).close()
        uploaded = 0
        for path, url in ((self.main_repo, self.main_url), (self.hub_repo, self.hub_url)):
            repo = stcore.open_repository(str(path), cache_root=cache_root)
            try:
                result = repo.sync(RemoteConfig(name="cloud", url=url, options=options))
                uploaded += result.bytes_uploaded
            finally:
                repo.close()
        self.hub_config.write_text(
            f'[repository]\nurl = "{self.hub_repo}"\n\n[remotes.cloud]\nurl = "{self.hub_url}"\n'
        )
        self.facts.update(
            uploaded_mib=round(uploaded / MiB, 1), sync_seconds=round(now() - started, 1)
        )

    def parquet_layout(self, cache_root: Path) -> dict[str, Any]:
        """The column's byte ranges, and the content-defined chunks of the file that hold them."""
        import pyarrow.parquet as pq

        import stcore

        metadata = pq.ParquetFile(self.parquet).metadata
        ranges: list[tuple[int, int]] = []
        column_bytes = 0
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for index in range(row_group.num_columns):
                chunk = row_group.column(index)
                if chunk.path_in_schema != PARQUET_COLUMN:
                    continue
                start = chunk.data_page_offset
                if chunk.dictionary_page_offset is not None:
                    start = min(start, chunk.dictionary_page_offset)
                ranges.append((start, start + chunk.total_compressed_size))
                column_bytes += chunk.total_compressed_size
        size = self.parquet.stat().st_size
        with self.parquet.open("rb") as handle:
            handle.seek(size - 8)
            footer_length = int.from_bytes(handle.read(4), "little")
        footer = (size - 8 - footer_length, size)

        repo = stcore.open_repository(str(self.main_repo), cache_root=cache_root)
        try:
            manifest = repo.load_manifest(self.main_snapshot)
            nodes = dict(repo.walk(manifest.sources["tables"].root))
            node = nodes[(self.parquet.name,)]
            chunks: list[tuple[int, int]] = []  # (start, length) of each chunk of the file
            offset = 0
            for blob_id in node.content:
                entry = repo.index.get(blob_id)
                assert entry is not None
                chunks.append((offset, entry.raw_length))
                offset += entry.raw_length
        finally:
            repo.close()
        assert offset == size, (offset, size)

        def covering(wanted: list[tuple[int, int]]) -> int:
            return sum(
                length
                for start, length in chunks
                if any(start < end and begin < start + length for begin, end in wanted)
            )

        return {
            "file_bytes": size,
            "row_groups": metadata.num_row_groups,
            "columns": metadata.num_columns,
            "file_chunks": len(chunks),
            "column_bytes": column_bytes,
            "column_chunk_bytes": covering(ranges),
            "column_and_footer_chunk_bytes": covering([*ranges, footer]),
        }


# --- children: one measured run each --------------------------------------------------------------


class Phases:
    """The child's side: tell the parent where a phase starts (it snapshots the proxy's counts
    once no request is in flight) and time the phases between marks."""

    def __init__(self, profile: str | None) -> None:
        self.profile = profile
        self.seconds: dict[str, float] = {}

    def mark(self, name: str) -> None:
        sys.stdout.write(f"@mark {name}\n")
        sys.stdout.flush()
        if sys.stdin.readline().strip() != "go":
            raise SystemExit("the benchmark went away")

    @contextmanager
    def phase(self, name: str, *, profiled: bool = False) -> Iterator[None]:
        """Time the block as phase ``name``; the parent counts what crossed the proxy in it."""
        self.mark(name)
        profiler = None
        if profiled and self.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001)
            profiler.start()
        started = now()
        try:
            yield
        finally:
            self.seconds[name] = now() - started
            if profiler is not None:
                profiler.stop()
                Path(self.profile or "").write_text(profiler.output_text(unicode=True))
            self.mark(f"end-{name}")


def _local_documents(spec: dict[str, Any]) -> dict[str, Path]:
    """The json source's keys (``docs/doc-00000.json``) -> the local files."""
    docs = Path(spec["docs"])
    return {f"{docs.name}/{p.name}": p for p in sorted(docs.iterdir())}


def child_data(spec: dict[str, Any], phases: Phases) -> dict[str, Any]:
    import stcore

    with phases.phase("open"):
        repo = stcore.open_repository(spec["url"])
        view = repo.snapshot(spec["snapshot"]).sources["docs"]
        repo.index  # noqa: B018 - the index is read on first use: part of opening, not the read
    with phases.phase("read", profiled=True):
        data = view.data
    files = _local_documents(spec)
    started = now()
    local = {key: json.loads(path.read_bytes()) for key, path in files.items()}
    peer = now() - started
    repo.close()
    return {"ok": data == local, "items": len(data), "peer_seconds": peer}


def child_cat(spec: dict[str, Any], phases: Phases) -> dict[str, Any]:
    import fsspec

    files = _local_documents(spec)
    chosen = list(files)[:: max(1, len(files) // spec["count"])][: spec["count"]]
    prefix = f"{spec['snapshot']}/docs/"
    with phases.phase("open"):
        fs = fsspec.filesystem("stcore", repo=spec["url"])
        fs.info(f"{spec['snapshot']}/docs")
        fs.repository.index  # noqa: B018 - read on first use: part of opening
    with phases.phase("read", profiled=True):
        found = fs.cat([prefix + key for key in chosen])
    started = now()
    local = {prefix + key: files[key].read_bytes() for key in chosen}
    peer = now() - started
    return {"ok": found == local, "items": len(found), "peer_seconds": peer}


def child_sqlite(spec: dict[str, Any], phases: Phases) -> dict[str, Any]:
    import stcore

    with phases.phase("open"):
        repo = stcore.open_repository(spec["url"], cache=spec["cache"])
        view = repo.snapshot(spec["snapshot"]).sources["state"]
        repo.index  # noqa: B018 - read on first use: part of opening
    with phases.phase("read", profiled=True):
        con = view.connect()
    rows = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    con.close()
    repo.close()
    return {"ok": rows == spec["rows"], "items": rows}


def child_parquet(spec: dict[str, Any], phases: Phases) -> dict[str, Any]:
    import fsspec
    import pyarrow.parquet as pq

    engine = spec["engine"]
    path = f"{spec['snapshot']}/tables/data.parquet"
    url = f"stcore://{path}"
    # The engine is imported before anything is timed: the case is the read, not the import.
    module = importlib.import_module(engine) if engine != "pyarrow" else pq
    with phases.phase("open"):
        fs = fsspec.filesystem("stcore", repo=spec["url"])
        fs.info(path)
        fs.repository.index  # noqa: B018 - read on first use: part of opening
        if engine == "duckdb":
            con = module.connect()
            con.register_filesystem(fs)
    with phases.phase("read", profiled=True):
        if engine == "pyarrow":
            rows = pq.read_table(path, filesystem=fs, columns=[PARQUET_COLUMN]).num_rows
        elif engine == "pandas":
            frame = module.read_parquet(
                url, columns=[PARQUET_COLUMN], storage_options={"repo": spec["url"]}
            )
            rows = len(frame)
        elif engine == "duckdb":
            query = f"SELECT {PARQUET_COLUMN} FROM read_parquet('{url}')"
            rows = con.sql(query).fetch_arrow_table().num_rows
        elif engine == "polars":
            # polars' own readers never reach fsspec (docs/ai-access.md, "Polars"); this is
            # the documented column route, through pyarrow and fsspec.open
            rows = module.read_parquet(
                url,
                columns=[PARQUET_COLUMN],
                use_pyarrow=True,
                storage_options={"repo": spec["url"]},
            ).height
        else:
            raise ValueError(engine)
    if engine == "duckdb":
        con.close()
    # pandas makes its filesystem from storage_options: it must share the session opened above
    # (else its read would include opening the repository again)
    again = fsspec.filesystem("stcore", repo=spec["url"])
    same_instance = getattr(again, "_session", again) is getattr(fs, "_session", fs)
    return {"ok": rows == spec["rows"], "items": rows, "same_fs_instance": same_instance}


def child_local(spec: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """Warm reads from the local repository against the original file, interleaved."""
    import fsspec
    import pandas as pd

    path = f"{spec['snapshot']}/tables/data.parquet"
    url = f"stcore://{path}"
    original = spec["original"]
    options = {"repo": spec["repo"]}
    fs = fsspec.filesystem("stcore", **options)

    def raw_stcore() -> int:
        with fs.open(path, "rb") as handle:
            return len(handle.read())

    def raw_original() -> int:
        with open(original, "rb") as handle:
            return len(handle.read())

    operations: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
        "all columns": (
            lambda: pd.read_parquet(url, storage_options=options),
            lambda: pd.read_parquet(original),
        ),
        "2 columns": (
            lambda: pd.read_parquet(url, columns=PARQUET_TWO_COLUMNS, storage_options=options),
            lambda: pd.read_parquet(original, columns=PARQUET_TWO_COLUMNS),
        ),
        "raw read": (raw_stcore, raw_original),
    }
    results: dict[str, Any] = {}
    ok = True
    for name, (through_stcore, direct) in operations.items():
        a, b = through_stcore(), direct()  # warm: repository open, trees read, page cache
        ok = ok and (a == b if isinstance(a, int) else a.equals(b))
        timings: dict[str, list[float]] = {"stcore": [], "original": []}
        for _ in range(spec["inner"]):
            for label, function in (("stcore", through_stcore), ("original", direct)):
                started = now()
                function()
                timings[label].append(now() - started)
        results[name] = {k: statistics.median(v) for k, v in timings.items()}
    if phases.profile:
        with phases.phase("read", profiled=True):
            for through_stcore, _ in operations.values():
                through_stcore()
    return {"ok": ok, "operations": results}


def child_analytics(spec: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """The seed facade's loop, configured by stcore.toml (STCORE_CONFIG) like the seed app."""
    import boto3  # noqa: F401 - the S3 plugin's import, done before the loop is timed

    from cloud_storage_manager import cloud_storage

    with phases.phase("open"):
        cloud_storage.list_backups(1)  # the local repository and its catalog: this machine's
    versions = []
    with phases.phase("read", profiled=True):
        for b in cloud_storage.list_backups(spec["count"]):
            backup = cloud_storage.get_backup(b["backup_id"], from_cloud=True)
            assert backup is not None, b["backup_id"]
            versions.append(backup["data_sources"]["ai_hub"]["version"])
    started = now()
    local = [json.loads(p.read_bytes())["version"] for p in sorted(Path(spec["copies"]).iterdir())]
    peer = now() - started
    cloud_storage.close()
    return {"ok": sorted(versions) == local, "items": len(versions), "peer_seconds": peer}


CHILDREN: dict[str, Callable[[dict[str, Any], Phases], dict[str, Any]]] = {
    "data": child_data,
    "cat": child_cat,
    "sqlite": child_sqlite,
    "parquet": child_parquet,
    "local": child_local,
    "analytics": child_analytics,
}


def child_main(raw: str) -> None:
    spec = json.loads(raw)
    import stcore

    phases = Phases(spec.get("profile"))
    result = CHILDREN[spec["kind"]](spec, phases)
    result["seconds"] = phases.seconds
    result["stcore_file"] = stcore.__file__
    sys.stdout.write("@result " + json.dumps(result) + "\n")
    sys.stdout.flush()
    # No os._exit here: if the interpreter aborts at exit (issue 15's exit 134 after a Parquet
    # read through stcore://), the parent records the status and lists it under the table.


# --- the parent: run children, count, report -----------------------------------------------------


def _server_cpu_ms(server_pid: int | None) -> int:
    """CPU milliseconds used so far by the emulator's process and by this one (whose only
    work while a child runs is the counting proxy); 0 where ``/proc`` is not there."""
    own = os.times()
    total = (own.user + own.system) * 1000
    if server_pid is not None:
        try:
            fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0
    return round(total)


class Runner:
    def __init__(
        self, work: Path, proxy: Any, base_env: dict[str, str], server_pid: int | None = None
    ) -> None:
        self.server_pid = server_pid
        self.work = work
        self.proxy = proxy
        self.base_env = base_env
        self.count = 0
        import stcore

        self.stcore_file = stcore.__file__

    def run(self, spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
        """One child with a fresh, empty cache directory; its result plus the proxy's counts per
        phase and its exit status."""
        self.count += 1
        cache = self.work / "caches" / f"run-{self.count:04d}"
        cache.mkdir(parents=True)
        stderr_path = self.work / "caches" / f"run-{self.count:04d}.stderr"
        child_env = {**self.base_env, "STCORE_CACHE_DIR": str(cache), **(env or {})}
        marks: dict[str, dict[str, int]] = {}
        result: dict[str, Any] | None = None
        with open(stderr_path, "w") as stderr:
            process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=child_env,
                cwd=self.work,
                text=True,
            )
            assert process.stdin is not None and process.stdout is not None
            for line in process.stdout:
                if line.startswith("@mark "):
                    marks[line.split(" ", 1)[1].strip()] = {
                        **self.proxy.totals(),
                        "server_cpu_ms": _server_cpu_ms(self.server_pid),
                    }
                    process.stdin.write("go\n")
                    process.stdin.flush()
                elif line.startswith("@result "):
                    result = json.loads(line.split(" ", 1)[1])
            process.stdin.close()
            code = process.wait()
        error = stderr_path.read_text(errors="replace")
        shutil.rmtree(cache, ignore_errors=True)
        stderr_path.unlink()
        if result is None:
            raise RuntimeError(f"{spec['kind']} child exited {code} without a result:\n{error}")
        if result.get("stcore_file") != self.stcore_file:
            raise RuntimeError(
                f"the child imported stcore from {result.get('stcore_file')}, the benchmark from "
                f"{self.stcore_file}: check PYTHONPATH"
            )
        if not result.get("ok"):
            raise RuntimeError(f"{spec['kind']} child read something wrong: {result}")
        for name in list(marks):
            if not name.startswith("end-"):
                begin, end = marks[name], marks[f"end-{name}"]
                result.setdefault("traffic", {})[name] = {
                    k: end.get(k, 0) - begin.get(k, 0) for k in {**begin, **end}
                }
        result["exit_code"] = code
        if code != 0:
            result["stderr_tail"] = error[-2000:]
        return result


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Case:
    """One row of the table: its runs, and how they are summarised."""

    def __init__(self, key: str, label: str, target: str, peer: str) -> None:
        self.key = key
        self.label = label
        self.target = target
        self.peer = peer
        self.runs: list[dict[str, Any]] = []
        self.ratio: float | None = None
        #: the lowest and highest ratio of a single run, where each run measures its peer
        self.ratio_range: tuple[float, float] | None = None
        self.peer_value: float | None = None
        self.peer_unit = "s"

    def traffic(self, phase: str, field: str) -> float:
        return _median([r["traffic"][phase][field] for r in self.runs if "traffic" in r])

    @property
    def seconds(self) -> float:
        return _median([r["seconds"]["read"] for r in self.runs])

    def summary(self) -> dict[str, Any]:
        return {
            "case": self.label,
            "key": self.key,
            "get_requests": self.traffic("read", "get") if self.runs[0].get("traffic") else None,
            "mib_fetched": self.traffic("read", "bytes") / MiB
            if self.runs[0].get("traffic")
            else None,
            "seconds": self.seconds,
            "peer": self.peer,
            "peer_value": self.peer_value,
            "ratio": self.ratio,
            "ratio_range": self.ratio_range,
            "target": self.target,
            "open_get_requests": self.traffic("open", "get")
            if self.runs[0].get("traffic")
            else None,
            "open_mib_fetched": self.traffic("open", "bytes") / MiB
            if self.runs[0].get("traffic")
            else None,
            "runs": self.runs,
        }


def run_benchmark(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import stcore
    from testsupport.bytecode import compile_packages
    from testsupport.s3_server import MotoServer

    load_before = os.getloadavg()
    sizes = Sizes(args.scale)
    selected = set(args.cases)
    dataset = Dataset(work, sizes)
    compile_packages()  # the children then load bytecode, as from a wheel
    setup_cache = work / "setup-cache"
    print(f"stcore imported from {Path(stcore.__file__).parent} ({_commit(stcore.__file__)})")
    print(f"work directory {work}; generating the dataset (scale {args.scale})...", flush=True)
    dataset.generate()
    dataset.back_up(setup_cache)
    os.environ.update(S3_CREDENTIALS)
    engines = [e for e in ENGINES if _installed(e)] if "parquet" in selected else []
    notes: list[str] = []
    missing = [e for e in ENGINES if not _installed(e)]
    if missing:
        notes.append(f"not installed, skipped: {', '.join(missing)}")
    if "parquet_skipped" in dataset.facts:
        selected -= {"parquet", "local"}
        notes.append(f"Parquet cases skipped: {dataset.facts['parquet_skipped']}")

    with MotoServer() as moto:
        dataset.sync(moto.endpoint_url, f"stcore-bench-{os.getpid()}", setup_cache)
        layout = dataset.parquet_layout(setup_cache) if dataset.parquet.exists() else {}
        print(f"dataset: {json.dumps(dataset.facts)}", flush=True)
        proxy = counting_proxy(moto.endpoint_url)
        proxy.start()
        try:
            base_env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
            if base_env.get("PYTHONPATH"):  # the children run elsewhere (cwd: the work dir)
                base_env["PYTHONPATH"] = os.pathsep.join(
                    os.path.abspath(entry) for entry in base_env["PYTHONPATH"].split(os.pathsep)
                )
            base_env.update(
                S3_CREDENTIALS,
                AWS_ENDPOINT_URL=proxy.endpoint_url,
                NO_PROXY="127.0.0.1,localhost",
                TMPDIR=str(work / "tmp"),
            )
            server_pid = moto.process.pid if moto.process is not None else None
            runner = Runner(work, proxy, base_env, server_pid=server_pid)
            cases = plan_cases(args, dataset, layout, engines, selected)
            for repetition in range(args.repeat):
                for case, spec, env in cases:
                    print(f"  run {repetition + 1}/{args.repeat}: {case.label}", flush=True)
                    case.runs.append(runner.run(spec, env))
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                seen: set[str] = set()
                for case, spec, env in cases:
                    if case.key in seen:
                        continue
                    seen.add(case.key)
                    target = args.profile / f"{case.key}.txt"
                    print(f"  profiling {case.label} -> {target}", flush=True)
                    runner.run({**spec, "profile": str(target)}, env)
        finally:
            proxy.stop()

    rows = summarise([c for c, _, _ in cases], layout)
    stcore_files = {r["stcore_file"] for c, _, _ in cases for r in c.runs}
    for case, _, _ in cases:
        for run in case.runs:
            if run["exit_code"] != 0:
                notes.append(
                    f"{case.label}: a child exited {run['exit_code']} after a correct result "
                    f"(stderr: {run['stderr_tail'].strip()[-200:]!r})"
                )
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "scale": args.scale,
        "repeat": args.repeat,
        "cores": os.cpu_count(),
        # other work on the machine shows here: (1, 5, 15-minute load) at the start and the end
        "load_average": {"start": load_before, "end": os.getloadavg()},
        "python": platform.python_version(),
        "stcore": str(Path(stcore.__file__).parent),
        "stcore_commit": _commit(stcore.__file__),
        "stcore_in_children": sorted(stcore_files),
        "dataset": dataset.facts,
        "parquet_layout": layout,
        "rows": rows,
        "notes": notes,
    }


def plan_cases(
    args: argparse.Namespace,
    dataset: Dataset,
    layout: dict[str, Any],
    engines: list[str],
    selected: set[str],
) -> list[tuple[Case, dict[str, Any], dict[str, str] | None]]:
    """Every child run of one repetition, in order: (its case, its spec, extra environment)."""
    sizes = dataset.sizes
    snapshot = dataset.main_snapshot
    main = dataset.main_url
    planned: list[tuple[Case, dict[str, Any], dict[str, str] | None]] = []
    spec: dict[str, Any]
    n = f"{sizes.documents:,}"
    if "data" in selected:
        case = Case(
            "data",
            f"`.data` of a json source of {n} small documents, cold cache",
            "≤ 10 requests, ≤ 2 s",
            "json.loads of the local files",
        )
        spec = {"kind": "data", "url": main, "snapshot": snapshot, "docs": str(dataset.docs)}
        planned.append((case, spec, None))
    if "cat" in selected:
        case = Case(
            "cat",
            f"`fs.cat()` of {sizes.cat_paths:,} paths, cold cache",
            "≤ 10 requests, ≤ 1 s",
            "reading the local files",
        )
        spec = {
            "kind": "cat",
            "url": main,
            "snapshot": snapshot,
            "docs": str(dataset.docs),
            "count": sizes.cat_paths,
        }
        planned.append((case, spec, None))
    if "sqlite" in selected:
        mib = dataset.facts["sqlite_bytes"] / MiB
        pages = dataset.facts["sqlite_pages"]
        common = {"kind": "sqlite", "url": main, "snapshot": snapshot, "rows": sizes.sqlite_rows}
        uncached = Case(
            "sqlite-nocache",
            f"`.connect()`, {mib:.0f} MiB SQLite ({pages:,} pages), `cache=False`",
            "(the peer)",
            "itself",
        )
        cold = Case(
            "sqlite",
            f"`.connect()`, {mib:.0f} MiB SQLite ({pages:,} pages), cold cache",
            "≤ 1.3x the `cache=False` time",
            "`cache=False`",
        )
        planned.append((uncached, {**common, "cache": False}, None))
        planned.append((cold, {**common, "cache": True}, None))
    if "parquet" in selected and layout:
        whole = layout["column_chunk_bytes"] / MiB
        for engine in engines:
            case = Case(
                f"parquet-{engine}",
                f"column {PARQUET_COLUMN} of a {layout['file_bytes'] / MiB:.0f} MiB Parquet file "
                f"({layout['columns']} columns, {layout['row_groups']} row groups), {engine}, "
                "cold cache",
                f"≤ 1.5x the whole chunks that hold the column ({whole:.2f} MiB)",
                "whole chunks",
            )
            spec = {
                "kind": "parquet",
                "engine": engine,
                "url": main,
                "snapshot": snapshot,
                "rows": sizes.parquet_rows,
            }
            planned.append((case, spec, None))
    if "local" in selected and layout:
        case = Case(
            "local",
            "local repository, warm: `pd.read_parquet` all columns / 2 columns / raw "
            "`open().read()`",
            "≤ 1.3x / 2x / 1.5x",
            "the original file",
        )
        spec = {
            "kind": "local",
            "repo": str(dataset.main_repo),
            "snapshot": snapshot,
            "original": str(dataset.parquet),
            "inner": 3,
        }
        planned.append((case, spec, None))
    if "analytics" in selected:
        count = sizes.hub_snapshots
        case = Case(
            "analytics",
            f"seed facade loop over {count} snapshots of a "
            f"{dataset.facts['hub_document_bytes'] / 1e6:.1f} MB JSON document, from the cloud "
            "copy, cold cache",
            "≤ 1.5x",
            "json.loads of the local files",
        )
        spec = {"kind": "analytics", "count": count, "copies": str(dataset.hub_copies)}
        planned.append((case, spec, {"STCORE_CONFIG": str(dataset.hub_config)}))
    return planned


def summarise(cases: list[Case], layout: dict[str, Any]) -> list[dict[str, Any]]:
    by_key = {case.key: case for case in cases}
    rows: list[dict[str, Any]] = []
    for case in cases:
        if not case.runs:
            continue
        if case.key == "local":
            for name, target in zip(
                ("all columns", "2 columns", "raw read"), ("≤ 1.3x", "≤ 2x", "≤ 1.5x"), strict=True
            ):
                ours = _median([r["operations"][name]["stcore"] for r in case.runs])
                theirs = _median([r["operations"][name]["original"] for r in case.runs])
                rows.append(
                    {
                        "case": f"local repository, warm: {_LOCAL_LABELS[name]}",
                        "key": f"local-{name.replace(' ', '-')}",
                        "get_requests": None,
                        "mib_fetched": None,
                        "seconds": ours,
                        "peer": "the original file",
                        "peer_value": theirs,
                        "ratio": ours / theirs,
                        "target": target,
                        "runs": case.runs,
                    }
                )
            continue
        if case.key == "sqlite":
            peer = by_key.get("sqlite-nocache")
            if peer is not None:
                case.peer_value = peer.seconds
                case.ratio = case.seconds / peer.seconds
        elif case.key.startswith("parquet-"):
            case.peer_unit = "MiB"
            case.peer_value = layout["column_chunk_bytes"] / MiB
            case.ratio = case.traffic("read", "bytes") / layout["column_chunk_bytes"]
        elif case.key != "sqlite-nocache":
            # Each run measures both, one after the other in one process: the median of the
            # runs' own ratios, so a machine slower during one run than another cancels out.
            case.peer_value = _median([r["peer_seconds"] for r in case.runs])
            ratios = [r["seconds"]["read"] / r["peer_seconds"] for r in case.runs]
            case.ratio = _median(ratios)
            case.ratio_range = (min(ratios), max(ratios))
        row = case.summary()
        row["peer_unit"] = case.peer_unit
        if case.key == "analytics":  # its read opens the cloud copy: nothing is counted apart
            row["open_get_requests"] = row["open_mib_fetched"] = None
        rows.append(row)
    return rows


_LOCAL_LABELS = {
    "all columns": "`pd.read_parquet` all columns",
    "2 columns": f"`pd.read_parquet` 2 columns ({', '.join(PARQUET_TWO_COLUMNS)})",
    "raw read": "raw `open().read()`",
}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Scale {report['scale']}, {report['repeat']} repetitions, medians; "
        f"{report['cores']} cores; stcore {report['stcore_commit']}; {report['date'][:10]}; "
        f"load average {report['load_average']['start'][1]:.1f} (5 min) at the start, "
        f"{report['load_average']['end'][1]:.1f} at the end.",
        "",
        "| case | GET requests | MiB fetched | time s | peer | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        requests = "-" if row["get_requests"] is None else f"{row['get_requests']:,.0f}"
        fetched = "-" if row["mib_fetched"] is None else f"{row['mib_fetched']:.2f}"
        if row["peer_value"] is None:
            peer = row["peer"]
        elif row.get("peer_unit") == "MiB":
            peer = f"{row['peer']} {row['peer_value']:.2f} MiB"
        else:
            peer = f"{row['peer']} {row['peer_value']:.3f} s"
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        lines.append(
            f"| {row['case']} | {requests} | {fetched} | {row['seconds']:.3f} | {peer} | "
            f"{ratio} | {row['target']} |"
        )
    lines.append("")
    opening = [
        f"{row['key']} {row['open_get_requests']:,.0f} GETs / {row['open_mib_fetched']:.2f} MiB"
        for row in report["rows"]
        if row.get("open_get_requests") is not None
    ]
    if opening:
        lines.append(
            "- Not in the rows: opening the repository before each read (config, index, "
            "catalog, manifest): " + "; ".join(opening) + "."
        )
    server = []
    for row in report["rows"]:
        used = [r["traffic"]["read"].get("server_cpu_ms", 0) for r in row["runs"] if "traffic" in r]
        if used and not row["key"].startswith("local-"):
            server.append(f"{row['key']} {_median(used) / 1000:.2f} s")
    if server:
        lines.append(
            "- CPU the emulator (moto) and the counting proxy used during each read, on the same "
            "cores as the reader: " + "; ".join(server) + "."
        )
    spread = [
        f"{row['key']} {row['ratio_range'][0]:.2f}x to {row['ratio_range'][1]:.2f}x"
        for row in report["rows"]
        if row.get("ratio_range")
    ]
    if spread:
        lines.append(
            "- Where a run measures its own peer, the ratio is the median of the runs' ratios; "
            "single runs ranged: " + "; ".join(spread) + "."
        )
    if any(row["key"] == "analytics" for row in report["rows"]):
        lines.append(
            "- The facade loop's row includes opening the cloud copy (config, index objects, "
            "every manifest for its catalog); its local repository's catalog was warmed first."
        )
    for row in report["rows"]:
        runs = [r for r in row["runs"] if "read" in r.get("traffic", {})]
        if not runs or row["key"].startswith("local-"):
            continue
        kinds = sorted({k for r in runs for k in r["traffic"]["read"] if k.startswith("get:")})
        if kinds:
            parts = [
                f"{k[4:]} {_median([r['traffic']['read'].get(k, 0) for r in runs]):,.0f}"
                for k in kinds
            ]
            lines.append(f"- {row['key']}: GETs by object kind: {', '.join(parts)}.")
    layout = report["parquet_layout"]
    if layout and any(row["key"].startswith("parquet-") for row in report["rows"]):
        lines.append(
            f"- Parquet: column {PARQUET_COLUMN} is {layout['column_bytes'] / MiB:.2f} MiB in "
            f"{layout['row_groups']} column chunks; the file's {layout['file_chunks']} "
            "content-defined chunks that overlap them hold "
            f"{layout['column_chunk_bytes'] / MiB:.2f} MiB "
            f"({layout['column_and_footer_chunk_bytes'] / MiB:.2f} MiB with the footer's)."
        )
    for note in report["notes"]:
        lines.append(f"- {note}")
    return "\n".join(lines)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _commit(module_file: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(module_file).parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(Path(module_file).parent), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return out.stdout.strip() + (" with local changes" if dirty.stdout.strip() else "")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_main(sys.argv[2])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="dataset scale (1.0: issue 15)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs per case")
    parser.add_argument(
        "--work", type=Path, help="where the data goes (new or empty; removed at the end)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the work directory in place")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--cases",
        type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
        default=list(CASE_KEYS),
        help=f"comma-separated subset of {','.join(CASE_KEYS)}",
    )
    parser.add_argument("--profile", type=Path, help="write a pyinstrument profile per case here")
    args = parser.parse_args()
    unknown = set(args.cases) - set(CASE_KEYS)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; known: {', '.join(CASE_KEYS)}")
    if args.work is None:
        cache = ROOT / ".cache"  # inside the checkout and ignored by git, like scripts/test's
        cache.mkdir(exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="bench-ai-access-", dir=cache))
    else:
        work = args.work.resolve()
        if work.exists() and any(work.iterdir()):
            parser.error(f"--work {work} is not empty")
        work.mkdir(parents=True, exist_ok=True)
    # Temporary files of everything started from here (moto's log, the sqlite source's copy)
    # go into the work directory and leave with it.
    (work / "tmp").mkdir()
    os.environ["TMPDIR"] = str(work / "tmp")
    tempfile.tempdir = None
    try:
        report = run_benchmark(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
