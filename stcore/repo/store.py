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
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from stcore.errors import (
    CorruptObjectError,
    ObjectExistsError,
    ObjectNotFoundError,
    RepositoryNotFoundError,
    SnapshotNotFoundError,
)
from stcore.interfaces import Backend, Compressor
from stcore.models import IndexEntry, SnapshotManifest, TreeNode
from stcore.plugins import PluginHost
from stcore.repo.format import (
    Codec,
    IndexRow,
    RepositoryConfig,
    decode_index_rows,
    decode_tree,
    hash_id,
    index_entries,
    object_key,
)
from stcore.repo.index import BlobIndex
from stcore.repo.keys import MasterKey, PasswordSource, open_master_key
from stcore.repo.objectcache import DEFAULT_CACHE_BYTES, ObjectCache
from stcore.repo.reader import BlobReader


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
    )


def manifest_context(snapshot_id: str) -> bytes:
    """What a manifest frame is bound to: its own name, so it cannot be moved."""
    return b"snapshot:" + snapshot_id.encode()


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
        master_key: MasterKey | None = None,
        key_id: str | None = None,
    ) -> None:
        self.backend = backend
        self.config = config
        self.host = host
        #: this machine's files about this repository: catalog, files cache, object cache, locks
        self.cache_dir = cache_dir
        self.workers = workers
        #: what was fetched from a remote backend, kept on local disk (None for local repos)
        self.object_cache = object_cache
        self.master_key = master_key
        #: the keys/ object this repository was opened with (encrypted repositories only)
        self.key_id = key_id
        self.codec = make_codec(host, config, master_key)
        self._index: BlobIndex | None = None

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

    def mirror(self, backend: Backend) -> Store:
        """The same repository (config and master key) over another backend: a sync remote."""
        return Store(
            backend,
            self.config,
            self.host,
            cache_dir=cache_dir_for(self.cache_dir.parent, backend, self.config),
            workers=self.workers,
            master_key=self.master_key,
        )

    def close(self) -> None:
        self.backend.close()

    # --- the index ------------------------------------------------------------------------------

    @property
    def index(self) -> BlobIndex:
        """Every index object merged (read on first use, through the object cache if any)."""
        if self._index is None:
            self._index = self.load_index()
        return self._index

    def set_index(self, index: BlobIndex) -> None:
        """Make ``index`` the one blobs are looked up in (after a reload or a rewrite)."""
        self._index = index

    def reload_index(self, *, cached: bool = True) -> BlobIndex:
        """Read the index again (what another writer or a prune left is current) and use it."""
        self._index = self.load_index(cached=cached)
        return self._index

    def load_index(self, *, cached: bool = True) -> BlobIndex:
        """All index objects merged; ``cached=False`` reads every one from the backend (check)."""
        index = BlobIndex()
        keys = self.list_keys("index/")

        def read(key: str) -> list[IndexRow]:
            return self.read_index_rows(key, cached=cached)

        with ThreadPoolExecutor(max_workers=8) as pool:
            for rows in pool.map(read, keys):
                for row in rows:
                    index.add_fields(*row)
        return index

    def read_index_entries(self, key: str, *, cached: bool = True) -> list[IndexEntry]:
        """The entries of one index object (``index/<id>``)."""
        return index_entries(self.read_index_rows(key, cached=cached))

    def read_index_rows(self, key: str, *, cached: bool = True) -> list[IndexRow]:
        """The rows of one index object; damage is reported with the object's key."""
        stored = self._read_index_stored(key, cached)
        try:
            return decode_index_rows(self.codec, stored)
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
        entry = self.index.get(blob_id)
        if entry is None:
            raise CorruptObjectError(
                f"blob {blob_id.hex()} is not in the index of {self.location}; "
                "the repository is damaged (run `stcore check`)"
            )
        return self.read_entry(entry)

    def read_blobs(self, blob_ids: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]:
        """``(blob id, plaintext)`` for many blobs, each verified, with few backend reads.

        Blobs are grouped by pack and neighbours read with one range request (see
        :mod:`stcore.repo.reader`). The order is by pack range, not the order asked; an id asked
        for twice is yielded twice. Use :func:`stcore.repo.reader.read_in_order` for file order.
        """
        return self.blob_reader().read_blobs(blob_ids)

    def blob_reader(self, *, workers: int | None = None) -> BlobReader:
        return BlobReader(self, workers=workers)

    def read_entry(self, entry: IndexEntry) -> bytes:
        """The plaintext of the blob ``entry`` locates, verified (through the object cache)."""
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
            cache.put("blob", name, stored)
        return data

    def read_tree(self, tree_id: bytes) -> list[TreeNode]:
        return decode_tree(self.read_blob(tree_id))

    def walk(
        self, tree_id: bytes, prefix: tuple[str, ...] = ()
    ) -> Iterator[tuple[tuple[str, ...], TreeNode]]:
        """Every node below ``tree_id``, depth-first, with its path."""
        for node in self.read_tree(tree_id):
            path = (*prefix, node.name)
            yield path, node
            if node.kind == "dir" and node.subtree is not None:
                yield from self.walk(node.subtree, path)

    def referenced_blobs(self, snapshot_ids: Iterable[str]) -> set[bytes]:
        """Every blob (trees and data) the snapshots reference; each tree is read once."""
        used: set[bytes] = set()
        seen_trees: set[bytes] = set()

        def visit(tree_id: bytes) -> None:
            if tree_id in seen_trees:
                return
            seen_trees.add(tree_id)
            used.add(tree_id)
            for node in self.read_tree(tree_id):
                used.update(node.content)
                if node.subtree is not None:
                    visit(node.subtree)

        for snapshot_id in snapshot_ids:
            for summary in self.load_manifest(snapshot_id).sources.values():
                visit(summary.root)
        return used

    # --- snapshot manifests ---------------------------------------------------------------------

    def snapshot_ids(self) -> list[str]:
        """Every stored snapshot id, sorted (oldest first: ids begin with the UTC time)."""
        return sorted(self.list_ids("snapshots/"))

    def load_manifest(self, snapshot_id: str) -> SnapshotManifest:
        key = object_key("snapshots", snapshot_id)
        try:
            stored = self.backend.read(key)
        except ObjectNotFoundError:
            raise SnapshotNotFoundError(f"snapshot {snapshot_id} does not exist") from None
        try:
            payload = self.codec.unseal(stored, manifest_context(snapshot_id))
            manifest = SnapshotManifest.from_json(json.loads(payload))
        except (CorruptObjectError, ValueError) as exc:
            raise CorruptObjectError(f"{key} cannot be read: {exc}") from exc
        if manifest.id != snapshot_id:
            raise CorruptObjectError(f"{key} holds the manifest of {manifest.id}")
        return manifest

    def write_manifest(self, manifest: SnapshotManifest) -> None:
        payload = json.dumps(manifest.to_json(), sort_keys=True).encode()
        stored = self.codec.seal(payload, manifest_context(manifest.id))
        self.backend.write(object_key("snapshots", manifest.id), stored)

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
    catalog (refreshing one would drop the other's snapshots and sync state).
    """
    where = hash_id(backend.location.encode()).hex()[:12]
    return cache_root / f"{config.id}-{where}"


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
    ``cache_limit`` bytes); None turns it on for every backend but the local one. ``password``
    (a string, or a callable asked only if the repository is encrypted) opens an encrypted one.
    """
    backend = open_backend(url, host, options=options)
    try:
        try:
            raw = backend.read("config")
        except ObjectNotFoundError:
            raise RepositoryNotFoundError(
                f"no stcore repository at {backend.location}; create one with "
                f"`stcore init --repo {url}`"
            ) from None
        config = RepositoryConfig.from_bytes(raw, backend.location)
        master: MasterKey | None = None
        key_id: str | None = None
        if config.encryption != "none":
            master, key_id = open_master_key(backend, password)
        cache_dir = cache_dir_for(cache_root, backend, config)
        if cache is None:
            cache = is_remote_url(url)
        return Store(
            backend,
            config,
            host,
            cache_dir=cache_dir,
            workers=workers,
            object_cache=ObjectCache(cache_dir / "objects", cache_limit) if cache else None,
            master_key=master,
            key_id=key_id,
        )
    except BaseException:
        backend.close()
        raise
