"""Generated directory trees and a comparison that checks bytes and metadata."""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from stcore.models import TreeNode


def make_sample_tree(root: Path, *, big_size: int = 20 * 1024 * 1024, seed: int = 7) -> Path:
    """Nested dirs, empty files and dirs, a file larger than a pack, symlinks, unicode, modes."""
    rng = random.Random(seed)
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "empty-dir" / "nested-empty").mkdir(parents=True)
    (root / "a" / "hello.txt").write_text("hello world\n")
    (root / "a" / "b" / "empty.txt").write_bytes(b"")
    (root / "a" / "b" / "c" / "deep.bin").write_bytes(rng.randbytes(300_000))
    (root / "big.bin").write_bytes(rng.randbytes(big_size))
    (root / "ünïcødé 文件 🚀.txt").write_text("unicode name\n")
    (root / "spaces and 'quotes'.md").write_text("# title\n")
    (root / "doc.json").write_text(json.dumps({"k": list(range(100))}))
    script = root / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    private = root / "a" / "private.key"
    private.write_text("secret")
    private.chmod(0o600)
    os.symlink("a/hello.txt", root / "link-to-hello")
    os.symlink("/nonexistent/target", root / "dangling")
    os.symlink("b", root / "a" / "link-to-dir")
    for i, path in enumerate(sorted(root.rglob("*"))):
        os.utime(
            path, ns=(1_600_000_000_000_000_000 + i * 1_000_000_007,) * 2, follow_symlinks=False
        )
    return root


def snapshot_of_tree(root: Path) -> dict[str, tuple]:
    """path -> (kind, mode, mtime_ns, content or link target), for equality checks."""
    result: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            relative = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                result[relative] = ("link", os.readlink(path), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                result[relative] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            else:
                result[relative] = (
                    "file",
                    stat.S_IMODE(st.st_mode),
                    st.st_mtime_ns,
                    path.read_bytes(),
                )
    return result


def tree_nodes(
    kind: str, *, names: st.SearchStrategy[str], max_mode: int, **fields: st.SearchStrategy[Any]
) -> st.SearchStrategy[TreeNode]:
    """Tree entries of one ``kind``, with a name from ``names``, any mode up to ``max_mode``,
    any time, and the given ``fields``."""
    return st.builds(
        TreeNode,
        name=names,
        kind=st.just(kind),
        mode=st.integers(0, max_mode),
        mtime_ns=st.integers(-(2**63), 2**63 - 1),
        **fields,
    )
