"""Retention policies on synthetic snapshot times, following restic's documented semantics."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from stcore.durations import parse_duration
from stcore.errors import ConfigError
from stcore.models import SnapshotManifest, SourceSummary
from stcore.repo.forget import Policy, apply_policy

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")


def snap(when: dt.datetime, host: str = "h", tags: tuple[str, ...] = (), source: str = "s"):
    return SnapshotManifest(
        id=f"{when.astimezone(UTC):%Y%m%dT%H%M%S}Z-{host}",
        time=when,
        host=host,
        tags=tags,
        sources={source: SourceSummary(name=source, type="files", root=b"\0" * 32)},
    )


def kept(snaps, policy: Policy, tz=UTC) -> list[str]:
    decisions = apply_policy(snaps, policy, tz=tz)
    return sorted(
        d.manifest.time.astimezone(tz).strftime("%m-%d %H:%M") for d in decisions if d.keep
    )


def hourly_series(start: dt.datetime, hours: int) -> list[SnapshotManifest]:
    return [snap(start + dt.timedelta(hours=h)) for h in range(hours)]


def test_keep_last_keeps_the_newest_n() -> None:
    snaps = hourly_series(dt.datetime(2026, 3, 1, tzinfo=UTC), 10)
    assert kept(snaps, Policy(last=3)) == ["03-01 07:00", "03-01 08:00", "03-01 09:00"]


def test_keep_daily_keeps_the_newest_of_each_of_the_last_n_days() -> None:
    # Four snapshots a day (0, 6, 12, 18 h) for five days.
    start = dt.datetime(2026, 3, 1, tzinfo=UTC)
    snaps = [snap(start + dt.timedelta(days=d, hours=h)) for d in range(5) for h in (0, 6, 12, 18)]
    assert kept(snaps, Policy(daily=3)) == ["03-03 18:00", "03-04 18:00", "03-05 18:00"]


def test_days_without_snapshots_do_not_count() -> None:
    start = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
    days = [0, 1, 5, 9, 10]  # gaps between
    snaps = [snap(start + dt.timedelta(days=d)) for d in days]
    assert kept(snaps, Policy(daily=3)) == ["03-06 12:00", "03-10 12:00", "03-11 12:00"]


def test_weekly_uses_iso_weeks_and_monthly_calendar_months() -> None:
    snaps = [
        snap(dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(days=d)) for d in range(0, 120, 3)
    ]
    weekly = kept(snaps, Policy(weekly=2))
    # 2026-04-28 is a Tuesday (ISO week 18), 04-25 Saturday of week 17.
    assert weekly == ["04-25 00:00", "04-28 00:00"]
    assert kept(snaps, Policy(monthly=2)) == ["03-29 00:00", "04-28 00:00"]
    assert kept(snaps, Policy(yearly=1)) == ["04-28 00:00"]


def test_rules_combine_and_each_snapshot_lists_why_it_stays() -> None:
    snaps = hourly_series(dt.datetime(2026, 3, 1, tzinfo=UTC), 72)
    decisions = apply_policy(snaps, Policy(last=2, daily=3), tz=UTC)
    reasons = {d.manifest.time.strftime("%d %H"): d.reasons for d in decisions if d.keep}
    assert reasons == {
        "03 23": ("last snapshot", "daily snapshot"),
        "03 22": ("last snapshot",),
        "02 23": ("daily snapshot",),
        "01 23": ("daily snapshot",),
    }


def test_minus_one_keeps_every_period() -> None:
    snaps = [snap(dt.datetime(2026, 3, d, h, tzinfo=UTC)) for d in (1, 2, 3) for h in (1, 9)]
    assert kept(snaps, Policy(daily=-1)) == ["03-01 09:00", "03-02 09:00", "03-03 09:00"]


def test_within_is_measured_from_the_newest_snapshot_not_from_now() -> None:
    snaps = hourly_series(dt.datetime(2020, 1, 1, tzinfo=UTC), 10)
    assert kept(snaps, Policy(within=parse_duration("3h"))) == [
        "01-01 06:00", "01-01 07:00", "01-01 08:00", "01-01 09:00",
    ]  # fmt: skip


def test_keep_tag_keeps_tagged_snapshots_whatever_their_age() -> None:
    snaps = hourly_series(dt.datetime(2026, 3, 1, tzinfo=UTC), 5)
    snaps[0] = snap(snaps[0].time, tags=("release",))
    assert kept(snaps, Policy(last=1, tags=("release",))) == ["03-01 00:00", "03-01 04:00"]


def test_oldest_snapshot_is_kept_when_periods_run_short() -> None:
    # Only 2 months of history but monthly=6: both months' newest, plus the very first backup.
    snaps = [snap(dt.datetime(2026, m, d, tzinfo=UTC)) for m in (5, 6) for d in (1, 15)]
    decisions = apply_policy(snaps, Policy(monthly=6), tz=UTC)
    kept_reasons = {d.manifest.time.strftime("%m-%d"): d.reasons for d in decisions if d.keep}
    assert kept_reasons == {
        "06-15": ("monthly snapshot",),
        "05-15": ("monthly snapshot",),
        "05-01": ("oldest monthly snapshot",),
    }


def test_daily_buckets_follow_local_time_across_dst() -> None:
    # Berlin springs forward on 2026-03-29 (02:00 -> 03:00) and falls back on 2026-10-25.
    # Snapshots at 23:30 local every day: in UTC they fall on the previous day's 21:30/22:30,
    # and local-time buckets must still see one snapshot per local day.
    for day in (dt.date(2026, 3, 27), dt.date(2026, 10, 23)):
        local = [
            dt.datetime.combine(day + dt.timedelta(days=i), dt.time(23, 30), BERLIN)
            for i in range(5)
        ]
        snaps = [snap(t.astimezone(UTC)) for t in local]
        chosen = kept(snaps, Policy(daily=5), tz=BERLIN)
        assert len(chosen) == 5
    # After fall-back, 02:00-03:00 happens twice: both passes are one wall-clock hour, so only
    # the newer 02:30 stays (01:30 is its own hour, and the oldest anyway).
    around = [
        dt.datetime(2026, 10, 24, 23, 30, tzinfo=UTC),  # 01:30 CEST
        dt.datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST
        dt.datetime(2026, 10, 25, 1, 30, tzinfo=UTC),  # 02:30 CET
    ]
    decisions = apply_policy([snap(t) for t in around], Policy(hourly=5), tz=BERLIN)
    assert [d.manifest.time for d in decisions if d.keep] == [around[2], around[0]]


def test_groups_by_host_and_source_set() -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=UTC)
    snaps = [
        snap(start + dt.timedelta(hours=h), host=host) for host in ("a", "b") for h in range(3)
    ]
    snaps += [snap(start + dt.timedelta(hours=h), host="a", source="other") for h in range(3)]
    decisions = apply_policy(snaps, Policy(last=1), tz=UTC)
    assert sum(d.keep for d in decisions) == 3  # one per (host, sources) group


def test_empty_policy_is_detected_and_durations_parse() -> None:
    assert Policy().empty()
    assert not Policy(within=dt.timedelta(days=1)).empty()
    assert parse_duration("1y2mo3d4h") == dt.timedelta(days=365 + 60 + 3, hours=4)
    with pytest.raises(ConfigError, match="unknown unit 'weeks'"):
        parse_duration("3 weeks")
    assert Policy.from_mapping({"keep_daily": 7, "keep_within": "2d"}).daily == 7
    with pytest.raises(ConfigError, match="unknown keys keep_fortnightly"):
        Policy.from_mapping({"keep_fortnightly": 2})


def test_cli_forget_dry_run_then_for_real(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import stcore
    from tests.conftest import run_cli

    repo = stcore.init_repository(str(tmp_path / "repo"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    start = dt.datetime(2026, 3, 1, tzinfo=UTC)
    ids = [
        repo.backup(
            stcore.sources_for_paths([str(tmp_path / "d")]), time=start + dt.timedelta(days=i)
        ).manifest.id
        for i in range(5)
    ]
    env = {"STCORE_REPO": str(tmp_path / "repo")}
    refused = run_cli("forget", env=env)
    assert refused.returncode == 1 and "no policy given" in refused.stderr
    dry = json.loads(run_cli("forget", "--keep-last", "2", "--dry-run", "--json", env=env).stdout)
    assert [d["id"] for d in dry["decisions"] if d["keep"]] == [ids[4], ids[3]]
    assert dry["removed"] == []
    assert len(stcore.open_repository(str(tmp_path / "repo")).snapshots()) == 5
    real = json.loads(run_cli("forget", "--keep-last", "2", "--json", env=env).stdout)
    assert sorted(real["removed"]) == sorted(ids[:3])
    assert [m.id for m in stcore.open_repository(str(tmp_path / "repo")).snapshots()] == [
        ids[4], ids[3],
    ]  # fmt: skip
    named = run_cli("forget", ids[3][-8:], env=env)
    assert named.returncode == 0 and "forgot 1 snapshot" in named.stdout


def test_daemon_applies_the_configured_retention_after_a_backup(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import stcore
    from stcore.config import load_settings
    from stcore.daemon import AutoSync

    (tmp_path / "data").mkdir()
    (tmp_path / "stcore.toml").write_text(
        '[repository]\nurl = "repo"\n[sources.data]\ntype = "files"\npath = "data"\n'
        "[retention]\nkeep_last = 2\n"
    )
    settings = load_settings(tmp_path / "stcore.toml")
    stcore.init_repository(str(tmp_path / "repo")).close()
    autosync = AutoSync(settings=settings, backup_interval=3600, auto_sync=False)
    for i in range(4):
        (tmp_path / "data" / f"f{i}").write_bytes(bytes([i]) * 100_000)
        autosync.run_once(sync=False)
    autosync.close()
    assert len(stcore.open_repository(str(tmp_path / "repo")).snapshots()) == 2


def test_bad_retention_config_is_refused_early(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from stcore.config import load_settings

    (tmp_path / "stcore.toml").write_text("[retention]\nkeep_dayly = 3\n")
    with pytest.raises(ConfigError, match="unknown keys keep_dayly"):
        load_settings(tmp_path / "stcore.toml")
