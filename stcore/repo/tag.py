"""Tag: change the tags of existing snapshots, as restic's ``tag`` does.

A manifest is stored under its snapshot's id and sealed to that name, so its tags cannot change
in place. Each change writes a new manifest (the same time, host, sources and statistics, and
an id with the same time part and a new random part) and only then deletes the old one, all
under the repository's exclusive lock (restic takes it too: two tag runs must not both replace
one snapshot, and a prune must not run between the two steps). The new manifest records two
fields that readers not knowing them ignore: ``original``, the id of the first snapshot of the
line (restic's field; kept across changes), and ``replaces``, the id it replaced.

A crash between the two steps leaves both manifests: two complete snapshots of the same data,
differing only in id and tags, both listed by ``stcore snapshots`` and both restorable. Every
tag run first finishes such changes: a snapshot whose ``replaces`` names a snapshot still
there, identical to it apart from id and tags, has that one deleted. The candidates are found
from the listing alone (a change keeps the time part of the id, so they are ids sharing a time
part), so finishing costs the listing plus the manifests of those few ids.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from stcore.errors import (
    ConfigError,
    CorruptObjectError,
    SnapshotNotFoundError,
)
from stcore.models import SNAPSHOT_ID, SnapshotManifest, new_snapshot_id
from stcore.repo.locks import DEFAULT_LOCK_WAIT, repository_lock
from stcore.repo.store import Store

#: told of every snapshot replaced (old id, its replacement), as it happens
OnReplace = Callable[[str, SnapshotManifest], None]


@attrs.frozen(kw_only=True)
class Retag:
    """One snapshot replaced by a copy with other tags."""

    old_id: str
    manifest: SnapshotManifest

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old_id, "new": self.manifest.id, "tags": list(self.manifest.tags)}


@attrs.frozen(kw_only=True)
class TagResult:
    #: snapshots whose tags changed
    changed: tuple[Retag, ...] = ()
    #: snapshots that already had the tags asked for (left as they are)
    unchanged: tuple[str, ...] = ()
    #: snapshots named that no longer exist (forgotten meanwhile)
    missing: tuple[str, ...] = ()
    #: changes an earlier, interrupted run left half done, finished now
    finished: tuple[Retag, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "changed": [r.to_json() for r in self.changed],
            "unchanged": list(self.unchanged),
            "missing": list(self.missing),
            "finished": [r.to_json() for r in self.finished],
        }


def new_tags(
    current: Iterable[str],
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    set_tags: Iterable[str] | None = None,
) -> tuple[str, ...]:
    """The tags after a change, in order, each once: ``set_tags`` replaces them all, otherwise
    ``add`` appends those missing and ``remove`` drops those present. An empty string given is
    no tag, so ``set_tags=[""]`` clears them (restic's ``--set ""``)."""
    given = [tag for tag in (set_tags if set_tags is not None else add) if tag != ""]
    tags = given if set_tags is not None else [*current, *given]
    dropped = set(remove)
    return tuple(dict.fromkeys(tag for tag in tags if tag not in dropped))


def _check_request(
    add: tuple[str, ...], remove: tuple[str, ...], set_tags: tuple[str, ...] | None
) -> None:
    if set_tags is not None and (add or remove):
        raise ConfigError("--set replaces every tag: give it alone, without --add or --remove")
    if set_tags is None and not add and not remove:
        raise ConfigError("nothing to do: give --add, --remove or --set")
    for tag in (*add, *remove, *(set_tags or ())):
        if not isinstance(tag, str):
            raise ConfigError(f"tags must be text, got {tag!r}")


def _time_part(snapshot_id: str) -> str:
    return snapshot_id.rsplit("-", 1)[0]


def _new_id(old: SnapshotManifest, taken: set[str]) -> str:
    """An id with ``old``'s time part (so it sorts and reads as the same moment) and a new
    random part no stored snapshot has."""
    while True:
        if SNAPSHOT_ID.fullmatch(old.id):
            candidate = f"{_time_part(old.id)}-{secrets.token_hex(4)}"
        else:
            candidate = new_snapshot_id(old.time)
        if candidate not in taken:
            return candidate


def _same_but_tags(one: SnapshotManifest, other: SnapshotManifest) -> bool:
    return attrs.evolve(one, id="", tags=()) == attrs.evolve(other, id="", tags=())


def finish_interrupted(store: Store, stored_ids: Iterable[str]) -> list[Retag]:
    """Delete the snapshots an interrupted tag change replaced but left behind (see the module
    docstring); return what was finished. Call it under the exclusive lock."""
    groups: dict[str, list[str]] = {}
    for snapshot_id in stored_ids:
        groups.setdefault(_time_part(snapshot_id), []).append(snapshot_id)
    finished: list[Retag] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        loaded: dict[str, tuple[SnapshotManifest, dict[str, Any]]] = {}
        for snapshot_id in members:
            try:
                loaded[snapshot_id] = store.load_manifest_document(snapshot_id)
            except (SnapshotNotFoundError, CorruptObjectError):
                continue  # gone, or damaged (check names it): not a half-done change
        for snapshot_id in sorted(loaded):
            manifest, document = loaded[snapshot_id]
            old_id = document.get("replaces")
            if not isinstance(old_id, str) or old_id == snapshot_id or old_id not in loaded:
                continue
            if _same_but_tags(loaded[old_id][0], manifest) and store.delete_manifest(old_id):
                finished.append(Retag(old_id=old_id, manifest=manifest))
    return finished


def tag(
    store: Store,
    snapshot_ids: Iterable[str],
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    set_tags: Iterable[str] | None = None,
    wait: float = DEFAULT_LOCK_WAIT,
    on_replace: OnReplace | None = None,
) -> TagResult:
    """Change the tags of ``snapshot_ids``: ``add`` and ``remove`` some, or ``set_tags`` to
    replace them all (``[""]``: none). A snapshot whose tags would not change is left alone; the
    others are replaced, one at a time, by a new manifest (see the module docstring), and
    ``on_replace`` is told of each as it happens. Changes an earlier run left half done are
    finished first; a snapshot named by the id such a change replaced counts as its
    replacement. Waits up to ``wait`` seconds for the exclusive lock.
    """
    add, remove = tuple(add), tuple(remove)
    set_tags = None if set_tags is None else tuple(set_tags)
    _check_request(add, remove, set_tags)
    wanted = list(dict.fromkeys(snapshot_ids))
    tell = on_replace or (lambda old, new: None)
    changed: list[Retag] = []
    unchanged: list[str] = []
    missing: list[str] = []
    with repository_lock(store.backend, exclusive=True, purpose="tag", wait=wait):
        taken = set(store.snapshot_ids())
        finished = finish_interrupted(store, taken)
        moved: dict[str, str] = {}
        for done in finished:
            taken.discard(done.old_id)
            moved[done.old_id] = done.manifest.id
            tell(done.old_id, done.manifest)
        seen: set[str] = set()
        for snapshot_id in wanted:
            while snapshot_id in moved:
                snapshot_id = moved[snapshot_id]
            if snapshot_id in seen:
                continue
            seen.add(snapshot_id)
            try:
                old, document = store.load_manifest_document(snapshot_id)
            except SnapshotNotFoundError:
                missing.append(snapshot_id)
                continue
            tags = new_tags(old.tags, add=add, remove=remove, set_tags=set_tags)
            if tags == old.tags:
                unchanged.append(snapshot_id)
                continue
            new = attrs.evolve(old, id=_new_id(old, taken), tags=tags)
            original = document.get("original")
            document = {
                **document,
                "original": original if isinstance(original, str) else old.id,
                "replaces": old.id,
            }
            store.write_manifest(new, document)  # first the new manifest ...
            taken.add(new.id)
            store.delete_manifest(old.id)  # ... then the old one goes
            taken.discard(old.id)
            tell(old.id, new)
            changed.append(Retag(old_id=old.id, manifest=new))
    return TagResult(
        changed=tuple(changed),
        unchanged=tuple(unchanged),
        missing=tuple(missing),
        finished=tuple(finished),
    )
