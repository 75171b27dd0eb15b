"""Reading ahead across snapshots: warm the cache with the snapshots a caller reads next.

An analytics loop reads one source from many snapshots in order (``for b in
list_backups(100): get_backup(b["backup_id"])["data_sources"]["ai_hub"]``). Read one by one
from a remote repository, each snapshot costs two round trips (its tree, then its files) before
its bytes can be parsed, and the process sits idle meanwhile. :class:`ReadAhead` is told the
order the caller listed the snapshots in; when one source of one of them is read, it fetches
that source's trees and files for it and the next :data:`DEPTH` snapshots on background
threads, :data:`FETCHES` snapshots at once, nearest first. A snapshot costs one request (its
root tree with what lies beside it in its pack, which for a small source is its new chunks),
then one bulk read per level of folders and one for the files it still needs. Blobs are
verified and wait, decoded, in the store's :class:`~stcore.repo.plaincache.PlainCache` (and
on disk in the object cache), so the caller only parses while the next ones are fetched. A
caller that catches up with the fetches waits for its snapshot's fetch rather than asking for
the same bytes again.

Why several snapshots at once, each on its own thread: the caller's parse (``json.loads``)
holds the GIL for its whole run, so a fetch, which needs the GIL between its network waits,
advances only between parses. One fetch at a time fell behind the loop; eight overlap their
waits.

Only repositories with an object cache (remote ones) read ahead: a local repository reads its
own disk as fast. Read-ahead is a hint: a failure is kept for :attr:`ReadAhead.errors`, and
the caller's own read reports it, with its usual message, if it is real.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from stcore.errors import CorruptObjectError, StcoreError
from stcore.models import IndexEntry, SnapshotManifest
from stcore.repo.format import decode_tree, object_key
from stcore.repo.store import Store

#: how many snapshots past the one being read are fetched ahead
DEPTH = 16
#: snapshots fetched at once (each fetch waits on the network, mostly)
FETCHES = 8
#: bytes read on each side of a source's root tree in its pack, in the same request
AROUND = 1024 * 1024
#: seconds a reader waits for its snapshot's fetch, already under way, before reading itself
WAIT = 60.0


class ReadAhead:
    """Read-ahead over one listing of ``manifests`` (in the order the caller will read them)."""

    def __init__(self, store: Store, manifests: Sequence[SnapshotManifest]) -> None:
        self._store = store
        self._manifests = list(manifests)
        self._position = {manifest.id: n for n, manifest in enumerate(self._manifests)}
        self._lock = threading.Lock()
        #: (position, source) already fetched or being fetched -> set once it is done
        self._scheduled: dict[tuple[int, str], threading.Event] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        #: what went wrong fetching ahead (the caller's own reads report real problems)
        self.errors: list[StcoreError | OSError] = []
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self._store.object_cache is not None

    def reading(self, snapshot_id: str, source: str) -> None:
        """``source`` of ``snapshot_id`` is about to be read: fetch ahead what follows it, and
        return once this one is in memory (fetched first when nobody fetched it yet), so the
        caller never asks for the same blobs a second time."""
        position = self._position.get(snapshot_id)
        if position is None or not self.enabled:
            return
        with self._lock:
            if self._closed:
                return  # a view kept from an older listing: it reads for itself
            window = range(position, min(position + 1 + DEPTH, len(self._manifests)))
            for n in window:
                if (n, source) in self._scheduled:
                    continue
                done = self._scheduled[n, source] = threading.Event()
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(FETCHES, thread_name_prefix="stcore-ahead")
                self._pending = [f for f in self._pending if not f.done()]
                self._pending.append(
                    self._pool.submit(self._fetch, self._manifests[n], source, done)
                )
            mine = self._scheduled[position, source]
        mine.wait(WAIT)  # a fetch that fails or stalls leaves the read to the caller

    def _fetch(self, manifest: SnapshotManifest, source: str, done: threading.Event) -> None:
        """One snapshot's source into memory: its root tree and what lies beside it in one
        request, then whatever else its folders and files need, in bulk."""
        try:
            summary = manifest.sources.get(source)
            if summary is None:
                return
            rest, below = self._tree_and_neighbours(summary.root)
            trees = self._store.read_trees(*below, keep=True) if below else {}
            rest += [
                blob_id
                for nodes in trees.values()
                for node in nodes
                if node.kind == "file"
                for blob_id in node.content
            ]
            if rest:
                self._store.read_ahead(rest)  # what is read ahead already comes from memory
        except (StcoreError, OSError) as exc:
            self.errors.append(exc)
        finally:
            done.set()

    def _tree_and_neighbours(self, root: bytes) -> tuple[list[bytes], list[bytes]]:
        """Read a source's root tree together with what surrounds it in its pack, in one
        request: a backup seals a small source's new chunks and its tree into the same pack,
        next to each other, so they usually come along. Every blob used from that range is
        verified and kept decoded; returns the tree's file blobs still to fetch and its
        subtrees."""
        store = self._store
        index = store.index
        tree = index.get(root)
        if tree is None:
            return [], [root]  # the usual read reports it
        cache = store.object_cache
        if cache is not None and cache.get("blob", root.hex()) is not None:
            # Read before, so its files likely were too: the bulk read takes them from the
            # cache, and the network is asked only for what is not there.
            return [], [root]
        start = max(0, tree.offset - AROUND)
        key = object_key("data", tree.pack_id)
        tree_end = tree.offset + tree.stored_length
        try:
            # past the pack's end a backend returns what there is: this read is a guess
            data = store.backend.read(key, start, tree_end + AROUND - start)
        except (StcoreError, OSError):
            data = b""
        if len(data) < tree_end - start:
            data = store.read_object_range(key, start, tree_end - start)
        end = start + len(data)

        def keep(entry: IndexEntry) -> bytes:
            stored = data[entry.offset - start : entry.offset - start + entry.stored_length]
            plain = store.codec.unseal_blob(entry.blob_id, stored, entry.raw_length)
            store.plain_cache.put(entry.blob_id, plain)
            if cache is not None:
                cache.put_later("blob", entry.blob_id.hex(), stored)
            return plain

        try:
            nodes = decode_tree(keep(tree))
        except CorruptObjectError:
            return [], [root]  # the usual read fetches it again and reports it
        rest: list[bytes] = []
        below: list[bytes] = []
        for node in nodes:
            if node.kind == "dir" and node.subtree is not None:
                below.append(node.subtree)
            if node.kind != "file":
                continue
            for blob_id in node.content:
                if store.plain_cache.get(blob_id) is not None:
                    continue  # shared with a snapshot read ahead already
                entry = index.get(blob_id)
                if (
                    entry is None
                    or entry.pack_id != tree.pack_id
                    or entry.offset < start
                    or entry.offset + entry.stored_length > end
                ):
                    rest.append(blob_id)
                    continue
                try:
                    keep(entry)
                except CorruptObjectError:
                    rest.append(blob_id)  # the usual read fetches it again and reports it
        return rest, below

    def wait(self) -> None:
        """Wait for the fetches started so far (tests and benchmarks use it)."""
        for future in list(self._pending):
            future.result()

    def close(self) -> None:
        """Stop: fetches not started are dropped, those running are finished, and nobody
        waits for a dropped one (its reader reads for itself)."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for done in self._scheduled.values():
            done.set()
