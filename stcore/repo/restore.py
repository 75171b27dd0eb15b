"""Restoring a snapshot into a directory, refusing anything that would land outside it.

The restore first walks every tree it will restore (trees are small) and validates every name:
no empty names, ``.``, ``..``, separators or NUL bytes, no duplicate names in one directory. It
also checks that each file's chunks add up to its recorded size. Only then does it write, so a
hostile or damaged manifest is refused before a single byte lands. While writing it never follows
a symlink: files are opened with ``O_NOFOLLOW`` and every parent directory is checked to resolve
inside the target.

Data is written pack by pack, not file by file: every (file, offset, blob) placement is planned,
then each pack range is read once (through :class:`~stcore.repo.reader.BlobReader`, which
coalesces neighbouring blobs into one request) and each of its blobs written with ``pwrite`` to
every place it goes. Thousands of small blobs (one per database page) thus cost a request per
pack instead of one per blob, and a blob shared by many files is fetched once. The first blob to
arrive creates its file; the thread that writes a file's last blob sets its mode and mtime
through the same descriptor, so most files cost one ``open`` in all.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from stcore.errors import RestoreError, SnapshotNotFoundError
from stcore.globs import match_any
from stcore.interfaces import ProgressCallback, no_progress
from stcore.models import IndexEntry, SnapshotManifest, TreeNode
from stcore.repo.reader import PackRange

if TYPE_CHECKING:
    from stcore.repo.store import Store


@attrs.frozen(kw_only=True)
class RestoreResult:
    """What a restore wrote, and where."""

    snapshot_id: str
    target: str
    files: int
    dirs: int
    symlinks: int
    bytes: int

    def __repr__(self) -> str:
        return (
            f"<RestoreResult {self.snapshot_id} -> {self.target}: {self.files} files, "
            f"{self.dirs} dirs, {self.symlinks} symlinks, {self.bytes} bytes>"
        )


def validate_name(name: str, where: str) -> None:
    if name in ("", ".", "..") or "/" in name or "\0" in name or (os.sep in name):
        raise RestoreError(
            f"refusing to restore: {where} contains the unsafe name {name!r}, which would write "
            "outside the restore target"
        )


#: file descriptors kept open by all writing threads together: a restore of 10k files must stay
#: far below the usual limit of 1024 open files
MAX_OPEN_FILES = 256


@attrs.define
class _Plan:
    dirs: list[tuple[Path, TreeNode | None]] = attrs.field(factory=list)
    files: list[tuple[Path, TreeNode]] = attrs.field(factory=list)
    symlinks: list[tuple[Path, TreeNode]] = attrs.field(factory=list)


@attrs.define
class _Frame:
    """One directory being planned: its remaining entries and what was included below it."""

    nodes: Iterator[TreeNode]
    directory: Path
    relative: str
    tree_id: bytes
    marker: int = -1
    seen: set[str] = attrs.field(factory=set)
    anything: bool = False


@attrs.define
class _Placements:
    """Where every blob goes: blob id -> [(file number, offset in the file)], each blob's index
    entry (looked up once), and how many placements each file (a number into ``_Plan.files``)
    still waits for."""

    targets: dict[bytes, list[tuple[int, int]]] = attrs.field(factory=dict)
    entries: dict[bytes, IndexEntry] = attrs.field(factory=dict)
    remaining: list[int] = attrs.field(factory=list)


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
        self._files: list[tuple[Path, TreeNode]] = []
        self._placements = _Placements()
        self._lock = threading.Lock()
        self._create_locks = [threading.Lock() for _ in range(64)]
        self._created: set[int] = set()
        self._inside: set[str] = set()

    def run(self, *, sources: list[str] | None, include: list[str]) -> RestoreResult:
        names = sources if sources is not None else list(self.manifest.sources)
        unknown = [n for n in names if n not in self.manifest.sources]
        if unknown:
            available = ", ".join(self.manifest.sources) or "none"
            raise SnapshotNotFoundError(
                f"snapshot {self.manifest.id} has no source {unknown[0]!r} (it has: {available})"
            )
        plan = _Plan()
        for name in names:
            validate_name(name, f"snapshot {self.manifest.id}")
            root = self.target / name
            plan.dirs.append((root, None))
            self._plan_tree(self.manifest.sources[name].root, root, "", include, plan)
        self._files = plan.files
        self._placements = self._plan_placements(plan.files)
        ranges = self._reader.plan_entries(self._placements.entries.values())
        self.target.mkdir(parents=True, exist_ok=True)
        self._real_target = os.path.realpath(self.target)
        for path, _ in plan.dirs:
            self._make_dir(path)
        for number, (_, node) in enumerate(plan.files):
            if not node.content:
                self._write_empty_file(number)
        written = sum(self._reader.run(ranges, self._restore_range))
        for path, node in plan.symlinks:
            self._make_symlink(path, node)
        # Directory metadata last, deepest first, so writing children does not change mtimes.
        for path, dir_node in sorted(plan.dirs, key=lambda item: len(item[0].parts), reverse=True):
            if dir_node is not None:
                os.chmod(path, stat.S_IMODE(dir_node.mode) or 0o755)
                os.utime(path, ns=(dir_node.mtime_ns, dir_node.mtime_ns))
        return RestoreResult(
            snapshot_id=self.manifest.id,
            target=str(self.target),
            files=len(plan.files),
            dirs=len(plan.dirs),
            symlinks=len(plan.symlinks),
            bytes=written,
        )

    def _plan_tree(
        self, tree_id: bytes, directory: Path, relative: str, include: list[str], plan: _Plan
    ) -> bool:
        """Add the tree's entries to ``plan``; return whether anything below was included.

        Iterative, so depth is unbounded; a tree that contains itself (a hostile cycle) and
        every malformed node are refused here, before anything is written.
        """
        root = _Frame(nodes=iter(self.store.read_tree(tree_id)), directory=directory,
                      relative=relative, tree_id=tree_id)  # fmt: skip
        stack = [root]
        on_path = {tree_id}
        while stack:
            frame = stack[-1]
            node = next(frame.nodes, None)
            if node is None:
                stack.pop()
                on_path.discard(frame.tree_id)
                if stack:
                    if include and not frame.anything and not match_any(include, frame.relative):
                        del plan.dirs[frame.marker]
                    else:
                        stack[-1].anything = True
                continue
            where = f"snapshot {self.manifest.id} at {frame.relative or '/'}"
            validate_name(node.name, where)
            if node.name in frame.seen:
                raise RestoreError(f"refusing to restore: {where} lists {node.name!r} twice")
            frame.seen.add(node.name)
            path = frame.directory / node.name
            child = f"{frame.relative}/{node.name}" if frame.relative else node.name
            if node.kind == "dir":
                assert node.subtree is not None  # TreeNode.from_json refuses a dir without one
                if node.subtree in on_path:
                    raise RestoreError(
                        f"refusing to restore: {where}: directory {node.name!r} contains itself"
                    )
                marker = len(plan.dirs)
                plan.dirs.append((path, node))
                nodes = iter(self.store.read_tree(node.subtree))
                stack.append(_Frame(nodes=nodes, directory=path, relative=child,
                                    tree_id=node.subtree, marker=marker))  # fmt: skip
                on_path.add(node.subtree)
            elif not include or match_any(include, child):
                (plan.files if node.kind == "file" else plan.symlinks).append((path, node))
                frame.anything = True
        return root.anything

    def _check_inside(self, path: Path, *, cached: bool = False) -> None:
        """Refuse ``path`` if its directory resolves outside the target. ``cached`` reuses the
        answer for a directory already checked in this restore (each file's directory is checked
        when the directory is made), sparing a stat per path component for every file."""
        parent = str(path.parent)
        if cached and parent in self._inside:
            return
        real = os.path.realpath(parent)
        if real != self._real_target and not real.startswith(self._real_target + os.sep):
            raise RestoreError(
                f"refusing to restore {path}: its directory resolves outside {self.target}"
            )
        self._inside.add(parent)

    def _clear_link(self, path: Path) -> None:
        if path.is_symlink():
            path.unlink()

    def _make_dir(self, path: Path) -> None:
        self._check_inside(path)
        self._clear_link(path)
        path.mkdir(exist_ok=True)

    def _plan_placements(self, files: list[tuple[Path, TreeNode]]) -> _Placements:
        """Every blob's places in the files; a file whose chunks do not add up to its recorded
        size is refused here, before anything is written."""
        placements = _Placements()
        for number, (path, node) in enumerate(files):
            offset = 0
            for blob_id in node.content:
                entry = placements.entries.get(blob_id)
                if entry is None:
                    entry = placements.entries[blob_id] = self._reader.entry(blob_id)
                placements.targets.setdefault(blob_id, []).append((number, offset))
                offset += entry.raw_length
            if offset != node.size:
                raise RestoreError(
                    f"{path}: its chunks hold {offset} bytes but the snapshot says {node.size}; "
                    "the snapshot is damaged (run `stcore check`)"
                )
            placements.remaining.append(len(node.content))
        return placements

    def _write_empty_file(self, number: int) -> None:
        fd = self._open_for_write(number)
        try:
            self._finish_file(number, fd)
        finally:
            os.close(fd)

    def _finish_file(self, number: int, fd: int) -> None:
        """Mode and mtime, set through the descriptor that wrote the file's last bytes (writing
        would change the mtime, and the mode may forbid writing)."""
        node = self._files[number][1]
        os.fchmod(fd, stat.S_IMODE(node.mode))
        os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
        self.progress("file", 1)

    def _open_for_write(self, number: int) -> int:
        """A descriptor for writing file ``number``; the first opening creates (or truncates) it.

        Never follows a symlink at the file itself (``O_NOFOLLOW``) and checks its directory
        resolves inside the target. Blobs land in pack order, so a file is written by whichever
        range holds its blobs; the first to arrive creates it, under the file's lock stripe.
        """
        path = self._files[number][0]
        self._check_inside(path, cached=True)
        with self._create_locks[number % len(self._create_locks)]:
            if number in self._created:
                return os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
            try:
                fd = os.open(path, flags, 0o600)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                path.unlink()  # a symlink where the file goes (an earlier restore): replace it
                fd = os.open(path, flags, 0o600)
            self._created.add(number)
            return fd

    def _restore_range(self, rng: PackRange) -> int:
        """Read one pack range and write each of its blobs everywhere it goes; runs on a worker
        thread, with its own few descriptors."""
        capacity = MAX_OPEN_FILES // self._reader.workers
        open_files = _OpenFiles(capacity, self._open_for_write)
        run = _WriteRun()
        written = 0
        try:
            for entry, data in self._reader.blobs(rng):
                for number, offset in self._placements.targets[entry.blob_id]:
                    if not run.extends(number, offset):
                        self._flush(run)  # before get(): it may close the run's descriptor
                        run.start(number, open_files.get(number), offset)
                    run.add(data)
                    written += len(data)
                    self.progress("bytes", len(data))
            self._flush(run)
        finally:
            open_files.close()
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

    def _make_symlink(self, path: Path, node: TreeNode) -> None:
        self._check_inside(path)
        if path.is_symlink() or path.is_file():
            path.unlink()
        os.symlink(node.target or "", path)
        os.utime(path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)


def restore(
    store: Store,
    manifest: SnapshotManifest,
    target: str | os.PathLike[str],
    *,
    sources: Iterable[str] | None = None,
    include: Iterable[str] = (),
    progress: ProgressCallback | None = None,
) -> RestoreResult:
    """Restore ``manifest``'s sources (all, or those named) into ``target/<source name>/...``;
    ``include`` globs keep only matching paths. Everything is planned and validated first."""
    restorer = Restorer(store, manifest, Path(target), progress or no_progress)
    return restorer.run(
        sources=list(sources) if sources is not None else None, include=list(include)
    )
