"""``stcore ls``: list a snapshot's sources and files, as restic's ``ls`` lists a snapshot."""

from __future__ import annotations

import datetime as dt
import json
import stat
from collections.abc import Iterator
from typing import Any

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import human_size
from stcore.cli.root import cli
from stcore.errors import PathNotFoundError
from stcore.models import SnapshotManifest, SourceSummary, TreeNode
from stcore.repo.store import Store
from stcore.text import printable

#: the file type bits ``--long`` shows, by node kind
_TYPE_BITS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}


def print_line(text: str) -> None:
    """One line of a listing, shown through :func:`printable`. Not through the rich console:
    a listing may have millions of lines, and rich takes some 200 µs for each."""
    click.echo(printable(text))


def mode_text(node: TreeNode) -> str:
    """``-rw-r--r--``: the permissions, with the type the node has (not whatever type bits
    its recorded mode holds)."""
    return stat.filemode(_TYPE_BITS[node.kind] | (node.mode & 0o7777))


def mtime_of(node: TreeNode) -> dt.datetime:
    return dt.datetime.fromtimestamp(node.mtime_ns / 1e9, dt.UTC)


def long_line(mode: str, size: str, when: dt.datetime, path: str) -> str:
    """The fixed columns take 45 characters, the path comes last and is never cut."""
    return f"{mode:10}  {size:>10}  {when.strftime('%Y-%m-%d %H:%M:%S')}  {path}"


def long_entry(shown: str, node: TreeNode) -> str:
    """``--long``'s line for ``node`` shown as ``shown``: mode, size, mtime, path (and a
    symlink's target)."""
    if node.kind == "symlink":
        shown += f" -> {node.target}"
    size = "-" if node.kind == "dir" else human_size(node.size)
    return long_line(mode_text(node), size, mtime_of(node), shown)


def node_json(source: str, path: str, node: TreeNode) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "source": source,
        "path": path,
        "type": node.kind,
        "size": node.size,
        "mode": oct(node.mode),
        "mtime": mtime_of(node).isoformat(),
    }
    if node.kind == "symlink":
        entry["target"] = node.target
    return entry


def _split(manifest: SnapshotManifest, path: str) -> tuple[str, tuple[str, ...]]:
    """``source/dir/...`` as (source name, components inside it); the longest source name
    that fits wins, so a source whose name holds ``/`` is still found."""
    wanted = path.strip("/")
    for name in sorted(manifest.sources, key=len, reverse=True):
        if wanted == name or wanted.startswith(name + "/"):
            inner = wanted[len(name) :].split("/")
            return name, tuple(part for part in inner if part)
    available = ", ".join(manifest.sources) or "none"
    raise PathNotFoundError(
        f"snapshot {manifest.id} has no source for {path!r} (it has: {available})"
    )


def _lookup(store: Store, summary: SourceSummary, parts: tuple[str, ...]) -> TreeNode | None:
    """The node at ``parts`` inside the source, reading only the trees on the way."""
    tree: bytes | None = summary.root
    node: TreeNode | None = None
    for name in parts:
        if tree is None:
            return None
        node = next((n for n in store.read_tree(tree) if n.name == name), None)
        if node is None:
            return None
        tree = node.subtree if node.kind == "dir" else None
    return node


def _below(
    store: Store, tree: bytes, prefix: tuple[str, ...], recursive: bool
) -> Iterator[tuple[tuple[str, ...], TreeNode]]:
    if not recursive:
        for node in store.read_tree(tree):
            yield (*prefix, node.name), node
        return
    trees = store.read_trees(tree)  # a bulk read per level of folders
    yield from store.walk(tree, prefix, trees=trees)


class _Printer:
    """Prints entries as they come: text (short or long) or JSON lines."""

    def __init__(self, manifest: SnapshotManifest, *, long: bool, as_json: bool) -> None:
        self.manifest = manifest
        self.long = long
        self.as_json = as_json

    def _json(self, document: dict[str, Any]) -> None:
        # One compact document per line; ASCII, as every --json is (docs/cli.md).
        click.echo(json.dumps(document, sort_keys=True))

    def snapshot(self) -> None:
        if self.as_json:
            self._json({"struct_type": "snapshot", **self.manifest.summary()})

    def source(self, name: str) -> None:
        summary = self.manifest.sources[name]
        if self.as_json:
            self._json(
                {
                    "struct_type": "source",
                    "source": name,
                    "source_type": summary.type,
                    "files": summary.files,
                    "dirs": summary.dirs,
                    "size": summary.size,
                }
            )
        elif self.long:
            size = human_size(summary.size)
            print_line(long_line("source", size, self.manifest.time, name))
        else:
            print_line(name)

    def node(self, source: str, parts: tuple[str, ...], node: TreeNode) -> None:
        path = "/".join(parts)
        if self.as_json:
            self._json({"struct_type": "node", **node_json(source, path, node)})
            return
        shown = f"{source}/{path}"
        if not self.long:
            print_line(shown)
            return
        print_line(long_entry(shown, node))


@cli.command("ls")
@click.argument("snap")
@click.argument("path", required=False)
@click.option(
    "--long", "-l", "long_format", is_flag=True, help="Show mode, size and mtime (UTC) too."
)
@click.option(
    "--recursive/--no-recursive", default=None,
    help="Descend into folders (default: yes for the whole snapshot, no under PATH).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines (see docs/cli.md).")
@pass_context
def ls(
    ctx: Context,
    snap: str,
    path: str | None,
    long_format: bool,
    recursive: bool | None,
    as_json: bool,
) -> None:
    """List snapshot SNAP: every source and everything in it, or what PATH (SOURCE or
    SOURCE/DIR/...) holds.

    As restic's ls: the whole snapshot is listed recursively; under PATH only its entries,
    unless --recursive. PATH naming a file lists that file. Paths are shown as SOURCE/PATH.
    """
    with ctx.open() as repo:
        manifest = repo.resolve(snap)
        store = repo.store
        printer = _Printer(manifest, long=long_format, as_json=as_json)
        printer.snapshot()
        if path is None:
            deep = True if recursive is None else recursive
            for name, summary in manifest.sources.items():
                printer.source(name)
                if deep:
                    for parts, node in _below(store, summary.root, (), True):
                        printer.node(name, parts, node)
            return
        name, parts = _split(manifest, path)
        summary = manifest.sources[name]
        tree = summary.root
        if parts:
            found = _lookup(store, summary, parts)
            if found is None:
                raise PathNotFoundError(
                    f"snapshot {manifest.id}, source {name!r} has no entry {'/'.join(parts)!r}"
                )
            if found.kind != "dir" or found.subtree is None:
                printer.node(name, parts, found)
                return
            tree = found.subtree
        for child, node in _below(store, tree, parts, bool(recursive)):
            printer.node(name, child, node)
