"""``stcore ls``, ``find``, ``tag`` and ``unlock``: restic's semantics where they fit, hostile
names printed safely and round-tripped by --json, only trees read, tag changes crash-safe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner, Result

import stcore
from stcore.cli import cli
from stcore.cli.cmd_find import Finder
from stcore.config import RemoteConfig
from stcore.errors import CorruptObjectError, RepositoryLockedError
from stcore.models import TreeNode
from stcore.repo import locks
from stcore.repo import tag as tag_module
from stcore.repo.locks import repository_lock
from stcore.repo.store import Store
from stcore.repo.tag import new_tags
from stcore.repository import Repository
from stcore.sync import SyncOptions
from tests.helpers import init_encrypted, open_encrypted

#: a name a terminal would obey, markup-like brackets, and a byte that is not UTF-8
HOSTILE = b"caf\xe9 [x] [bold]b \x1b[31m\x07\r\nend"
HOSTILE_SHOWN = "caf\\xe9 [x] [bold]b \\x1b[31m\\x07\\r\\nend"
#: no control character but the line end
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def invoke(repo: Repository | str, *args: str) -> Result:
    location = repo if isinstance(repo, str) else repo.location
    return CliRunner().invoke(cli, ["--repo", location, *args], catch_exceptions=False)


def lines(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def run(*args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "stcore.cli", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"},
        timeout=120,
    )


def safe(result: subprocess.CompletedProcess[bytes], code: int = 0) -> str:
    stdout = result.stdout.decode("utf-8")
    stderr = result.stderr.decode("utf-8")
    assert result.returncode == code, stdout + stderr
    assert "Traceback" not in stderr
    assert not RAW_CONTROL.search(stdout + stderr), ascii(stdout + stderr)
    return stdout + stderr


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """src/ with logs/a.jsonl, logs/b.json, sub/deep/[x] c.json, sub/link -> ../logs."""
    root = tmp_path / "src"
    (root / "logs").mkdir(parents=True)
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "logs" / "a.jsonl").write_text("a" * 10)
    (root / "logs" / "b.json").write_text("b" * 2000)
    (root / "sub" / "deep" / "[x] c.json").write_text("c")
    (root / "sub" / "link").symlink_to("../logs")
    return root


@pytest.fixture
def two(repo: Repository, tree: Path) -> tuple[str, str]:
    """Two snapshots of ``tree``; the second also holds new.json. (older, newer)"""
    first = repo.backup(stcore.sources_for_paths([str(tree)]), tags=["[x] one"]).manifest.id
    (tree / "new.json").write_text("new")
    second = repo.backup(stcore.sources_for_paths([str(tree)])).manifest.id
    return first, second


@pytest.fixture
def blob_reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every blob id the Store is asked for, through either of its two ways of reading."""
    asked: list[bytes] = []
    one, many = Store.read_blob, Store.read_blobs

    def read_blob(self: Store, blob_id: bytes) -> bytes:
        asked.append(blob_id)
        return one(self, blob_id)

    def read_blobs(self: Store, blob_ids: Any, **kwargs: Any) -> Iterator[tuple[bytes, bytes]]:
        wanted = list(blob_ids)
        asked.extend(wanted)
        return many(self, wanted, **kwargs)

    monkeypatch.setattr(Store, "read_blob", read_blob)
    monkeypatch.setattr(Store, "read_blobs", read_blobs)
    return asked


# --- ls ------------------------------------------------------------------------------------------


def test_ls_lists_the_whole_snapshot_recursively(repo: Repository, two: tuple[str, str]) -> None:
    assert lines(invoke(repo, "ls", "latest")) == [
        "src",
        "src/logs",
        "src/logs/a.jsonl",
        "src/logs/b.json",
        "src/new.json",
        "src/sub",
        "src/sub/deep",
        "src/sub/deep/[x] c.json",
        "src/sub/link",
    ]
    assert "src/new.json" not in lines(invoke(repo, "ls", two[0]))
    assert lines(invoke(repo, "ls", "latest", "--no-recursive")) == ["src"]


def test_ls_into_a_reader_that_goes_away_ends_quietly(tmp_path: Path) -> None:
    """`stcore ls | head`: no error line, no traceback, the status SIGPIPE would give (141)."""
    (tmp_path / "d").mkdir()
    for n in range(3000):
        (tmp_path / "d" / f"f{n}").write_text(str(n))
    repo = stcore.init_repository(str(tmp_path / "repo"))
    repo.backup(stcore.sources_for_paths([str(tmp_path / "d")]))
    repo.close()
    script = (
        f'"$0" -m stcore.cli --repo {tmp_path / "repo"} ls latest | head -n 2; '
        'echo "status ${PIPESTATUS[0]}" >&2'
    )
    done = subprocess.run(
        ["bash", "-c", script, sys.executable], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.splitlines() == ["d", "d/f0"]
    assert done.stderr == "status 141\n"


def test_ls_under_a_path_lists_its_entries_unless_recursive(
    repo: Repository, two: tuple[str, str]
) -> None:
    assert lines(invoke(repo, "ls", "latest", "src")) == [
        "src/logs",
        "src/new.json",
        "src/sub",
    ]
    assert lines(invoke(repo, "ls", "latest", "/src/sub/")) == ["src/sub/deep", "src/sub/link"]
    assert lines(invoke(repo, "ls", "latest", "src/sub", "--recursive")) == [
        "src/sub/deep",
        "src/sub/deep/[x] c.json",
        "src/sub/link",
    ]
    assert lines(invoke(repo, "ls", "latest", "src/logs/a.jsonl")) == ["src/logs/a.jsonl"]
    for missing in ("src/nope", "src/logs/a.jsonl/x", "nope"):
        result = invoke(repo, "ls", "latest", missing)
        assert result.exit_code == 1
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert repr(missing.removeprefix("src/")) in result.output


def test_ls_long_shows_mode_size_and_mtime_in_fixed_columns(
    repo: Repository, two: tuple[str, str], tree: Path
) -> None:
    os.utime(tree / "logs" / "b.json", (0, 1_700_000_000))
    repo.backup(stcore.sources_for_paths([str(tree)]))
    shown = {line[45:]: line for line in lines(invoke(repo, "ls", "latest", "-l"))}
    assert shown["src/logs/b.json"] == (
        "-rw-r--r--     2.0 KiB  2023-11-14 22:13:20  src/logs/b.json"
    )
    assert shown["src/logs"].startswith("drwxr-xr-x           -  ")
    assert shown["src/sub/link -> ../logs"].startswith("lrwxrwxrwx")
    assert shown["src"].startswith("source   ")
    assert all(len(line) <= 80 for line in shown.values())


def test_ls_json_is_one_document_per_line(repo: Repository, two: tuple[str, str]) -> None:
    documents = [json.loads(line) for line in lines(invoke(repo, "ls", "latest", "--json"))]
    assert [d["struct_type"] for d in documents[:2]] == ["snapshot", "source"]
    assert documents[0]["id"] == two[1]
    assert documents[1] == {
        "struct_type": "source",
        "source": "src",
        "source_type": "files",
        "files": 4,
        "dirs": 3,
        "size": 2014,
    }
    nodes = {d["path"]: d for d in documents[2:]}
    assert {d["struct_type"] for d in nodes.values()} == {"node"}
    assert nodes["sub/link"]["target"] == "../logs"
    assert nodes["logs/b.json"]["size"] == 2000 and nodes["logs/b.json"]["type"] == "file"
    assert nodes["logs/b.json"]["mode"] == "0o644"
    under = [json.loads(line) for line in lines(invoke(repo, "ls", "latest", "src/sub", "--json"))]
    assert [d.get("path") for d in under[1:]] == ["sub/deep", "sub/link"]


def test_ls_reads_only_the_trees_on_the_way(
    repo: Repository, two: tuple[str, str], blob_reads: list[bytes]
) -> None:
    lines(invoke(repo, "ls", "latest", "src/sub/deep"))
    kinds = [repo.index.get(blob_id).blob_type for blob_id in blob_reads]  # type: ignore[union-attr]
    assert kinds and set(kinds) == {"tree"}
    assert len(blob_reads) == 3  # the source's root, sub, deep: not logs


# --- find ----------------------------------------------------------------------------------------


def test_find_lists_matches_per_snapshot_newest_first(
    repo: Repository, two: tuple[str, str]
) -> None:
    first, second = two
    output = lines(invoke(repo, "find", "*.json"))
    assert output[0] == f"snapshot {second} (3 matches)"
    assert [line[47:] for line in output[1:4]] == [
        "src/logs/b.json",
        "src/new.json",
        "src/sub/deep/[x] c.json",
    ]
    assert output[1].startswith("  -rw-r--r--     2.0 KiB  ")
    assert output[4] == f"snapshot {first} (2 matches)"
    assert output[-1] == "5 matches in 2 of 2 snapshots"
    assert lines(invoke(repo, "find", "nothing*")) == ["no matches in 2 snapshots"]


def test_find_patterns_follow_the_glob_rules(repo: Repository, two: tuple[str, str]) -> None:
    def found(*args: str) -> list[tuple[str, str]]:
        result = invoke(repo, "find", *args, "--json")
        assert result.exit_code == 0, result.output
        return [
            (snapshot["id"][-8:], match["path"])
            for snapshot in json.loads(result.output)
            for match in snapshot["matches"]
        ]

    latest = two[1][-8:]
    # without /: the name, at any depth; [x] is a character class, so \[ is not needed here
    assert found("*c.json", "--snapshot", "latest") == [(latest, "sub/deep/[x] c.json")]
    assert found("[[]x] c.json", "--snapshot", "latest") == [(latest, "sub/deep/[x] c.json")]
    # with /: the path inside the source (not its name), * within one component
    assert found("sub/*", "--snapshot", "latest") == [(latest, "sub/deep"), (latest, "sub/link")]
    assert found("src/sub/*", "--snapshot", "latest") == []
    assert found("sub/**/*.json", "--snapshot", "latest") == [(latest, "sub/deep/[x] c.json")]
    assert found("LOGS", "-i", "--snapshot", "latest") == [(latest, "logs")]
    assert found("LOGS", "--snapshot", "latest") == []
    # several patterns, several snapshots (named twice: searched once), a source filter
    assert found("a.jsonl", "new.json", "--snapshot", "latest", "--snapshot", two[1]) == [
        (latest, "logs/a.jsonl"),
        (latest, "new.json"),
    ]
    assert found("a.jsonl", "--source", "other") == []
    assert found("a.jsonl", "--tag", "[x] one") == [(two[0][-8:], "logs/a.jsonl")]


def test_find_json_has_the_snapshot_and_each_match(repo: Repository, two: tuple[str, str]) -> None:
    result = invoke(repo, "find", "link", "--json")
    (newest, oldest) = json.loads(result.output)
    assert newest["id"] == two[1] and oldest["id"] == two[0]
    assert oldest["tags"] == ["[x] one"]
    (match,) = newest["matches"]
    assert match["source"] == "src" and match["type"] == "symlink"
    assert match["target"] == "../logs" and match["path"] == "sub/link"
    assert set(match) == {"source", "path", "type", "size", "mode", "mtime", "target"}


def test_find_reads_each_tree_once_and_no_file_content(
    repo: Repository, tree: Path, blob_reads: list[bytes]
) -> None:
    for _ in range(4):  # four snapshots of an unchanged tree but one new file each time
        (tree / f"f{os.urandom(2).hex()}.txt").write_text("x")
        repo.backup(stcore.sources_for_paths([str(tree)]))
    blob_reads.clear()
    output = lines(invoke(repo, "find", "*.json"))
    assert output[-1] == "8 matches in 4 of 4 snapshots"
    kinds = [repo.index.get(blob_id).blob_type for blob_id in blob_reads]  # type: ignore[union-attr]
    assert set(kinds) == {"tree"}
    assert len(blob_reads) == len(set(blob_reads))
    # 4 roots (one new file each), logs, sub, deep: shared by all four snapshots
    assert len(blob_reads) == 7


def _node(name: str, subtree: bytes | None = None) -> TreeNode:
    kind = "dir" if subtree is not None else "file"
    return TreeNode(name=name, kind=kind, mode=0o644, mtime_ns=0, subtree=subtree)


def test_the_finder_keeps_matches_by_tree_and_by_path_when_patterns_need_it() -> None:
    shared, root = b"s" * 32, b"r" * 32
    trees = {
        shared: [_node("x.json"), _node("y.txt")],
        root: [_node("a", shared), _node("b", shared)],
    }
    by_name = Finder(["*.json"], trees, fold=False)
    assert [p for p, _ in by_name.find(root)] == ["a/x.json", "b/x.json"]
    by_path = Finder(["b/*.json"], trees, fold=False)
    assert [p for p, _ in by_path.find(root)] == ["b/x.json"]
    both = Finder(["a", "b/*"], trees, fold=False)
    assert [p for p, _ in both.find(root)] == ["a", "b/x.json", "b/y.txt"]


def test_the_finder_needs_no_recursion_and_refuses_a_folder_that_contains_itself() -> None:
    trees: dict[bytes, list[TreeNode]] = {}
    depth = 5000  # far beyond Python's recursion limit
    for level in range(depth):
        tree_id = level.to_bytes(32, "big")
        below = (level + 1).to_bytes(32, "big")
        trees[tree_id] = [_node("d", below)] if level < depth - 1 else [_node("leaf.json")]
    (match,) = Finder(["*.json"], trees, fold=False).find((0).to_bytes(32, "big"))
    assert match[0] == "d/" * (depth - 1) + "leaf.json"
    loop = b"l" * 32
    with pytest.raises(CorruptObjectError, match="contains itself"):
        Finder(["*"], {loop: [_node("again", loop)]}, fold=False).find(loop)


def test_the_finder_keeps_no_copies_of_deep_paths() -> None:
    """A match at every level of a deep tree: the search keeps each folder's own matches and a
    reference per subfolder, not every path below every folder (which grew as depth cubed)."""
    import tracemalloc

    depth = 600
    trees: dict[bytes, list[TreeNode]] = {}
    for level in range(depth):
        below = (level + 1).to_bytes(32, "big")
        nodes = [_node("m.json")] + ([_node("d", below)] if level < depth - 1 else [])
        trees[level.to_bytes(32, "big")] = nodes
    finder = Finder(["*.json"], trees, fold=False)
    tracemalloc.start()
    count = 0
    for path, _ in finder.find((0).to_bytes(32, "big")):
        assert path == "d/" * count + "m.json"
        count += 1
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == depth
    assert peak < 4 * 1024 * 1024, f"{peak} bytes at the peak"


def test_find_refuses_snapshots_with_filters(repo: Repository, two: tuple[str, str]) -> None:
    result = invoke(repo, "find", "x", "--snapshot", "latest", "--host", "h")
    assert result.exit_code == 2 and "not both" in result.output
    assert invoke(repo, "find").exit_code == 2  # a PATTERN is required


# --- hostile names in ls and find ---------------------------------------------------------------


def test_ls_and_find_show_hostile_names_safely_and_json_round_trips_them(tmp_path: Path) -> None:
    source = os.fsencode(tmp_path / "data")
    os.makedirs(source + b"/" + HOSTILE)
    with open(source + b"/" + HOSTILE + b"/" + HOSTILE + b".json", "wb") as handle:
        handle.write(b"x")
    os.symlink(b"\x1b]0;t\x07" + HOSTILE, source + b"/link")
    repo = str(tmp_path / "repo")
    safe(run("--repo", repo, "init"))
    safe(run("--repo", repo, "backup", source))
    listed = safe(run("--repo", repo, "ls", "latest", "-l"))
    assert f"data/{HOSTILE_SHOWN}/{HOSTILE_SHOWN}.json\n" in listed
    assert f"data/link -> \\x1b]0;t\\x07{HOSTILE_SHOWN}\n" in listed
    under = safe(run("--repo", repo, "ls", "latest", b"data/" + HOSTILE))
    assert under == f"data/{HOSTILE_SHOWN}/{HOSTILE_SHOWN}.json\n"
    found = safe(run("--repo", repo, "find", b"caf\xe9*.json"))
    assert f"data/{HOSTILE_SHOWN}/{HOSTILE_SHOWN}.json\n" in found
    # --json: ASCII, and os.fsencode gives back the exact bytes
    as_json = run("--repo", repo, "ls", "latest", "--json")
    nodes = [json.loads(line) for line in as_json.stdout.decode("ascii").splitlines()][2:]
    assert {os.fsencode(n["path"]) for n in nodes} == {
        HOSTILE,
        HOSTILE + b"/" + HOSTILE + b".json",
        b"link",
    }
    matches = json.loads(run("--repo", repo, "find", "*.json", "--json").stdout.decode("ascii"))
    assert os.fsencode(matches[0]["matches"][0]["path"]) == HOSTILE + b"/" + HOSTILE + b".json"
    missing = safe(run("--repo", repo, "ls", "latest", b"data/" + HOSTILE + b"x"), code=1)
    assert len(missing.strip().splitlines()) == 1


# --- tag -----------------------------------------------------------------------------------------


def test_tag_adds_removes_and_sets_tags_as_written(repo: Repository, two: tuple[str, str]) -> None:
    first, second = two
    weird = ["[x] two words", "a,b", "[/bold]"]
    changed = invoke(repo, "tag", "latest", *(f"--add={t}" for t in weird), "--json")
    assert changed.exit_code == 0, changed.output
    (change,) = json.loads(changed.output)["changed"]
    assert change["old"] == second and change["tags"] == weird
    new_id = change["new"]
    assert new_id != second and new_id.split("-")[0] == second.split("-")[0]
    stored = sorted(p.name for p in (Path(repo.location) / "snapshots").iterdir())
    assert stored == sorted([first, new_id])
    listed = json.loads(invoke(repo, "snapshots", "--json").output)
    assert [(s["id"], s["tags"]) for s in listed] == [(new_id, weird), (first, ["[x] one"])]
    assert invoke(repo, "snapshots", "--tag", "[x] two words", "--json").output.count(new_id) == 1

    removed = invoke(repo, "tag", new_id, "--remove", "a,b", "--remove", "absent")
    assert f"{new_id} is now " in removed.output
    assert "  tags: [x] two words, [/bold]\n" in removed.output
    (latest,) = json.loads(invoke(repo, "snapshots", "--limit", "1", "--json").output)
    assert latest["tags"] == ["[x] two words", "[/bold]"]
    cleared = invoke(repo, "tag", "latest", "--set", "")
    assert cleared.exit_code == 0, cleared.output
    assert repo.resolve("latest").tags == ()  # the catalog of a Repository opened before


def test_tag_leaves_a_snapshot_that_already_has_the_tags(
    repo: Repository, two: tuple[str, str]
) -> None:
    first, _ = two
    result = invoke(repo, "tag", first, "--add", "[x] one", "--json")
    assert json.loads(result.output) == {
        "changed": [],
        "unchanged": [first],
        "missing": [],
        "finished": [],
    }
    assert invoke(repo, "tag", first, "--set", "[x] one").output == "no snapshots were modified\n"
    assert repo.resolve(first).id == first


def test_tag_without_snapshots_changes_what_the_filters_select(
    repo: Repository, two: tuple[str, str]
) -> None:
    result = invoke(repo, "tag", "--tag", "[x] one", "--add", "old")
    assert result.output.endswith("changed the tags of 1 snapshot\n"), result.output
    assert [m.tags for m in repo.snapshots()] == [(), ("[x] one", "old")]
    everything = invoke(repo, "tag", "--add", "all", "--json")
    assert len(json.loads(everything.output)["changed"]) == 2
    assert [m.tags for m in repo.snapshots()] == [("all",), ("[x] one", "old", "all")]
    assert invoke(repo, "tag", "--host", "elsewhere", "--add", "x").output == (
        "no snapshots were modified\n"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "nothing to do"),
        (["latest", "--set", "a", "--add", "b"], "without --add or --remove"),
        (["latest", "--tag", "x", "--add", "y"], "not both"),
        (["latest", "--add", ""], "cannot be empty"),
        (["latest", "--add", "x", "--remove", ""], "cannot be empty"),
    ],
)
def test_tag_usage_errors(
    repo: Repository, two: tuple[str, str], args: list[str], message: str
) -> None:
    result = invoke(repo, "tag", *args)
    assert result.exit_code == 2 and message in result.output
    assert {m.id for m in repo.snapshots()} == set(two)


def test_new_tags_keeps_the_order_and_each_tag_once() -> None:
    assert new_tags(("a", "b"), add=("c", "a", "c")) == ("a", "b", "c")
    assert new_tags(("a", "b"), remove=("a", "x")) == ("b",)
    assert new_tags(("a",), set_tags=("z", "z", "y")) == ("z", "y")
    assert new_tags(("a",), set_tags=("",)) == ()


def test_a_crash_between_writing_and_deleting_is_finished_by_the_next_tag(
    repo: Repository, two: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, second = two

    def crash(self: Store, snapshot_id: str) -> bool:
        raise KeyboardInterrupt  # killed after the new manifest was written

    with monkeypatch.context() as patch:
        patch.setattr(Store, "delete_manifest", crash)
        with pytest.raises(KeyboardInterrupt):
            repo.tag([second], add=["retagged"])
    assert not list(repo.backend.list("locks/"))  # the lock was released all the same
    fresh = stcore.open_repository(repo.location)
    both = fresh.snapshots()
    assert len(both) == 3  # the old and the new side by side: the same data, both complete
    (new,) = [m for m in both if m.tags == ("retagged",)]
    _, document = fresh.store.load_manifest_document(new.id)
    assert document["original"] == second and document["replaces"] == second
    assert fresh.snapshot(new.id).sources["src"].read_text("new.json") == "new"

    # the next run, naming the old id, finishes the change and finds the tag already there
    result = invoke(fresh, "tag", second, "--add", "retagged", "--json")
    assert json.loads(result.output) == {
        "changed": [],
        "unchanged": [new.id],
        "missing": [],
        "finished": [{"old": second, "new": new.id, "tags": ["retagged"]}],
    }
    assert second not in {m.id for m in stcore.open_repository(repo.location).snapshots()}
    text = invoke(fresh, "tag", "latest", "--add", "more")
    assert "finished" not in text.output  # nothing is left to finish


def test_original_stays_the_first_id_across_changes_and_a_second_crash_is_finished(
    repo: Repository, two: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = two
    (once,) = repo.tag([second], add=["one"]).changed
    with monkeypatch.context() as patch:
        patch.setattr(Store, "delete_manifest", lambda self, i: (_ for _ in ()).throw(SystemExit))
        with pytest.raises(SystemExit):
            repo.tag([once.manifest.id], add=["two"])
    fresh = stcore.open_repository(repo.location)
    pair = [m for m in fresh.snapshots() if m.id != first]
    assert len(pair) == 2
    originals = {fresh.store.load_manifest_document(m.id)[1]["original"] for m in pair}
    assert originals == {second}  # both lines lead back to the first id, as restic's
    result = fresh.tag([once.manifest.id], remove=["nothing"])
    (finished,) = result.finished
    assert finished.old_id == once.manifest.id and finished.manifest.tags == ("one", "two")
    assert result.unchanged == (finished.manifest.id,)


def test_a_snapshot_that_only_looks_like_a_replacement_is_not_deleted(
    repo: Repository, two: tuple[str, str]
) -> None:
    """``replaces`` is honoured only between snapshots identical apart from id and tags."""
    first, second = two
    old, document = repo.store.load_manifest_document(second)  # other data than first's (new.json)
    fake = first.split("-")[0] + "-0badf00d"  # but first's time: a candidate
    lookalike = attrs.evolve(old, id=fake)
    repo.store.write_manifest(lookalike, {**document, "replaces": first})
    assert tag_module.finish_interrupted(repo.store, repo.store.snapshot_ids()) == []
    assert {first, second, fake} <= set(repo.store.snapshot_ids())


def test_tag_keeps_an_encrypted_manifest_sealed(tmp_path: Path) -> None:
    repo = init_encrypted(tmp_path / "enc")
    (tmp_path / "f").write_text("secret")
    old = repo.backup(stcore.sources_for_paths([str(tmp_path / "f")])).manifest.id
    (change,) = repo.tag([old], add=["[x] hidden tag"]).changed
    stored = (tmp_path / "enc" / "snapshots" / change.manifest.id).read_bytes()
    assert b"hidden tag" not in stored
    reopened = open_encrypted(tmp_path / "enc")
    assert reopened.resolve("latest").tags == ("[x] hidden tag",)
    assert reopened.check().ok


def test_tag_takes_the_exclusive_lock(repo: Repository, two: tuple[str, str]) -> None:
    with repository_lock(repo.backend, exclusive=False, purpose="backup", wait=0):
        with pytest.raises(RepositoryLockedError, match=r"backup \(shared\)"):
            repo.tag(["latest"], add=["x"], wait=0)
        result = invoke(repo, "tag", "latest", "--add", "x", "--wait", "0")
        assert result.exit_code == 1 and "locked" in result.output
    assert {m.id for m in repo.snapshots()} == set(two)


def test_sync_after_a_retag_uploads_the_new_snapshot_and_prune_drops_the_old(
    repo: Repository, two: tuple[str, str], tmp_path: Path
) -> None:
    (tmp_path / "remote").mkdir()
    remote = RemoteConfig(name="mirror", url=str(tmp_path / "remote"))
    repo.sync(remote)
    first, second = two
    (change,) = repo.tag([second], add=["kept"]).changed
    result = repo.sync(remote)
    assert result.snapshots == (change.manifest.id,)
    assert result.objects_uploaded == 1  # the manifest: its data is there already
    on_remote = {p.name for p in (tmp_path / "remote" / "snapshots").iterdir()}
    assert on_remote == {first, second, change.manifest.id}  # a plain sync only adds
    repo.sync(remote, options=SyncOptions(prune=True))
    on_remote = {p.name for p in (tmp_path / "remote" / "snapshots").iterdir()}
    assert on_remote == {first, change.manifest.id}
    mirror = stcore.open_repository(str(tmp_path / "remote"), cache_root=tmp_path / "rc")
    assert mirror.resolve("latest").tags == ("kept",)
    assert mirror.check().ok
    # retagged before its first sync: only the new snapshot ever reaches a remote
    (tmp_path / "fresh").mkdir()
    (again,) = repo.tag([first], add=["early"]).changed
    repo.sync(RemoteConfig(name="fresh", url=str(tmp_path / "fresh")))
    fresh = {p.name for p in (tmp_path / "fresh" / "snapshots").iterdir()}
    assert fresh == {again.manifest.id, change.manifest.id}


def test_tag_with_a_hostile_tag_prints_it_safely(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    repo = str(tmp_path / "repo")
    safe(run("--repo", repo, "init"))
    safe(run("--repo", repo, "backup", str(tmp_path / "f")))
    shown = safe(run("--repo", repo, "tag", "latest", "--add", HOSTILE))
    assert f"  tags: {HOSTILE_SHOWN}\n" in shown
    listed = json.loads(run("--repo", repo, "snapshots", "--json").stdout.decode("ascii"))
    assert [os.fsencode(t) for t in listed[0]["tags"]] == [HOSTILE]
    removed = json.loads(run("--repo", repo, "tag", "--tag", HOSTILE, "--remove", HOSTILE,
                             "--json").stdout)  # fmt: skip
    assert removed["changed"][0]["tags"] == []


# --- unlock --------------------------------------------------------------------------------------

HOLD = """
import sys, time
import stcore
from stcore.repo.locks import repository_lock
repo = stcore.open_repository(sys.argv[1])
with repository_lock(repo.backend, exclusive=False, purpose=sys.argv[2], wait=0):
    print("held", flush=True)
    time.sleep(300)
"""


@pytest.fixture
def holder(repo: Repository) -> Iterator[subprocess.Popen[str]]:
    """Another process holding a shared lock on ``repo`` (purpose: "[x] backup")."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, repo.location, "[x] backup"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()
        process.wait()


def _locks(repo: Repository) -> list[str]:
    return [info.key for info in repo.backend.list("locks/")]


def test_unlock_removes_the_lock_of_a_killed_process(
    repo: Repository, holder: subprocess.Popen[str]
) -> None:
    holder.kill()
    holder.wait()  # reaped: its pid names no process now
    (left,) = _locks(repo)
    result = invoke(repo, "unlock")
    output = lines(result)
    assert (
        output[0]
        == f"removed {left.removeprefix('locks/')[:12]}  [x] backup (shared), stale: process gone"
    )
    assert output[1].startswith(f"        pid {holder.pid} on {locks.default_host()} since ")
    assert output[-1] == "removed 1 lock"
    assert _locks(repo) == []
    assert lines(invoke(repo, "unlock")) == ["removed 0 locks"]


def test_unlock_keeps_a_live_lock_unless_remove_all(
    repo: Repository, holder: subprocess.Popen[str]
) -> None:
    (held,) = _locks(repo)
    kept = json.loads(invoke(repo, "unlock", "--json").output)
    assert kept["removed"] == []
    (lock,) = kept["kept"]
    assert lock["id"] == held.removeprefix("locks/")
    assert lock["pid"] == holder.pid and lock["purpose"] == "[x] backup"
    assert lock["stale"] is None and lock["exclusive"] is False
    assert _locks(repo) == [held]
    text = lines(invoke(repo, "unlock"))
    assert (
        text[-1] == "removed 0 locks; 1 held by running processes (--remove-all removes them too)"
    )
    assert text[0].startswith("kept    ") and text[0].endswith("[x] backup (shared), live")
    removed = json.loads(invoke(repo, "unlock", "--remove-all", "--json").output)
    assert [lock["id"] for lock in removed["removed"]] == [held.removeprefix("locks/")]
    assert held not in _locks(repo)


def test_unlock_removes_old_and_damaged_locks_and_shows_their_text_safely(
    repo: Repository,
) -> None:
    old = {
        "host": "other \x1b[31mhost",
        "pid": 1,
        "time": time.time() - locks.STALE_AFTER - 60,
        "exclusive": True,
        "purpose": "prune [bold]\x07",
    }
    repo.backend.write("locks/" + "a" * 32, json.dumps(old).encode())
    repo.backend.write("locks/" + "b" * 32, b"{not json")
    live = {**old, "time": time.time(), "host": "elsewhere", "pid": 2**40}
    repo.backend.write("locks/" + "c" * 32, json.dumps(live).encode())
    result = run("--repo", repo.location, "unlock")
    shown = safe(result)
    assert "removed aaaaaaaaaaaa  prune [bold]\\x07 (exclusive), stale: not refreshed" in shown
    assert "pid 1 on other \\x1b[31mhost since " in shown
    assert "removed bbbbbbbbbbbb  ? (shared), stale: damaged" in shown
    assert "kept    cccccccccccc" in shown  # another host's pid cannot be checked: live
    assert "removed 2 locks; 1 held" in shown
    assert _locks(repo) == ["locks/" + "c" * 32]
    assert all(len(line) <= 80 for line in result.stdout.decode().splitlines())
