"""Restoring a snapshot into a directory, refusing anything that would land outside it.

The restore first walks every tree it will restore (trees are small) and validates every name:
no empty names, ``.``, ``..``, separators or NUL bytes, no duplicate names in one directory. Only
then does it write, so a hostile manifest is refused before a single byte lands. While writing it
never follows a symlink: files are opened with ``O_NOFOLLOW`` and every parent directory is
checked to resolve inside the target.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from stcore.errors import RestoreError, SnapshotNotFoundError
from stcore.globs import match_any
from stcore.models import SnapshotManifest, TreeNode

if TYPE_CHECKING:
    from stcore.repo.repository import Repository


@attrs.frozen(kw_only=True)
class RestoreResult:
    snapshot_id: str
    target: str
    files: int
    dirs: int
    symlinks: int
    bytes: int


def validate_name(name: str, where: str) -> None:
    if name in ("", ".", "..") or "/" in name or "\0" in name or (os.sep in name):
        raise RestoreError(
            f"refusing to restore: {where} contains the unsafe name {name!r}, which would write "
            "outside the restore target"
        )


@attrs.define
class _Plan:
    dirs: list[tuple[Path, TreeNode | None]] = attrs.field(factory=list)
    files: list[tuple[Path, TreeNode]] = attrs.field(factory=list)
    symlinks: list[tuple[Path, TreeNode]] = attrs.field(factory=list)


class Restorer:
    def __init__(
        self,
        repository: Repository,
        manifest: SnapshotManifest,
        target: Path,
        progress: Callable[[str, int], None],
    ) -> None:
        self.repository = repository
        self.manifest = manifest
        self.target = target.absolute()
        self.progress = progress

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
        self.target.mkdir(parents=True, exist_ok=True)
        self._real_target = os.path.realpath(self.target)
        for path, _ in plan.dirs:
            self._make_dir(path)
        written = 0
        with ThreadPoolExecutor(max_workers=self.repository.workers) as pool:
            for size in pool.map(self._write_file, plan.files):
                written += size
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
        """Add the tree's entries to ``plan``; return whether anything below was included."""
        nodes = self.repository.read_tree(tree_id)
        seen: set[str] = set()
        anything = False
        for node in nodes:
            where = f"snapshot {self.manifest.id} at {relative or '/'}"
            validate_name(node.name, where)
            if node.name in seen:
                raise RestoreError(f"refusing to restore: {where} lists {node.name!r} twice")
            seen.add(node.name)
            path = directory / node.name
            child = f"{relative}/{node.name}" if relative else node.name
            if node.kind == "dir":
                assert node.subtree is not None
                marker = len(plan.dirs)
                plan.dirs.append((path, node))
                below = self._plan_tree(node.subtree, path, child, include, plan)
                if include and not below and not match_any(include, child):
                    del plan.dirs[marker]
                else:
                    anything = True
            elif not include or match_any(include, child):
                (plan.files if node.kind == "file" else plan.symlinks).append((path, node))
                anything = True
        return anything

    def _check_inside(self, path: Path) -> None:
        parent = os.path.realpath(path.parent)
        if parent != self._real_target and not parent.startswith(self._real_target + os.sep):
            raise RestoreError(
                f"refusing to restore {path}: its directory resolves outside {self.target}"
            )

    def _clear_link(self, path: Path) -> None:
        if path.is_symlink():
            path.unlink()

    def _make_dir(self, path: Path) -> None:
        self._check_inside(path)
        self._clear_link(path)
        path.mkdir(exist_ok=True)

    def _write_file(self, item: tuple[Path, TreeNode]) -> int:
        path, node = item
        self._check_inside(path)
        self._clear_link(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o600)
        written = 0
        with os.fdopen(fd, "wb") as handle:
            for blob_id in node.content:
                data = self.repository.read_blob(blob_id)
                handle.write(data)
                written += len(data)
                self.progress("bytes", len(data))
        if written != node.size:
            raise RestoreError(
                f"{path}: restored {written} bytes but the snapshot says {node.size}"
            )
        os.chmod(path, stat.S_IMODE(node.mode))
        os.utime(path, ns=(node.mtime_ns, node.mtime_ns))
        self.progress("file", 1)
        return written

    def _make_symlink(self, path: Path, node: TreeNode) -> None:
        self._check_inside(path)
        if path.is_symlink() or path.is_file():
            path.unlink()
        os.symlink(node.target or "", path)
        os.utime(path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)
