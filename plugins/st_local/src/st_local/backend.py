"""The embedded local backend: a repository in a directory on this machine.

Writes are atomic and create-only: bytes go to a temporary file in the target directory, are
fsynced, then hard-linked into place (``link`` fails if the name exists, which is the create-only
check, done by the kernel, race-free between processes), and the directory is fsynced so the
new name survives a crash. :meth:`LocalBackend.open_writer` does the same for objects written
piece by piece (packs), with the temporary file in the repository's root until the name is known.

Modes are private unless the repository is shared with a group: files ``0600`` and folders
``0700``, set with ``fchmod``/``chmod`` whatever the umask. On open they are derived from the
``config`` file's mode, as restic does: a group-readable config (``0640``, what ``stcore init
--group-access`` writes) makes new files ``0640`` and folders ``0750``; a group-writable one
(``0660``, by ``chmod``) ``0660`` and ``0770``. Others never get any access. The backend option
``group_access`` (set by ``init --group-access``) chooses group modes for a repository that has
no config yet.
"""

from __future__ import annotations

import errno
import os
import secrets
import shlex
import stat
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from stcore.errors import (
    AccessDeniedError,
    BackendError,
    ContainerNotFoundError,
    ObjectExistsError,
    ObjectNotFoundError,
)
from stcore.interfaces import BytesLike, ObjectInfo, ObjectWriter
from stcore.localfiles import make_dirs, set_mode

TEMP_PREFIX = ".tmp-"
#: seconds after which an untouched temporary file is a crashed write's leftover
ABANDONED_AFTER = 3600.0
#: user-space buffer of a streamed object: page-sized blobs become few write calls
WRITER_BUFFER = 1024 * 1024

#: (file mode, folder mode) of a private repository, and of one shared read-only with a group
PRIVATE_MODES = (0o600, 0o700)
GROUP_MODES = (0o640, 0o750)


def modes_for(config_mode: int) -> tuple[int, int]:
    """The (file, folder) modes new objects get, from the mode of the repository's config: the
    group's read and write bits carry over (read gives folders ``r-x``), others' never do."""
    group = config_mode & 0o060
    folder = 0o700 | (0o050 if group & 0o040 else 0) | (0o020 if group & 0o020 else 0)
    return 0o600 | group, folder


def path_from_url(url: str) -> Path:
    """``/srv/repo``, ``file:///srv/repo`` or ``local:///srv/repo`` -> ``/srv/repo``."""
    if "://" not in url:
        return Path(url).expanduser()
    parsed = urlparse(url)
    if parsed.scheme not in ("file", "local"):
        raise BackendError(f"the local backend cannot open {url!r}")
    return Path(unquote(parsed.netloc + parsed.path)).expanduser()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBackend:
    """Objects as files under a root directory; ``data/ab/abcd...`` is a file at that path."""

    def __init__(
        self, root: Path, *, fsync: bool = True, modes: tuple[int, int] = PRIVATE_MODES
    ) -> None:
        self.root = root
        self.location = str(root)
        self._fsync = fsync
        #: the exact modes of new files and folders (see :func:`modes_for`)
        self.file_mode, self.dir_mode = modes
        self._known_dirs: set[Path] = set()

    @classmethod
    def open(
        cls, url: str, *, options: Mapping[str, Any] | None = None, create: bool = False
    ) -> LocalBackend:
        root = path_from_url(url).absolute()
        options = options or {}
        group_access = options.get("group_access", False)
        if not isinstance(group_access, bool):
            raise BackendError("the local backend option group_access must be true or false")
        try:
            config_mode: int | None = (root / "config").stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            config_mode = None
        except OSError as exc:
            raise _map_os_error(exc, root / "config") from exc
        if config_mode is not None:
            modes = modes_for(config_mode)  # an existing repository: as its config says
        else:
            modes = GROUP_MODES if group_access else PRIVATE_MODES
        if not root.is_dir():
            if root.exists():
                raise ContainerNotFoundError(f"{root} exists but is not a directory")
            if not create:
                raise ContainerNotFoundError(
                    f"repository directory {root} does not exist; run "
                    f"`stcore init --repo {shlex.quote(str(root))}`"
                )
            try:
                make_dirs(root, modes[1])
            except OSError as exc:
                raise _map_os_error(exc, root) from exc
        elif create and config_mode is None and group_access:
            try:  # a folder made beforehand for a group repository: let the group in
                set_mode(root, root.stat().st_mode & 0o7777 | (modes[1] & 0o070))
            except OSError as exc:
                raise _map_os_error(exc, root) from exc
        fsync = bool(options.get("fsync", True))
        return cls(root, fsync=fsync, modes=modes)

    # --- helpers --------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*_key_parts(key))

    def _file(self, key: str) -> str:
        """:meth:`_path` as text, made without ``pathlib`` (a read's path cost 4.5 µs)."""
        return os.path.join(self.location, *_key_parts(key))

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        missing = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir(self.dir_mode)
            except FileExistsError:
                pass
            else:
                set_mode(path, self.dir_mode)  # exactly, whatever the umask
            if self._fsync:
                _fsync_dir(path.parent)
        self._known_dirs.add(directory)

    # --- Backend protocol -----------------------------------------------------------------------

    def write(self, key: str, data: BytesLike) -> None:
        path = self._path(key)
        try:
            self._ensure_dir(path.parent)
            temp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
            try:
                with os.fdopen(fd, "wb", closefd=True) as handle:
                    set_mode(fd, self.file_mode)  # exactly, whatever the umask
                    handle.write(data)
                    handle.flush()
                    if self._fsync:
                        os.fsync(handle.fileno())
                self._link_into_place(temp, key)
            finally:
                temp.unlink(missing_ok=True)
        except OSError as exc:
            raise _map_os_error(exc, path) from exc

    def open_writer(self) -> ObjectWriter:
        """A temporary file in the root (the same file system as every key, so it can be
        hard-linked anywhere), committed under its key with :meth:`write`'s guarantees."""
        temp = self.root / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
            try:
                set_mode(fd, self.file_mode)
            except OSError:
                os.close(fd)
                temp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise _map_os_error(exc, temp) from exc
        return _LocalWriter(self, temp, os.fdopen(fd, "wb", buffering=WRITER_BUFFER))

    def _abandoned(self) -> Iterator[str]:
        """Temporary files (``.tmp-*``, anywhere) untouched for ``ABANDONED_AFTER`` seconds: a
        live write (a sync into this directory takes no repository lock) keeps its mtime fresh."""
        cutoff = time.time() - ABANDONED_AFTER
        for dirpath, _, filenames in os.walk(self.root):
            for filename in filenames:
                if not filename.startswith(TEMP_PREFIX):
                    continue
                path = os.path.join(dirpath, filename)
                try:
                    if os.lstat(path).st_mtime < cutoff:
                        yield path
                except FileNotFoundError:
                    continue

    def count_abandoned(self) -> int:
        """How many temporaries of crashed writes there are (``stcore check`` reports them)."""
        return sum(1 for _ in self._abandoned())

    def discard_abandoned(self) -> int:
        """Delete the temporary files of writes whose process died; see :meth:`_abandoned`."""
        removed = 0
        for path in self._abandoned():
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                continue
        return removed

    def _link_into_place(self, temp: Path, key: str) -> None:
        path = self._path(key)
        try:
            self._ensure_dir(path.parent)
            try:
                os.link(temp, path)
            except FileExistsError:
                raise ObjectExistsError(f"{key} already exists in {self.location}") from None
            if self._fsync:
                _fsync_dir(path.parent)
        except OSError as exc:
            raise _map_os_error(exc, path) from exc

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """The object's bytes from ``offset``, ``length`` of them or to its end.

        With ``os.pread`` on a bare descriptor: a buffered file object cost 18 µs more per
        read, and a check or a restore reads every tree of a snapshot on its own."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"no such range of {key}: offset {offset}, length {length}")
        path = self._file(key)
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{key} does not exist in {self.location}") from None
        except OSError as exc:
            raise _map_os_error(exc, Path(path)) from exc
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):  # a folder opens for reading; say so, as open() did
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            if length is None:
                length = max(info.st_size - offset, 0)
            return _read_at(fd, offset, length)
        except OSError as exc:
            raise _map_os_error(exc, Path(path)) from exc
        finally:
            os.close(fd)

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            return ObjectInfo(key=key, size=path.stat().st_size)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{key} does not exist in {self.location}") from None
        except OSError as exc:
            raise _map_os_error(exc, path) from exc

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the directory the prefix names, not the whole repository.
        directory, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*directory.split("/")) if directory else self.root
        if not start.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            relative = os.path.relpath(dirpath, self.root)
            base = "" if relative == "." else relative.replace(os.sep, "/") + "/"
            for filename in sorted(filenames):
                if filename.startswith(TEMP_PREFIX):
                    continue
                key = base + filename
                if not key.startswith(prefix):
                    continue
                try:
                    size = os.stat(os.path.join(dirpath, filename)).st_size
                except FileNotFoundError:
                    continue  # deleted while listing
                yield ObjectInfo(key=key, size=size)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{key} does not exist in {self.location}") from None
        except OSError as exc:
            raise _map_os_error(exc, path) from exc

    def close(self) -> None:
        self._known_dirs.clear()

    def __repr__(self) -> str:
        return f"LocalBackend({self.location!r})"


class _LocalWriter:
    """One streamed object: a buffered temporary file, linked into place by :meth:`commit`."""

    def __init__(self, backend: LocalBackend, temp: Path, handle: Any) -> None:
        self._backend = backend
        self._temp = temp
        self._handle = handle

    def write(self, data: BytesLike) -> None:
        try:
            self._handle.write(data)
        except OSError as exc:
            self.abort()
            raise _map_os_error(exc, self._temp) from exc

    def commit(self, key: str) -> None:
        try:
            try:
                self._handle.flush()
                if self._backend._fsync:
                    os.fsync(self._handle.fileno())
                self._handle.close()
            except OSError as exc:
                raise _map_os_error(exc, self._temp) from exc
            self._backend._link_into_place(self._temp, key)
        finally:
            self.abort()

    def abort(self) -> None:
        try:
            self._handle.close()
        except OSError:
            pass  # a failed flush of bytes we are throwing away
        self._temp.unlink(missing_ok=True)


def _key_parts(key: str) -> list[str]:
    """The path components of object ``key``; a key that could leave the repository or name a
    temporary file is refused."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or p.startswith(TEMP_PREFIX) for p in parts):
        raise BackendError(f"invalid object key {key!r}")
    return parts


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _read_at(fd: int, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` (fewer at the end of the file), whatever each call of
    ``os.pread`` returns; a system without ``pread`` seeks and reads."""
    pieces: list[bytes] = []
    while length > 0:
        if hasattr(os, "pread"):
            piece = os.pread(fd, length, offset)
        else:  # Windows
            os.lseek(fd, offset, os.SEEK_SET)
            piece = os.read(fd, length)
        if not piece:
            break
        if not pieces and len(piece) == length:
            return piece  # the usual case: one call, no copy
        pieces.append(piece)
        offset += len(piece)
        length -= len(piece)
    return b"".join(pieces)


def _map_os_error(exc: OSError, path: Path) -> BackendError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return AccessDeniedError(f"permission denied writing or reading {path}: {exc.strerror}")
    if exc.errno == errno.ENOSPC:
        return BackendError(f"no space left on the device holding {path}")
    return BackendError(f"local storage error at {path}: {exc}")
