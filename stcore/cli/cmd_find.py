"""``stcore find``: which snapshots hold entries matching a glob, as restic's ``find``.

Only trees are read, never file contents. The trees of every snapshot searched are read
together, a bulk read per level of folders, so a tree that several snapshots share (an
unchanged folder) is read once; and a folder's matches are worked out once per tree id, so an
unchanged folder costs nothing more in the next snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import click

from stcore.cli.cmd_ls import long_entry, node_json, print_line
from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, out, plural
from stcore.cli.root import cli
from stcore.errors import CorruptObjectError
from stcore.globs import match_path
from stcore.models import SnapshotManifest, TreeNode

#: a match inside a tree: its path below that tree, and its node
Match = tuple[str, TreeNode]
#: what a folder's search keeps: ("match", name, node) for an entry of its own that matches,
#: ("dir", name, key) for a subfolder with matches below it (key: its search's key)
_Entry = tuple[str, str, TreeNode | tuple[bytes, str]]


class Finder:
    """Matches of a set of patterns in trees, each tree id searched once.

    A pattern without ``/`` looks at entry names only, so what a folder holds matches the same
    wherever the folder is and its matches are kept by tree id. A pattern with ``/`` looks at
    the path inside the source, so then they are kept by tree id and path.
    """

    def __init__(
        self, patterns: Sequence[str], trees: Mapping[bytes, list[TreeNode]], *, fold: bool
    ) -> None:
        self._patterns = list(patterns)
        self._fold = fold
        self._trees = trees
        self._by_path = any("/" in p.strip("/") for p in patterns)
        self._done: dict[tuple[bytes, str], list[_Entry]] = {}

    def _matches(self, path: str) -> bool:
        return any(match_path(p, path, ignore_case=self._fold) for p in self._patterns)

    def find(self, root: bytes) -> Iterator[Match]:
        """The matches below tree ``root`` (a source's root), in tree order, with their paths
        below it. Without recursion (folders nest without bound); a folder that contains itself
        is damage, as :meth:`stcore.repo.store.Store.walk` reports it.

        Each folder's search is kept as its own matches plus references to the subfolders that
        hold any, never as copies of every path below it: a folder ten thousand levels deep
        costs memory in proportion to the folders, and each path is joined only when yielded."""
        return self._paths(self._search(root))  # searched now: damage is raised here

    def _paths(self, top: list[_Entry]) -> Iterator[Match]:
        # (entries of a folder, position); names: the folders above the one being expanded
        names: list[str] = []
        stack: list[tuple[list[_Entry], int]] = [(top, 0)]
        while stack:
            entries, position = stack.pop()
            if position == len(entries):
                if names:
                    names.pop()
                continue
            stack.append((entries, position + 1))
            kind, name, value = entries[position]
            if kind == "match":
                assert isinstance(value, TreeNode)
                yield "/".join([*names, name]), value
            else:
                assert isinstance(value, tuple)
                names.append(name)
                stack.append((self._done[value], 0))

    def _search(self, root: bytes) -> list[_Entry]:
        """The entries of folder ``root``: its own matches, and (folder name, key) for each
        subfolder with matches below it, each folder searched once per key."""

        def key(tree: bytes, path: str) -> tuple[bytes, str]:
            return (tree, path if self._by_path else "")

        done = self._done.get(key(root, ""))
        if done is not None:
            return done
        # a folder being searched: its tree, path, nodes still to see, its entries so far
        stack: list[tuple[bytes, str, Iterator[TreeNode], list[_Entry]]] = [
            (root, "", iter(self._trees[root]), [])
        ]
        on_path = {root}
        while True:
            tree, path, nodes, entries = stack[-1]
            node = next(nodes, None)
            if node is None:  # the folder is done: keep its entries, tell its parent
                stack.pop()
                on_path.discard(tree)
                self._done[key(tree, path)] = entries
                if not stack:
                    return entries
                if entries:
                    parent = stack[-1][3]
                    parent.append(("dir", path.rsplit("/", 1)[-1], key(tree, path)))
                continue
            child = f"{path}/{node.name}" if path else node.name
            if self._matches(child):
                entries.append(("match", node.name, node))
            if node.kind != "dir" or node.subtree is None:
                continue
            known = self._done.get(key(node.subtree, child))
            if known is not None:
                if known:
                    entries.append(("dir", node.name, key(node.subtree, child)))
            elif node.subtree in on_path:
                raise CorruptObjectError(
                    f"tree {tree.hex()}: folder {child!r} contains itself; run `stcore check`"
                )
            else:
                on_path.add(node.subtree)
                stack.append((node.subtree, child, iter(self._trees[node.subtree]), []))


def search(
    repo_trees: Callable[..., Mapping[bytes, list[TreeNode]]],
    manifests: Sequence[SnapshotManifest],
    patterns: Sequence[str],
    *,
    sources: Sequence[str] = (),
    fold: bool = False,
) -> list[tuple[SnapshotManifest, list[tuple[str, str, TreeNode]]]]:
    """Per snapshot (in the order given) its matches as (source, path, node); snapshots without
    any are left out. ``repo_trees`` reads every tree below some roots (Store.read_trees)."""
    wanted = set(sources)

    def chosen(manifest: SnapshotManifest) -> list[str]:
        return [name for name in manifest.sources if not wanted or name in wanted]

    roots = [manifest.sources[n].root for manifest in manifests for n in chosen(manifest)]
    finder = Finder(patterns, repo_trees(*roots) if roots else {}, fold=fold)
    found = []
    for manifest in manifests:
        matches = [
            (name, path, node)
            for name in chosen(manifest)
            for path, node in finder.find(manifest.sources[name].root)
        ]
        if matches:
            found.append((manifest, matches))
    return found


@cli.command()
@click.argument("patterns", nargs=-1, required=True, metavar="PATTERN...")
@click.option(
    "--snapshot", "snaps", multiple=True, metavar="SNAP",
    help="Search this snapshot (repeatable; default: every snapshot the filters select).",
)  # fmt: skip
@click.option(
    "--source", "-s", "sources", multiple=True, metavar="NAME",
    help="Search only this source (repeatable).",
)  # fmt: skip
@click.option(
    "--tag", "-t", "tags", multiple=True, metavar="TAG",
    help="Without --snapshot: only snapshots with this tag (repeatable: all of them).",
)  # fmt: skip
@click.option(
    "--host",
    "hostname",
    default=None,
    metavar="NAME",
    help="Without --snapshot: only from this host.",
)
@click.option("--ignore-case", "-i", is_flag=True, help="Match without regard to case.")
@click.option("--json", "as_json", is_flag=True, help="Print the matches as JSON.")
@pass_context
def find(
    ctx: Context,
    patterns: tuple[str, ...],
    snaps: tuple[str, ...],
    sources: tuple[str, ...],
    tags: tuple[str, ...],
    hostname: str | None,
    ignore_case: bool,
    as_json: bool,
) -> None:
    """Find files, folders and symlinks matching any PATTERN, in every snapshot (newest first)
    or in those --snapshot names, and print per snapshot the matches with mtime and size.

    A PATTERN without / matches an entry's name at any depth (*.json); one with / matches its
    path inside the source (logs/*.jsonl, logs/**/*.jsonl). Only folder listings are read.
    """
    if snaps and (tags or hostname is not None):
        raise click.UsageError("give --snapshot or filters (--tag, --host), not both")
    with ctx.open() as repo:
        if snaps:
            manifests = list({m.id: m for m in (repo.resolve(s) for s in snaps)}.values())
        else:
            source = sources[0] if len(sources) == 1 else None
            manifests = repo.snapshots(tags=tags, host=hostname, source=source)
        found = search(
            repo.store.read_trees, manifests, patterns, sources=sources, fold=ignore_case
        )
    if as_json:
        emit_json(
            [
                {
                    **manifest.summary(),
                    "matches": [node_json(source, path, node) for source, path, node in matches],
                }
                for manifest, matches in found
            ]
        )
        return
    total = 0
    for manifest, matches in found:
        total += len(matches)
        count = plural(len(matches), "match")
        out.print(f"snapshot {manifest.id} ({count})", highlight=False)
        for source, path, node in matches:
            print_line("  " + long_entry(f"{source}/{path}", node))
    searched = plural(len(manifests), "snapshot")
    if not total:
        out.print(f"no matches in {searched}", highlight=False)
        return
    out.print(f"{plural(total, 'match')} in {len(found)} of {searched}", highlight=False)
