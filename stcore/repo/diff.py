"""What changed between two snapshots, skipping subtrees whose ids are equal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import attrs

from stcore.models import SnapshotManifest, TreeNode

if TYPE_CHECKING:
    from stcore.repo.store import Store

Change = Literal["added", "removed", "modified", "metadata"]


@attrs.frozen(kw_only=True)
class DiffEntry:
    change: Change
    source: str
    path: str
    kind: str

    def symbol(self) -> str:
        return {"added": "+", "removed": "-", "modified": "M", "metadata": "U"}[self.change]


def _content_differs(a: TreeNode, b: TreeNode) -> bool:
    if a.kind != b.kind:
        return True
    if a.kind == "file":
        return a.content != b.content
    if a.kind == "symlink":
        return a.target != b.target
    return False


def diff_snapshots(
    store: Store, old: SnapshotManifest, new: SnapshotManifest
) -> Iterator[DiffEntry]:
    for name in sorted(set(old.sources) | set(new.sources)):
        before = old.sources.get(name)
        after = new.sources.get(name)
        if before is None or after is None:
            change: Change = "added" if before is None else "removed"
            summary = after or before
            assert summary is not None
            for path, node in store.walk(summary.root):
                yield DiffEntry(change=change, source=name, path="/".join(path), kind=node.kind)
            continue
        yield from _diff_trees(store, name, before.root, after.root, ())


def _diff_trees(
    store: Store,
    source: str,
    old: bytes | None,
    new: bytes | None,
    prefix: tuple[str, ...],
) -> Iterator[DiffEntry]:
    if old == new:
        return
    old_nodes = {n.name: n for n in store.read_tree(old)} if old else {}
    new_nodes = {n.name: n for n in store.read_tree(new)} if new else {}
    for name in sorted(set(old_nodes) | set(new_nodes)):
        a, b = old_nodes.get(name), new_nodes.get(name)
        path = (*prefix, name)
        text = "/".join(path)
        if a is None or b is None:
            node = b or a
            assert node is not None
            change: Change = "added" if a is None else "removed"
            yield DiffEntry(change=change, source=source, path=text, kind=node.kind)
            if node.kind == "dir":
                yield from _diff_trees(
                    store,
                    source,
                    None if a is None else node.subtree,
                    None if b is None else node.subtree,
                    path,
                )
            continue
        if _content_differs(a, b):
            yield DiffEntry(change="modified", source=source, path=text, kind=b.kind)
        elif (a.mode, a.mtime_ns) != (b.mode, b.mtime_ns):
            yield DiffEntry(change="metadata", source=source, path=text, kind=b.kind)
        if a.kind == "dir" and b.kind == "dir":
            yield from _diff_trees(store, source, a.subtree, b.subtree, path)
