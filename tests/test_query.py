"""Querying snapshots by time and tag takes what people write: ``since="7d"``, a date, one tag
as a string; anything else is refused in one line, never compared as it is."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import stcore
from stcore.errors import ConfigError


@pytest.fixture
def repo(tmp_path: Path) -> stcore.Repository:
    repository = stcore.init_repository(str(tmp_path / "repo"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a")
    sources = stcore.sources_for_paths([str(tmp_path / "src")])
    now = dt.datetime.now(dt.UTC)
    for days, tags in ((30, ["old"]), (3, ["prod", "nightly"]), (0, ["prod"])):
        repository.backup(sources, tags=tags, time=now - dt.timedelta(days=days))
    return repository


def _tags(found: list[stcore.SnapshotManifest]) -> list[tuple[str, ...]]:
    return [m.tags for m in found]


def test_since_and_until_take_durations_dates_and_datetimes(repo: stcore.Repository) -> None:
    assert _tags(repo.query(since="7d")) == [("prod",), ("nightly", "prod")]
    assert _tags(repo.query(until="7d")) == [("old",)]
    week_ago = dt.date.today() - dt.timedelta(days=7)
    assert len(repo.query(since=week_ago)) == 2
    assert len(repo.query(since=week_ago.isoformat())) == 2
    naive = dt.datetime.now() - dt.timedelta(days=7)  # naive: UTC
    assert len(repo.snapshots(since=naive)) == 2


def test_one_tag_as_a_string_is_one_tag_not_its_letters(repo: stcore.Repository) -> None:
    assert len(repo.query(tags="prod")) == 2
    assert _tags(repo.query(tags=["prod", "nightly"])) == [("nightly", "prod")]
    assert repo.query(tags="p") == []


@pytest.mark.parametrize(
    ("filters", "words"),
    [
        ({"since": 7}, "since must be a datetime"),
        ({"until": 1.5}, "until must be a datetime"),
        ({"since": "last tuesday"}, "not a date or a duration"),
        ({"since": "7m"}, "min"),
        ({"tags": [1]}, "tags must be text"),
    ],
)
def test_a_filter_of_the_wrong_kind_is_refused_in_one_line(
    repo: stcore.Repository, filters: dict[str, object], words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        repo.query(**filters)  # type: ignore[arg-type]
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_the_seed_facade_takes_the_same_forms(repo: stcore.Repository, tmp_path: Path) -> None:
    from cloud_storage_manager import CloudStorageManager

    facade = CloudStorageManager(repository=repo.location)
    try:
        assert len(facade.query_backups(start_date="7d")) == 2
        assert len(facade.query_backups(tags="prod")) == 2  # type: ignore[arg-type]
    finally:
        facade.close()
