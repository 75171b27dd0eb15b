"""Forget: remove snapshots, by id or by a retention policy with restic's semantics.

Snapshots are grouped (by host and source set, by default) and each group is walked newest first.
Every rule keeps snapshots independently and a snapshot kept by any rule stays:

- ``last N``: the N newest snapshots.
- ``hourly/daily/weekly/monthly/yearly N``: for the N most recent hours (days, ISO weeks, months,
  years) that have snapshots, the newest snapshot in each. Periods without snapshots do not count.
  Buckets are taken in the local time zone (``tz``), as restic does, so "daily" follows the
  wall clock across DST changes.
- ``within D``: every snapshot taken within D of the group's newest snapshot (not of now).
- ``tags``: every snapshot carrying one of the tags.

N = -1 means "every period". When a period rule finds fewer periods than it may keep, the oldest
snapshot of the group is kept as well (restic's documented behaviour since 0.15), so a new
repository does not lose its first backup to a "monthly 6" policy. A policy with no rule at all
is refused by the CLI, since forgetting everything is never what a typo meant.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from stcore.durations import parse_duration
from stcore.errors import ConfigError
from stcore.models import SnapshotManifest
from stcore.repo.store import Store


@attrs.frozen(kw_only=True)
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: dt.timedelta | None = None
    tags: tuple[str, ...] = ()

    def empty(self) -> bool:
        counts = (self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly)
        return not any(counts) and self.within is None and not self.tags

    @classmethod
    def from_mapping(cls, table: dict[str, Any], where: str = "policy") -> Policy:
        """From ``[retention]`` keys: keep_last, keep_daily, ..., keep_within, keep_tags."""
        known = {f"keep_{n}" for n in ("last", "hourly", "daily", "weekly", "monthly", "yearly")}
        unknown = set(table) - known - {"keep_within", "keep_tags"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        within = table.get("keep_within")
        return cls(
            **{key[5:]: int(table[key]) for key in known if key in table},
            within=parse_duration(str(within)) if within else None,
            tags=tuple(table.get("keep_tags", ())),
        )


@attrs.frozen(kw_only=True)
class Decision:
    manifest: SnapshotManifest
    keep: bool
    reasons: tuple[str, ...]


def _bucketers(tz: dt.tzinfo | None) -> list[tuple[str, Callable[[dt.datetime], object]]]:
    def local(t: dt.datetime) -> dt.datetime:
        return t.astimezone(tz)

    return [
        ("hourly", lambda t: local(t).strftime("%Y-%m-%d %H")),
        ("daily", lambda t: local(t).date()),
        ("weekly", lambda t: local(t).isocalendar()[:2]),
        ("monthly", lambda t: (local(t).year, local(t).month)),
        ("yearly", lambda t: local(t).year),
    ]


def group_key(manifest: SnapshotManifest) -> tuple[str, tuple[str, ...]]:
    return (manifest.host, tuple(sorted(manifest.sources)))


def apply_policy(
    manifests: Iterable[SnapshotManifest],
    policy: Policy,
    *,
    tz: dt.tzinfo | None = None,
    group_by: Callable[[SnapshotManifest], object] = group_key,
) -> list[Decision]:
    """Keep/forget decisions for every snapshot, newest first within each group."""
    groups: dict[object, list[SnapshotManifest]] = {}
    for manifest in manifests:
        groups.setdefault(group_by(manifest), []).append(manifest)
    decisions: list[Decision] = []
    for members in groups.values():
        decisions.extend(_apply_to_group(members, policy, tz))
    return decisions


def _apply_to_group(
    members: Sequence[SnapshotManifest], policy: Policy, tz: dt.tzinfo | None
) -> list[Decision]:
    ordered = sorted(members, key=lambda m: (m.time, m.id), reverse=True)
    rules: list[tuple[str, Callable[[dt.datetime], object], int]] = []
    if policy.last:
        counter = iter(range(len(ordered)))
        rules.append(("last", lambda t: next(counter), policy.last))
    for name, bucket in _bucketers(tz):
        count = getattr(policy, name)
        if count:
            rules.append((name, bucket, count))
    remaining = [count for _, _, count in rules]
    previous: list[object] = [None] * len(rules)
    newest = ordered[0].time if ordered else None
    decisions = []
    for position, manifest in enumerate(ordered):
        oldest = position == len(ordered) - 1
        reasons = []
        for i, (name, bucket, _) in enumerate(rules):
            value = bucket(manifest.time)
            if value != previous[i] and remaining[i] != 0:
                previous[i] = value
                remaining[i] -= 1
                reasons.append(f"{name} snapshot")
            elif oldest and name != "last" and remaining[i] > 0:
                reasons.append(f"oldest {name} snapshot")
        within = policy.within
        if within is not None and newest is not None and newest - manifest.time <= within:
            reasons.append(f"within {within}")
        matching = sorted(set(policy.tags) & set(manifest.tags))
        if matching:
            reasons.append(f"tag {', '.join(matching)}")
        decisions.append(Decision(manifest=manifest, keep=bool(reasons), reasons=tuple(reasons)))
    return decisions


def forget(store: Store, snapshot_ids: Iterable[str]) -> list[str]:
    """Remove snapshots (their manifests) and return the ids removed.

    The data only they referenced stays until prune reclaims it; forgetting never touches
    packs, so it is safe while other backups run. An id already gone (another process forgot
    it) is skipped.
    """
    return [snapshot_id for snapshot_id in snapshot_ids if store.delete_manifest(snapshot_id)]
