"""The files source's cache-warming helper (stcore/builtins/statahead.py): it walks what the
source walks, in the same order, never follows a link or leaves the tree, survives a tree
changing under it, stops with the walk, and a backup never depends on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stcore
from stcore.builtins import statahead
from stcore.builtins.sources import FilesSource
from stcore.globs import match_path, portable

#: names a tree of the property tests is made of: ordinary, glob-like, case-different, not UTF-8
NAMES = ["a", "b.txt", "B.TXT", "[x]", "*", "logs", "c.log", os.fsdecode(b"\xff\xfe")]

PATTERNS = ["*.txt", "logs", "logs/*", "a/**/b.txt", "[x]", "\\*", "*", "?", "c.*", "**/a"]


def _scanned(root: Path, **options: object) -> list[str]:
    source = FilesSource("s", {"path": str(root), **options})
    return ["/".join(entry.path) for entry in source.scan(lambda _path, _exc: None)]


def _walked(root: Path, exclude: list[str] = (), iexclude: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    patterns = [portable(p) for p in exclude] + [portable(p, ignore_case=True) for p in iexclude]
    return list(statahead.walk(str(root), exclude=patterns))


trees = st.recursive(
    st.dictionaries(st.sampled_from(NAMES), st.none(), max_size=4),
    lambda children: st.dictionaries(
        st.sampled_from(NAMES), st.one_of(st.none(), children), max_size=4
    ),
    max_leaves=20,
)


def _make(root: Path, tree: dict[str, object]) -> None:
    root.mkdir()
    for name, child in tree.items():
        if isinstance(child, dict):
            _make(root / name, child)
        else:
            (root / name).write_bytes(name.encode("utf-8", "surrogateescape"))


@settings(max_examples=60, deadline=None)
@given(
    tree=trees,
    exclude=st.lists(st.sampled_from(PATTERNS), max_size=2),
    iexclude=st.lists(st.sampled_from(PATTERNS), max_size=1),
)
def test_the_helper_visits_what_the_walk_visits_in_the_same_order(
    tmp_path_factory: pytest.TempPathFactory,
    tree: dict[str, object],
    exclude: list[str],
    iexclude: list[str],
) -> None:
    root = tmp_path_factory.mktemp("tree") / "root"
    _make(root, tree)
    expected = _scanned(root, exclude=exclude, iexclude=iexclude)
    assert _walked(root, exclude, iexclude) == expected


@settings(max_examples=200, deadline=None)
@given(
    pattern=st.sampled_from([*PATTERNS, "/logs/", "A*", "x/[!a]"]),
    path=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join),
    ignore_case=st.booleans(),
)
def test_a_portable_pattern_matches_as_the_pattern_does(
    pattern: str, path: str, ignore_case: bool
) -> None:
    import re

    source, flags, whole = portable(pattern, ignore_case=ignore_case)
    subject = path if whole else path.rsplit("/", 1)[-1]
    assert (re.compile(source, flags).match(subject) is not None) == match_path(
        pattern, path, ignore_case=ignore_case
    )


def test_links_are_listed_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    root = tmp_path / "root"
    root.mkdir()
    (root / "to-dir").symlink_to(outside)
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    (root / "loop").symlink_to(root)
    assert _walked(root) == ["dangling", "loop", "to-dir"]


def test_one_file_system_stays_on_the_root_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "root" / "mnt").mkdir(parents=True)
    (tmp_path / "root" / "mnt" / "inside").touch()
    (tmp_path / "root" / "file").touch()
    assert _walked(tmp_path / "root") == ["file", "mnt", "mnt/inside"]
    # as if the root were on another device than everything in it (a mount below it)
    monkeypatch.setattr(statahead, "_device", lambda _fd: -1)
    walked = statahead.walk(str(tmp_path / "root"), one_file_system=True)
    assert list(walked) == ["file", "mnt"]  # the mount point is listed, not entered


def test_a_deep_tree_is_helped_to_max_depth_with_few_descriptors(tmp_path: Path) -> None:
    root = tmp_path / "deep"
    path = root
    for _ in range(200):
        path = path / "d"
    path.mkdir(parents=True)
    before = len(os.listdir("/proc/self/fd"))
    walked = statahead.walk(str(root), max_depth=20)
    visited = [next(walked) for _ in range(20)]
    assert len(os.listdir("/proc/self/fd")) - before <= 21  # one per level, never more
    assert visited[-1] == "/".join(["d"] * 20) and list(walked) == []
    assert len(os.listdir("/proc/self/fd")) == before  # all closed at the end


def test_a_tree_changing_under_the_helper_skips_what_vanished(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for name in ("a", "b", "c"):
        (root / name).mkdir(parents=True)
        for child in ("1", "2"):
            (root / name / child).write_text(child)
    walked = statahead.walk(str(root))
    assert next(walked) == "a"
    for child in ("1", "2"):
        (root / "b" / child).unlink()
    (root / "b").rmdir()  # listed, then gone before its turn
    (root / "c").rename(tmp_path / "moved")  # and this one moved out of the tree
    (root / "c").write_text("a file now")
    assert list(walked) == ["a/1", "a/2", "c"]


def test_a_root_that_is_not_a_directory_walks_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert list(statahead.walk(str(tmp_path / "file"))) == []
    assert list(statahead.walk(str(tmp_path / "missing"))) == []
    (tmp_path / "link").symlink_to(tmp_path)
    assert list(statahead.walk(str(tmp_path / "link"))) == []  # no link followed, even here


def test_the_helper_stops_when_its_backup_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for number in range(3000):
        (root / f"{number:04}").touch()
    # a "parent" that is not this process's parent: the helper gives up at its first check
    walked = list(statahead.walk(str(root), parent=os.getppid() + 1))
    assert len(walked) == statahead._CHECK_PARENT_EVERY - 1


def test_the_child_program_walks_odd_names_and_patterns_and_exits_cleanly(tmp_path: Path) -> None:
    root = Path(os.fsdecode(os.fsencode(tmp_path) + b"/r\xff\xfe [x]"))
    (root / "sub").mkdir(parents=True)
    (root / "sub" / os.fsdecode(b"f\x80")).write_text("x")
    helper = statahead.start(str(root), exclude=[portable(os.fsdecode(b"f\x80")), portable("[x]")])
    assert helper is not None
    assert helper.wait(timeout=60) == 0
    completed = subprocess.run(
        [sys.executable, "-I", "-S", statahead.__file__, str(root), "not json"],
        capture_output=True,
        timeout=60,
    )
    assert completed.returncode != 0  # a broken call fails in the child, never in a backup


def _tree_of(root: Path, files: int) -> None:
    for number in range(files):
        folder = root / f"d{number % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{number}").write_text(str(number))


def _watch_starts(
    monkeypatch: pytest.MonkeyPatch, after: int
) -> list[subprocess.Popen[bytes] | None]:
    """Start helpers once a walk passes ``after`` entries; the list of every one started."""
    monkeypatch.setattr(statahead, "START_AFTER", after)
    started: list[subprocess.Popen[bytes] | None] = []
    real = statahead.start

    def start(*args: object, **kwargs: object) -> subprocess.Popen[bytes] | None:
        started.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return started[-1]

    monkeypatch.setattr(statahead, "start", start)
    return started


def test_a_backup_of_a_large_tree_starts_the_helper_and_reaps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _watch_starts(monkeypatch, after=10)
    _tree_of(tmp_path / "big", 40)
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "one").write_text("1")
    with stcore.init_repository(tmp_path / "repo") as repo:
        sources = stcore.sources_for_paths([str(tmp_path / "big"), str(tmp_path / "small")])
        result = repo.backup(sources)
    assert not result.errors and result.manifest.files == 41
    assert len(started) == 1  # the big tree's walk only: the small one ends first
    helper = started[0]
    assert helper is not None and helper.returncode is not None  # reaped, not left running


def test_an_abandoned_walk_kills_its_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _watch_starts(monkeypatch, after=5)
    _tree_of(tmp_path / "big", 5000)
    scan = FilesSource("s", {"path": str(tmp_path / "big")}).scan(lambda _p, _e: None)
    for _ in range(10):
        next(scan)
    helper = started[0]
    assert helper is not None and helper.poll() is None  # still walking 5,000 files
    scan.close()
    assert helper.returncode is not None


@pytest.mark.parametrize(
    "why",
    ["an application server", "a frozen app", "no processes"],
)
def test_a_backup_goes_on_where_the_helper_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    started = _watch_starts(monkeypatch, after=3)
    if why == "an application server":
        monkeypatch.setattr(sys, "executable", "/usr/bin/uwsgi")
    elif why == "a frozen app":
        monkeypatch.setattr(sys, "frozen", True, raising=False)
    else:

        def refuse(*_args: object, **_kwargs: object) -> None:
            raise BlockingIOError(11, "Resource temporarily unavailable")

        monkeypatch.setattr(subprocess, "Popen", refuse)
    _tree_of(tmp_path / "big", 20)
    with stcore.init_repository(tmp_path / "repo") as repo:
        result = repo.backup(stcore.sources_for_paths([str(tmp_path / "big")]))
    assert started == [None]
    assert not result.errors and result.manifest.files == 20
