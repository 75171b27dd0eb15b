"""The Store: typed access to one repository's objects, for every operation to build on.

A :class:`Store` owns the backend, the repository config, the codec (compression, encryption,
blob ids), the in-memory index (blob id -> pack, offset, lengths) and, for remote repositories,
the on-disk object cache. It reads and writes the repository's objects (blobs, trees, index
objects, snapshot manifests) and verifies everything it reads; it knows nothing of commands.
The operations (:mod:`~stcore.repo.backup`, :mod:`~stcore.repo.restore`,
:mod:`~stcore.repo.check`, :mod:`~stcore.repo.prune`, ...) each take a Store, and everything
they need from above (cache directory, lock wait, password) is passed in: the engine never reads
the environment, a configuration file or the current directory.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from stcore.errors import (
    CorruptObjectError,
    ObjectExistsError,
    ObjectNotFoundError,
    RepositoryError,
    RepositoryNotFoundError,
    SnapshotNotFoundError,
)
from stcore.interfaces import Backend, Compressor, PagedCompressor
from stcore.localfiles import atomic_write, make_private_dir
from stcore.models import IndexEntry, SnapshotManifest, TreeNode
from stcore.plugins import PluginHost
from stcore.repo.chunkcache import ChunkCache
from stcore.repo.chunker import ChunkerParams
from stcore.repo.damage import load_damage
from stcore.repo.format import (
    EMPTY_INDEX,
    MAX_MANIFEST_BYTES,
    MAX_SMALL_OBJECT_BYTES,
    PACK_FOOTER,
    Codec,
    IndexObject,
    PackedBlob,
    RepositoryConfig,
    decode_index,
    decode_pack_footer,
    decode_pack_trailer,
    decode_tree,
    hash_id,
    index_entries,
    object_key,
    open_checked,
    seal_checked,
)
from stcore.repo.index import BlobIndex, IndexRow
from stcore.repo.keys import MasterKey, PasswordSource, key_ids, open_master_key
from stcore.repo.objectcache import DEFAULT_CACHE_BYTES, ObjectCache
from stcore.repo.plaincache import PlainCache
from stcore.repo.reader import LOCAL_RANGE_BYTES, MAX_RANGE_BYTES, BlobReader

log = logging.getLogger(__name__)

#: listings of ``index/`` while loading the index, if objects keep being replaced meanwhile
INDEX_LISTINGS = 5


#: the key of a pack: data/<first two hex digits>/<64 hex digits>
_PACK_KEY = re.compile(r"data/[0-9a-f]{2}/[0-9a-f]{64}")


def open_backend(
    url: str,
    host: PluginHost,
    *,
    create: bool = False,
    options: Mapping[str, Any] | None = None,
) -> Backend:
    """Open the backend a URL names: ``s3://...`` by scheme, a plain path with ``local``.

    ``options`` go to the backend as they are (``[repository.options]`` in stcore.toml): retry
    limits, endpoints, timeouts; each backend's README lists what it understands.
    """
    if "://" in url:
        name = host.backends.by_scheme(url.split("://", 1)[0])
    else:
        name = "local"
    factory = host.backends.get(name)
    return factory(url, options=dict(options or {}), create=create)


def is_remote_url(url: str) -> bool:
    """Whether ``url`` names a backend other than a local directory."""
    return "://" in url and url.split("://", 1)[0] not in ("file", "local")


def make_codec(host: PluginHost, config: RepositoryConfig, master: MasterKey | None) -> Codec:
    """The codec a repository's config asks for, with every installed compressor for reading."""
    compressors: dict[int, Compressor] = {}
    for name in host.compressors.names():
        try:
            compressor = host.compressors.get(name)()
        except Exception:
            continue  # an unusable codec matters only if a frame needs it
        compressors[compressor.code] = compressor
    default = host.compressors.get(config.compression)(config.compression_level)
    compressors[default.code] = default
    encryptor = host.encryptors.get(config.encryption)(master.encryption if master else None)
    return Codec(
        compressors=compressors,
        compressor=default,
        encryptor=encryptor,
        id_key=master.ids if master else None,
        page_compressor=page_compressor(default),
    )


def page_compressor(default: Compressor) -> Compressor | None:
    """What compresses page runs: the compressor's ``for_pages()`` when it offers one whose
    frames carry its own code (readers decode by code); else None, and page runs are
    compressed like other chunks. A plugin's faulty ``for_pages`` must not stop anyone
    reading or backing up, so it is set aside with a warning."""
    if not isinstance(default, PagedCompressor):
        return None
    try:
        pages = default.for_pages()
    except Exception as exc:
        log.warning(
            "compressor %s: for_pages() failed (%s); pages use its usual settings",
            default.name,
            exc,
        )
        return None
    if getattr(pages, "code", None) != default.code:
        log.warning(
            "compressor %s: for_pages() gives frames of another code; not used", default.name
        )
        return None
    return pages


def manifest_context(snapshot_id: str) -> bytes:
    """What a manifest frame is bound to: its own name, so it cannot be moved."""
    return b"snapshot:" + snapshot_id.encode()


#: range reads in flight at once from a remote repository (each waits on the network)
REMOTE_READERS = 8


class Store:
    """One open repository's objects. Build one with :func:`open_store` or
    :func:`stcore.repo.init.create_store`."""

    def __init__(
        self,
        backend: Backend,
        config: RepositoryConfig,
        host: PluginHost,
        *,
        cache_dir: Path,
        workers: int = 2,
        object_cache: ObjectCache | None = None,
        cache_limit: int = DEFAULT_CACHE_BYTES,
        master_key: MasterKey | None = None,
        key_id: str | None = None,
        chunk_cache: bool = True,
    ) -> None:
        self.backend = backend
        self.config = config
        self.host = host
        #: this machine's files about this repository: catalog, files cache, object cache, locks
        self.cache_dir = cache_dir
        self.workers = workers
        #: what was fetched from a remote backend, kept on local disk (None for local repos)
        self.object_cache = object_cache
        #: where working copies made from the repository (SQLite databases opened with
        #: ``connect``) live, counted against the cache bound: the object cache itself, or one
        #: at the same place that holds nothing else when objects are not cached
        self.local_cache = (
            object_cache
            if object_cache is not None
            else ObjectCache(cache_dir / "objects", cache_limit)
        )
        self.master_key = master_key
        #: the keys/ object this repository was opened with (encrypted repositories only)
        self.key_id = key_id
        self.codec = make_codec(host, config, master_key)
        #: verified plaintext that read-ahead fetched for a reader (empty otherwise)
        self.plain_cache = PlainCache()
        #: decoded chunks of files read, on local disk (unencrypted repositories only)
        self.chunk_cache = (
            ChunkCache(self.local_cache) if chunk_cache and config.encryption == "none" else None
        )
        self._index: BlobIndex | None = None
        self._index_loading: Future[BlobIndex] | None = None
        self._index_lock = threading.RLock()

    @property
    def location(self) -> str:
        return self.backend.location

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def encrypted(self) -> bool:
        return self.config.encryption != "none"

    @property
    def remote(self) -> bool:
        """Whether the objects are behind a network (a write waits on latency, not a disk)."""
        return is_remote_url(self.location)

    def mirror(self, backend: Backend, *, object_cache: ObjectCache | None = None) -> Store:
        """The same repository (config and master key) over another backend: a sync remote."""
        return Store(
            backend,
            self.config,
            self.host,
            cache_dir=cache_dir_for(self.cache_dir.parent, backend, self.config),
            workers=self.workers,
            master_key=self.master_key,
            object_cache=object_cache,
        )

    def close(self) -> None:
        if self.chunk_cache is not None:
            self.chunk_cache.close()
        if self.object_cache is not None:
            self.object_cache.flush()
        if self.local_cache is not self.object_cache:
            self.local_cache.flush()  # chunk cache entries: recorded, so the bound holds
        self.backend.close()

    # --- the index ------------------------------------------------------------------------------

    @property
    def index(self) -> BlobIndex:
        """Every index object merged (read on first use, through the object cache if any)."""
        with self._index_lock:
            if self._index is None:
                loading, self._index_loading = self._index_loading, None
                self._index = loading.result() if loading is not None else self.load_index()
            return self._index

    def prefetch_index(self) -> None:
        """Start reading the index on a thread of its own, if it is not read yet: a caller
        about to do something else slow first (list the snapshots of a remote) gets both
        done at once. :attr:`index` waits for it, and raises what it raised."""
        with self._index_lock:
            if self._index is None and self._index_loading is None:
                pool = ThreadPoolExecutor(1, thread_name_prefix="stcore-index")
                self._index_loading = pool.submit(self.load_index)
                pool.shutdown(wait=False)

    def set_index(self, index: BlobIndex) -> None:
        """Make ``index`` the one blobs are looked up in (after a reload or a rewrite)."""
        with self._index_lock:
            self._index, self._index_loading = index, None

    def forget_index(self) -> None:
        """Drop the index held in memory: the next lookup reads the index objects again."""
        with self._index_lock:
            self._index, self._index_loading = None, None

    def reload_index(self, *, cached: bool = True) -> BlobIndex:
        """Read the index again (what another writer or a prune left is current) and use it."""
        index = self.load_index(cached=cached)
        self.set_index(index)
        return index

    def load_index(
        self,
        *,
        cached: bool = True,
        on_damaged: Callable[[str, Exception], None] | None = None,
    ) -> BlobIndex:
        """All index objects merged; ``cached=False`` reads every one from the backend (check).

        A damaged index object raises, unless ``on_damaged`` is given: it is then told (key,
        error) and the object is skipped. An object deleted between listing and reading was
        replaced (a compaction or a prune writes its entries into a new object before deleting
        it), so the objects are listed again and the new ones read; one that is still listed
        but cannot be read is damage.
        """
        index = BlobIndex()
        done: set[str] = set()  # read, or reported as damaged
        vanished: set[str] = set()  # gone once: listed again and gone again is damage

        def read(key: str) -> IndexObject | None:
            """The object, its rows still packed; None if it is gone for the first time."""
            try:
                return self.read_index_object(key, cached=cached)
            except ObjectNotFoundError as exc:
                if key not in vanished:
                    vanished.add(key)
                    return None
                if on_damaged is None:
                    raise
                on_damaged(key, exc)
            except CorruptObjectError as exc:
                if on_damaged is None:
                    raise
                on_damaged(key, exc)
            return EMPTY_INDEX

        for _ in range(INDEX_LISTINGS):
            keys = [key for key in self.list_keys("index/") if key not in done]
            gone = False
            with ThreadPoolExecutor(max_workers=8) as pool:
                for key, found in zip(keys, pool.map(read, keys), strict=True):
                    if found is None:
                        gone = True
                        continue
                    done.add(key)
                    index.reserve(len(index) + found.count)
                    index.add_rows(found.packs, found.packed_rows())
            if not gone:
                break
        else:
            raise RepositoryError(
                f"the index of {self.location} kept changing while it was read "
                f"({INDEX_LISTINGS} listings); retry"
            )
        for blob_id, packs in load_damage(self.cache_dir).items():
            index.avoid_packs(blob_id, packs)  # read a good copy where there is one
        return index

    def read_index_entries(self, key: str, *, cached: bool = True) -> list[IndexEntry]:
        """The entries of one index object (``index/<id>``)."""
        return index_entries(self.read_index_rows(key, cached=cached))

    def read_index_rows(self, key: str, *, cached: bool = True) -> list[IndexRow]:
        """The rows of one index object; damage is reported with the object's key."""
        return list(self.read_index_object(key, cached=cached).rows())

    def read_index_object(self, key: str, *, cached: bool = True) -> IndexObject:
        """One index object, checked, its rows still packed; damage is reported with its key."""
        stored = self._read_index_stored(key, cached)
        try:
            return decode_index(self.codec, stored)
        except CorruptObjectError as exc:
            raise CorruptObjectError(f"{key}: {exc}") from exc

    def _read_index_stored(self, key: str, cached: bool) -> bytes:
        """The stored bytes of one index object, verified against its name."""
        name = key.rsplit("/", 1)[-1]
        cache = self.object_cache if cached else None
        stored = cache.get("index", name) if cache is not None else None
        if stored is None or hash_id(stored).hex() != name:
            stored = self.read_object(key)
            if hash_id(stored).hex() != name:
                raise CorruptObjectError(f"{key} does not match its hash")
            if cache is not None:
                cache.put("index", name, stored)
        return stored

    # --- objects --------------------------------------------------------------------------------

    def list_keys(self, prefix: str) -> list[str]:
        return [info.key for info in self.backend.list(prefix)]

    def list_ids(self, prefix: str) -> list[str]:
        """The names (last path part) of the objects under ``prefix``, e.g. snapshot ids."""
        return [info.key.rsplit("/", 1)[-1] for info in self.backend.list(prefix)]

    def pack_sizes(self, on_stray: Callable[[str], None] | None = None) -> dict[str, int]:
        """Pack id hex -> bytes of every pack under ``data/``. Anything else there (a
        ``.DS_Store``, a sync tool's conflict copy, a temporary file) is no pack of ours: it is
        left out, never read or deleted, and ``on_stray`` is told its key."""
        sizes: dict[str, int] = {}
        for info in self.backend.list("data/"):
            name = info.key.rsplit("/", 1)[-1]
            if _PACK_KEY.fullmatch(info.key) and info.key == object_key("data", name):
                sizes[name] = info.size
            elif on_stray is not None:
                on_stray(info.key)
        return sizes

    def object_sizes(self, prefix: str) -> dict[str, int]:
        """Name -> size of every object under ``prefix`` (``data/``: pack id hex -> bytes)."""
        return {info.key.rsplit("/", 1)[-1]: info.size for info in self.backend.list(prefix)}

    def read_object(self, key: str) -> bytes:
        try:
            return self.backend.read(key)
        except ObjectNotFoundError:
            raise ObjectNotFoundError(
                f"{key} is missing from {self.location}; run `stcore check` to see what is affected"
            ) from None

    def read_object_range(self, key: str, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``; a shorter object is reported as truncated."""
        try:
            data = self.backend.read(key, offset, length)
        except ObjectNotFoundError:
            raise ObjectNotFoundError(
                f"{key} is missing from {self.location}; run `stcore check` to see what is affected"
            ) from None
        if len(data) != length:
            raise CorruptObjectError(
                f"{key} is truncated: expected {length} bytes at offset {offset}, got {len(data)}"
            )
        return data

    def read_pack_trailer(self, pack_hex: str, size: int) -> list[PackedBlob]:
        """The blobs a pack's own trailer lists (two range reads: footer, then trailer), so a
        pack can be accounted for without the index. CorruptObjectError if it cannot be read."""
        key = object_key("data", pack_hex)
        if size < PACK_FOOTER.size:
            raise CorruptObjectError(f"pack {key} is too short ({size} bytes) to hold a footer")
        footer = self.read_object_range(key, size - PACK_FOOTER.size, PACK_FOOTER.size)
        trailer_length = decode_pack_footer(footer, size)
        start = size - PACK_FOOTER.size - trailer_length
        sealed = self.read_object_range(key, start, trailer_length)
        try:
            blobs = decode_pack_trailer(self.codec, sealed)
        except CorruptObjectError as exc:
            raise CorruptObjectError(f"pack {key}: {exc}") from exc
        if blobs and blobs[-1].offset + blobs[-1].stored_length > start:
            raise CorruptObjectError(f"pack {key}: its trailer lists blobs past the trailer")
        return blobs

    def write_content_addressed(self, kind: str, body: bytes) -> bytes:
        """Store ``body`` as ``<kind>/<hash of body>`` (once: the same bytes have the same name)."""
        object_id = hash_id(body)
        try:
            self.backend.write(object_key(kind, object_id), body)
        except ObjectExistsError:
            pass  # same bytes, same id: already stored
        return object_id

    # --- blobs and trees ------------------------------------------------------------------------

    def read_blob(self, blob_id: bytes) -> bytes:
        """The plaintext of one blob, verified against its id."""
        ready = self.plain_cache.get(blob_id)
        if ready is not None:
            return ready
        entry = self.index.get(blob_id)
        if entry is None:
            raise CorruptObjectError(
                f"blob {blob_id.hex()} is not in the index of {self.location}; "
                "the repository is damaged (run `stcore check`)"
            )
        return self.read_entry(entry)

    def read_blobs(
        self, blob_ids: Iterable[bytes], *, cached: bool = True
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(blob id, plaintext)`` for many blobs, each verified, with few backend reads.

        Blobs are grouped by pack and neighbours read with one range request (see
        :mod:`stcore.repo.reader`). The order is by pack range, not the order asked; an id asked
        for twice is yielded twice. Use :func:`stcore.repo.reader.read_in_order` for file order.
        ``cached=False`` neither reads nor fills the object cache.
        """
        return self.blob_reader(cached=cached).read_blobs(blob_ids)

    def blob_reader(self, *, workers: int | None = None, cached: bool = True) -> BlobReader:
        if workers is None and self.remote:
            workers = max(self.workers, REMOTE_READERS)  # waiting on latency, not a disk
        max_range = MAX_RANGE_BYTES if self.remote else LOCAL_RANGE_BYTES
        return BlobReader(self, workers=workers, cached=cached, max_range=max_range)

    def read_entry(self, entry: IndexEntry) -> bytes:
        """The plaintext of the blob ``entry`` locates, verified (through the object cache); if
        that copy is damaged or its pack is missing, another stored copy, if there is one."""
        try:
            return self._read_one_copy(entry)
        except (CorruptObjectError, ObjectNotFoundError):
            for copy in self.index.copies(entry.blob_id):
                try:
                    return self._read_one_copy(copy)
                except (CorruptObjectError, ObjectNotFoundError):
                    continue
            raise

    def _read_one_copy(self, entry: IndexEntry) -> bytes:
        key = object_key("data", entry.pack_id)
        cache = self.object_cache
        name = entry.blob_id.hex()
        if cache is not None:
            stored = cache.get("blob", name)
            if stored is not None:
                try:
                    return self.codec.unseal_blob(entry.blob_id, stored, entry.raw_length)
                except CorruptObjectError:
                    cache.discard("blob", name)  # damaged on local disk: fetch it again
        stored = self.read_object_range(key, entry.offset, entry.stored_length)
        try:
            data = self.codec.unseal_blob(entry.blob_id, stored, entry.raw_length)
        except CorruptObjectError as exc:
            raise CorruptObjectError(f"pack {key}, blob {name}: {exc}") from exc
        if cache is not None:
            cache.put_later("blob", name, stored)
        return data

    def read_tree(self, tree_id: bytes) -> list[TreeNode]:
        return decode_tree(self.read_blob(tree_id))

    def read_ahead(self, blob_ids: Iterable[bytes]) -> None:
        """Fetch, decode and verify ``blob_ids`` in bulk (on the read pool) and keep their
        plaintext in :attr:`plain_cache` for a reader that asks for them soon."""
        for blob_id, data in self.read_blobs(blob_ids):
            self.plain_cache.put(blob_id, data)

    def read_trees(self, *roots: bytes, keep: bool = False) -> dict[bytes, list[TreeNode]]:
        """Every tree below the ``roots`` (themselves included), decoded, by id: one bulk
        read per level of directories, so a source of many folders (or the same source in
        many snapshots) costs a few requests, not one per folder. A tree shared by several
        folders is read once, so even a damaged tree that contains itself is read once;
        :meth:`walk` reports that.
        """
        trees: dict[bytes, list[TreeNode]] = {}
        level = list(roots)
        while level:
            wanted = list(dict.fromkeys(t for t in level if t not in trees))
            if len(wanted) == 1 and not keep:
                trees[wanted[0]] = self.read_tree(wanted[0])
            elif wanted:
                for tree_id, plaintext in self.read_blobs(wanted):
                    trees[tree_id] = decode_tree(plaintext)
                    if keep:
                        self.plain_cache.put(tree_id, plaintext)
            level = [
                node.subtree
                for tree_id in wanted
                for node in trees[tree_id]
                if node.kind == "dir" and node.subtree is not None
            ]
        return trees

    def walk(
        self,
        tree_id: bytes,
        prefix: tuple[str, ...] = (),
        *,
        trees: Mapping[bytes, list[TreeNode]] | None = None,
    ) -> Iterator[tuple[tuple[str, ...], TreeNode]]:
        """Every node below ``tree_id``, depth-first in tree order, with its path.

        Iterative (depth is unbounded); a directory that contains itself is damage. Trees in
        ``trees`` (from :meth:`read_trees`) are not read again.
        """
        known: Mapping[bytes, list[TreeNode]] = trees or {}

        def read(tree: bytes) -> list[TreeNode]:
            nodes = known.get(tree)
            return nodes if nodes is not None else self.read_tree(tree)

        stack: list[tuple[Iterator[TreeNode], tuple[str, ...], bytes]] = [
            (iter(read(tree_id)), prefix, tree_id)
        ]
        on_path = {tree_id}
        while stack:
            nodes, path, current = stack[-1]
            node = next(nodes, None)
            if node is None:
                stack.pop()
                on_path.discard(current)
                continue
            child = (*path, node.name)
            yield child, node
            if node.kind == "dir" and node.subtree is not None:
                if node.subtree in on_path:
                    raise CorruptObjectError(
                        f"tree {current.hex()}: directory {'/'.join(child)} contains itself"
                    )
                on_path.add(node.subtree)
                stack.append((iter(read(node.subtree)), child, node.subtree))

    def referenced_blobs(self, snapshot_ids: Iterable[str]) -> set[bytes]:
        """Every blob (trees and data) the snapshots reference; each tree is read once."""
        used: set[bytes] = set()
        pending = [
            summary.root
            for snapshot_id in snapshot_ids
            for summary in self.load_manifest(snapshot_id).sources.values()
        ]
        while pending:
            tree_id = pending.pop()
            if tree_id in used:
                continue
            used.add(tree_id)
            for node in self.read_tree(tree_id):
                used.update(node.content)
                if node.subtree is not None and node.subtree not in used:
                    pending.append(node.subtree)
        return used

    # --- snapshot manifests ---------------------------------------------------------------------

    def snapshot_ids(self) -> list[str]:
        """Every stored snapshot id, sorted (oldest first: ids begin with the UTC time)."""
        return sorted(self.list_ids("snapshots/"))

    @property
    def checked(self) -> bool:
        """Whether objects not named by their hash carry checksums (format 2 and later)."""
        return self.config.version >= 2

    def load_manifest(self, snapshot_id: str) -> SnapshotManifest:
        return self.load_manifest_document(snapshot_id)[0]

    def load_manifest_document(self, snapshot_id: str) -> tuple[SnapshotManifest, dict[str, Any]]:
        """A manifest and the JSON it was stored as, which may hold fields the model leaves
        out (``stcore tag`` keeps them)."""
        key = object_key("snapshots", snapshot_id)
        try:
            stored = self.backend.read(key)
        except ObjectNotFoundError:
            raise SnapshotNotFoundError(f"snapshot {snapshot_id} does not exist") from None
        try:
            if len(stored) > MAX_MANIFEST_BYTES:
                raise CorruptObjectError(f"{len(stored)} bytes is too large for a manifest")
            if self.checked:
                stored = open_checked(key, stored)
            document = json.loads(self.codec.unseal(stored, manifest_context(snapshot_id)))
            manifest = SnapshotManifest.from_json(document)
        except (CorruptObjectError, ValueError, RecursionError) as exc:
            raise CorruptObjectError(f"{key} cannot be read: {str(exc)[:300]}") from exc
        if manifest.id != snapshot_id:
            raise CorruptObjectError(f"{key} holds the manifest of {manifest.id}")
        return manifest, document

    def write_manifest(
        self, manifest: SnapshotManifest, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Store ``manifest``; ``extra`` fields it does not set itself are kept beside it."""
        payload = json.dumps({**(extra or {}), **manifest.to_json()}, sort_keys=True).encode()
        stored = self.codec.seal(payload, manifest_context(manifest.id))
        key = object_key("snapshots", manifest.id)
        self.backend.write(key, seal_checked(key, stored) if self.checked else stored)

    def delete_manifest(self, snapshot_id: str) -> bool:
        """Remove one manifest; False if it was already gone (perhaps another process's forget)."""
        try:
            self.backend.delete(object_key("snapshots", snapshot_id))
        except ObjectNotFoundError:
            return False
        return True


def cache_dir_for(cache_root: Path, backend: Backend, config: RepositoryConfig) -> Path:
    """This machine's directory for one repository at one location, under ``cache_root``.

    Keyed by location as well as id: a mirror has its primary's id, and the two must not share a
    catalog (refreshing one would drop the other's snapshots and sync state). It is made here,
    ``0700`` (and narrowed to that if an earlier version left it wider), so nothing in it is
    ever reachable by other users, whatever the modes of the files inside; a missing
    ``cache_root`` is made ``0700`` too (an existing one is left as it is: it may be shared).
    """
    where = hash_id(os.fsencode(backend.location)).hex()[:12]
    cache_dir = cache_root / f"{config.id}-{where}"
    make_private_dir(cache_dir)
    return cache_dir


ENCRYPTED_MARKER = "encrypted"


def remember_encryption(cache_dir: Path, config: RepositoryConfig, location: str) -> None:
    """Remember on this machine that a repository is encrypted, and refuse it if its config
    later says otherwise (someone with write access deleted the keys and edited the config to
    make the next backup store plaintext)."""
    marker = cache_dir / ENCRYPTED_MARKER
    if config.encryption != "none":
        if not marker.exists():
            atomic_write(marker, config.encryption + "\n")
    elif marker.exists():
        raise RepositoryError(
            f"{location} was encrypted when this machine last opened it, but its config now "
            "says it is not: the repository may have been tampered with; refusing"
        )


def open_store(
    url: str,
    host: PluginHost,
    *,
    cache_root: Path,
    workers: int = 2,
    options: Mapping[str, Any] | None = None,
    cache: bool | None = None,
    cache_limit: int = DEFAULT_CACHE_BYTES,
    password: PasswordSource = None,
) -> Store:
    """Open the existing repository at ``url``; see :func:`stcore.open_repository`.

    ``cache`` keeps fetched index objects and blobs under ``cache_root`` (at most
    ``cache_limit`` bytes); None turns it on for every backend but the local one. The decoded
    chunks of files read (unencrypted repositories, :mod:`stcore.repo.chunkcache`) are kept
    there too unless ``cache`` is False. ``password``
    (a string, or a callable asked only if the repository is encrypted) opens an encrypted one.
    """
    backend = open_backend(url, host, options=options)
    try:
        try:
            raw = backend.read("config", 0, MAX_SMALL_OBJECT_BYTES + 1)
        except ObjectNotFoundError:
            raise RepositoryNotFoundError(
                f"no stcore repository at {backend.location}; create one with "
                f"`stcore init --repo {url}`"
            ) from None
        config = RepositoryConfig.from_bytes(raw, backend.location)
        try:
            ChunkerParams.from_json(config.chunker)
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptObjectError(
                f"config of {backend.location} has invalid chunker parameters: {exc}"
            ) from exc
        master: MasterKey | None = None
        key_id: str | None = None
        if config.encryption == "none":
            if key_ids(backend):
                raise RepositoryError(
                    f"config of {backend.location} says it is not encrypted, but the "
                    "repository has keys/: the config may have been tampered with; refusing"
                )
        else:
            master, key_id = open_master_key(backend, password, checked=config.version >= 2)
            config.verify_mac(master.raw(), backend.location)
        cache_dir = cache_dir_for(cache_root, backend, config)
        remember_encryption(cache_dir, config, backend.location)
        chunks = cache is not False  # decoded chunks: kept unless every cache is refused
        if cache is None:
            cache = is_remote_url(url)
        return Store(
            backend,
            config,
            host,
            cache_dir=cache_dir,
            workers=workers,
            object_cache=ObjectCache(cache_dir / "objects", cache_limit) if cache else None,
            cache_limit=cache_limit,
            master_key=master,
            key_id=key_id,
            chunk_cache=chunks,
        )
    except BaseException:
        backend.close()
        raise
