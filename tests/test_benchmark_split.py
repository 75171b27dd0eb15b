"""benchmarks/two_processes.py splits a tree in two halves that cover it exactly once: its
figures compare a pair of processes with one process doing the same work, so a file missed or
counted twice would skew them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# appended: the benchmarks' module names (run, dataset) must not shadow anything else
sys.path.append(str(Path(__file__).resolve().parent.parent / "benchmarks"))

from two_processes import split


def _files(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            for folder, dirs, names in os.walk(path):
                found += [os.path.join(folder, n) for n in names]
                found += [os.path.join(folder, d) for d in dirs if Path(folder, d).is_symlink()]
        else:
            found.append(str(path))
    return found


def test_the_halves_cover_the_tree_once_and_balance_it(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    big = tree / "drivers"  # more than a third of the files: split by its entries
    for n in range(6):
        (big / f"d{n}").mkdir(parents=True)
        for m in range(20):
            (big / f"d{n}" / f"f{m}").write_bytes(b"x" * (n + 1))
    (big / "loose").write_text("a file beside the folders")
    for name in ("fs", "kernel"):
        (tree / name).mkdir()
        for m in range(15):
            (tree / name / f"g{m}").write_text("y")
    (tree / "Kconfig").write_text("top-level file")
    (tree / "link").symlink_to("fs")
    a, b = split(tree)
    everything = _files([tree])
    halves = _files(a) + _files(b)
    assert sorted(halves) == sorted(everything)  # each file once, none missed
    assert len(set(halves)) == len(halves)
    assert tree / "drivers" not in a + b  # expanded into its entries
    assert abs(len(_files(a)) - len(_files(b))) <= 25
