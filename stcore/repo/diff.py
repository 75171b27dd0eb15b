"""What changed between two snapshots, skipping subtrees whose ids are equal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import attrs

from stcore.errors import CorruptObjectError
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
    store: Store, source: str, old: bytes | None, new: bytes | None, prefix: tuple[str, ...]
) -> Iterator[DiffEntry]:
    """Every change below two trees, depth-first in name order. Iterative, so depth is
    unbounded; a pair of trees met again on its own path (a hostile cycle) is damage."""
    stack: list[tuple[Iterator[DiffEntry | _Descend], tuple[bytes | None, bytes | None]]] = [
        (_level(store, source, old, new, prefix), (old, new))
    ]
    on_path = {(old, new)}
    while stack:
        item = next(stack[-1][0], None)
        if item is None:
            on_path.discard(stack.pop()[1])
            continue
        if isinstance(item, DiffEntry):
            yield item
            continue
        pair = (item.old, item.new)
        if pair in on_path:
            raise CorruptObjectError(
                f"source {source!r}: directory {'/'.join(item.path)} contains itself"
            )
        on_path.add(pair)
        stack.append((_level(store, source, item.old, item.new, item.path), pair))


@attrs.frozen
class _Descend:
    """A directory pair to compare after the entry that names it."""

    old: bytes | None
    new: bytes | None
    path: tuple[str, ...]


def _level(
    store: Store, source: str, old: bytes | None, new: bytes | None, prefix: tuple[str, ...]
) -> Iterator[DiffEntry | _Descend]:
    """The changes among one directory's entries, and the subdirectories to compare next."""
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
                yield _Descend(
                    None if a is None else node.subtree, None if b is None else node.subtree, path
                )
            continue
        if _content_differs(a, b):
            yield DiffEntry(change="modified", source=source, path=text, kind=b.kind)
        elif (a.mode, a.mtime_ns) != (b.mode, b.mtime_ns):
            yield DiffEntry(change="metadata", source=source, path=text, kind=b.kind)
        if a.kind == "dir" and b.kind == "dir":
            yield _Descend(a.subtree, b.subtree, path)
        elif a.kind == "dir" or b.kind == "dir":  # a directory became something else, or back
            yield _Descend(
                a.subtree if a.kind == "dir" else None, b.subtree if b.kind == "dir" else None, path
            )
