"""``stcore://`` paths: a read-only fsspec filesystem over a repository's snapshots.

Anything that reads through fsspec (pandas, pyarrow, duckdb, dask...) can read backed-up files
in place, without restoring them::

    import pandas as pd

    events = pd.read_json(
        "stcore://latest/logs/events.jsonl", lines=True, storage_options={"repo": "/srv/backups"}
    )

Paths are ``stcore://<snapshot>/<source>/<path inside the source>``. ``<snapshot>`` is any
snapshot reference (:mod:`stcore.refs`): a full snapshot id, a unique prefix of one, ``latest``,
``@<time>`` (``@2026-11-30``, ``@7d``), each optionally with ``~N`` (``latest~1``); names
returned by ``ls``/``find``/``glob`` keep the spelling the caller used, so
``glob("stcore://latest/logs/**/*.jsonl")`` answers with ``latest/...`` paths. The filesystem is
registered with fsspec through the ``fsspec.specs`` entry point (``pip install 'stcore[fsspec]'``).

Reads are lazy, as in :mod:`stcore.access.views`: ``info``/``open``/``cat_file`` on one file
read only the trees on its path, and then only the chunks of the file that are read. Listing a
directory inside a source reads that source's trees once per filesystem instance.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# fsspec ships no type information: everything imported from it is ``Any`` to mypy.
try:
    from fsspec.spec import (  # type: ignore[import-untyped]
        AbstractBufferedFile,
        AbstractFileSystem,
        make_instance,
    )
except ModuleNotFoundError as exc:  # a broken install: fsspec is a dependency of stcore
    if not (exc.name or "").startswith("fsspec"):
        raise
    raise ModuleNotFoundError(
        "stcore:// needs fsspec, a dependency of stcore that is missing here: "
        "pip install 'fsspec>=2024.2'",
        name="fsspec",
    ) from None

from stcore.access.lent import LentBuffer, lend
from stcore.access.views import FileInfo, Snapshot, SnapshotFile, SourceView
from stcore.durations import as_time
from stcore.errors import ConfigError, PathNotFoundError, SnapshotNotFoundError
from stcore.models import SnapshotManifest
from stcore.repo.reader import read_files
from stcore.repository import Repository, open_repository

__all__ = ["StcoreFile", "StcoreFileSystem"]

READ_ONLY = "stcore:// is read-only"
#: reading this many paths of one source at once lists the whole source first
LISTED_AFTER = 8
_DIR_MODE = stat.S_IFDIR | 0o555
_TYPES = {"file": "file", "dir": "directory"}


def _repository_url(repo: str | os.PathLike[str] | None) -> str:
    """Where the repository is: ``repo``, else ``STCORE_REPO``/stcore.toml, as an absolute path."""
    if repo is None:
        from stcore.config import load_settings

        url = load_settings().repository_url()
    else:
        url = os.fspath(repo)
    if "://" not in url:
        url = os.path.abspath(os.path.expanduser(url))
    return url


class _Session:
    """What every ``stcore://`` filesystem on one repository, with the same options, shares:
    the open repository, the resolved references, the views and listings, and their lock."""

    def __init__(self) -> None:
        #: held while the repository and its views are used (open files take it too)
        self.lock = threading.RLock()
        self.repository: Repository | None = None
        #: reference as written -> the snapshot it named when first resolved
        self.resolved: dict[str, SnapshotManifest] = {}
        #: time.monotonic() of the last read of the snapshot list (for ``refresh``)
        self.listed_at: float | None = None
        self.views: dict[str, Snapshot] = {}
        #: per (snapshot id, source): every entry by path, and each directory's children
        self.listings: dict[
            tuple[str, str], tuple[dict[str, FileInfo], dict[str, list[FileInfo]]]
        ] = {}


#: sessions by (repository URL resolved, password, cache, as_of, refresh)
_sessions: dict[tuple[Any, ...], _Session] = {}
_sessions_lock = threading.Lock()


def _session(key: tuple[Any, ...], shared: bool) -> _Session:
    if not shared:
        return _Session()
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = _Session()
        return session


def _entry(name: str, info: FileInfo) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "size": info.size if info.kind == "file" else 0,
        "type": _TYPES.get(info.kind, "other"),
        "mtime": info.mtime.timestamp(),
        "mode": info.mode,
        "islink": info.kind == "symlink",
    }
    if info.kind == "symlink":
        entry["destination"] = info.target
    return entry


def _not_found(path: str, why: object) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, f"stcore://{path}: {why}", path)


# AbstractFileSystem is untyped (``Any``); the ignore is mypy's disallow_subclassing_any.
class StcoreFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """Read-only ``stcore://<snapshot>/<source>/<path>`` access to one repository.

    ``repo`` is the repository's path or URL (default: ``STCORE_REPO``, then stcore.toml);
    ``password`` opens an encrypted one (default: ``STCORE_PASSWORD``); ``cache`` is handed to
    :func:`~stcore.repository.open_repository` (on by default for remote repositories).
    The repository is opened on first use and kept for the life of the instance.

    ``as_of`` (a datetime, a date, ``2026-11-30`` or ``7d`` ago) makes ``latest`` (and
    ``latest~N``) the newest snapshot taken at or before that moment.

    The snapshot list is read once and each reference (``latest``, ``@7d``...) resolved once,
    so a job reading many files sees one snapshot; :meth:`invalidate_cache` (or
    ``skip_instance_cache=True``) sees newer ones. ``refresh`` (seconds) reads the list again,
    and resolves references anew, when it is older than that.

    Instances are cheap: what is costly to build (the open repository, resolved references,
    listings) is one session per process for every instance with the same resolved
    repository and options, so pandas making a filesystem per call costs nothing and sees
    the same snapshots. fsspec's own instance cache is off (``cachable = False``): it keys
    instances by the arguments as written, so ``filesystem("stcore")`` after ``STCORE_REPO``
    changed, or a relative ``repo`` from another working directory, would be handed an
    instance of another repository. ``skip_instance_cache=True`` gives a session of its own.
    """

    protocol = "stcore"
    root_marker = ""
    cachable = False
    # fsspec drops skip_instance_cache before calling __init__ unless it is listed here
    _strip_tokenize_options = ("skip_instance_cache",)

    def __init__(
        self,
        repo: str | os.PathLike[str] | None = None,
        *,
        password: str | None = None,
        cache: bool | None = None,
        as_of: dt.datetime | dt.date | str | None = None,
        refresh: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.repo_url = _repository_url(repo)
        self._password = password
        self._cache = cache
        if isinstance(as_of, str):  # refuse what cannot be a time now, not at the first read
            try:
                as_time(as_of)
            except ConfigError as exc:
                raise ConfigError(f"as_of: {exc}") from None
        elif as_of is not None:
            as_time(as_of, "as_of")
        self._as_of = as_of
        if refresh is not None and (
            isinstance(refresh, bool) or not isinstance(refresh, int | float) or refresh < 0
        ):
            raise ConfigError(f"refresh must be a number of seconds, not {refresh!r}")
        self._refresh = refresh
        key = (self.repo_url, password, cache, str(as_of), refresh)
        self._session = _session(key, shared=not kwargs.get("skip_instance_cache", False))
        self.read_lock = self._session.lock
        self._resolved = self._session.resolved
        self._views = self._session.views
        self._listings = self._session.listings

    # --- the repository and what it holds -------------------------------------------------------

    @property
    def repository(self) -> Repository:
        """The open repository (opened on first use, then reused)."""
        with self.read_lock:
            session = self._session
            if session.repository is None:
                session.repository = open_repository(
                    self.repo_url, password=self._password, cache=self._cache
                )
            return session.repository

    @classmethod
    def clear_instance_cache(cls) -> None:
        """Forget every shared session: filesystems made from now on open the repository
        again (those already made keep theirs)."""
        with _sessions_lock:
            _sessions.clear()

    def __reduce__(self) -> Any:
        # Pickled with the repository as resolved here: a worker process in another working
        # directory, or without STCORE_REPO, opens the same repository.
        options = {**self.storage_options, "repo": self.repo_url}
        return make_instance, (type(self), (), options)

    @property
    def fsid(self) -> str:
        return f"stcore-{self.repository.id}"

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget listings and the snapshot list: the next call sees snapshots made since.

        The repository is opened again on next use; files already open keep reading from the
        instance they were opened with.
        """
        with self.read_lock:
            self._views.clear()
            self._listings.clear()
            self._resolved.clear()
            self._session.listed_at = None
            self._session.repository = None
        super().invalidate_cache(path)

    @contextmanager
    def _translated(self, path: str) -> Iterator[None]:
        """Run under the lock, turning "there is no such snapshot/source/entry" into ENOENT."""
        with self.read_lock:
            try:
                yield
            except (SnapshotNotFoundError, PathNotFoundError) as exc:
                raise _not_found(path, exc) from exc

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
        if path.startswith("stcore://"):
            path = path[len("stcore://") :]
        elif path.startswith("stcore::"):
            path = path[len("stcore::") :]
        return path.strip("/")

    def _split(self, path: str) -> tuple[str, str, str]:
        """``path`` (protocol stripped) as (snapshot ref, source, path inside the source)."""
        parts = path.split("/", 2)
        parts += [""] * (3 - len(parts))
        return parts[0], parts[1], parts[2].strip("/")

    def _fresh(self) -> Repository:
        """The repository, its snapshot list read again first if ``refresh`` says it is stale."""
        now = time.monotonic()
        if self._refresh is not None and (
            self._session.listed_at is None or now - self._session.listed_at >= self._refresh
        ):
            if self._session.listed_at is not None:
                self.repository.refresh()
            self._resolved.clear()
            self._session.listed_at = now
        return self.repository

    def _snapshot(self, ref: str) -> Snapshot:
        repository = self._fresh()
        manifest = self._resolved.get(ref)
        if manifest is None:
            manifest = repository.resolve(ref, as_of=self._as_of)
            self._resolved[ref] = manifest
        view = self._views.get(manifest.id)
        if view is None:
            view = self._views[manifest.id] = Snapshot(self.repository.store, manifest)
        return view

    def _source(self, path: str, ref: str, name: str) -> SourceView:
        snapshot = self._snapshot(ref)
        if name not in snapshot.sources:
            available = ", ".join(snapshot.sources) or "none"
            raise _not_found(
                path, f"snapshot {snapshot.id} has no source {name!r} (it has: {available})"
            )
        return snapshot.sources[name]

    def _listing(self, view: SourceView) -> tuple[dict[str, FileInfo], dict[str, list[FileInfo]]]:
        key = (view.snapshot_id, view.name)
        listing = self._listings.get(key)
        if listing is None:
            entries: dict[str, FileInfo] = {}
            children: dict[str, list[FileInfo]] = {"": []}
            for info in view.files():
                entries[info.path] = info
                children.setdefault(info.path.rpartition("/")[0], []).append(info)
                if info.kind == "dir":
                    children.setdefault(info.path, [])
            listing = self._listings[key] = (entries, children)
        return listing

    @staticmethod
    def _directory(name: str, manifest: SnapshotManifest, **extra: Any) -> dict[str, Any]:
        """A snapshot or source directory: timed by the snapshot, with its own extra fields."""
        return {
            "name": name,
            "size": 0,
            "type": "directory",
            "mtime": manifest.time.timestamp(),
            "mode": _DIR_MODE,
            **extra,
        }

    def _snapshot_entry(self, name: str, manifest: SnapshotManifest) -> dict[str, Any]:
        return self._directory(
            name, manifest, snapshot_id=manifest.id, tags=list(manifest.tags), host=manifest.host
        )

    def _source_entry(
        self, name: str, view: SourceView, manifest: SnapshotManifest
    ) -> dict[str, Any]:
        return self._directory(name, manifest, source_type=view.type)

    # --- listing and metadata -------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        with self._translated(path):
            entries = self._ls(path)
        return entries if detail else [entry["name"] for entry in entries]

    def _ls(self, path: str) -> list[dict[str, Any]]:
        ref, name, inner = self._split(path)
        if not ref:
            return [self._snapshot_entry(m.id, m) for m in self._fresh().snapshots()]
        snapshot = self._snapshot(ref)
        if not name:
            return [
                self._source_entry(f"{ref}/{source}", view, snapshot.manifest)
                for source, view in snapshot.sources.items()
            ]
        view = self._source(path, ref, name)
        entries, children = self._listing(view)
        prefix = f"{ref}/{name}/"
        if inner and inner not in entries:
            raise _not_found(
                path, f"snapshot {view.snapshot_id}, source {name!r} has no entry {inner!r}"
            )
        if inner and entries[inner].kind != "dir":
            return [_entry(prefix + inner, entries[inner])]
        return [_entry(prefix + info.path, info) for info in children.get(inner, [])]

    def walk(
        self,
        path: str,
        maxdepth: int | None = None,
        topdown: bool = True,
        on_error: Any = "omit",
        **kwargs: Any,
    ) -> Iterator[tuple[str, Any, Any]]:
        """fsspec's ``walk`` (and so ``find``, ``du`` and ``glob``), without its recursion: a
        snapshot's tree may be deeper than Python's recursion limit."""
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        detail = kwargs.pop("detail", False)
        # (path, depth left, None) to list; (path, None, result) to yield after its children
        stack: list[tuple[str, int | None, tuple[str, Any, Any] | None]] = [
            (self._strip_protocol(path), maxdepth, None)
        ]
        while stack:
            current, depth, result = stack.pop()
            if result is not None:
                yield result
                continue
            try:
                listing = self.ls(current, detail=True, **kwargs)
            except OSError as exc:  # FileNotFoundError included
                if on_error == "raise":
                    raise
                if callable(on_error):
                    on_error(exc)
                continue
            full_dirs: dict[str, str] = {}
            dirs: dict[str, Any] = {}
            files: dict[str, Any] = {}
            for entry in listing:
                pathname = entry["name"].rstrip("/")
                name = pathname.rsplit("/", 1)[-1]
                if entry["type"] == "directory" and pathname != current:
                    full_dirs[name], dirs[name] = pathname, entry
                else:
                    files["" if pathname == current else name] = entry
            shown: tuple[str, Any, Any] = (
                (current, dirs, files) if detail else (current, list(dirs), list(files))
            )
            if topdown:
                yield shown  # the caller may prune shown[1] in place, as with os.walk
            else:
                stack.append((current, None, shown))
            if depth is not None:
                depth -= 1
                if depth < 1:
                    continue
            below = [name for name in full_dirs if name in shown[1]]
            stack.extend((full_dirs[name], depth, None) for name in reversed(below))

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        ref, name, inner = self._split(path)
        with self._translated(path):
            if not ref:
                return {"name": "", "size": 0, "type": "directory", "mode": _DIR_MODE}
            snapshot = self._snapshot(ref)
            if not name:
                return self._snapshot_entry(ref, snapshot.manifest)
            view = self._source(path, ref, name)
            if not inner:
                return self._source_entry(f"{ref}/{name}", view, snapshot.manifest)
            # SourceView.info reads only the trees on the way down to this one entry.
            return _entry(path, view.info(inner))

    def ukey(self, path: str) -> str:
        """A file's key from its content, so an unchanged file has the same key in every
        snapshot (fsspec's caches and dask compare these); a directory's from its info."""
        path = self._strip_protocol(path)
        try:
            raw, _ = self._raw(path)
        except IsADirectoryError:
            key: str = super().ukey(path)
            return key
        with raw:
            return raw.content_key

    def checksum(self, path: str) -> int:
        """:meth:`ukey` as a number (the same file content gives the same checksum)."""
        return int(self.ukey(path), 16)

    def modified(self, path: str) -> dt.datetime:
        mtime = self.info(path).get("mtime")
        if mtime is None:
            raise FileNotFoundError(errno.ENOENT, "the repository root has no time", path)
        return dt.datetime.fromtimestamp(mtime, dt.UTC)

    # --- reading --------------------------------------------------------------------------------

    def _raw(self, path: str) -> tuple[SnapshotFile, dict[str, Any]]:
        """A :class:`SnapshotFile` of ``path`` (protocol stripped) and its info."""
        ref, name, inner = self._split(path)
        with self._translated(path):
            if not inner:
                raise IsADirectoryError(
                    errno.EISDIR, "stcore:// snapshots and sources are directories", path
                )
            view = self._source(path, ref, name)
            found = view.info(inner)
            if found.kind == "dir":
                raise IsADirectoryError(errno.EISDIR, "is a directory", path)
            if found.kind != "file":
                raise _not_found(
                    path, f"{inner!r} is a symbolic link to {found.target!r}; open its target"
                )
            return view.open(inner), _entry(path, found)

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> StcoreFile:
        path = self._strip_protocol(path)
        if mode != "rb":
            raise PermissionError(
                errno.EROFS, f"{READ_ONLY}: cannot open in mode {mode!r}", f"stcore://{path}"
            )
        raw, entry = self._raw(path)
        return StcoreFile(
            self, path, raw, entry, block_size=block_size, cache_options=cache_options, **kwargs
        )

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        """The bytes of ``path`` in ``[start, end)`` (negative = from the end), fetching only
        the chunks that range covers."""
        result: bytes = self.cat_ranges([path], [start], [end], on_error="raise")[0]
        return result

    def cat_ranges(
        self,
        paths: list[str],
        starts: int | list[int | None] | None,
        ends: int | list[int | None] | None,
        max_gap: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[Any]:
        """The bytes of ``[start, end)`` of each path (fsspec's signature), read together.

        Every range is mapped to the chunks covering it and all of them are fetched in one
        bulk read a window at a time (:func:`~stcore.repo.reader.read_files`): a thousand
        small files in a few packs cost a few requests. A path that cannot be read gives its
        exception in its place (``on_error="return"``) or raises (anything else).
        """
        if max_gap is not None:
            raise NotImplementedError("stcore:// plans its own gaps; max_gap is not supported")
        if not isinstance(paths, list):
            raise TypeError("paths must be a list")
        count = len(paths)
        first = starts if isinstance(starts, list) else [starts] * count
        last = ends if isinstance(ends, list) else [ends] * count
        if len(first) != count or len(last) != count:
            raise ValueError("paths, starts and ends must be as long as one another")
        results: list[Any] = [b""] * count
        spans: list[tuple[int, int, int]] = []
        chunks: list[list[bytes]] = []
        with self.read_lock:
            self._list_sources_read_often([self._strip_protocol(p) for p in paths])
            for number, (path, start, end) in enumerate(zip(paths, first, last, strict=True)):
                try:
                    raw, _ = self._raw(self._strip_protocol(path))
                except Exception as exc:
                    if on_error != "return":
                        raise
                    results[number] = exc
                    continue
                with raw:
                    ids, skip, length = raw.span(start, end)
                spans.append((number, skip, length))
                chunks.append(ids)
            contents = read_files(self.repository.store, chunks)
            for (number, skip, length), data in zip(spans, contents, strict=True):
                whole = skip == 0 and length == len(data)
                results[number] = data if whole else data[skip : skip + length]
        return results

    def _list_sources_read_often(self, paths: list[str]) -> None:
        """List each source that many of ``paths`` are in (a bulk read per level of folders)
        rather than reading its trees one at a time on the way to each path."""
        counts: dict[tuple[str, str], int] = {}
        for path in paths:
            ref, name, inner = self._split(path)
            if inner:
                counts[ref, name] = counts.get((ref, name), 0) + 1
        for (ref, name), count in counts.items():
            if count >= LISTED_AFTER:
                try:
                    self._listing(self._source(f"{ref}/{name}", ref, name))
                except (OSError, SnapshotNotFoundError, PathNotFoundError):
                    pass  # each path reports it in its own place

    def cat(
        self, path: Any, recursive: bool = False, on_error: str = "raise", **kwargs: Any
    ) -> Any:
        """fsspec's ``cat`` (one path's bytes, or ``{path: bytes}`` for a list, a glob or a
        recursive read), with every file read together by :meth:`cat_ranges`."""
        paths = self.expand_path(path, recursive=recursive)
        start, end = kwargs.pop("start", None), kwargs.pop("end", None)
        if (
            len(paths) == 1
            and not isinstance(path, list)
            and paths[0] == self._strip_protocol(path)
        ):
            return self.cat_file(paths[0], start, end)
        out: dict[str, Any] = {}
        for name, result in zip(paths, self.cat_ranges(paths, start, end), strict=True):
            if isinstance(result, Exception):
                if on_error == "raise":
                    raise result
                if on_error == "omit":
                    continue
            out[name] = result
        return out

    # --- writing: refused -----------------------------------------------------------------------

    def _refuse(self, action: str, path: Any) -> PermissionError:
        where = self._strip_protocol(path) if isinstance(path, str | os.PathLike) else path
        return PermissionError(errno.EROFS, f"{READ_ONLY}: cannot {action}", f"stcore://{where}")

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        raise self._refuse("create a directory", path)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        raise self._refuse("create a directory", path)

    def rmdir(self, path: str) -> None:
        raise self._refuse("remove a directory", path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        raise self._refuse("remove", path)

    def rm_file(self, path: str) -> None:
        raise self._refuse("remove", path)

    def _rm(self, path: str) -> None:
        raise self._refuse("remove", path)

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        raise self._refuse("create a file", path)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        raise self._refuse("write", path)

    def put_file(self, lpath: str, rpath: str, **kwargs: Any) -> None:
        raise self._refuse("upload", rpath)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        raise self._refuse("copy into it", path2)

    def mv(self, path1: Any, path2: Any, **kwargs: Any) -> None:
        raise self._refuse("move", path1)


# AbstractBufferedFile is untyped (``Any``); the ignore is mypy's disallow_subclassing_any.
class StcoreFile(AbstractBufferedFile):  # type: ignore[misc]
    """A buffered, seekable read-only file of one backed-up file (what ``open`` returns).

    fsspec's buffering asks :meth:`_fetch_range` for byte ranges; each is answered by the
    :class:`~stcore.access.views.SnapshotFile`, which fetches only the chunks covering it and
    keeps the last few. Those chunks are this file's blocks, so fsspec's own cache is off by
    default (``cache_type="none"``): a read fetches whole chunks and nothing beyond them. Any
    fsspec ``cache_type``/``block_size`` still works for callers that want read-ahead.

    ``size`` (passed by fsspec when it reopens a pickled file) is accepted and checked.
    """

    def __init__(
        self,
        fs: StcoreFileSystem,
        path: str,
        raw: SnapshotFile,
        entry: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        self._raw_file = raw
        size = kwargs.pop("size", None)
        if size is not None and size != raw.size:
            raise ValueError(f"stcore://{path} has {raw.size} bytes, not {size}")
        if kwargs.get("block_size") is None:
            kwargs["block_size"] = "default"
        kwargs.setdefault("cache_type", "none")
        super().__init__(fs, path, mode="rb", size=raw.size, **kwargs)
        self.details = entry
        lend(self)

    def _fetch_range(self, start: int, end: int) -> bytes:
        with self.fs.read_lock:
            self._raw_file.seek(start)
            return self._raw_file.read(max(0, end - start))

    def read_buffer(self, length: int = -1) -> bytearray:
        """``read`` into a buffer native readers may keep (pyarrow calls this, not ``read``):
        filled straight from the chunks when fsspec's cache is off, copied from it otherwise."""
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if self.cache.name != "none":
            data = self.read(length)
            buffer = LentBuffer(len(data))
            buffer[:] = data
            return buffer
        if length < 0:
            length = self.size - self.loc
        with self.fs.read_lock:
            self._raw_file.seek(self.loc)
            buffer = self._raw_file.read_buffer(length)
        self.loc += len(buffer)
        return buffer

    def close(self) -> None:
        super().close()
        self._raw_file.close()
