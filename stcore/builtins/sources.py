"""Built-in sources: ``files`` (a directory tree), ``json`` (documents), ``sqlite`` (a live DB)
and ``stdin`` (one file streamed from standard input, ``stcore backup --stdin``).

Each is a class whose constructor takes ``(name, options)``; see :mod:`stcore.interfaces` for the
contract and ``docs/configuration.md`` (``[sources.NAME]``) for the options.
"""

from __future__ import annotations

import bisect
import errno
import inspect
import io
import itertools
import json
import os
import shutil
import sqlite3
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import attrs

from stcore import jsondoc
from stcore.builtins import statahead
from stcore.errors import ConfigError, LeftOut, SourceError
from stcore.globs import match_any, portable
from stcore.interfaces import ErrorReporter, SourceEntry
from stcore.streams import sqlite_page_size


def _open_binary(path: str) -> BinaryIO:
    return open(path, "rb")


#: the user-space buffer over a scanned file: few system calls for large files
READ_BUFFER = 1024 * 1024


def _shrank(scanned: int, read: int) -> OSError:
    return OSError(
        errno.EIO,
        f"shrank while being read ({scanned} bytes when scanned, {read} read); not stored",
    )


def _grew() -> OSError:
    return OSError(errno.EIO, "grew while being read; not stored")


class _ScannedFile(io.RawIOBase):
    """The bytes of a file exactly as scanned: at most its scanned size, and an OSError when it
    shrank, grew or was modified while being read (the backup lists it, exit 3)."""

    def __init__(self, fd: int, path: str, scanned: os.stat_result) -> None:
        super().__init__()
        self._fd = fd
        self._path = path
        self._scanned = scanned
        self._left = scanned.st_size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            self._check_unchanged()
            return 0
        with memoryview(buffer) as view:  # read straight into the caller's buffer: no copy
            count = os.readv(self._fd, [view[: min(len(view), self._left)]])
        if not count:
            raise _shrank(self._scanned.st_size, self._scanned.st_size - self._left)
        self._left -= count
        return count

    def _check_unchanged(self) -> None:
        if os.read(self._fd, 1):
            raise _grew()
        _check_unmodified(self._fd, self._scanned)

    #: called once the descriptor is closed (a database's read transaction ends there)
    after_close: Callable[[], None] | None = None

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
            if self.after_close is not None:
                self.after_close()
        super().close()


def _check_unmodified(fd: int, scanned: os.stat_result) -> None:
    now = os.fstat(fd)
    if now.st_size != scanned.st_size or now.st_mtime_ns != scanned.st_mtime_ns:
        raise OSError(errno.EIO, "was modified while being read; not stored")


class _WholeFile(io.BytesIO):
    """A small file's bytes, read whole when it was opened (see :func:`open_scanned`)."""

    def peek(self, size: int = 0) -> bytes:
        at = self.tell()
        return self.getvalue()[at : at + max(size, 1)]


def _read_whole(fd: int, scanned: os.stat_result) -> bytes:
    """The file's bytes in one read (a loop only after a short read, as some network file
    systems give), checked against the scan as :class:`_ScannedFile` checks them."""
    size = scanned.st_size
    data = os.read(fd, size + 1)  # one byte more: a file that grew says so here
    while len(data) < size:
        more = os.read(fd, size + 1 - len(data))
        if not more:
            raise _shrank(size, len(data))
        data += more
    if len(data) > size:
        raise _grew()
    _check_unmodified(fd, scanned)  # grew after the read, or changed in place
    return data


#: files up to this size are read whole as they are opened: one read, no buffered reader (the
#: per-file cost of a tree of small files is mostly system calls and Python objects)
WHOLE_FILE_BYTES = READ_BUFFER

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _open_file(path: str, dir_fd: int | None) -> int:
    """A descriptor for ``path``, no link followed, never blocking on a FIFO or device."""
    try:
        return os.open(path, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(
                errno.ELOOP, "was replaced by a symlink after the scan; not read"
            ) from None
        raise


def open_scanned(
    path: str,
    scanned: os.stat_result,
    dir_fd: int | None = None,
    *,
    fd: int | None = None,
    whole: bool = True,
) -> io.BufferedReader | _WholeFile:
    """Open the regular file that was scanned at ``path`` (relative to ``dir_fd`` when given)
    and nothing else: no link is followed, a FIFO or device never blocks the open, and the
    descriptor must be the scanned file (same device and inode, still regular). A swapped path
    raises OSError before a byte is read. ``fd``: the file opened already (by a prefetch), which
    is then checked the same way and owned by the stream.

    A file of at most :data:`WHOLE_FILE_BYTES` is read whole here and closed (unless
    ``whole`` is False: a caller that needs the descriptor open while it reads)."""
    if fd is None:
        fd = _open_file(path, dir_fd)
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (
            scanned.st_dev,
            scanned.st_ino,
        ):
            raise OSError(errno.ESTALE, "was replaced after the scan; not read")
        if not whole or scanned.st_size > WHOLE_FILE_BYTES:
            os.set_blocking(fd, True)
            return io.BufferedReader(_ScannedFile(fd, path, scanned), buffer_size=READ_BUFFER)
        data = _read_whole(fd, scanned)  # O_NONBLOCK means nothing to a regular file's read
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return _WholeFile(data)


#: how much of a file to ask the kernel to read ahead of the backup loop
ADVISE_BYTES = 4 * 1024 * 1024
_CAN_ADVISE = hasattr(os, "posix_fadvise")  # not on macOS or Windows


class _FileOpener:
    """A scanned regular file's ``opener`` and ``prefetch`` (:class:`SourceEntry`).

    ``prefetch`` opens the file a few entries early and asks the kernel to start reading it
    (``POSIX_FADV_WILLNEED``); the open then only checks and reads that descriptor, so reading
    ahead costs one system call per file, not an open and a close more. Best effort: a file
    that cannot be opened early is opened (and its error reported) when it is read.
    """

    __slots__ = ("_fd", "_parts", "_show", "before_open", "directory", "name", "scanned")

    def __init__(
        self,
        directory: _Dir | None,
        name: str,
        show: Callable[[tuple[str, ...]], str],
        parts: tuple[str, ...],
        scanned: os.stat_result,
        before_open: Callable[[str], None] | None,
    ) -> None:
        self.directory = directory  # held: its descriptor stays open until the file is read
        self.name = name
        self._show = show
        self._parts = parts
        self.scanned = scanned
        self.before_open = before_open
        self._fd = -1

    @property
    def shown(self) -> str:
        """The path messages and the test hook see; made when asked (the file is opened, or
        an error names it), not for every file a walk lists: most of an unchanged tree's
        files are never opened."""
        return self._show(self._parts)

    def prefetch(self) -> None:
        if self._fd >= 0:
            return
        if self.before_open is not None:
            self.before_open(self.shown)  # tests: a change between scan and read
            self.before_open = None
        try:
            self._fd = _open_file(self.name, None if self.directory is None else self.directory.fd)
        except OSError:
            return  # the open that reads reports it
        try:
            size = min(self.scanned.st_size, ADVISE_BYTES)
            os.posix_fadvise(self._fd, 0, size, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass

    def __call__(self) -> BinaryIO:
        fd, self._fd = self._fd, -1
        return _open_checked(
            self.directory,
            self.name,
            self.shown,
            self.scanned,
            self.before_open,
            None if fd < 0 else fd,
        )

    def __del__(self) -> None:
        if self._fd >= 0:  # prefetched, never read (the backup stopped)
            os.close(self._fd)


class _Dir:
    """An open directory of the walk. Every name in it is read relative to this descriptor, one
    component at a time: no path grows past ``PATH_MAX`` however deep the tree, and no link on
    the way is followed. Closed when the walk and every pending entry are done with it."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, name: str, parent: _Dir | None, scanned: os.stat_result) -> _Dir:
        """Open directory ``name`` (in ``parent``), which must be the one scanned."""
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(name, flags, dir_fd=None if parent is None else parent.fd)
        directory = cls(fd)  # closes the descriptor if the check below fails
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (scanned.st_dev, scanned.st_ino):
            raise OSError(errno.ESTALE, "was replaced after the scan; not read")
        return directory

    def __del__(self) -> None:
        os.close(self.fd)


#: directories of the walk held open at once; a deeper tree reopens its ancestors through ".."
HELD_LEVELS = 64


@attrs.define
class _Level:
    """One directory on the walk's path: the names still to visit in it."""

    listing: list[str]
    identity: tuple[int, int]
    directory: _Dir | None
    names: Iterator[str] = attrs.field(init=False)
    #: companions of a database in this directory that is copied with SQLite's backup API
    skip: set[str] = attrs.field(factory=set)

    #: the names that end like a SQLite ``-wal``, ``-shm`` or ``-journal`` (usually none)
    companions: set[str] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.names = iter(self.listing)
        self.companions = {name for name in self.listing if name.endswith(SQLITE_COMPANIONS)}

    def has(self, name: str) -> bool:
        at = bisect.bisect_left(self.listing, name)
        return at < len(self.listing) and self.listing[at] == name


def _as_list(value: Any, option: str, source: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"source {source!r}: option {option!r} must be a string or a list of strings")


def _as_bool(value: Any, option: str, source: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise ConfigError(f"source {source!r}: option {option!r} must be true or false")


def _require_path(name: str, options: Mapping[str, Any]) -> Path:
    raw = options.get("path")
    if not isinstance(raw, str | os.PathLike) or not str(raw):
        raise ConfigError(f"source {name!r} needs a `path` option")
    path = Path(raw).expanduser()
    if not path.exists() and not path.is_symlink():
        raise SourceError(f"source {name!r}: {path} does not exist")
    return path.absolute()


def _entry_for(
    name: str,
    parts: tuple[str, ...],
    st: os.stat_result,
    directory: _Dir | None,
    show: Callable[[tuple[str, ...]], str],
    before_open: Callable[[str], None] | None = None,
) -> SourceEntry | None:
    """The entry for ``name`` in ``directory`` (None: ``name`` is a path); ``show(parts)``
    makes the path that messages and the test hook see."""
    st_mode = st.st_mode
    mode = stat.S_IMODE(st_mode)
    kind = stat.S_IFMT(st_mode)  # one test per entry, not three
    if kind == stat.S_IFREG:  # most entries
        opener = _FileOpener(directory, name, show, parts, st, before_open)
        size, mtime_ns = st.st_size, st.st_mtime_ns
        return SourceEntry(
            path=parts,
            kind="file",
            mode=mode,
            mtime_ns=mtime_ns,
            size=size,
            opener=opener,
            prefetch=opener.prefetch if _CAN_ADVISE else None,
            change_token=f"{size}:{mtime_ns}:{st.st_ctime_ns}:{st.st_ino}",
        )
    if kind == stat.S_IFDIR:
        return SourceEntry(path=parts, kind="dir", mode=mode, mtime_ns=st.st_mtime_ns)
    if kind == stat.S_IFLNK:
        return SourceEntry(
            path=parts,
            kind="symlink",
            mode=mode,
            mtime_ns=st.st_mtime_ns,
            target=os.readlink(name, dir_fd=None if directory is None else directory.fd),
        )
    raise OSError(
        errno.EINVAL, f"is a {_special_kind(st.st_mode)}: not backed up (only its name is known)"
    )


def _special_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


def _open_checked(
    directory: _Dir | None,
    name: str,
    shown: str,
    scanned: os.stat_result,
    before_open: Callable[[str], None] | None,
    fd: int | None = None,
) -> BinaryIO:
    """The scanned file's bytes (``fd``: opened already). A SQLite database (its header is in
    the first bytes read anyway) is read in one consistent state: see
    :func:`_open_database_bytes`."""
    if before_open is not None:
        before_open(shown)  # tests: change the file between scan and read, deterministically
    dir_fd = None if directory is None else directory.fd
    stream = open_scanned(name, scanned, dir_fd, fd=fd)
    try:
        header = stream.peek(SQLITE_HEADER_SIZE)[:SQLITE_HEADER_SIZE]
    except BaseException:
        stream.close()
        raise
    if len(header) < SQLITE_HEADER_SIZE or sqlite_page_size(header) is None:
        return stream
    stream.close()
    return _open_database_bytes(directory, name, shown, scanned, wal=header[18] == 2)


def _open_database_bytes(
    directory: _Dir | None, name: str, shown: str, scanned: os.stat_result, *, wal: bool
) -> BinaryIO:
    """A SQLite database's bytes in one consistent state, byte for byte when it is idle.

    A database with a ``-wal`` or ``-journal`` beside it is in use: it is copied through
    SQLite's backup API. Otherwise a WAL database is fully checkpointed (writers would go to a
    ``-wal`` first) and is read as it is; a rollback-journal database is read while holding a
    read transaction, whose lock keeps every writer from changing the file. A change that
    still slips in (a checkpoint) is caught by the scanned-size-and-mtime check: listed.
    """
    dir_fd = None if directory is None else directory.fd
    if any(_exists(name + end, dir_fd) for end in ("-wal", "-journal")):
        return _open_database(directory, name, shown, scanned, None)
    if wal:
        return open_scanned(name, scanned, dir_fd)
    try:
        reading = sqlite3.connect(
            f"{Path(_database_path(directory, name, shown)).as_uri()}?mode=ro",
            uri=True,
            timeout=30,
        )
    except sqlite3.Error:
        return _open_database(directory, name, shown, scanned, None)
    try:
        reading.execute("BEGIN")
        reading.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the SHARED lock
        # committed since the scan is fine: the file is consistent now, under the lock
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (scanned.st_dev, scanned.st_ino):
            raise OSError(errno.ESTALE, "was replaced after the scan; not read")
        stream = open_scanned(name, now, dir_fd, whole=False)
    except sqlite3.Error:
        reading.close()
        return _open_database(directory, name, shown, scanned, None)
    except BaseException:
        reading.close()
        raise
    # closing the stream's descriptor drops this process's locks on the file (POSIX), so the
    # read transaction ends with it
    assert isinstance(stream, io.BufferedReader) and isinstance(stream.raw, _ScannedFile)
    stream.raw.after_close = reading.close
    return stream


def _exists(name: str, dir_fd: int | None) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return True


def _database_path(directory: _Dir | None, name: str, shown: str) -> str:
    """A path SQLite can open ``name`` by: through the directory's descriptor, the path stays
    short and is still the directory that was scanned."""
    via_fd = None if directory is None else f"/proc/self/fd/{directory.fd}"
    return os.path.join(via_fd, name) if via_fd and os.path.isdir(via_fd) else shown


def _open_companion(
    directory: _Dir | None, database: str, opener: Callable[[], BinaryIO]
) -> BinaryIO:
    """A file named like a ``-wal``, ``-shm`` or ``-journal`` of ``database``: left out if that
    is a SQLite database (whose consistent copy holds its content; restored beside the copy, a
    journal would be rolled back into it), read as usual otherwise."""
    if _sqlite_page_size(database, None if directory is None else directory.fd) is not None:
        raise LeftOut(f"the content of {database!r} is in its consistent copy")
    return opener()


#: the header bytes looked at: the magic, the page size, the write version (2: WAL)
SQLITE_HEADER_SIZE = 20
#: the files SQLite keeps next to a database while it is in use
SQLITE_COMPANIONS = ("-journal", "-shm", "-wal")


def copy_database(path: str, copy_path: str) -> int:
    """Copy the SQLite database at ``path`` into a new self-contained file with SQLite's online
    backup API (consistent while other processes write); return its page size."""
    source = sqlite3.connect(f"{Path(path).as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(copy_path)
        try:
            source.backup(target)
            page_size = int(target.execute("PRAGMA page_size").fetchone()[0])
            # The copy must be one self-contained file: fold any WAL back into it, then mark
            # it WAL again if the database was (closing checkpoints and removes the -wal), so
            # the restored database is in the journal mode it was backed up in.
            target.execute("PRAGMA journal_mode=DELETE")
            if target.execute("PRAGMA journal_mode").fetchone()[0] != "delete":
                raise sqlite3.OperationalError("could not fold the copy's journal into it")
            if source.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                target.execute("PRAGMA journal_mode=WAL")
        finally:
            target.close()
    finally:
        source.close()
    return page_size


def _companion_of(name: str) -> str | None:
    """The database ``name`` would be the ``-wal``, ``-shm`` or ``-journal`` of, if any."""
    for end in SQLITE_COMPANIONS:
        if name.endswith(end) and len(name) > len(end):
            return name[: -len(end)]
    return None


def _sqlite_page_size(name: str, dir_fd: int | None) -> int | None:
    """The page size of the SQLite database ``name``, or None if it is not one."""
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError:
        return None  # the read reports the problem
    try:
        header = os.pread(fd, SQLITE_HEADER_SIZE, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    return sqlite_page_size(header)


def _open_database(
    directory: _Dir | None,
    name: str,
    shown: str,
    scanned: os.stat_result,
    before_open: Callable[[str], None] | None,
) -> BinaryIO:
    """A consistent copy of the live SQLite database ``name``, made with SQLite's backup API
    (a byte copy of a database being written is torn); the copy is deleted once opened."""
    if before_open is not None:
        before_open(shown)
    path = _database_path(directory, name, shown)
    with open_scanned(name, scanned, None if directory is None else directory.fd, whole=False):
        pass  # still the regular file that was scanned: no link followed, nothing swapped
    tempdir = tempfile.mkdtemp(prefix="stcore-sqlite-")
    try:
        copy_path = os.path.join(tempdir, "copy.sqlite")
        copy_database(path, copy_path)
        return open(copy_path, "rb")
    except sqlite3.Error as exc:
        raise OSError(
            errno.EIO,
            f"is a SQLite database in use that could not be copied consistently "
            f"({exc}); not stored",
        ) from None
    finally:
        shutil.rmtree(tempdir, ignore_errors=True)


@attrs.frozen
class TagSpec:
    """One ``exclude_if_present`` entry: a directory holding a file ``name`` (whose first bytes
    are ``header``, when given) keeps only that file."""

    name: str
    header: bytes | None = None

    @classmethod
    def parse(cls, spec: str, source: str) -> TagSpec:
        """``NAME`` or restic's ``NAME:HEADER`` (split at the first ``:``)."""
        name, _, header = spec.partition(":")
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise ConfigError(
                f"source {source!r}: exclude_if_present {spec!r} must be NAME or NAME:HEADER, "
                "NAME a file name"
            )
        return cls(name, header.encode("utf-8", "surrogateescape") if header else None)

    def marks(self, directory: _Dir, listing: list[str]) -> bool:
        """Whether ``directory`` (its sorted ``listing``) holds this tag. The header is read
        from a regular file only, no link followed; an unreadable tag marks nothing (the tag
        file's own read then reports the problem)."""
        at = bisect.bisect_left(listing, self.name)
        if at == len(listing) or listing[at] != self.name:
            return False
        if self.header is None:
            return True
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.name, flags, dir_fd=directory.fd)
        except OSError:
            return False
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            return os.pread(fd, len(self.header), 0) == self.header
        except OSError:
            return False
        finally:
            os.close(fd)


#: ``exclude_caches``: the Cache Directory Tagging Standard's tag (https://bford.info/cachedir/)
CACHEDIR_TAG = "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55"


class FilesSource:
    """A directory tree (or a single file) with include/exclude globs.

    Keeps modes, mtimes, symlinks (as links, never followed), empty directories and any file name
    the file system allows. Besides ``include`` and ``exclude``, as restic's ``backup``:
    ``iexclude`` (globs compared regardless of case), ``exclude_if_present`` (``NAME`` or
    ``NAME:HEADER``: a directory holding that file keeps only the file), ``exclude_caches``
    (``CACHEDIR.TAG`` directories) and ``one_file_system`` (a directory on another device than
    the root is kept, empty: a mount point; a file there is left out).
    """

    type_name = "files"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.root = _require_path(name, options)
        self.include = _as_list(options.get("include"), "include", name)
        self.exclude = _as_list(options.get("exclude"), "exclude", name)
        self.iexclude = _as_list(options.get("iexclude"), "iexclude", name)
        self.exclude_if_present = _as_list(
            options.get("exclude_if_present"), "exclude_if_present", name
        )
        self.exclude_caches = _as_bool(options.get("exclude_caches"), "exclude_caches", name)
        self.one_file_system = _as_bool(options.get("one_file_system"), "one_file_system", name)
        tags = [*self.exclude_if_present, *([CACHEDIR_TAG] if self.exclude_caches else [])]
        self.tags = [TagSpec.parse(spec, name) for spec in tags]
        #: called with a file's path between the scan and the read (a hook for tests that
        #: swap, grow or shrink a file at exactly that moment)
        self.before_open: Callable[[str], None] | None = None

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "path": str(self.root),
            "include": self.include,
            "exclude": self.exclude,
        }
        # only when set: the manifests of sources without them stay as they were
        if self.iexclude:
            described["iexclude"] = self.iexclude
        if self.exclude_if_present:
            described["exclude_if_present"] = self.exclude_if_present
        if self.exclude_caches:
            described["exclude_caches"] = True
        if self.one_file_system:
            described["one_file_system"] = True
        return described

    def _untagged(self, directory: _Dir, listing: list[str]) -> list[str]:
        """restic's ``--exclude-if-present``: a directory holding a tag keeps only the tag
        (with several tags present, only a name that is every one of them)."""
        present = [tag.name for tag in self.tags if tag.marks(directory, listing)]
        if not present:
            return listing
        return [name for name in listing if all(name == tag for tag in present)]

    def scan(self, report_error: ErrorReporter) -> Iterator[SourceEntry]:
        try:
            st = os.lstat(self.root)
        except OSError as exc:
            raise SourceError(f"source {self.name!r}: cannot read {self.root}: {exc}") from exc
        if not stat.S_ISDIR(st.st_mode):
            try:
                shown = str(self.root)
                entry = _entry_for(
                    shown, (self.root.name,), st, None, lambda _parts: shown, self.before_open
                )
            except OSError as exc:
                raise SourceError(f"source {self.name!r}: {self.root} {exc.strerror}") from exc
            if entry is not None and any(
                os.path.lexists(f"{self.root}{end}") for end in ("-wal", "-journal")
            ):
                entry = self._database_entry(entry, None, str(self.root), st, set())
            if entry is not None:
                yield entry
            return
        try:
            root = _Dir.open(str(self.root), None, st)
            names = sorted(os.listdir(root.fd))
            if self.tags:
                names = self._untagged(root, names)
        except OSError as exc:
            raise SourceError(f"source {self.name!r}: cannot list {self.root}: {exc}") from exc
        yield from self._walk(root, st, names, report_error)

    def _shown(self, parts: Sequence[str]) -> str:
        return "/".join((str(self.root), *parts))  # not os.path.join: linear in the depth

    def _walk(
        self, root: _Dir, st: os.stat_result, names: list[str], report_error: ErrorReporter
    ) -> Iterator[SourceEntry]:
        """Depth-first, names sorted, a directory before its contents.

        Iterative, and every name is read relative to its directory's descriptor, so the depth
        of a tree is unbounded. Only the deepest ``HELD_LEVELS`` directories stay open; going
        back up past them reopens each ancestor through ``..`` and checks it is the directory
        that was scanned (a directory moved meanwhile ends the walk, listed). A tree of more
        than ``statahead.START_AFTER`` entries gets a helper process warming the kernel's
        caches ahead of the walk.
        """
        entries = self._walk_levels(root, st, names, report_error)
        helper = None  # a process warming the caches ahead of this walk: see statahead
        try:
            yield from itertools.islice(entries, statahead.START_AFTER)
            if inspect.getgeneratorstate(entries) != inspect.GEN_CLOSED:  # a tree worth it
                helper = statahead.start(
                    str(self.root),
                    exclude=[
                        *(portable(p) for p in self.exclude),
                        *(portable(p, ignore_case=True) for p in self.iexclude),
                    ],
                    one_file_system=self.one_file_system,
                )
            yield from entries
        finally:
            entries.close()
            statahead.stop(helper)

    def _walk_levels(
        self, root: _Dir, st: os.stat_result, names: list[str], report_error: ErrorReporter
    ) -> Generator[SourceEntry, None, None]:
        stack = [_Level(listing=names, identity=(st.st_dev, st.st_ino), directory=root)]
        root_device = st.st_dev
        show = self._shown  # looked up once: every file's opener keeps it
        path: list[str] = []  # the names from the root to the top of the stack
        while stack:
            level = stack[-1]
            name = next(level.names, None)
            if name is None:
                done = stack.pop()
                if (
                    stack
                    and stack[-1].directory is None
                    and not self._reopen(stack[-1], done, path, report_error)
                ):
                    return
                if path:
                    path.pop()
                continue
            directory = level.directory
            assert directory is not None
            parts = (*path, name)
            relative = "/".join(parts) if self.include or self.exclude or self.iexclude else ""
            if self.exclude and match_any(self.exclude, relative):
                continue
            if self.iexclude and match_any(self.iexclude, relative, ignore_case=True):
                continue
            try:
                st = os.stat(name, dir_fd=directory.fd, follow_symlinks=False)
            except FileNotFoundError as exc:
                database = _companion_of(name) if name in level.companions else None
                if database is None or not level.has(database):
                    report_error(self._shown(parts), exc)
                continue  # else a database's -journal or -wal, gone with its transaction
            except OSError as exc:
                report_error(self._shown(parts), exc)
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if self.include and not is_dir and not match_any(self.include, relative):
                continue
            # one_file_system, as restic: a directory on another device (a mount point) is kept
            # but not entered; anything else there (a file bind-mounted) is left out
            crossing = self.one_file_system and st.st_dev != root_device
            if crossing and not is_dir:
                continue
            try:
                entry = _entry_for(name, parts, st, directory, show, self.before_open)
            except OSError as exc:
                report_error(self._shown(parts), exc)
                continue
            if entry is None:
                continue
            if level.companions and entry.kind == "file":  # a directory holding a database
                if name in level.skip:
                    continue  # its content is in the consistent copy of its database
                if f"{name}-wal" in level.companions or f"{name}-journal" in level.companions:
                    entry = self._database_entry(entry, directory, name, st, level.skip)
                database = _companion_of(name)
                if database is not None and entry.opener is not None and level.has(database):
                    opener = partial(_open_companion, directory, database, entry.opener)
                    entry = attrs.evolve(entry, opener=opener, prefetch=None)
            yield entry
            if is_dir and not crossing:
                try:
                    child = _Dir.open(name, directory, st)
                    children = sorted(os.listdir(child.fd))
                    if self.tags:
                        children = self._untagged(child, children)
                except OSError as exc:
                    report_error(self._shown(parts), exc)
                    continue
                stack.append(_Level(children, (st.st_dev, st.st_ino), child))
                path.append(name)
                if len(stack) > HELD_LEVELS:
                    stack[-HELD_LEVELS - 1].directory = None

    def _database_entry(
        self,
        entry: SourceEntry,
        directory: _Dir | None,
        name: str,
        st: os.stat_result,
        skip: set[str],
    ) -> SourceEntry:
        """A file next to a ``-wal`` or ``-journal`` file is a database in use if its header
        says SQLite: it is read through SQLite's backup API, never byte by byte (which tears
        it), and its companions are left out (their content is in the copy)."""
        page_size = _sqlite_page_size(name, None if directory is None else directory.fd)
        if page_size is None:
            return entry
        skip.update(name + end for end in SQLITE_COMPANIONS)  # left out of the walk
        shown = name if directory is None else self._shown(entry.path)
        return attrs.evolve(
            entry,
            opener=partial(_open_database, directory, name, shown, st, self.before_open),
            page_size=page_size,
            change_token=None,  # in use: read again at every backup
            prefetch=None,
        )

    def _reopen(
        self, level: _Level, child: _Level, path: list[str], report_error: ErrorReporter
    ) -> bool:
        """Reopen ``level``'s directory as ``..`` of ``child``'s; False (listed) when it is no
        longer the directory that was scanned."""
        assert child.directory is not None
        try:
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            directory = _Dir(os.open("..", flags, dir_fd=child.directory.fd))
            now = os.fstat(directory.fd)
            if (now.st_dev, now.st_ino) != level.identity:
                raise OSError(errno.ESTALE, "was moved during the backup")
        except OSError as exc:
            why = exc.strerror or str(exc)
            report_error(
                self._shown(path[:-1]),
                OSError(exc.errno, f"{why}; the rest of it and of its parents is not backed up"),
            )
            return False
        level.directory = directory
        return True

    def close(self) -> None:
        pass


class JsonSource:
    """One or more JSON (or JSON-lines) documents, readable back as parsed data.

    ``path`` names one document; ``paths`` several files or directories (whose ``*.json`` and
    ``*.jsonl`` files are taken, recursively). Invalid JSON is reported as an error (exit 3) but
    its bytes are still stored, so nothing is lost.
    """

    type_name = "json"
    suffixes = (".json", ".jsonl")

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        paths = _as_list(options.get("paths"), "paths", name)
        if options.get("path") is not None:
            paths.insert(0, str(options["path"]))
        if not paths:
            raise ConfigError(f"source {name!r} needs a `path` or `paths` option")
        self.single = len(paths) == 1 and not Path(paths[0]).expanduser().is_dir()
        self.paths = [_require_path(name, {"path": p}) for p in paths]
        self._documents = self._collect()

    def _collect(self) -> dict[tuple[str, ...], Path]:
        documents: dict[tuple[str, ...], Path] = {}
        for path in self.paths:
            if path.is_dir():
                found = [
                    p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in self.suffixes
                ]
                pairs = [(tuple(p.relative_to(path.parent).parts), p) for p in found]
            else:
                pairs = [((path.name,), path)]
            for key, file in pairs:
                if key in documents:
                    raise ConfigError(
                        f"source {self.name!r}: {documents[key]} and {file} would both be stored "
                        f"as {'/'.join(key)}; list them in separate sources"
                    )
                documents[key] = file
        return documents

    def describe(self) -> dict[str, Any]:
        return {"paths": [str(p) for p in self.paths], "single": self.single}

    def scan(self, report_error: ErrorReporter) -> Iterator[SourceEntry]:
        emitted: set[tuple[str, ...]] = set()
        for key in sorted(self._documents):
            file = self._documents[key]
            for depth in range(1, len(key)):
                directory = key[:depth]
                if directory not in emitted:
                    emitted.add(directory)
                    yield SourceEntry(path=directory, kind="dir", mode=0o755)
            try:
                st = file.stat()
                body = file.read_bytes()
            except OSError as exc:
                report_error(str(file), exc)
                continue
            try:
                if file.suffix == ".jsonl":  # record by record: nothing kept, nothing to pause
                    for line in body.splitlines():
                        if line.strip():
                            json.loads(line)
                else:
                    jsondoc.loads(body)
            except ValueError as exc:
                report_error(str(file), ValueError(f"not valid JSON ({exc}); stored as bytes"))
            yield SourceEntry(
                path=key,
                kind="file",
                mode=stat.S_IMODE(st.st_mode),
                mtime_ns=st.st_mtime_ns,
                size=st.st_size,
                opener=partial(_open_binary, str(file)),
            )

    def close(self) -> None:
        pass

    @staticmethod
    def read_data(view: Any) -> Any:
        """The parsed document (single ``path``) or ``{relative path: parsed document}``."""
        documents: dict[str, Any] = {}
        paths = [info.path for info in view.files() if info.kind == "file"]
        for path, body in view.read_many(paths):  # in bulk: a few requests for many files
            parse = jsondoc.loads_lines if path.endswith(".jsonl") else jsondoc.loads
            documents[path] = parse(body)
        if view.summary.options.get("single") and len(documents) == 1:
            return next(iter(documents.values()))
        return documents


class SqliteSource:
    """A consistent copy of a live SQLite database, taken with sqlite3's online backup API.

    The copy is made into a private temporary directory when the scan starts and removed by
    :meth:`close`; writers in other processes may keep writing meanwhile. The entry carries the
    database's page size so the chunker can cut on page boundaries.
    """

    type_name = "sqlite"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.path = _require_path(name, options)
        if not self.path.is_file():
            raise SourceError(f"source {name!r}: {self.path} is not a database file")
        self._tempdir: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def _copy(self) -> tuple[str, int]:
        self._tempdir = tempfile.mkdtemp(prefix="stcore-sqlite-")
        copy_path = os.path.join(self._tempdir, self.path.name)
        try:
            page_size = copy_database(str(self.path), copy_path)
        except sqlite3.Error as exc:
            raise SourceError(
                f"source {self.name!r}: cannot copy SQLite database {self.path}: {exc}"
            ) from exc
        return copy_path, page_size

    def scan(self, report_error: ErrorReporter) -> Iterator[SourceEntry]:
        st = self.path.stat()
        copy_path, page_size = self._copy()
        yield SourceEntry(
            path=(self.path.name,),
            kind="file",
            mode=stat.S_IMODE(st.st_mode),
            mtime_ns=st.st_mtime_ns,
            size=os.path.getsize(copy_path),
            opener=partial(_open_binary, copy_path),
            page_size=page_size,
        )

    def close(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None


#: the size of a file entry whose source cannot know it before reading it (``stdin``)
UNKNOWN_SIZE = -1


class _Borrowed(io.RawIOBase):
    """A stream read through without being closed (standard input belongs to the process)."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            return int(readinto(buffer))
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class StdinSource:
    """One file whose bytes come from a stream, standard input by default, read once as it is
    backed up (``pg_dump db | stcore backup --stdin --stdin-filename db.sql``).

    Options: ``filename``, the file's name in the snapshot (default ``stdin``), and ``stream``,
    a binary stream to read instead of standard input (never recorded). The stream is read in
    chunks, never whole, so its size is unknown until it ends (the entry's size is
    :data:`UNKNOWN_SIZE`); the file gets mode 0644 and the time of the backup as its mtime.
    """

    type_name = "stdin"

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        filename = options.get("filename", "stdin")
        if not isinstance(filename, str) or filename in ("", ".", "..") or "/" in filename:
            raise ConfigError(
                f"source {name!r}: `filename` must be one file name (no '/'), got {filename!r}"
            )
        if "\0" in filename:
            raise ConfigError(f"source {name!r}: `filename` cannot hold a NUL character")
        if len(os.fsencode(filename)) > 255:  # NAME_MAX: it could not be restored
            raise ConfigError(f"source {name!r}: `filename` is longer than 255 bytes")
        self.filename = filename
        stream = options.get("stream")
        if stream is None:
            if sys.stdin is None:
                raise SourceError(f"source {name!r}: this process has no standard input")
            stream = sys.stdin.buffer
        self._stream: BinaryIO = stream
        self._opened = False

    def describe(self) -> dict[str, Any]:
        return {"filename": self.filename}

    def scan(self, report_error: ErrorReporter) -> Iterator[SourceEntry]:
        yield SourceEntry(
            path=(self.filename,),
            kind="file",
            mode=0o644,
            mtime_ns=time.time_ns(),
            size=UNKNOWN_SIZE,
            opener=self._open,
        )

    def _open(self) -> BinaryIO:
        if self._opened:
            raise OSError(errno.EIO, "standard input can be read only once")
        self._opened = True
        return io.BufferedReader(_Borrowed(self._stream), buffer_size=READ_BUFFER)

    def close(self) -> None:
        pass
