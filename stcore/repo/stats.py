"""Stats: what a repository stores against what its snapshots hold (``stcore stats``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from stcore.repo.store import Store

#: the object kinds sizes are reported for; anything else counts as "other"
KINDS = ("data", "index", "snapshots", "other")


@attrs.frozen(kw_only=True)
class RepositoryStats:
    """Sizes and counts of one repository."""

    repository: str
    id: str
    snapshots: int
    objects: int
    blobs: int
    stored_bytes: int
    #: stored bytes by the first part of the key: data, index, snapshots, other
    stored_by_kind: Mapping[str, int]
    #: the plaintext size of every distinct data blob (what deduplication left)
    unique_data_bytes: int
    #: the sum of every snapshot's size (what a restore of all of them would write)
    snapshot_bytes_total: int
    compression: str
    encryption: str

    @property
    def dedup_ratio(self) -> float:
        """Snapshot bytes per unique data byte (1.0 for an empty repository)."""
        return self.snapshot_bytes_total / self.unique_data_bytes if self.unique_data_bytes else 1.0

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "stored_by_kind": dict(self.stored_by_kind)}

    def __repr__(self) -> str:
        return (
            f"<RepositoryStats {self.repository}: {self.snapshots} snapshots, "
            f"{self.stored_bytes} bytes stored, {self.blobs} blobs>"
        )


def stats(store: Store, *, snapshots: int, snapshot_bytes: int) -> RepositoryStats:
    """Sizes by object kind from one listing; ``snapshots``/``snapshot_bytes`` come from the
    caller (the catalog knows them without reading every manifest)."""
    stored = dict.fromkeys(KINDS, 0)
    objects = 0
    for info in store.backend.list():
        objects += 1
        kind = info.key.split("/", 1)[0]
        stored[kind if kind in stored else "other"] += info.size
    return RepositoryStats(
        repository=store.location,
        id=store.id,
        snapshots=snapshots,
        objects=objects,
        blobs=len(store.index),
        stored_bytes=sum(stored.values()),
        stored_by_kind=stored,
        unique_data_bytes=store.index.raw_bytes("data"),
        snapshot_bytes_total=snapshot_bytes,
        compression=store.config.compression,
        encryption=store.config.encryption,
    )
