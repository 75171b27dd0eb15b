"""Warm the kernel's caches of a tree's directories and inodes from a process of its own, ahead
of the files source's walk.

With the page cache cold (a nightly backup), a walk of a large tree waits on the disk for every
directory listing and every inode, one after another, on the backup's one walking thread. A
second walker in the same interpreter does not help: each ``stat`` hands the GIL over and back
(measured: slower, warm and cold). A small process of its own does: it lists and ``lstat``\\s the
tree in the walk's order, so the entries are in the kernel's caches when the backup's walk gets
to them. It reads nothing but names and metadata, follows no link, honours the source's
``exclude``, ``iexclude`` and ``one_file_system``, and is killed when the walk ends. Everything
about it is best effort: it never reports an error, and a backup without it is the same backup.

This file is also the child's program, run as ``python -I -S statahead.py ROOT SETTINGS``: it
imports only the standard library, so the child starts in a few milliseconds and holds about
9 MiB (``benchmarks/README.md``, cold page cache).
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

#: a walk starts its helper only after this many entries: a small tree is done before a
#: process would have started
START_AFTER = 1000

#: the helper goes no deeper than this (a deeper tree is walked, unhelped, by the backup)
MAX_DEPTH = 64

#: entries between two checks that the backup that started the helper still runs
_CHECK_PARENT_EVERY = 1024

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

#: a pattern as :func:`stcore.globs.portable` gives it: regex source, flags, whole path
Pattern = tuple[str, int, bool]


def _interpreter() -> str | None:
    """A Python to run the helper with: this one, unless stcore is embedded in a program that
    is not a plain interpreter (a frozen app, an application server), which must never be
    started with our arguments."""
    executable = sys.executable
    if not executable or getattr(sys, "frozen", False):
        return None
    name = os.path.basename(executable).lower()
    if not name.startswith(("python", "pypy")):
        return None
    return executable


def start(
    root: str, *, exclude: Iterable[Pattern] = (), one_file_system: bool = False
) -> subprocess.Popen[bytes] | None:
    """Start the helper walking ``root`` (a directory); None where it cannot run (no
    ``dir_fd`` support, no plain interpreter, the process could not be started)."""
    interpreter = _interpreter()
    if interpreter is None or os.stat not in os.supports_dir_fd or not os.path.isfile(__file__):
        return None
    import subprocess  # here, not above: the child never needs it (1.4 MiB of its memory)

    settings = json.dumps(
        {"exclude": list(exclude), "one_file_system": one_file_system, "parent": os.getpid()}
    )
    try:
        return subprocess.Popen(
            [interpreter, "-I", "-S", __file__, root, settings],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
    except (OSError, ValueError):  # no processes left, a sandbox that forbids them, a NUL
        return None  # in the root's name: the walk goes on unhelped


def stop(helper: subprocess.Popen[bytes] | None) -> None:
    """End ``helper`` (if it is still walking) and reap it."""
    if helper is None:
        return
    if helper.poll() is None:
        try:
            helper.kill()
        except OSError:  # exited meanwhile
            pass
    helper.wait()


def _device(fd: int) -> int:
    return os.fstat(fd).st_dev


def _names(fd: int) -> list[str]:
    try:
        return sorted(os.listdir(fd))
    except OSError:
        return []


def walk(
    root: str,
    *,
    exclude: Iterable[Pattern] = (),
    one_file_system: bool = False,
    parent: int | None = None,
    max_depth: int = MAX_DEPTH,
) -> Iterator[str]:
    """``lstat`` every entry under ``root`` in the files source's order (depth first, names
    sorted, a directory before its contents) and yield each relative path visited; stops when
    process ``parent`` is no longer this one's parent. Errors skip the entry."""
    patterns = [(re.compile(source, flags), whole) for source, flags, whole in exclude]
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return
    device = _device(fd)
    # each level: its descriptor, the names left in it, its relative path
    stack: list[tuple[int, Iterator[str], str]] = [(fd, iter(_names(fd)), "")]
    seen = 0
    try:
        while stack:
            fd, names, prefix = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(fd)
                stack.pop()
                continue
            relative = prefix + name
            if patterns and any(
                pattern.match(relative if whole else name) for pattern, whole in patterns
            ):
                continue
            seen += 1
            if parent is not None and not seen % _CHECK_PARENT_EVERY and os.getppid() != parent:
                return
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            yield relative
            if not stat.S_ISDIR(st.st_mode) or len(stack) >= max_depth:
                continue
            if one_file_system and st.st_dev != device:
                continue
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            stack.append((child, iter(_names(child)), relative + "/"))
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def main(argv: list[str]) -> int:
    root, settings = argv
    options = json.loads(settings)
    for _ in walk(
        root,
        exclude=[tuple(p) for p in options["exclude"]],
        one_file_system=options["one_file_system"],
        parent=options["parent"],
    ):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
