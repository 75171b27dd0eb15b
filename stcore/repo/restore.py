"""Restoring a snapshot into a directory: planned and checked first, then written relative to
directory descriptors, so that nothing lands outside the target, at any depth.

**Plan.** The restore first walks every tree it will restore (trees are small) and validates
every name: no empty names, ``.``, ``..``, separators or NUL bytes, no duplicate names in one
directory. It also checks that each file's chunks add up to its recorded size. It then looks at
what the target already holds (reading only): each entry where the snapshot puts something gets
an action under the ``overwrite`` mode (create, overwrite, keep or skip, see :data:`Overwrite`),
and with ``delete`` each entry of a restored directory that the snapshot (seen through the
``include`` globs) lacks is marked for deletion. A directory with something in it that stands
where the snapshot has a file or symlink is refused unless ``delete`` allows removing it. Only
then does it write, so a hostile or damaged manifest, or a surprising target, is refused before
a single byte lands; a dry run stops after planning and returns the actions.

**Descriptors, not paths.** A tree 10,000 levels deep has paths far longer than ``PATH_MAX``,
and checking each parent's ``realpath`` costs a stat per component (quadratic in depth). So
nothing below the target is reached by path: the target is opened once, every directory is
opened by name from its parent's descriptor with ``O_DIRECTORY | O_NOFOLLOW``, and files and
symlinks are created, opened, replaced and removed by name relative to their directory's
descriptor (``O_NOFOLLOW``, ``dir_fd=``, ``follow_symlinks=False``). A symlink in the target is
thus never followed, whatever its place: an entry in the way is replaced, never written through,
and nothing outside the target can be reached, by construction rather than by checks. Files are
always created afresh (``O_EXCL``; an existing one is unlinked first), so a hard link in the
target is never written through either, and the writers check that the file they reopen is the
one created (device and inode).

Descriptors stay bounded, whatever the depth or width of the tree:

- One thread walks the planned tree depth first: once to look at the target, once to delete,
  replace and create directories, symlinks and empty files, and once, after the data, to set
  each directory's mode and mtime as it leaves it. Its :class:`_Walker` is a stack of directory
  descriptors of which only the deepest :attr:`_Walker.KEEP` stay open; climbing back to a
  closed level reopens it through ``..`` from its child, checked to be the same directory
  (device, inode) as on the way down. Each directory is opened at most twice per walk, so depth
  costs linear time.
- The writer threads find a file's directory through a :class:`_DirCache`: a few directory
  descriptors kept in least-recently-used order, each pinned while a thread uses it (so never
  closed under a user); a miss is opened from the nearest cached ancestor down, one component
  at a time.

**Data** is written pack by pack, not file by file: every (file, offset, blob) placement is
planned, then each pack range is read once (through :class:`~stcore.repo.reader.BlobReader`,
which coalesces neighbouring blobs into one request) and each of its blobs written with
``pwrite`` to every place it goes. Thousands of small blobs (one per database page) thus cost a
request per pack instead of one per blob, and a blob shared by many files is fetched once. The
first blob to arrive creates its file (so creating thousands of files is spread over the
writers); the thread that writes a file's last blob sets its mode and mtime through the same
descriptor, so most files cost one ``open``.
"""

from __future__ import annotations

import os
import stat
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import attrs

from stcore.errors import RestoreError, SnapshotNotFoundError
from stcore.globs import match_any
from stcore.interfaces import ProgressCallback, no_progress
from stcore.models import IndexEntry, SnapshotManifest, TreeNode
from stcore.repo.memory import release_free_memory
from stcore.repo.reader import PackRange

if TYPE_CHECKING:
    from stcore.repo.store import Store

#: What to do with an entry the target already has where the snapshot puts something:
#:
#: - ``always``: replace it (a file is rewritten even if it is identical).
#: - ``if-changed`` (the default): keep a file whose size, mtime and content (each chunk hashed
#:   and compared with the snapshot's) all match, and a symlink with the same target, setting
#:   their mode and mtime; replace everything else. The result is the snapshot, exactly.
#: - ``if-newer``: replace it only if the snapshot's entry has a later mtime; else skip it.
#: - ``never``: skip it.
#:
#: An entry of another type (a directory where the snapshot has a file, a file or a symlink
#: where it has a directory) is replaced or skipped by the same rule. A skipped directory keeps
#: everything in it, and nothing the snapshot has below it is restored. A directory with
#: something in it is replaced (with everything in it) only with ``delete``; otherwise the
#: restore is refused before anything is written.
Overwrite = Literal["always", "if-changed", "if-newer", "never"]
OVERWRITE_MODES: tuple[Overwrite, ...] = get_args(Overwrite)
DEFAULT_OVERWRITE: Overwrite = "if-changed"

#: create (nothing there), overwrite (something else there, replaced), keep (it already matches
#: the snapshot; a directory that exists is kept and filled), skip (left as it is), delete
ActionWord = Literal["create", "overwrite", "keep", "skip", "delete"]
ACTION_WORDS: tuple[ActionWord, ...] = get_args(ActionWord)


@attrs.frozen
class RestoreAction:
    """What a restore does (or, in a dry run, would do) to one path of the target."""

    action: ActionWord
    #: relative to the target, ``/``-separated: ``<source name>/<path in the source>``
    path: str
    #: ``file``, ``dir``, ``symlink``, or for something deleted also ``other`` (a FIFO, a socket)
    kind: str
    reason: str = ""

    def to_json(self) -> dict[str, str]:
        return {"action": self.action, "path": self.path, "type": self.kind, "reason": self.reason}


@attrs.frozen(kw_only=True)
class RestoreResult:
    """What a restore wrote (or, with ``dry_run``, would write), and where.

    ``files``, ``dirs`` and ``symlinks`` count the snapshot's entries the target holds afterwards
    (created, overwritten or kept); ``bytes`` the data written. ``skipped`` counts skip actions
    (a skipped directory once); ``deleted`` every entry removed, those inside a removed directory
    included. ``actions`` lists, in a dry run, every action; otherwise only overwrite, skip and
    delete (a removed directory once, its ``reason`` saying how many entries it held)."""

    snapshot_id: str
    target: str
    files: int
    dirs: int
    symlinks: int
    bytes: int
    created: int = 0
    overwritten: int = 0
    kept: int = 0
    skipped: int = 0
    deleted: int = 0
    dry_run: bool = False
    actions: tuple[RestoreAction, ...] = ()

    def __repr__(self) -> str:
        return (
            f"<RestoreResult {self.snapshot_id} -> {self.target}: {self.files} files, "
            f"{self.dirs} dirs, {self.symlinks} symlinks, {self.bytes} bytes, "
            f"{self.overwritten} overwritten, {self.kept} kept, {self.skipped} skipped, "
            f"{self.deleted} deleted{', dry run' if self.dry_run else ''}>"
        )


def validate_name(name: str, where: str) -> None:
    if _unsafe(name):
        raise RestoreError(
            f"refusing to restore: {where} contains the unsafe name {name!r}, which would write "
            "outside the restore target"
        )


def _unsafe(name: str) -> bool:
    return name in ("", ".", "..") or "/" in name or "\0" in name or os.sep in name


#: bytes written between two "bytes" progress events (of each writing thread)
PROGRESS_STEP = 1024 * 1024

#: file descriptors kept open by all writing threads together: a restore of 10k files must stay
#: far below the usual limit of 1024 open files
MAX_OPEN_FILES = 256
#: directory descriptors the writing threads keep open between them: twice this at most (see
#: :class:`_DirCache`), plus one pinned per thread
MAX_OPEN_DIRS = 64

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# What planning decided for each entry.
_NEW = 0  # nothing there: create
_REPLACE = 1  # a file, symlink or other non-directory there: unlink it, then create
_REPLACE_TREE = 2  # a directory there (where a file or symlink goes): remove it all, then create
_KEEP = 3  # it matches (a directory: it exists and is filled)
_SKIP = 4  # left alone, listed
_SKIPPED = 5  # inside a skipped directory: not restored, not listed
_PLACED = (_NEW, _REPLACE, _REPLACE_TREE, _KEEP)
_WRITTEN = (_NEW, _REPLACE, _REPLACE_TREE)

#: the walker's key for a directory that is not part of the plan (one being removed)
_UNPLANNED = -2
# kinds of a directory's children, while looking at the target
_DIR, _FILE, _LINK, _EXTRA = range(4)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


#: how reasons name each kind
_WORDS = {"dir": "directory", "file": "file", "symlink": "symlink", "other": "special file"}


@attrs.define(slots=True)
class _Dir:
    """One planned directory: its parent (an index into the plan's directories; -1 for a source
    root, which sits in the target) and its planned children, as indexes."""

    parent: int
    name: str
    node: TreeNode | None  # None for a source root
    depth: int
    # children as arrays of numbers: a list of int objects cost 36 bytes a child, these 4
    dirs: array[int] = attrs.field(factory=lambda: array("I"))
    files: array[int] = attrs.field(factory=lambda: array("I"))
    links: array[int] = attrs.field(factory=lambda: array("I"))


@attrs.define
class _Frame:
    """One directory being planned: its remaining entries and what was included below it."""

    nodes: Iterator[TreeNode]
    index: int
    relative: str  # only kept with include globs (they may need the whole path)
    tree_id: bytes
    seen: set[str] = attrs.field(factory=set)
    anything: bool = False


@attrs.define
class _RemoveFrame:
    """One directory being removed: its remaining names and what became of those done."""

    name: str
    relative: str
    names: Iterator[str]
    removed_any: bool = False
    emptied: bool = True


#: a placement is one int: the offset in the file above, the file's number in these low bits
_NUMBER_BITS = 32
_NUMBER_MASK = (1 << _NUMBER_BITS) - 1


@attrs.define
class _Placements:
    """Where every blob goes, each blob's index entry, and how many placements each file (a
    number into ``Restorer._file_nodes``) still waits for.

    A placement (file number, offset in that file) is packed into one int, and a blob's first
    placement is kept apart from its rare others: a list of tuples per blob cost a restore of
    78,000 small files 13 MiB, where these ints cost 2.
    """

    first: dict[bytes, int] = attrs.field(factory=dict)
    more: dict[bytes, list[int]] = attrs.field(factory=dict)
    entries: dict[bytes, IndexEntry] = attrs.field(factory=dict)
    remaining: list[int] = attrs.field(factory=list)

    def add(self, blob_id: bytes, number: int, offset: int) -> None:
        placement = offset << _NUMBER_BITS | number
        if self.first.setdefault(blob_id, placement) != placement:
            self.more.setdefault(blob_id, []).append(placement)

    def of(self, blob_id: bytes) -> Iterator[tuple[int, int]]:
        """``(file number, offset)`` of every placement of ``blob_id``."""
        first = self.first[blob_id]
        yield first & _NUMBER_MASK, first >> _NUMBER_BITS
        for placement in self.more.get(blob_id, ()):
            yield placement & _NUMBER_MASK, placement >> _NUMBER_BITS


class _Walker:
    """The directories from the target down to where a depth-first walk is, for one thread.

    Only the deepest :attr:`KEEP` levels keep their descriptor open; a closed level is reopened
    through ``..`` from its child when the walk climbs back to it, and must be the directory
    (device, inode) it was on the way down. A walk of any depth holds at most ``KEEP + 1``
    descriptors (the target's is the caller's) and opens each directory at most twice.
    """

    KEEP = 16

    def __init__(self, root_fd: int) -> None:
        self._fds: list[int] = [root_fd]
        self._ids: list[tuple[int, int] | None] = [None]
        #: the caller's name for each level (a directory's index in the plan; -1: the target)
        self.keys: list[int] = [-1]

    @property
    def fd(self) -> int:
        return self._fds[-1]

    def down(self, name: str, key: int) -> None:
        fd = os.open(name, _DIR_FLAGS, dir_fd=self._fds[-1])
        self._fds.append(fd)
        self._ids.append(None)
        self.keys.append(key)
        far = len(self._fds) - 1 - self.KEEP
        if far > 0 and self._fds[far] >= 0:
            st = os.fstat(self._fds[far])
            self._ids[far] = (st.st_dev, st.st_ino)
            os.close(self._fds[far])
            self._fds[far] = -1

    def up(self) -> None:
        fd = self._fds.pop()
        self._ids.pop()
        self.keys.pop()
        try:
            if self._fds[-1] < 0:
                parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
                st = os.fstat(parent)
                if (st.st_dev, st.st_ino) != self._ids[-1]:
                    os.close(parent)
                    raise RestoreError(
                        "a directory of the restore target was moved while restoring; stopped"
                    )
                self._fds[-1] = parent
        finally:
            os.close(fd)

    def close(self) -> None:
        while len(self._fds) > 1:
            fd = self._fds.pop()
            if fd >= 0:
                os.close(fd)
        del self._ids[1:], self.keys[1:]


class _DirCache:
    """Descriptors of planned directories for the writer threads, shared under one lock.

    :meth:`acquire` pins a directory's descriptor (a pinned descriptor is never closed) and
    :meth:`release` unpins it. A directory not open is opened from its nearest open ancestor
    (or the target) down, one ``O_NOFOLLOW`` component at a time. Unpinned descriptors stay
    open in least-recently-used order, ``capacity`` of them, and as many again of anchors:
    directories whose depth is a multiple of a stride, chosen so that the anchors of one path
    from the target to the deepest directory all fit. A miss deep in a tall tree is thus at
    most a stride's walk from an open ancestor, whatever order the files arrive in.
    """

    def __init__(self, root_fd: int, dirs: list[_Dir], capacity: int) -> None:
        self._root = root_fd
        self._dirs = dirs
        self._capacity = max(1, capacity)
        deepest = max((d.depth for d in dirs), default=0)
        self._stride = max(32, -(-deepest // self._capacity))
        self._lock = threading.Lock()
        self._open: dict[int, list[int]] = {}  # index -> [descriptor, pins]
        self._idle: OrderedDict[int, None] = OrderedDict()  # unpinned, oldest first
        self._anchors: OrderedDict[int, None] = OrderedDict()  # the same, for anchors

    def acquire(self, index: int) -> int:
        with self._lock:
            chain: list[int] = []
            at = index
            while at != -1 and at not in self._open:
                chain.append(at)
                at = self._dirs[at].parent
            fd = self._root if at == -1 else self._pin(at)
            for child in reversed(chain):
                try:
                    child_fd = os.open(self._dirs[child].name, _DIR_FLAGS, dir_fd=fd)
                finally:
                    if at != -1:
                        self._unpin(at)
                self._open[child] = [child_fd, 1]
                at, fd = child, child_fd
                self._evict()
            return fd

    def release(self, index: int) -> None:
        with self._lock:
            self._unpin(index)
            self._evict()

    def close(self) -> None:
        with self._lock:
            for fd, _ in self._open.values():
                os.close(fd)
            self._open.clear()
            self._idle.clear()
            self._anchors.clear()

    def _pin(self, index: int) -> int:
        entry = self._open[index]
        entry[1] += 1
        self._idle.pop(index, None)
        self._anchors.pop(index, None)
        return entry[0]

    def _unpin(self, index: int) -> None:
        entry = self._open[index]
        entry[1] -= 1
        if entry[1] == 0:
            anchor = self._dirs[index].depth % self._stride == 0
            (self._anchors if anchor else self._idle)[index] = None

    def _evict(self) -> None:
        for idle in (self._idle, self._anchors):
            while len(idle) > self._capacity:
                index, _ = idle.popitem(last=False)
                os.close(self._open.pop(index)[0])


class _OpenFiles:
    """A small least-recently-used set of descriptors opened for writing, owned by one thread.

    A pack range scatters its blobs over many files; reopening for each blob would cost a
    syscall chain per 4 KiB page, and keeping every file open would exhaust descriptors.
    """

    def __init__(self, capacity: int, opener: Callable[[int], int]) -> None:
        self._capacity = max(1, capacity)
        self._opener = opener
        self._fds: OrderedDict[int, int] = OrderedDict()

    def get(self, number: int) -> int:
        fd = self._fds.get(number)
        if fd is not None:
            self._fds.move_to_end(number)
            return fd
        if len(self._fds) >= self._capacity:
            _, oldest = self._fds.popitem(last=False)
            os.close(oldest)
        fd = self._opener(number)
        self._fds[number] = fd
        return fd

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        count = os.pwrite(fd, view, offset)
        view = view[count:]
        offset += count


#: buffers gathered into one ``pwritev`` at most (Linux accepts 1024)
MAX_IOV = 256
#: plaintext bytes a run holds before it is written: a pack range of one large file's chunks
#: decompresses to several times its stored size, and each worker holds its run
MAX_RUN_BYTES = 1024 * 1024


class _WriteRun:
    """Blobs bound for consecutive bytes of one file, written with one ``pwritev``.

    A database restored from page blobs would otherwise cost one system call per 4 KiB page.
    """

    def __init__(self) -> None:
        self.number = -1
        self.fd = -1
        self.offset = 0
        self.length = 0
        self.buffers: list[bytes] = []

    def extends(self, number: int, offset: int) -> bool:
        return (
            number == self.number
            and offset == self.offset + self.length
            and len(self.buffers) < MAX_IOV
            and self.length < MAX_RUN_BYTES
        )

    def start(self, number: int, fd: int, offset: int) -> None:
        self.number, self.fd, self.offset, self.length = number, fd, offset, 0

    def add(self, data: bytes) -> None:
        self.buffers.append(data)
        self.length += len(data)

    def flush(self) -> int:
        """Write the run; return how many blobs (placements) it held."""
        if not self.buffers:
            return 0
        written = os.pwritev(self.fd, self.buffers, self.offset)
        if written < self.length:  # a short write: finish it the slow way
            _pwrite_all(self.fd, b"".join(self.buffers)[written:], self.offset + written)
        count = len(self.buffers)
        self.offset += self.length
        self.length = 0
        self.buffers = []
        return count


class Restorer:
    def __init__(
        self,
        store: Store,
        manifest: SnapshotManifest,
        target: Path,
        progress: Callable[[str, int], None],
    ) -> None:
        self.store = store
        self.manifest = manifest
        self.target = target.absolute()
        self.progress = progress
        self._reader = store.blob_reader()
        self._include: list[str] = []
        self._overwrite: Overwrite = DEFAULT_OVERWRITE
        self._delete = False
        self._dry_run = False
        # the plan
        self._dirs: list[_Dir] = []
        # the planned files, by number: each one's directory (an index into _dirs) and node,
        # in two columns (a tuple per file cost 5 MiB over 78,000 files)
        self._file_dirs = array("I")
        self._file_nodes: list[TreeNode] = []
        self._links: list[tuple[int, TreeNode]] = []
        self._entries: dict[bytes, IndexEntry] = {}
        # what to do with each planned entry, and with what the target has beyond them
        self._dir_state: list[int] = []
        self._file_state: list[int] = []
        self._link_state: list[int] = []
        self._extras: dict[int, list[str]] = {}
        self._keep_metadata: set[int] = set()  # directories that exist and keep mode and mtime
        self._actions: list[RestoreAction] = []
        self._counts = dict.fromkeys(ACTION_WORDS, 0)
        self._path_memo: tuple[int, str] = (-1, "")
        # writing
        self._placements = _Placements()
        self._file_ids: dict[int, tuple[int, int]] = {}
        self._cache: _DirCache | None = None
        self._create_locks = [threading.Lock() for _ in range(64)]
        self._lock = threading.Lock()

    def run(
        self,
        *,
        sources: list[str] | None,
        include: list[str],
        overwrite: Overwrite = DEFAULT_OVERWRITE,
        delete: bool = False,
        dry_run: bool = False,
    ) -> RestoreResult:
        if overwrite not in OVERWRITE_MODES:
            raise RestoreError(
                f"unknown overwrite mode {overwrite!r} (one of: {', '.join(OVERWRITE_MODES)})"
            )
        self._include, self._overwrite = include, overwrite
        self._delete, self._dry_run = delete, dry_run
        names = list(dict.fromkeys(sources if sources is not None else self.manifest.sources))
        unknown = [n for n in names if n not in self.manifest.sources]
        if unknown:
            available = ", ".join(self.manifest.sources) or "none"
            raise SnapshotNotFoundError(
                f"snapshot {self.manifest.id} has no source {unknown[0]!r} (it has: {available})"
            )
        for name in names:
            validate_name(name, f"snapshot {self.manifest.id}")
            root = len(self._dirs)
            self._dirs.append(_Dir(parent=-1, name=name, node=None, depth=0))
            self._plan_tree(self.manifest.sources[name].root, root)
        self._check_sizes()
        root_fd = self._open_target(create=False)
        try:
            self._inspect(root_fd)
        finally:
            if root_fd is not None:
                os.close(root_fd)
        if dry_run:
            size = sum(
                node.size
                for node, state in zip(self._file_nodes, self._file_state, strict=True)
                if state in _WRITTEN
            )
            return self._result(size)
        root_fd = self._open_target(create=True)
        assert root_fd is not None
        self._cache = _DirCache(root_fd, self._dirs, MAX_OPEN_DIRS)
        try:
            self._apply(root_fd)
            numbers = [
                n
                for n, (node, state) in enumerate(
                    zip(self._file_nodes, self._file_state, strict=True)
                )
                if state in _WRITTEN and node.content
            ]
            self._placements = self._plan_placements(numbers)
            # what the "bytes" events will add up to: kept and skipped files are not written
            self.progress("total", sum(self._file_nodes[n].size for n in numbers))
            ranges = self._reader.plan_entries(self._placements.entries.values())
            written = 0
            for count in self._reader.run(ranges, self._restore_range):
                written += count
                release_free_memory()  # the range's buffers, freed in a worker's arena
            self._set_dir_metadata(root_fd)
        finally:
            self._cache.close()
            os.close(root_fd)
        return self._result(written)

    def _result(self, written: int) -> RestoreResult:
        def placed(states: list[int]) -> int:
            return sum(1 for state in states if state in _PLACED)

        counts = self._counts
        return RestoreResult(
            snapshot_id=self.manifest.id,
            target=str(self.target),
            files=placed(self._file_state),
            dirs=placed(self._dir_state),
            symlinks=placed(self._link_state),
            bytes=written,
            created=counts["create"],
            overwritten=counts["overwrite"],
            kept=counts["keep"],
            skipped=counts["skip"],
            deleted=counts["delete"],
            dry_run=self._dry_run,
            actions=tuple(self._actions),
        )

    # --- planning ---------------------------------------------------------------------------------

    def _plan_tree(self, tree_id: bytes, root: int) -> None:
        """Add the tree's entries below directory ``root`` to the plan.

        Iterative, so depth is unbounded; a tree that contains itself (a hostile cycle) and
        every malformed node are refused here, before anything is written. With include globs
        a directory nothing below which is included (and that no glob matches) is dropped.
        """
        include = self._include
        dirs, links = self._dirs, self._links
        file_dirs, file_nodes = self._file_dirs, self._file_nodes
        stack = [_Frame(nodes=iter(self.store.read_tree(tree_id)), index=root, relative="",
                        tree_id=tree_id)]  # fmt: skip
        on_path = {tree_id}
        while stack:
            frame = stack[-1]
            node = next(frame.nodes, None)
            if node is None:
                stack.pop()
                on_path.discard(frame.tree_id)
                if stack:
                    if include and not frame.anything and not match_any(include, frame.relative):
                        dirs.pop()  # the last planned: all below it were dropped before it
                        dirs[stack[-1].index].dirs.pop()
                    else:
                        stack[-1].anything = True
                continue
            name = node.name
            if _unsafe(name):
                validate_name(name, self._where(frame.index))
            if name in frame.seen:
                where = self._where(frame.index)
                raise RestoreError(f"refusing to restore: {where} lists {name!r} twice")
            frame.seen.add(name)
            child = (f"{frame.relative}/{name}" if frame.relative else name) if include else ""
            if node.kind == "dir":
                assert node.subtree is not None  # TreeNode.from_json refuses a dir without one
                if node.subtree in on_path:
                    raise RestoreError(
                        f"refusing to restore: {self._where(frame.index)}: directory {name!r} "
                        "contains itself"
                    )
                index = len(dirs)
                dirs.append(_Dir(frame.index, name, node, dirs[frame.index].depth + 1))
                dirs[frame.index].dirs.append(index)
                stack.append(_Frame(nodes=iter(self.store.read_tree(node.subtree)), index=index,
                                    relative=child, tree_id=node.subtree))  # fmt: skip
                on_path.add(node.subtree)
            elif not include or match_any(include, child):
                if node.kind == "file":
                    dirs[frame.index].files.append(len(file_nodes))
                    file_dirs.append(frame.index)
                    file_nodes.append(node)
                else:
                    dirs[frame.index].links.append(len(links))
                    links.append((frame.index, node))
                frame.anything = True

    def _check_sizes(self) -> None:
        """Each blob's index entry, looked up once; a file whose chunks do not add up to its
        recorded size is refused here, before anything is written."""
        entries = self._entries
        for index, node in zip(self._file_dirs, self._file_nodes, strict=True):
            offset = 0
            for blob_id in node.content:
                entry = entries.get(blob_id)
                if entry is None:
                    entry = entries[blob_id] = self._reader.entry(blob_id)
                offset += entry.raw_length
            if offset != node.size:
                raise RestoreError(
                    f"{self.target}/{self._path(index, node.name)}: its chunks hold {offset} "
                    f"bytes but the snapshot says {node.size}; the snapshot is damaged "
                    "(run `stcore check`)"
                )

    def _plan_placements(self, numbers: list[int]) -> _Placements:
        """Where each blob of the files to write goes. The index entries move here from
        ``_entries`` (inspecting the target was their last other use), so they are held once."""
        placements = _Placements(remaining=[0] * len(self._file_nodes))
        entries = self._entries
        for number in numbers:
            node = self._file_nodes[number]
            offset = 0
            for blob_id in node.content:
                placements.add(blob_id, number, offset)
                offset += entries[blob_id].raw_length
            placements.remaining[number] = len(node.content)
        first = placements.first
        if len(first) == len(entries):
            placements.entries = entries
        else:
            placements.entries = {blob_id: entries[blob_id] for blob_id in first}
        self._entries = {}
        return placements

    # --- paths, for messages and actions --------------------------------------------------------

    def _dir_path(self, index: int) -> str:
        """Directory ``index`` relative to the target (``<source>/<path>``)."""
        if self._path_memo[0] == index:
            return self._path_memo[1]
        parts = []
        at = index
        while at != -1:
            parts.append(self._dirs[at].name)
            at = self._dirs[at].parent
        path = "/".join(reversed(parts))
        self._path_memo = (index, path)
        return path

    def _path(self, index: int, name: str) -> str:
        return f"{self._dir_path(index)}/{name}" if index != -1 else name

    def _source_path(self, index: int) -> str:
        """Directory ``index`` relative to its source's root (what include globs match)."""
        return self._dir_path(index).partition("/")[2]

    def _where(self, index: int) -> str:
        return f"snapshot {self.manifest.id} at {self._source_path(index) or '/'}"

    def _note(self, action: ActionWord, index: int, name: str, kind: str, reason: str = "") -> None:
        """Count an action on ``name`` in directory ``index`` (-1: the target); list it in a dry
        run, or if it touches what the target already had."""
        self._counts[action] += 1
        if self._dry_run or action in ("overwrite", "skip", "delete"):
            self._actions.append(RestoreAction(action, self._path(index, name), kind, reason))

    # --- looking at the target --------------------------------------------------------------------

    def _open_target(self, *, create: bool) -> int | None:
        """The target's descriptor (made first if ``create``); None if it does not exist."""
        try:
            if create:
                self.target.mkdir(parents=True, exist_ok=True)
            return os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if create:
                raise
            return None
        except (NotADirectoryError, FileExistsError):
            raise RestoreError(
                f"cannot restore into {self.target}: it is not a directory"
            ) from None

    def _inspect(self, root_fd: int | None) -> None:
        """Decide what happens to every planned entry (and, with delete, to every entry of a
        restored directory the plan lacks), looking at the target without changing it."""
        dirs = self._dirs
        self._dir_state = [_NEW] * len(dirs)
        self._file_state = [_NEW] * len(self._file_nodes)
        self._link_state = [_NEW] * len(self._links)
        roots = [i for i, d in enumerate(dirs) if d.parent == -1]
        walker = _Walker(root_fd) if root_fd is not None else None
        try:
            if walker is not None:
                self._inspect_children(walker, -1, roots, [], [])
            else:
                self._inherit(-1, roots, [], [], _NEW)
            for index, directory in enumerate(dirs):
                state = self._dir_state[index]
                if state == _KEEP:
                    assert walker is not None  # a directory that exists is in an existing one
                    while walker.keys[-1] != directory.parent:
                        walker.up()
                    walker.down(directory.name, index)
                    self._inspect_children(
                        walker, index, directory.dirs, directory.files, directory.links
                    )
                else:
                    inherited = _SKIPPED if state in (_SKIP, _SKIPPED) else _NEW
                    self._inherit(index, directory.dirs, directory.files, directory.links,
                                  inherited)  # fmt: skip
        finally:
            if walker is not None:
                walker.close()

    def _inherit(
        self,
        index: int,
        dirs: Sequence[int],
        files: Sequence[int],
        links: Sequence[int],
        state: int,
    ) -> None:
        """Children of a directory that does not exist (all new) or is skipped."""
        for n in dirs:
            self._dir_state[n] = state
            if state == _NEW:
                self._note("create", index, self._dirs[n].name, "dir")
        for n in files:
            self._file_state[n] = state
            if state == _NEW:
                self._note("create", index, self._file_nodes[n].name, "file")
        for n in links:
            self._link_state[n] = state
            if state == _NEW:
                self._note("create", index, self._links[n][1].name, "symlink")

    def _inspect_children(
        self,
        walker: _Walker,
        index: int,
        dirs: Sequence[int],
        files: Sequence[int],
        links: Sequence[int],
    ) -> None:
        """Decide for the planned children of directory ``index``, the walker's directory (in
        name order, so that a dry run lists them so)."""
        present = set(os.listdir(walker.fd))
        children = [(self._dirs[n].name, _DIR, n) for n in dirs]
        children += [(self._file_nodes[n].name, _FILE, n) for n in files]
        children += [(self._links[n][1].name, _LINK, n) for n in links]
        extras: list[str] = []
        if self._delete and index != -1:
            extras = sorted(present.difference(name for name, _, _ in children))
            if extras:
                self._extras[index] = extras
                if self._dry_run:  # a real run counts and lists them as it removes them
                    children += [(name, _EXTRA, -1) for name in extras]
        for name, what, n in sorted(children):
            if what == _DIR:
                self._dir_state[n] = self._decide_dir(walker, index, n, name, present)
            elif what == _FILE:
                self._file_state[n] = self._decide(walker, index, self._file_nodes[n], present)
            elif what == _LINK:
                self._link_state[n] = self._decide(walker, index, self._links[n][1], present)
            else:
                self._remove(walker, index, name, whole=not self._include)

    def _decide_dir(self, walker: _Walker, index: int, n: int, name: str, present: set[str]) -> int:
        if name not in present:
            self._note("create", index, name, "dir")
            return _NEW
        st = os.stat(name, dir_fd=walker.fd, follow_symlinks=False)
        node = self._dirs[n].node
        mtime_ns = node.mtime_ns if node is not None else _ns(self.manifest)
        if stat.S_ISDIR(st.st_mode):
            self._note("keep", index, name, "dir")
            if self._overwrite == "never" or (
                self._overwrite == "if-newer" and mtime_ns <= st.st_mtime_ns
            ):
                self._keep_metadata.add(n)
            return _KEEP
        return self._conflict(walker, index, name, "dir", mtime_ns, st)

    def _decide(self, walker: _Walker, index: int, node: TreeNode, present: set[str]) -> int:
        """A file's or symlink's fate, under the overwrite mode."""
        name = node.name
        if name not in present:
            self._note("create", index, name, node.kind)
            return _NEW
        st = os.stat(name, dir_fd=walker.fd, follow_symlinks=False)
        if _kind(st.st_mode) != node.kind:
            return self._conflict(walker, index, name, node.kind, node.mtime_ns, st)
        mode = self._overwrite
        if mode != "always" and self._matches(walker.fd, node, st):
            self._note("keep", index, name, node.kind)
            return _KEEP
        if mode in ("always", "if-changed") or (
            mode == "if-newer" and node.mtime_ns > st.st_mtime_ns
        ):
            self._note("overwrite", index, name, node.kind)
            return _REPLACE
        self._note("skip", index, name, node.kind, self._why_skipped(node.kind, node.mtime_ns, st))
        return _SKIP

    def _conflict(
        self, walker: _Walker, index: int, name: str, kind: str, mtime_ns: int, st: os.stat_result
    ) -> int:
        """Something of another type where the snapshot puts a ``kind``."""
        have = _kind(st.st_mode)
        mode = self._overwrite
        if mode == "never" or (mode == "if-newer" and mtime_ns <= st.st_mtime_ns):
            self._note("skip", index, name, kind, self._why_skipped(kind, mtime_ns, st))
            return _SKIP
        if have != "dir":
            self._note("overwrite", index, name, kind, f"replaces a {_WORDS[have]}")
            return _REPLACE
        if not self._delete and _has_entries(walker.fd, name):
            raise RestoreError(
                f"refusing to restore: {self.target}/{self._path(index, name)} is a directory "
                f"with entries in it where the snapshot has a {_WORDS[kind]}; restore with "
                "--delete to replace it and everything in it, or with --overwrite never to "
                "keep it"
            )
        self._note("overwrite", index, name, kind, "replaces a directory")
        if self._dry_run:  # count what would go with it
            self._remove(walker, index, name, whole=True, listed=False)
        return _REPLACE_TREE

    def _why_skipped(self, kind: str, mtime_ns: int, st: os.stat_result) -> str:
        have = _WORDS[_kind(st.st_mode)]
        if self._overwrite == "never":
            return "exists" if have == _WORDS[kind] else f"a {have} is in the way"
        return f"the {have} there is {'newer' if st.st_mtime_ns > mtime_ns else 'as new'}"

    def _matches(self, fd: int, node: TreeNode, st: os.stat_result) -> bool:
        """Whether the entry there already is ``node``: a symlink with its target, or a file
        of its size and mtime whose every chunk hashes to the snapshot's blob id."""
        if node.kind == "symlink":
            return os.readlink(node.name, dir_fd=fd) == (node.target or "")
        if st.st_size != node.size or st.st_mtime_ns != node.mtime_ns:
            return False
        try:
            file_fd = os.open(node.name, _READ_FLAGS, dir_fd=fd)
        except OSError:
            return False  # unreadable: replace it
        try:
            if not stat.S_ISREG(os.fstat(file_fd).st_mode):
                return False
            offset = 0
            codec = self.store.codec
            for blob_id in node.content:
                length = self._entries[blob_id].raw_length
                data = _pread_exactly(file_fd, length, offset)
                if len(data) != length or codec.blob_id(data) != blob_id:
                    return False
                offset += length
            return os.pread(file_fd, 1, offset) == b""
        finally:
            os.close(file_fd)

    # --- changing the target ----------------------------------------------------------------------

    def _apply(self, root_fd: int) -> None:
        """Delete, replace, and create every directory, file (empty) and symlink, one walk."""
        walker = _Walker(root_fd)
        try:
            for index, directory in enumerate(self._dirs):
                state = self._dir_state[index]
                if state in (_SKIP, _SKIPPED):
                    continue
                self._climb(walker, directory.parent)
                if state == _REPLACE:
                    os.unlink(directory.name, dir_fd=walker.fd)
                if state != _KEEP:
                    mode = 0o777 if directory.node is None else 0o700
                    os.mkdir(directory.name, mode, dir_fd=walker.fd)
                walker.down(directory.name, index)
                for name in self._extras.get(index, ()):
                    self._remove(walker, index, name, whole=not self._include)
                for number in directory.files:
                    self._place_file(walker, index, number)
                for number in directory.links:
                    self._place_link(walker, index, number)
            self._climb(walker, -1)
        finally:
            walker.close()

    def _climb(self, walker: _Walker, key: int) -> None:
        while walker.keys[-1] != key:
            walker.up()

    def _set_dir_metadata(self, root_fd: int) -> None:
        """Each directory's mode and mtime, once everything in it is written (creating a file
        changes its directory's mtime, and a mode may forbid it): one more walk, through the
        directories that get metadata and their ancestors, each set as the walk leaves it."""
        wanted: set[int] = set()
        for index, directory in enumerate(self._dirs):
            if directory.node is None or index in self._keep_metadata:
                continue
            if self._dir_state[index] not in _PLACED:
                continue
            while index != -1 and index not in wanted:
                wanted.add(index)
                index = self._dirs[index].parent
        if not wanted:
            return
        walker = _Walker(root_fd)
        try:
            for index, directory in enumerate(self._dirs):
                if index in wanted:
                    self._leave(walker, directory.parent)
                    walker.down(directory.name, index)
            self._leave(walker, -1)
        finally:
            walker.close()

    def _leave(self, walker: _Walker, key: int) -> None:
        """Climb to directory ``key``, setting the metadata of each directory left."""
        while walker.keys[-1] != key:
            index = walker.keys[-1]
            node = self._dirs[index].node
            fd = os.dup(walker.fd)  # climb first: a mode without search permission stops ".."
            try:
                walker.up()
                if node is not None and index not in self._keep_metadata:
                    os.fchmod(fd, stat.S_IMODE(node.mode) or 0o755)
                    os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
            finally:
                os.close(fd)

    def _make_room(self, walker: _Walker, index: int, name: str, state: int) -> None:
        if state == _REPLACE:
            os.unlink(name, dir_fd=walker.fd)
        elif state == _REPLACE_TREE:
            self._remove(walker, index, name, whole=True, listed=False)

    def _place_file(self, walker: _Walker, index: int, number: int) -> None:
        state = self._file_state[number]
        node = self._file_nodes[number]
        if state == _KEEP:
            file_fd = os.open(node.name, _READ_FLAGS, dir_fd=walker.fd)
            try:
                if not stat.S_ISREG(os.fstat(file_fd).st_mode):
                    raise RestoreError(
                        f"{self.target}/{self._path(index, node.name)} changed while restoring"
                    )
                self._finish_file(number, file_fd)
            finally:
                os.close(file_fd)
            return
        if state not in _WRITTEN:
            return
        self._make_room(walker, index, node.name, state)  # may climb through "..": a new fd
        if node.content:
            return  # created by the writer that brings its first blob
        file_fd = os.open(node.name, _CREATE_FLAGS, 0o600, dir_fd=walker.fd)
        try:
            self._finish_file(number, file_fd)
        finally:
            os.close(file_fd)

    def _place_link(self, walker: _Walker, index: int, number: int) -> None:
        state = self._link_state[number]
        node = self._links[number][1]
        if state in _WRITTEN:
            self._make_room(walker, index, node.name, state)
            os.symlink(node.target or "", node.name, dir_fd=walker.fd)
        elif state != _KEEP:
            return
        os.utime(node.name, ns=(node.mtime_ns, node.mtime_ns), dir_fd=walker.fd,
                 follow_symlinks=False)  # fmt: skip

    def _remove(
        self, walker: _Walker, index: int, name: str, *, whole: bool, listed: bool = True
    ) -> None:
        """Delete ``name`` from directory ``index`` (the walker's), never following a symlink;
        in a dry run, only count and list what would go.

        ``whole``: a directory goes with everything in it, listed once (unless ``listed`` is
        false: it is being replaced, and listed so). Otherwise (include globs), only what they
        select goes: matching files and symlinks, each listed, and directories that end up
        empty once their matching entries are gone, or that match and are empty.
        """
        dry = self._dry_run
        st = os.stat(name, dir_fd=walker.fd, follow_symlinks=False)
        base = self._source_path(index)
        relative = f"{base}/{name}" if base else name
        if not stat.S_ISDIR(st.st_mode):
            if whole or match_any(self._include, relative):
                if not dry:
                    os.unlink(name, dir_fd=walker.fd)
                self._note("delete", index, name, _kind(st.st_mode))
            return
        walker.down(name, _UNPLANNED)
        stack = [_RemoveFrame(name, relative, iter(sorted(os.listdir(walker.fd))))]
        inside = 0
        while stack:
            frame = stack[-1]
            child = next(frame.names, None)
            if child is None:
                stack.pop()
                walker.up()
                gone = frame.emptied and (
                    whole or frame.removed_any or match_any(self._include, frame.relative)
                )
                if gone and not dry:
                    os.rmdir(frame.name, dir_fd=walker.fd)
                if stack:
                    stack[-1].removed_any |= gone
                    stack[-1].emptied &= gone
                    if gone:
                        self._deleted_inside(index, frame.relative, "dir", whole)
                        inside += 1
                elif gone:
                    entries = "entry" if inside == 1 else "entries"
                    reason = f"with {inside} {entries} in it" if whole and inside else ""
                    if listed:
                        self._note("delete", index, name, "dir", reason)
                continue
            child_st = os.stat(child, dir_fd=walker.fd, follow_symlinks=False)
            child_relative = f"{frame.relative}/{child}" if not whole else ""
            if stat.S_ISDIR(child_st.st_mode):
                walker.down(child, _UNPLANNED)
                stack.append(_RemoveFrame(child, child_relative,
                                          iter(sorted(os.listdir(walker.fd)))))  # fmt: skip
                continue
            gone = whole or match_any(self._include, child_relative)
            if gone:
                if not dry:
                    os.unlink(child, dir_fd=walker.fd)
                self._deleted_inside(index, child_relative, _kind(child_st.st_mode), whole)
                inside += 1
            frame.removed_any |= gone
            frame.emptied &= gone

    def _deleted_inside(self, index: int, relative: str, kind: str, whole: bool) -> None:
        """Count (and unless the whole directory is listed once, list) an entry removed below
        directory ``index``; ``relative`` is from the source's root."""
        if whole:
            self._counts["delete"] += 1
        else:
            root = self._dir_path(index).partition("/")[0]
            self._counts["delete"] += 1
            self._actions.append(RestoreAction("delete", f"{root}/{relative}", kind))

    # --- writing data (worker threads) ------------------------------------------------------------

    def _finish_file(self, number: int, fd: int) -> None:
        """Mode and mtime, set through the descriptor that wrote the file's last bytes (writing
        would change the mtime, and the mode may forbid writing)."""
        node = self._file_nodes[number]
        os.fchmod(fd, stat.S_IMODE(node.mode))
        os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
        self._file_ids.pop(number, None)  # never opened again: 10 MiB over 78,000 files
        self.progress("file", 1)

    def _open_for_write(self, number: int) -> int:
        """A descriptor for writing file ``number``, opened by name from its directory's
        descriptor, never through a symlink (``O_NOFOLLOW``). Blobs land in pack order, so a
        file is written by whichever range holds its blobs: the first to arrive creates it
        (``O_EXCL``: never an existing file, nor a hard link), under the file's lock stripe;
        later ones open it only if it is still the file created (device and inode)."""
        index, node = self._file_dirs[number], self._file_nodes[number]
        assert self._cache is not None
        with self._create_locks[number % len(self._create_locks)]:
            created = self._file_ids.get(number)
            dir_fd = self._cache.acquire(index)
            try:
                if created is None:
                    fd = os.open(node.name, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
                else:
                    fd = os.open(node.name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 dir_fd=dir_fd)  # fmt: skip
            finally:
                self._cache.release(index)
            st = os.fstat(fd)
            if created is None:
                self._file_ids[number] = (st.st_dev, st.st_ino)
            elif (st.st_dev, st.st_ino) != created:
                os.close(fd)
                raise RestoreError(
                    f"{self.target}/{self._path(index, node.name)} was replaced while "
                    "restoring; refusing to write into it"
                )
            return fd

    def file_path(self, number: int) -> Path:
        """Where file ``number`` of the plan goes (for messages and tests; never opened)."""
        index, node = self._file_dirs[number], self._file_nodes[number]
        return self.target / self._path(index, node.name)

    def _restore_range(self, rng: PackRange) -> int:
        """Read one pack range and write each of its blobs everywhere it goes; runs on a worker
        thread, with its own few descriptors."""
        capacity = MAX_OPEN_FILES // self._reader.workers
        open_files = _OpenFiles(capacity, self._open_for_write)
        run = _WriteRun()
        written = unreported = 0
        try:
            for entry, data in self._reader.blobs(rng):
                for number, offset in self._placements.of(entry.blob_id):
                    if not run.extends(number, offset):
                        self._flush(run)  # before get(): it may close the run's descriptor
                        run.start(number, open_files.get(number), offset)
                    run.add(data)
                    written += len(data)
                    unreported += len(data)
                    if unreported >= PROGRESS_STEP:  # not per 4 KiB page: an update costs
                        self.progress("bytes", unreported)
                        unreported = 0
            self._flush(run)
        finally:
            open_files.close()
            if unreported:
                self.progress("bytes", unreported)
        return written

    def _flush(self, run: _WriteRun) -> None:
        """Write a run, and finish its file if that was the file's last data. Placements are
        counted only once written, so no thread sets a file's mtime while another still holds
        bytes for it."""
        count = run.flush()
        if count and self._placed(run.number, count):
            self._finish_file(run.number, run.fd)

    def _placed(self, number: int, count: int) -> bool:
        """Count ``count`` written placements of file ``number``; True when those were its last."""
        with self._lock:
            self._placements.remaining[number] -= count
            return self._placements.remaining[number] == 0


def _ns(manifest: SnapshotManifest) -> int:
    """The snapshot's time in nanoseconds (a source root has no mtime of its own)."""
    return int(manifest.time.timestamp()) * 1_000_000_000


def _has_entries(dir_fd: int, name: str) -> bool:
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        return bool(os.listdir(fd))
    finally:
        os.close(fd)


def _pread_exactly(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    while 0 < len(data) < length:  # a short read of a regular file: rare, but allowed
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


def restore(
    store: Store,
    manifest: SnapshotManifest,
    target: str | os.PathLike[str],
    *,
    sources: Iterable[str] | None = None,
    include: Iterable[str] = (),
    overwrite: Overwrite = DEFAULT_OVERWRITE,
    delete: bool = False,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
) -> RestoreResult:
    """Restore ``manifest``'s sources (all, or those named) into ``target/<source name>/...``;
    ``include`` globs keep only matching paths. What the target already has is handled by
    ``overwrite`` (see :data:`Overwrite`); ``delete`` removes what the restored directories hold
    beyond the snapshot (with globs, only what they select); ``dry_run`` only plans and returns
    the actions. Everything is planned and validated first."""
    restorer = Restorer(store, manifest, Path(target), progress or no_progress)
    return restorer.run(
        sources=list(sources) if sources is not None else None,
        include=list(include),
        overwrite=overwrite,
        delete=delete,
        dry_run=dry_run,
    )
