"""``stcore://`` through fsspec: listings, ranged reads, pandas/pyarrow/duckdb, lazy fetching.

Everything here reads a real local repository made by real backups; the same paths against a
repository on the S3 emulator are in integration/test_fsspec_remote.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import stcore
from stcore.access.fs import StcoreFileSystem
from stcore.repo.format import object_key
from stcore.repository import Repository

STATE = {"agents": ["planner", "coder"], "version": 3}
EVENTS = [{"n": i, "kind": "tick" if i % 2 else "tock", "value": i * 1.5} for i in range(50)]


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def make_data(root: Path) -> dict[str, Path]:
    """An AI hub's state, a log directory (nested) and a Parquet table, on local disk."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "state.json").write_text(json.dumps(STATE))
    logs = root / "logs"
    (logs / "nested" / "deep").mkdir(parents=True)
    (logs / "events.jsonl").write_text(_jsonl(EVENTS))
    (logs / "nested" / "deep" / "more.jsonl").write_text(_jsonl(EVENTS[:3]))
    (logs / "nested" / "notes.txt").write_text("not json lines")
    tables = root / "tables"
    tables.mkdir()
    table = pa.table(
        {
            "id": list(range(1000)),
            "name": [f"row-{i}" for i in range(1000)],
            "x": [i / 7 for i in range(1000)],
        }
    )
    pq.write_table(table, tables / "data.parquet", row_group_size=250)
    return {"state": root / "state.json", "logs": logs, "tables": tables}


def back_up(repository: Repository, data: dict[str, Path]) -> str:
    sources = [
        stcore.make_source("ai_hub", "json", {"path": str(data["state"])}),
        stcore.make_source("logs", "files", {"path": str(data["logs"])}),
        stcore.make_source("tables", "files", {"path": str(data["tables"])}),
    ]
    result = repository.backup(sources)
    assert not result.partial
    return result.manifest.id


@pytest.fixture
def backed_up(repo: Repository, tmp_path: Path) -> tuple[str, dict[str, Path], list[str]]:
    """(repository path, the data, snapshot ids oldest first): two snapshots of the data."""
    data = make_data(tmp_path / "data")
    first = back_up(repo, data)
    (data["logs"] / "events.jsonl").write_text(_jsonl(EVENTS))  # unchanged content, new mtime
    second = back_up(repo, data)
    return repo.location, data, [first, second]


@pytest.fixture
def fs(backed_up: tuple[str, dict[str, Path], list[str]]) -> Iterator[StcoreFileSystem]:
    filesystem = fsspec.filesystem("stcore", repo=backed_up[0], skip_instance_cache=True)
    assert isinstance(filesystem, StcoreFileSystem)
    yield filesystem
    filesystem.repository.close()


def test_fsspec_open_reads_a_json_file_from_the_latest_snapshot(
    backed_up: tuple[str, dict[str, Path], list[str]],
) -> None:
    with fsspec.open("stcore://latest/ai_hub/state.json", repo=backed_up[0]) as handle:
        assert json.load(handle) == STATE
    with fsspec.open("stcore://latest/ai_hub/state.json", "rt", repo=backed_up[0]) as handle:
        assert json.loads(handle.read()) == STATE


def test_listing_snapshots_sources_and_files(
    fs: StcoreFileSystem, backed_up: tuple[str, dict[str, Path], list[str]]
) -> None:
    _, _, (first, second) = backed_up
    assert fs.ls("", detail=False) == [second, first]  # newest first
    assert fs.ls("/", detail=False) == [second, first]
    assert fs.ls("stcore://", detail=False) == [second, first]
    roots = fs.ls("")
    assert {e["type"] for e in roots} == {"directory"} and roots[0]["snapshot_id"] == second

    assert sorted(fs.ls(first, detail=False)) == [
        f"{first}/{s}" for s in ("ai_hub", "logs", "tables")
    ]
    sources = {e["name"]: e for e in fs.ls("latest")}
    assert sources["latest/ai_hub"]["source_type"] == "json"
    assert sources["latest/logs"]["type"] == "directory"

    entries = {e["name"]: e for e in fs.ls("stcore://latest/logs/")}
    assert sorted(entries) == ["latest/logs/events.jsonl", "latest/logs/nested"]
    assert entries["latest/logs/nested"]["type"] == "directory"
    assert entries["latest/logs/events.jsonl"]["type"] == "file"
    assert sorted(fs.ls("latest/logs/nested", detail=False)) == [
        "latest/logs/nested/deep",
        "latest/logs/nested/notes.txt",
    ]
    # ls of a file is that file, as on every fsspec filesystem
    assert fs.ls("latest/logs/events.jsonl", detail=False) == ["latest/logs/events.jsonl"]

    # a full id, a unique prefix of the random suffix, a prefix of the id and `latest` all work
    suffix = first.rsplit("-", 1)[1]
    for ref in (first, suffix, first[:-1]):
        assert fs.cat_file(f"{ref}/ai_hub/state.json") == json.dumps(STATE).encode()
        assert fs.info(f"{ref}/logs")["type"] == "directory"
    assert fs.info("latest")["snapshot_id"] == second
    assert fs.isdir("latest/logs/nested") and fs.isfile("latest/logs/nested/notes.txt")
    assert fs.exists(f"stcore://{second}/tables/data.parquet")


def test_glob_and_find(fs: StcoreFileSystem) -> None:
    assert fs.glob("stcore://latest/logs/**/*.jsonl") == [
        "latest/logs/events.jsonl",
        "latest/logs/nested/deep/more.jsonl",
    ]
    assert fs.glob("latest/logs/*.jsonl") == ["latest/logs/events.jsonl"]
    assert fs.glob("latest/*/state.json") == ["latest/ai_hub/state.json"]
    assert fs.find("latest/logs") == [
        "latest/logs/events.jsonl",
        "latest/logs/nested/deep/more.jsonl",
        "latest/logs/nested/notes.txt",
    ]
    assert "latest/logs/nested/deep" in fs.find("latest/logs", withdirs=True)
    # the glob hands back paths fsspec can open again
    with fs.open(fs.glob("latest/logs/**/more.jsonl")[0]) as handle:
        assert handle.read() == _jsonl(EVENTS[:3]).encode()


def test_info_matches_the_files_on_disk(
    fs: StcoreFileSystem, backed_up: tuple[str, dict[str, Path], list[str]]
) -> None:
    _, data, _ = backed_up
    local = {
        "latest/ai_hub/state.json": data["state"],
        "latest/logs/events.jsonl": data["logs"] / "events.jsonl",
        "latest/logs/nested/deep/more.jsonl": data["logs"] / "nested" / "deep" / "more.jsonl",
        "latest/tables/data.parquet": data["tables"] / "data.parquet",
    }
    for name, path in local.items():
        info = fs.info(f"stcore://{name}")
        assert info["name"] == name and info["type"] == "file"
        assert info["size"] == path.stat().st_size == fs.size(name)
        assert info["mtime"] == pytest.approx(path.stat().st_mtime, abs=1e-3)
        assert info["mode"] & 0o777 == path.stat().st_mode & 0o777
    listed = {e["name"]: e["size"] for e in fs.find("latest", detail=True).values()}
    assert all(listed[name] == path.stat().st_size for name, path in local.items())
    assert fs.modified("latest/logs/events.jsonl").timestamp() == pytest.approx(
        (data["logs"] / "events.jsonl").stat().st_mtime, abs=1e-3
    )
    assert fs.info("latest/logs/nested") | {"mtime": 0} == {
        "name": "latest/logs/nested",
        "size": 0,
        "type": "directory",
        "mtime": 0,
        "mode": fs.info("latest/logs/nested")["mode"],
        "islink": False,
    }


def test_cat_file_ranges_return_exactly_the_slice(
    fs: StcoreFileSystem, backed_up: tuple[str, dict[str, Path], list[str]]
) -> None:
    _, data, _ = backed_up
    whole = (data["tables"] / "data.parquet").read_bytes()
    path = "stcore://latest/tables/data.parquet"
    assert fs.cat_file(path) == whole
    size = len(whole)
    for start, end in [
        (0, 10), (5, 6), (100, 4000), (size - 8, size), (size - 8, None), (None, 4),
        (-8, None), (-100, -50), (10, size + 1000), (size, None), (50, 40), (0, 0),
    ]:  # fmt: skip
        assert fs.cat_file(path, start=start, end=end) == whole[start:end], (start, end)
    assert fs.cat(path) == whole
    assert fs.cat_ranges([path, path], [0, 4], [4, 8]) == [whole[0:4], whole[4:8]]
    # seek/tell/read on an opened file
    with fs.open(path, "rb") as handle:
        assert handle.seekable() and handle.readable() and not handle.writable()
        assert handle.read(4) == b"PAR1" and handle.tell() == 4
        handle.seek(-4, 2)
        assert handle.read() == b"PAR1" and handle.tell() == size
        handle.seek(1000)
        assert handle.read(25) == whole[1000:1025]


def test_pandas_reads_json_lines_and_parquet(
    backed_up: tuple[str, dict[str, Path], list[str]],
) -> None:
    options = {"repo": backed_up[0]}
    events = pd.read_json("stcore://latest/logs/events.jsonl", lines=True, storage_options=options)
    assert events.to_dict("records") == EVENTS

    frame = pd.read_parquet("stcore://latest/tables/data.parquet", storage_options=options)
    assert len(frame) == 1000 and frame["name"].iloc[999] == "row-999"
    assert frame["x"].sum() == pytest.approx(sum(i / 7 for i in range(1000)))

    only = pd.read_parquet(
        "stcore://latest/tables/data.parquet", columns=["id"], storage_options=options
    )
    assert list(only.columns) == ["id"] and only["id"].sum() == sum(range(1000))


def test_pyarrow_reads_parquet_through_the_filesystem(fs: StcoreFileSystem) -> None:
    table = pq.read_table("stcore://latest/tables/data.parquet", filesystem=fs)
    assert table.num_rows == 1000 and table.column("id").to_pylist() == list(range(1000))
    with fs.open("latest/tables/data.parquet") as handle:
        parquet = pq.ParquetFile(handle)
        assert parquet.metadata.num_row_groups == 4
        assert parquet.read_row_group(3, columns=["name"]).column(0)[0].as_py() == "row-750"
    dataset = pq.ParquetDataset("latest/tables", filesystem=fs)
    assert dataset.read().num_rows == 1000


def test_duckdb_queries_parquet_in_a_snapshot(fs: StcoreFileSystem) -> None:
    connection = duckdb.connect()
    try:
        connection.register_filesystem(fs)
        totals = connection.sql(
            "SELECT count(*), sum(id) FROM read_parquet('stcore://latest/tables/data.parquet')"
        ).fetchall()
        assert totals == [(1000, sum(range(1000)))]
        rows = connection.sql(
            "SELECT name FROM 'stcore://latest/tables/data.parquet' "
            "WHERE id IN (3, 997) ORDER BY id"
        ).fetchall()
        assert rows == [("row-3",), ("row-997",)]
        kinds = connection.sql(
            "SELECT kind, count(*) FROM read_json('stcore://latest/logs/events.jsonl') "
            "GROUP BY kind ORDER BY kind"
        ).fetchall()
        assert kinds == [("tick", 25), ("tock", 25)]
    finally:
        connection.close()


def test_reading_one_file_fetches_only_the_trees_on_its_path_and_its_blobs(
    repo: Repository, tmp_path: Path
) -> None:
    root = tmp_path / "src"
    for d in range(30):
        (root / f"dir{d:02d}" / "inner").mkdir(parents=True)
        (root / f"dir{d:02d}" / "inner" / "file.txt").write_text(f"other data {d}\n" * 50)
        (root / f"dir{d:02d}" / "top.bin").write_bytes(bytes([d]) * 3000)
    (root / "a").mkdir()
    (root / "a" / "one.txt").write_text("the one file\n")
    (root / "a" / "sibling.txt").write_text("a neighbour, not read\n")
    snapshot_id = repo.backup([stcore.make_source("src", "files", {"path": str(root)})]).manifest.id

    # What the read may touch: the source's root tree, the tree of `a`, one.txt's blob(s).
    summary = repo.snapshot(snapshot_id).manifest.sources["src"]
    a_tree = next(n.subtree for n in repo.read_tree(summary.root) if n.name == "a")
    assert a_tree is not None
    one = next(n for n in repo.read_tree(a_tree) if n.name == "one.txt")
    allowed = {summary.root, a_tree, *one.content}
    where = {(object_key("data", e.pack_id), e.offset): blob for blob, e in repo.index.items()}
    assert len(where) > 60  # there is plenty that must not be read

    def counted(fs: StcoreFileSystem) -> list[bytes]:
        backend = fs.repository.backend
        read: Callable[..., bytes] = backend.read
        blobs: list[bytes] = []

        def counting_read(key: str, offset: int = 0, length: int | None = None) -> bytes:
            if key.startswith("data/"):
                blobs.append(where[(key, offset)])
            return read(key, offset, length)

        backend.read = counting_read
        return blobs

    url = f"stcore://{snapshot_id}/src/a/one.txt"
    fs = StcoreFileSystem(repo=repo.location, skip_instance_cache=True)
    blobs = counted(fs)
    with fs.open(url) as handle:
        assert handle.read() == b"the one file\n"
    assert set(blobs) == allowed and len(blobs) == len(allowed), [b.hex()[:8] for b in blobs]

    for read_one in (
        lambda fs: fs.cat_file(url),
        lambda fs: fs.cat_file(url, start=4, end=7),
        lambda fs: fs.info(url)["size"],
        lambda fs: fs.exists(url),
    ):
        fs = StcoreFileSystem(repo=repo.location, skip_instance_cache=True)
        blobs = counted(fs)
        assert read_one(fs) in (b"the one file\n", b"one", 13, True)
        assert set(blobs) <= allowed and len(blobs) == len(set(blobs)), len(blobs)

    # a listing reads the whole source's trees, a bulk read per level of folders (the 62
    # trees below the root are neighbours in one pack: one range read per level), once per
    # filesystem instance
    fs = StcoreFileSystem(repo=repo.location, skip_instance_cache=True)
    blobs = counted(fs)
    assert len(fs.find(f"{snapshot_id}/src")) == 30 * 2 + 2
    trees = len(blobs)
    fs.find(f"{snapshot_id}/src")
    fs.ls(f"{snapshot_id}/src/dir07/inner")
    assert len(blobs) == trees == 3  # the root; a and every dirNN; every dirNN/inner


def test_write_modes_are_refused(fs: StcoreFileSystem) -> None:
    for mode in ("wb", "w", "ab", "a", "xb", "r+b"):
        with pytest.raises(PermissionError, match=r"stcore:// is read-only"):
            fs.open("latest/ai_hub/state.json", mode)
    opened = fsspec.open("stcore://latest/ai_hub/new.json", "w", repo=fs.repo_url)
    with pytest.raises(PermissionError, match="read-only"):
        opened.open()
    for action in (
        lambda: fs.pipe_file("latest/ai_hub/state.json", b"{}"),
        lambda: fs.pipe("latest/ai_hub/x", b"{}"),
        lambda: fs.rm("latest/ai_hub/state.json"),
        lambda: fs.rm_file("latest/ai_hub/state.json"),
        lambda: fs.mkdir("latest/new"),
        lambda: fs.makedirs("latest/new"),
        lambda: fs.touch("latest/ai_hub/state.json"),
        lambda: fs.mv("latest/ai_hub/state.json", "latest/ai_hub/moved.json"),
        lambda: fs.copy("latest/ai_hub/state.json", "latest/ai_hub/copy.json"),
    ):
        with pytest.raises(PermissionError, match="read-only"):
            action()
    assert fs.cat_file("latest/ai_hub/state.json") == json.dumps(STATE).encode()


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("nosuch/ai_hub/state.json", "no snapshot matches 'nosuch'"),
        ("latest/nosuch/state.json", "has no source 'nosuch'"),
        ("latest/ai_hub/nosuch.json", "has no entry 'nosuch.json'"),
        ("latest/logs/nested/nosuch/deeper.txt", "has no entry"),
    ],
)
def test_missing_paths_raise_file_not_found_naming_the_path(
    fs: StcoreFileSystem, path: str, why: str
) -> None:
    for call in (fs.info, fs.ls, fs.open, fs.cat_file):
        with pytest.raises(FileNotFoundError, match=why) as caught:
            call(f"stcore://{path}")
        assert path in str(caught.value)
    assert not fs.exists(path)
    assert fs.glob(path) == []
    with pytest.raises(FileNotFoundError):
        fsspec.open(f"stcore://{path}", repo=fs.repo_url).open()


def test_directories_cannot_be_opened(fs: StcoreFileSystem) -> None:
    for path in ("latest", "latest/logs", "latest/logs/nested"):
        with pytest.raises(IsADirectoryError):
            fs.open(path)


def test_instances_are_cached_per_repository_and_reuse_one_repository(
    backed_up: tuple[str, dict[str, Path], list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    location = backed_up[0]
    first = fsspec.filesystem("stcore", repo=location)
    # fsspec's instance cache is off (it keys on arguments as written); instances with the
    # same resolved repository and options share one session: one open repository
    assert StcoreFileSystem.cachable is False
    assert type(StcoreFileSystem) is type(fsspec.AbstractFileSystem)  # no metaclass of ours
    assert fsspec.filesystem("stcore", repo=location)._session is first._session
    assert fsspec.filesystem("stcore", repo=location).repository is first.repository
    # the default comes from STCORE_REPO, and the session key is the resolved, absolute location
    monkeypatch.setenv("STCORE_REPO", location)
    assert fsspec.filesystem("stcore")._session is first._session
    monkeypatch.chdir(Path(location).parent)
    assert fsspec.filesystem("stcore", repo=Path(location).name)._session is first._session
    fresh = fsspec.filesystem("stcore", repo=location, skip_instance_cache=True)
    assert fresh._session is not first._session and fresh.repository is not first.repository
    other = stcore.init_repository(str(tmp_path / "other"))
    other.close()
    monkeypatch.setenv("STCORE_REPO", str(tmp_path / "other"))
    empty = fsspec.filesystem("stcore")
    assert empty._session is not first._session and empty.ls("") == []
    with pytest.raises(FileNotFoundError, match="has no snapshots yet"):
        empty.info("latest")
    # a pickled filesystem (dask ships them to workers) reopens the same repository
    import pickle

    clone = pickle.loads(pickle.dumps(first))
    assert clone.repo_url == location and clone.ls("", detail=False) == first.ls("", detail=False)


def test_latest_moves_after_invalidate_cache(
    fs: StcoreFileSystem, repo: Repository, backed_up: tuple[str, dict[str, Path], list[str]]
) -> None:
    _, data, (_, second) = backed_up
    assert fs.info("latest")["snapshot_id"] == second
    (data["state"]).write_text(json.dumps({"agents": []}))
    third = back_up(repo, data)
    fs.invalidate_cache()
    assert fs.info("latest")["snapshot_id"] == third
    assert json.loads(fs.cat_file("latest/ai_hub/state.json")) == {"agents": []}
    assert json.loads(fs.cat_file(f"{second}/ai_hub/state.json")) == STATE


def test_encrypted_repository_with_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stcore.repo.keys import KdfParams

    repository = stcore.init_repository(
        str(tmp_path / "secret"),
        encryption="aes-256-gcm",
        password="hunter2",
        kdf=KdfParams(memory_kib=1024, iterations=1, lanes=1),
    )
    (tmp_path / "state.json").write_text(json.dumps(STATE))
    repository.backup(
        [stcore.make_source("ai_hub", "json", {"path": str(tmp_path / "state.json")})]
    )
    repository.close()
    url = "stcore://latest/ai_hub/state.json"
    with fsspec.open(url, repo=str(tmp_path / "secret"), password="hunter2") as handle:
        assert json.load(handle) == STATE
    monkeypatch.setenv("STCORE_PASSWORD", "hunter2")
    fs = fsspec.filesystem("stcore", repo=str(tmp_path / "secret"), skip_instance_cache=True)
    assert json.loads(fs.cat_file(url)) == STATE


def test_symbolic_links_are_listed_but_not_followed(repo: Repository, tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "real.txt").write_text("real")
    (root / "link.txt").symlink_to("real.txt")
    repo.backup([stcore.make_source("src", "files", {"path": str(root)})])
    fs = StcoreFileSystem(repo=repo.location, skip_instance_cache=True)
    link = fs.info("latest/src/link.txt")
    assert (link["type"], link["islink"], link["destination"]) == ("other", True, "real.txt")
    assert {e["name"]: e["type"] for e in fs.ls("latest/src")} == {
        "latest/src/link.txt": "other",
        "latest/src/real.txt": "file",
    }
    with pytest.raises(FileNotFoundError, match=r"symbolic link to 'real\.txt'"):
        fs.open("latest/src/link.txt")
    assert fs.cat_file("latest/src/real.txt") == b"real"


@pytest.mark.parametrize("topdown", [True, False])
@pytest.mark.parametrize("maxdepth", [None, 1, 2, 3])
@pytest.mark.parametrize("detail", [False, True])
def test_walk_matches_fsspecs_own_walk(
    fs: StcoreFileSystem, topdown: bool, maxdepth: int | None, detail: bool
) -> None:
    """Our walk has no recursion (snapshots may be deeper than Python's limit); it must give
    exactly what fsspec's recursive walk gives, in the same order."""
    ours = list(fs.walk("latest", maxdepth=maxdepth, topdown=topdown, detail=detail))
    theirs = list(
        fsspec.AbstractFileSystem.walk(
            fs, "latest", maxdepth=maxdepth, topdown=topdown, detail=detail
        )
    )
    assert ours == theirs
    assert len(ours) > (3 if maxdepth is None else 0)


def test_walk_top_down_can_be_pruned_in_place(fs: StcoreFileSystem) -> None:
    seen = []
    for root, dirs, _ in fs.walk("latest"):
        seen.append(root)
        dirs[:] = [d for d in dirs if d != "nested"]
    assert not any("nested" in root for root in seen) and "latest/logs" in seen


def test_an_open_file_pickles_and_reopens_where_it_was(fs: StcoreFileSystem) -> None:
    import pickle

    path = "latest/logs/events.jsonl"
    whole = fs.cat_file(path)
    with fs.open(path) as handle:
        handle.seek(100)
        clone = pickle.loads(pickle.dumps(handle))
        assert clone.tell() == 100 and clone.read() == whole[100:]
        clone.close()
    with fs.open(path, size=len(whole)) as handle:  # what fsspec's reopen passes
        assert handle.read() == whole
    with pytest.raises(ValueError, match=f"has {len(whole)} bytes, not 5"):
        fs.open(path, size=5)


@pytest.mark.parametrize(
    ("options", "cache_name"),
    [({}, "none"), ({"cache_type": "readahead", "block_size": 64}, "readahead"),
     ({"cache_type": "bytes"}, "bytes"), ({"cache_type": "all"}, "all")],
)  # fmt: skip
def test_block_size_and_cache_type_are_honoured(
    fs: StcoreFileSystem, options: dict[str, Any], cache_name: str
) -> None:
    path = "latest/logs/events.jsonl"
    whole = fs.cat_file(path)
    with fs.open(path, **options) as handle:
        assert handle.cache.name == cache_name
        assert handle.read(10) == whole[:10]
        handle.seek(-7, 2)
        assert handle.read() == whole[-7:]
        handle.seek(3)
        assert bytes(handle.read_buffer(20)) == whole[3:23]  # what pyarrow calls


def test_checksum_and_ukey_follow_content_across_snapshots(
    fs: StcoreFileSystem, backed_up: tuple[str, dict[str, Path], list[str]], repo: Repository
) -> None:
    _, data, (first, second) = backed_up
    unchanged = "logs/events.jsonl"  # rewritten between the snapshots with the same bytes
    assert fs.info(f"{first}/{unchanged}")["mtime"] != fs.info(f"{second}/{unchanged}")["mtime"]
    assert fs.ukey(f"{first}/{unchanged}") == fs.ukey(f"{second}/{unchanged}")
    assert fs.checksum(f"{first}/{unchanged}") == fs.checksum(f"{second}/{unchanged}")
    assert fs.ukey(f"{first}/{unchanged}") != fs.ukey(f"{first}/ai_hub/state.json")
    data["state"].write_text(json.dumps({"changed": True}))
    third = back_up(repo, data)
    fs.invalidate_cache()
    assert fs.ukey(f"{third}/ai_hub/state.json") != fs.ukey(f"{second}/ai_hub/state.json")
    assert isinstance(fs.ukey("latest/logs"), str)  # a directory: from its info


def test_a_read_of_one_whole_chunk_is_not_copied(fs: StcoreFileSystem) -> None:
    ref, name, inner = fs._split("latest/ai_hub/state.json")
    raw = fs._source("latest/ai_hub", ref, name).open(inner)
    first = raw.read()
    raw.seek(0)
    assert raw.read() is first  # the kept chunk itself
