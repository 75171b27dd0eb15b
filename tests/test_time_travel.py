"""Time travel: snapshots named by offset (``latest~2``, ``<id>~1``), by time (``@2026-11-30``,
``as_of=``), through the CLI, ``stcore://`` URLs and the seed facade, and how fresh ``latest``
stays in a long-running process (``Repository.refresh``, the filesystem's ``refresh=``)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stcore
from stcore.access.fs import StcoreFileSystem
from stcore.errors import ConfigError, SnapshotNotFoundError
from stcore.models import SnapshotManifest, new_snapshot_id
from stcore.refs import parse_ref
from stcore.repository import Repository
from tests.conftest import run_cli

UTC = dt.UTC
#: when the snapshots were taken: two at the same moment, one with microseconds
TIMES = [
    dt.datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
    dt.datetime(2026, 11, 2, 12, 0, tzinfo=UTC),
    dt.datetime(2026, 11, 2, 12, 0, tzinfo=UTC),
    dt.datetime(2026, 11, 3, 8, 30, 15, 250_000, tzinfo=UTC),
    dt.datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Repository, list[str]]]:
    """A repository with one snapshot per entry of TIMES (``state.json`` holds its number), and
    the snapshot ids newest first, as listings order them."""
    root = tmp_path_factory.mktemp("history")
    with pytest.MonkeyPatch.context() as patch:  # made before the per-test environment is
        patch.setenv("STCORE_CACHE_DIR", str(root / "cache"))
        repository = stcore.init_repository(str(root / "repo"))
    (root / "src").mkdir()
    for number, when in enumerate(TIMES):
        (root / "src" / "state.json").write_text(json.dumps({"number": number}))
        repository.backup(stcore.sources_for_paths([str(root / "src")]), time=when)
    newest_first = [m.id for m in repository.snapshots()]
    yield repository, newest_first
    repository.close()


def _newest_at_or_before(repository: Repository, when: dt.datetime) -> str | None:
    """The model: scan every snapshot, newest first, for the first taken at or before ``when``."""
    for manifest in repository.snapshots():
        if manifest.time <= when:
            return manifest.id
    return None


def _number(repository: Repository, manifest: SnapshotManifest) -> int:
    snapshot = repository.snapshot(manifest.id)
    number: int = json.loads(snapshot.sources["src"].read_bytes("state.json"))["number"]
    return number


# --- the grammar ---------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    when=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 1, 1)),
    cut=st.integers(min_value=1, max_value=25),
)
def test_an_id_or_any_prefix_of_it_always_parses_as_an_id(when: dt.datetime, cut: int) -> None:
    snapshot_id = new_snapshot_id(when.replace(tzinfo=UTC))
    for text in (snapshot_id, snapshot_id[:cut], snapshot_id.split("-")[1][: cut % 9 or 1]):
        parsed = parse_ref(text)
        assert (parsed.kind, parsed.base, parsed.back) == ("id", text, 0)
        assert parse_ref(f"{text}~3").back == 3


def test_the_forms_of_a_reference() -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_ref("latest").kind == "latest" and parse_ref("latest~0").back == 0
    parsed = parse_ref("@2026-11-30T12:00:00+02:00~2")
    assert (parsed.kind, parsed.base, parsed.back) == ("time", "@2026-11-30T12:00:00+02:00", 2)
    assert parsed.when == dt.datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert parse_ref("@7d", now=now).when == dt.datetime(2026, 11, 24, tzinfo=UTC)
    assert parse_ref("@2026-11-30").when == dt.datetime(2026, 11, 30, tzinfo=UTC)


# --- by offset -----------------------------------------------------------------------------------


def test_latest_tilde_n_is_the_nth_snapshot_before_the_latest(
    history: tuple[Repository, list[str]],
) -> None:
    repository, ids = history
    assert repository.resolve("latest").id == ids[0]
    for n, expected in enumerate(ids):
        assert repository.resolve(f"latest~{n}").id == expected
        assert repository.snapshot(f"latest~{n}").id == expected
    with pytest.raises(SnapshotNotFoundError) as caught:
        repository.resolve(f"latest~{len(ids)}")
    message = str(caught.value)
    assert "\n" not in message
    assert f"only {len(ids) - 1} are older than latest" in message
    assert f"latest~{len(ids) - 1} is the oldest" in message


def test_an_id_or_prefix_tilde_n_walks_back_from_that_snapshot(
    history: tuple[Repository, list[str]],
) -> None:
    repository, ids = history
    for start, snapshot_id in enumerate(ids):
        short = snapshot_id.split("-")[1]
        for n in range(len(ids) - start):
            assert repository.resolve(f"{snapshot_id}~{n}").id == ids[start + n]
            assert repository.resolve(f"{short}~{n}").id == ids[start + n]
        with pytest.raises(SnapshotNotFoundError, match=f"{short}~{len(ids) - start - 1} is the"):
            repository.resolve(f"{short}~{len(ids) - start}")


def test_the_order_is_by_time_and_the_data_follows(history: tuple[Repository, list[str]]) -> None:
    repository, _ = history
    times = [repository.resolve(f"latest~{n}").time for n in range(len(TIMES))]
    assert times == sorted(TIMES, reverse=True)
    assert _number(repository, repository.resolve("latest")) == len(TIMES) - 1
    assert _number(repository, repository.resolve("latest~4")) == 0


# --- by time -------------------------------------------------------------------------------------


def _cut_offs() -> list[dt.datetime]:
    tick = dt.timedelta(microseconds=1)
    points = {TIMES[0] - dt.timedelta(days=1), TIMES[-1] + dt.timedelta(days=1)}
    for when in TIMES:
        points |= {when - tick, when, when + tick}
    return sorted(points)


def _spellings(when: dt.datetime) -> list[object]:
    """``when`` as every kind of value ``as_of`` takes: aware, naive (UTC), in another zone,
    and as ISO text with ``Z`` and with an offset."""
    plus_two = when.astimezone(dt.timezone(dt.timedelta(hours=2)))
    return [
        when,
        when.replace(tzinfo=None),
        plus_two,
        when.isoformat().replace("+00:00", "Z"),
        plus_two.isoformat(),
    ]


@pytest.mark.parametrize("cut", _cut_offs(), ids=lambda d: d.isoformat())
def test_every_cut_off_picks_the_newest_snapshot_at_or_before_it(
    history: tuple[Repository, list[str]], cut: dt.datetime
) -> None:
    repository, ids = history
    expected = _newest_at_or_before(repository, cut)
    for spelling in _spellings(cut):
        refs = [("latest", spelling)]
        if isinstance(spelling, str):
            refs.append((f"@{spelling}", None))
        for ref, as_of in refs:
            if expected is None:
                with pytest.raises(SnapshotNotFoundError, match="no snapshot was taken at or"):
                    repository.resolve(ref, as_of=as_of)
                continue
            assert repository.resolve(ref, as_of=as_of).id == expected, (ref, as_of)
            # and ~N goes back from there, as latest~N does from the latest
            back = ids.index(expected)
            for n in range(len(ids) - back):
                assert repository.resolve(f"{ref}~{n}", as_of=as_of).id == ids[back + n]
            with pytest.raises(SnapshotNotFoundError, match="is the oldest"):
                repository.resolve(f"{ref}~{len(ids) - back}", as_of=as_of)


@settings(max_examples=60, deadline=None)
@given(
    offset=st.integers(min_value=-3 * 86400, max_value=33 * 86400),
    micros=st.integers(min_value=0, max_value=999_999),
    zone=st.integers(min_value=-12, max_value=14),
)
def test_any_moment_in_any_zone_agrees_with_the_model(
    history: tuple[Repository, list[str]], offset: int, micros: int, zone: int
) -> None:
    repository, _ = history
    start = dt.datetime(2026, 11, 1, tzinfo=UTC)
    cut = (start + dt.timedelta(seconds=offset, microseconds=micros)).astimezone(
        dt.timezone(dt.timedelta(hours=zone))
    )
    expected = _newest_at_or_before(repository, cut)
    if expected is None:
        with pytest.raises(SnapshotNotFoundError):
            repository.resolve(f"@{cut.isoformat()}")
    else:
        assert repository.resolve(f"@{cut.isoformat()}").id == expected
        assert repository.resolve("latest", as_of=cut).id == expected


def test_a_date_means_its_midnight_utc(history: tuple[Repository, list[str]]) -> None:
    repository, ids = history
    # 2026-11-30 is 2026-11-30T00:00:00Z: the snapshot taken at noon that day is not included
    assert repository.resolve("@2026-11-30").time == TIMES[3]
    assert repository.resolve("latest", as_of=dt.date(2026, 11, 30)).time == TIMES[3]
    assert repository.resolve("@2026-12-01").id == ids[0]


def test_ids_and_times_ignore_as_of(history: tuple[Repository, list[str]]) -> None:
    repository, ids = history
    as_of = "2026-11-01T12:00:00Z"
    assert repository.resolve("latest", as_of=as_of).id == ids[-1]
    assert repository.resolve(ids[0], as_of=as_of).id == ids[0]
    assert repository.resolve(ids[0][:10], as_of=as_of).id in ids[:1]
    assert repository.resolve("@2026-12-01", as_of=as_of).id == ids[0]


def test_durations_ago(tmp_path: Path) -> None:
    repository = stcore.init_repository(str(tmp_path / "repo"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a")
    sources = stcore.sources_for_paths([str(tmp_path / "src")])
    now = dt.datetime.now(UTC)
    made = [
        repository.backup(sources, time=now - dt.timedelta(days=d)).manifest.id for d in (10, 3)
    ]
    assert repository.resolve("@7d").id == made[0]
    assert repository.resolve("latest", as_of="7d").id == made[0]
    assert repository.resolve("@2d").id == made[1]
    assert repository.resolve("@2d~1").id == made[0]
    with pytest.raises(SnapshotNotFoundError, match="no snapshot was taken at or before"):
        repository.resolve("@11d")
    repository.close()


@pytest.mark.parametrize(
    ("ref", "as_of", "error", "words"),
    [
        ("@yesterday", None, SnapshotNotFoundError, "'yesterday' is not a date or a duration"),
        ("@7m", None, SnapshotNotFoundError, "write 7min for minutes or 7mo for months"),
        ("@", None, SnapshotNotFoundError, "is not a snapshot reference"),
        ("latest~", None, SnapshotNotFoundError, "~ is followed by a number of snapshots"),
        ("latest~x", None, SnapshotNotFoundError, "~ is followed by a number of snapshots"),
        ("latest~-1", None, SnapshotNotFoundError, "~ is followed by a number of snapshots"),
        ("latest~1~1", None, SnapshotNotFoundError, "write one ~N"),
        ("~2", None, SnapshotNotFoundError, "write one ~N"),
        ("", None, SnapshotNotFoundError, "it is empty"),
        ("latest@2026-11-30", None, SnapshotNotFoundError, "a time is written first, after @"),
        ("@2020-01-01", None, SnapshotNotFoundError, "no snapshot was taken at or before 2020-01"),
        ("latest", "2020-01-01", SnapshotNotFoundError, "before 2020-01-01T00:00:00Z (as_of)"),
        ("nosuch", None, SnapshotNotFoundError, "no snapshot matches 'nosuch'"),
        ("latest", "last week", ConfigError, "as_of: 'last week' is not a date"),
        ("latest", 7, ConfigError, "as_of must be a datetime"),
    ],
)
def test_every_refusal_is_one_line(
    history: tuple[Repository, list[str]],
    ref: str,
    as_of: object,
    error: type[Exception],
    words: str,
) -> None:
    repository, _ = history
    with pytest.raises(error) as caught:
        repository.resolve(ref, as_of=as_of)  # type: ignore[arg-type]
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


# --- freshness of `latest` -----------------------------------------------------------------------


def _backup_state(repository: Repository, root: Path, state: object) -> str:
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "state.json").write_text(json.dumps(state))
    return repository.backup(stcore.sources_for_paths([str(root / "src")])).manifest.id


def test_a_repository_sees_other_writers_after_refresh(tmp_path: Path) -> None:
    location = str(tmp_path / "repo")
    writer = stcore.init_repository(location)
    first = _backup_state(writer, tmp_path, {"v": 1})
    reader = stcore.open_repository(location)
    assert reader.snapshot("latest").id == first
    assert reader.snapshot("latest").sources["src"].read_bytes("state.json") == b'{"v": 1}'
    second = _backup_state(writer, tmp_path, {"v": 2, "new": "data only the new packs hold"})
    assert reader.resolve("latest").id == first  # as of the catalog's first use
    assert reader.refresh() == (1, 0)
    latest = reader.snapshot("latest")
    assert latest.id == second
    assert json.loads(latest.sources["src"].read_bytes("state.json"))["v"] == 2
    assert reader.resolve("latest~1").id == first
    writer.forget([second])
    assert reader.refresh() == (0, 1)
    assert reader.resolve("latest").id == first
    assert reader.refresh() == (0, 0)
    reader.close()
    writer.close()


def test_refresh_before_first_use_opens_the_catalog(tmp_path: Path) -> None:
    location = str(tmp_path / "repo")
    writer = stcore.init_repository(location)
    made = _backup_state(writer, tmp_path, {})
    reader = stcore.open_repository(location)
    reader.refresh()
    assert reader.resolve("latest").id == made
    reader.close()
    writer.close()


# --- stcore:// -----------------------------------------------------------------------------------


@pytest.fixture
def fs(history: tuple[Repository, list[str]]) -> StcoreFileSystem:
    filesystem = fsspec.filesystem("stcore", repo=history[0].location, skip_instance_cache=True)
    assert isinstance(filesystem, StcoreFileSystem)
    return filesystem


@pytest.mark.parametrize(
    ("url_ref", "number"),
    [
        ("latest~1", 3),
        ("latest~4", 0),
        ("@2026-11-30", 3),
        ("@2026-11-30T12:00:00Z", 4),
        ("@2026-11-30T11:59:59Z", 3),
        ("@2026-11-30T14:00:00+02:00", 4),
        ("@2026-11-30T12:00:00Z~1", 3),
        ("@2026-11-03T08:30:15.250000Z", 3),
        ("@2026-11-03T08:30:15.249999Z~2", 0),  # ~1: one of two taken at once
    ],
)
def test_fsspec_open_takes_refs_with_times_and_offsets(
    history: tuple[Repository, list[str]], url_ref: str, number: int
) -> None:
    location = history[0].location
    with fsspec.open(f"stcore://{url_ref}/src/state.json", "rt", repo=location) as handle:
        assert json.load(handle) == {"number": number}


def test_pandas_reads_by_time_with_storage_options(
    history: tuple[Repository, list[str]],
) -> None:
    def number(url: str, **options: object) -> int:
        options["repo"] = history[0].location
        return int(pd.read_json(url, typ="series", storage_options=options)["number"])

    assert number("stcore://@2026-11-02T12:00:00Z/src/state.json") in (1, 2)  # taken at once
    assert number("stcore://@2026-11-30T12:00:00Z~1/src/state.json") == 3
    assert number("stcore://latest/src/state.json", as_of="2026-11-02") == 0
    assert number("stcore://latest~1/src/state.json", as_of="2026-11-30") in (1, 2)


def test_pyarrow_and_duckdb_take_times_in_urls_as_they_are(tmp_path: Path) -> None:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "tables").mkdir()
    pq.write_table(pa.table({"n": [1, 2, 3]}), tmp_path / "tables" / "t.parquet")
    repository = stcore.init_repository(str(tmp_path / "repo"))
    when = dt.datetime(2026, 11, 30, 12, tzinfo=UTC)
    repository.backup(stcore.sources_for_paths([str(tmp_path / "tables")]), time=when)
    filesystem = fsspec.filesystem("stcore", repo=repository.location)
    con = duckdb.connect()
    con.register_filesystem(filesystem)
    for ref in ("@2026-11-30T12:00:00Z", "@2026-11-30T14:00:00+02:00", "latest~0"):
        url = f"stcore://{ref}/tables/t.parquet"
        assert pq.read_table(url, filesystem=filesystem).num_rows == 3
        assert con.sql(f"SELECT sum(n) FROM read_parquet('{url}')").fetchall() == [(6,)]
    repository.close()


def test_listings_keep_the_spelling_of_the_ref(fs: StcoreFileSystem) -> None:
    for ref in ("latest~1", "@2026-11-30", "@2026-11-30T12:00:00Z", "@2026-11-30T14:00:00+02:00"):
        assert fs.ls(f"stcore://{ref}", detail=False) == [f"{ref}/src"]
        assert fs.ls(f"{ref}/src", detail=False) == [f"{ref}/src/state.json"]
        assert fs.glob(f"stcore://{ref}/*/*.json") == [f"{ref}/src/state.json"]
        assert fs.find(ref) == [f"{ref}/src/state.json"]
        assert fs.info(ref)["name"] == ref
        with fs.open(fs.glob(f"{ref}/**/*.json")[0]) as handle:
            assert "number" in json.load(handle)
    assert fs.info("latest~1")["snapshot_id"] == fs.info("@2026-11-30")["snapshot_id"]


def test_missing_times_and_offsets_are_file_not_found(fs: StcoreFileSystem) -> None:
    for path, why in [
        ("@2020-01-01/src/state.json", "no snapshot was taken at or before 2020-01-01"),
        ("latest~9/src/state.json", "latest~4 is the oldest"),
        ("@yesterday/src/state.json", "'yesterday' is not a date or a duration"),
    ]:
        with pytest.raises(FileNotFoundError, match=why):
            fs.open(path)
        assert not fs.exists(path)
        with pytest.raises(FileNotFoundError, match=why):
            fsspec.open(f"stcore://{path}", repo=fs.repo_url).open()


def test_as_of_and_refresh_are_constructor_options(
    history: tuple[Repository, list[str]],
) -> None:
    location = history[0].location
    plain = fsspec.filesystem("stcore", repo=location)
    dated = fsspec.filesystem("stcore", repo=location, as_of="2026-11-02")
    fresh = fsspec.filesystem("stcore", repo=location, refresh=60)
    sessions = {id(plain._session), id(dated._session), id(fresh._session)}
    assert len(sessions) == 3  # each set of options has a session of its own
    assert fsspec.filesystem("stcore", repo=location, as_of="2026-11-02")._session is (
        dated._session
    )
    assert dated.info("latest")["snapshot_id"] == history[1][-1]
    assert dated.info("latest~0")["snapshot_id"] == history[1][-1]
    assert dated.ls("", detail=False) == history[1]  # the listing is every snapshot
    assert plain.info("latest")["snapshot_id"] == history[1][0]
    import pickle

    clone = pickle.loads(pickle.dumps(dated))
    assert clone.info("latest")["snapshot_id"] == history[1][-1]
    with pytest.raises(ConfigError, match="as_of: 'someday' is not a date or a duration"):
        fsspec.filesystem("stcore", repo=location, as_of="someday")
    with pytest.raises(ConfigError, match="as_of must be a datetime"):
        fsspec.filesystem("stcore", repo=location, as_of=3)
    for bad in ("60", -1, True):
        with pytest.raises(ConfigError, match="refresh must be a number of seconds"):
            fsspec.filesystem("stcore", repo=location, refresh=bad)


def test_latest_is_fixed_per_instance_unless_refresh_says_otherwise(tmp_path: Path) -> None:
    location = str(tmp_path / "repo")
    writer = stcore.init_repository(location)
    first = _backup_state(writer, tmp_path, {"v": 1})
    fixed = fsspec.filesystem("stcore", repo=location, skip_instance_cache=True)
    hourly = fsspec.filesystem("stcore", repo=location, refresh=3600, skip_instance_cache=True)
    always = fsspec.filesystem("stcore", repo=location, refresh=0, skip_instance_cache=True)
    relative = fsspec.filesystem("stcore", repo=location, skip_instance_cache=True)
    for filesystem in (fixed, hourly, always):
        assert filesystem.info("latest")["snapshot_id"] == first
        assert filesystem.ls("", detail=False) == [first]
    assert relative.info("@0s")["snapshot_id"] == first
    second = _backup_state(writer, tmp_path, {"v": 2, "more": "new packs"})
    for filesystem in (fixed, hourly):
        assert filesystem.info("latest")["snapshot_id"] == first
        assert filesystem.ls("", detail=False) == [first]
    # a reference is resolved once per instance, even one relative to now
    assert relative.info("@0s")["snapshot_id"] == first
    assert always.info("latest")["snapshot_id"] == second
    assert always.ls("", detail=False) == [second, first]
    assert json.loads(always.cat_file("latest/src/state.json"))["v"] == 2
    assert json.loads(always.cat_file("latest~1/src/state.json"))["v"] == 1
    fixed.invalidate_cache()
    assert fixed.info("latest")["snapshot_id"] == second
    writer.close()


# --- the command line and the seed facade --------------------------------------------------------


def test_cli_takes_time_travel_refs_and_refuses_in_one_line(
    history: tuple[Repository, list[str]], tmp_path: Path
) -> None:
    repository, ids = history
    base = ["--repo", repository.location]
    shown = run_cli(*base, "show", "latest~1", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == ids[1]
    dumped = run_cli(*base, "dump", "@2026-11-30T12:00:00Z~4", "src", "state.json")
    assert dumped.returncode == 0 and json.loads(dumped.stdout) == {"number": 0}
    restored = run_cli(*base, "restore", "@2026-11-02", "--target", str(tmp_path / "out"))
    assert restored.returncode == 0, restored.stderr
    assert json.loads((tmp_path / "out" / "src" / "state.json").read_text()) == {"number": 0}
    for ref, words in [
        ("latest~9", "latest~4 is the oldest"),
        ("@2020-01-01", "no snapshot was taken at or before 2020-01-01T00:00:00Z"),
        ("@yesterday", "'yesterday' is not a date or a duration"),
        ("latest~x", "~ is followed by a number"),
        # absurd sizes: 64-bit SQLite limits, timedelta overflow, int() of 5,000 digits
        ("latest~99999999999999999999", "more snapshots than any repository holds"),
        ("latest~" + "9" * 5000, "more snapshots than any repository holds"),
        ("@1000000000000000000000d", "longer than any duration stcore can use"),
        ("@" + "9" * 5000 + "d", "longer than any duration stcore can use"),
    ]:
        result = run_cli(*base, "show", ref)
        assert result.returncode == 1, (ref, result.stderr)
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr
        assert len(result.stderr) < 400, result.stderr  # a hostile ref is cut, not echoed whole
        assert "Traceback" not in result.stderr


def test_the_seed_facade_reads_back_by_offset_and_time(
    history: tuple[Repository, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloud_storage_manager import CloudStorageManager

    monkeypatch.chdir(tmp_path)
    repository, ids = history
    storage = CloudStorageManager(repository=repository.location)
    backup = storage.get_backup("latest~1")
    assert backup is not None and backup["backup_id"] == ids[1]
    assert backup["data_sources"]["src"].read_bytes("state.json") == b'{"number": 3}'
    dated = storage.get_backup("@2026-11-02")
    assert dated is not None and dated["backup_id"] == ids[-1]
    assert storage.get_backup("latest~9") is None
    storage.close()
