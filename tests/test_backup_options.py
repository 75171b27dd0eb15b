"""restic's backup options on `stcore backup`: the excludes, --one-file-system, --dry-run and
--stdin, through the real command (subprocesses: exit codes, bytes on stdout/stderr) and, where a
case cannot be made on this machine, through the walker with os.stat's answers changed."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import stcore
from stcore.builtins.sources import FilesSource, StdinSource, TagSpec
from stcore.errors import ConfigError
from stcore.globs import match_path, read_patterns
from stcore.sources import add_filters, stdin_source

#: a non-UTF-8 name with brackets and a terminal escape in it, and how the text output shows it
ODD = b"caf\xe9 [x] \x1b[31m"
ODD_SHOWN = "caf\\xe9 [x] \\x1b[31m"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


def stcore_cli(
    *args: str | bytes | os.PathLike[str],
    cwd: Path,
    stdin: Any = subprocess.DEVNULL,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """`stcore` as a user runs it, output as bytes (what a terminal would get)."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1", "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "stcore.cli", *args],
        capture_output=True,
        cwd=cwd,
        env=env,
        stdin=None if input is not None else stdin,
        input=input,
        timeout=300,
    )


def ok(result: subprocess.CompletedProcess[bytes]) -> Any:
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stderr
    # parsed only when asked for: a dump of random bytes may well start with "{"
    return json.loads(result.stdout) if "--json" in result.args else result.stdout


def usage_error(result: subprocess.CompletedProcess[bytes], needle: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert b"Traceback" not in result.stderr
    assert needle.encode() in result.stderr, result.stderr


def paths_in(repo: str, source: str, snap: str = "latest") -> set[bytes]:
    with stcore.open_repository(repo) as opened:
        view = opened.snapshot(snap).sources[source]
        return {os.fsencode(info.path) for info in view.files()}


def write(path: Path | bytes, data: bytes = b"x") -> None:
    with open(path, "wb") as stream:
        stream.write(data)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    stcore.init_repository(str(tmp_path / "repo")).close()
    return tmp_path


def tree(root: Path) -> Path:
    """A small tree with odd names: src/{keep.txt, x.txt, [x].txt, a.LOG, b.log, ODD.tmp,
    ODD/inner.txt, deep/er/notes.log}."""
    src = root / "src"
    (src / "deep" / "er").mkdir(parents=True)
    for name in ("keep.txt", "x.txt", "[x].txt", "a.LOG", "b.log", "deep/er/notes.log"):
        write(src / name, name.encode())
    base = os.fsencode(src)
    write(base + b"/" + ODD + b".tmp", b"odd")
    os.mkdir(base + b"/" + ODD)
    write(base + b"/" + ODD + b"/inner.txt", b"inner")
    return src


# --- the pieces ----------------------------------------------------------------------------------


def test_read_patterns_follows_restic_comments_blanks_spaces_and_any_bytes() -> None:
    data = b"# a comment\n\n  *.tmp  \r\n\t# indented comment\ncaf\xe9.txt\nlogs/**\n   \n"
    assert read_patterns(data) == ["*.tmp", os.fsdecode(b"caf\xe9.txt"), "logs/**"]
    assert read_patterns(b"") == []


def test_ignore_case_globs_match_either_case_and_plain_ones_do_not() -> None:
    assert match_path("*.LOG", "deep/b.log", ignore_case=True)
    assert match_path("Deep/**", "DEEP/er/x", ignore_case=True)
    assert not match_path("*.LOG", "deep/b.log")
    assert match_path("[[]x].txt", "[x].txt") and not match_path("[[]x].txt", "x.txt")


def test_tag_specs_parse_as_restic_splits_them() -> None:
    assert TagSpec.parse("CACHEDIR.TAG:Signature: 8a4", "s") == TagSpec(
        "CACHEDIR.TAG", b"Signature: 8a4"
    )
    assert TagSpec.parse(".nobackup", "s") == TagSpec(".nobackup", None)
    assert TagSpec.parse(".nobackup:", "s") == TagSpec(".nobackup", None)
    for bad in ("", ":x", "a/b", "..", "a\0b"):
        with pytest.raises(ConfigError):
            TagSpec.parse(bad, "s")


def test_add_filters_appends_to_a_sources_own_lists_and_only_turns_flags_on() -> None:
    own = {"path": "p", "exclude": "own", "one_file_system": True, "iexclude": ["A"]}
    merged = add_filters(own, {"exclude": ["x"], "iexclude": ["b"], "exclude_caches": True})
    assert merged == {
        "path": "p",
        "exclude": ["own", "x"],
        "iexclude": ["A", "b"],
        "one_file_system": True,
        "exclude_caches": True,
    }
    assert add_filters(own, {"one_file_system": False})["one_file_system"] is True
    with pytest.raises(ValueError):
        add_filters(own, {"include": ["x"]})


def test_files_source_refuses_a_flag_that_is_not_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="one_file_system"):
        FilesSource("s", {"path": str(tmp_path), "one_file_system": "yes"})


# --- excludes ------------------------------------------------------------------------------------


def test_exclude_and_iexclude_leave_out_matching_paths_odd_names_included(home: Path) -> None:
    tree(home)
    ok(
        stcore_cli(
            "--repo", "repo", "backup", "src", "-e", "*.tmp", "--exclude", "[[]x].txt",
            "--iexclude", "*.LOG", "--json", cwd=home,
        )
    )  # fmt: skip
    assert paths_in(str(home / "repo"), "src") == {
        b"keep.txt", b"x.txt", b"deep", b"deep/er", ODD, ODD + b"/inner.txt",
    }  # fmt: skip
    # --exclude is case-sensitive: *.LOG leaves b.log and notes.log in
    ok(stcore_cli("--repo", "repo", "backup", "src", "-e", "*.LOG", "--json", cwd=home))
    kept = paths_in(str(home / "repo"), "src")
    assert b"a.LOG" not in kept and {b"b.log", b"deep/er/notes.log"} <= kept


def test_exclude_file_reads_patterns_with_comments_and_non_utf8_bytes(home: Path) -> None:
    tree(home)
    write(
        home / "excludes",
        b"# not a pattern: keep.txt\n\ncaf\xe9*\n  deep/**  \n" + b"*.tmp\r\n",
    )
    write(home / "iexcludes", b"# case-insensitive\nA.log\n")
    summary = ok(
        stcore_cli(
            "--repo", "repo", "backup", "src", "--exclude-file", "excludes",
            "--iexclude-file", "iexcludes", "--json", cwd=home,
        )
    )  # fmt: skip
    assert paths_in(str(home / "repo"), "src") == {
        b"keep.txt", b"x.txt", b"[x].txt", b"b.log", b"deep",
    }  # fmt: skip
    assert summary["files"] == 4
    missing = stcore_cli("--repo", "repo", "backup", "src", "--exclude-file", "nope", cwd=home)
    usage_error(missing, "--exclude-file")


def test_exclude_if_present_keeps_the_tagged_directory_and_its_tag_only(home: Path) -> None:
    src = tree(home)
    base = os.fsencode(src)
    write(base + b"/" + ODD + b"/" + ODD + b".tag", b"")  # a tag with an odd name
    (src / "deep" / ".nobackup").write_bytes(b"")
    ok(
        stcore_cli(
            "--repo", "repo", "backup", "src", "--exclude-if-present", ".nobackup",
            "--exclude-if-present", ODD + b".tag", "--json", cwd=home,
        )
    )  # fmt: skip
    kept = paths_in(str(home / "repo"), "src")
    assert {b"deep", b"deep/.nobackup", ODD, ODD + b"/" + ODD + b".tag"} <= kept
    assert b"deep/er" not in kept and ODD + b"/inner.txt" not in kept
    assert b"keep.txt" in kept
    # the root itself tagged: only the tag is left
    (src / ".nobackup").write_bytes(b"")
    ok(stcore_cli("--repo", "repo", "backup", "src", "--exclude-if-present", ".nobackup", cwd=home))
    assert paths_in(str(home / "repo"), "src") == {b".nobackup"}


def test_exclude_if_present_with_a_header_and_exclude_caches(home: Path) -> None:
    src = home / "src"
    for name in ("cache", "lookalike", "linked", "short"):
        (src / name).mkdir(parents=True)
        (src / name / "data").write_bytes(b"data")
    (src / "cache" / "CACHEDIR.TAG").write_bytes(CACHEDIR_SIGNATURE + b"\n# made by a tool\n")
    (src / "lookalike" / "CACHEDIR.TAG").write_bytes(b"Signature: something else entirely")
    (src / "short" / "CACHEDIR.TAG").write_bytes(CACHEDIR_SIGNATURE[:10])
    # a link to a real tag is not followed: its directory is backed up
    (src / "linked" / "CACHEDIR.TAG").symlink_to(src / "cache" / "CACHEDIR.TAG")
    for option in (
        ["--exclude-caches"],
        ["--exclude-if-present", "CACHEDIR.TAG:" + "Signature: 8a4"],
    ):
        ok(stcore_cli("--repo", "repo", "backup", "src", *option, cwd=home))
        kept = paths_in(str(home / "repo"), "src")
        assert b"cache/CACHEDIR.TAG" in kept and b"cache/data" not in kept
        assert {b"lookalike/data", b"linked/data", b"short/data"} <= kept
    with stcore.open_repository(str(home / "repo")) as repo:
        options = repo.snapshot("latest").manifest.sources["src"].options
    assert options["exclude_if_present"] == ["CACHEDIR.TAG:Signature: 8a4"]


def test_a_bad_exclude_if_present_is_a_usage_error(home: Path) -> None:
    (home / "src").mkdir()
    result = stcore_cli("--repo", "repo", "backup", "src", "--exclude-if-present", "a/b", cwd=home)
    usage_error(result, "NAME or NAME:HEADER")


def test_configured_sources_get_the_excludes_added_to_their_own(home: Path) -> None:
    tree(home)
    (home / "doc.json").write_text('{"a": 1}')
    (home / "stcore.toml").write_text(
        '[repository]\nurl = "repo"\n\n'
        '[sources.files]\ntype = "files"\npath = "src"\nexclude = ["*.tmp"]\n\n'
        '[sources.doc]\ntype = "json"\npath = "doc.json"\n'
    )
    result = stcore_cli("backup", "-e", "*.log", "--iexclude", "*.log", "--json", cwd=home)
    summary = ok(result)
    assert b"source doc is of type json" in result.stderr
    assert set(summary["sources"]) == {"files", "doc"}
    kept = paths_in(str(home / "repo"), "files")
    assert not any(p.endswith((b".tmp", b".log", b".LOG")) for p in kept)
    assert b"keep.txt" in kept and ODD + b"/inner.txt" in kept
    with stcore.open_repository(str(home / "repo")) as repo:
        options = repo.snapshot("latest").manifest.sources["files"].options
    assert options["exclude"] == ["*.tmp", "*.log"] and options["iexclude"] == ["*.log"]
    # --source picks one; the options still apply
    ok(stcore_cli("backup", "-s", "files", "-x", "--json", cwd=home))
    with stcore.open_repository(str(home / "repo")) as repo:
        manifest = repo.snapshot("latest").manifest
    assert list(manifest.sources) == ["files"]
    assert manifest.sources["files"].options["one_file_system"] is True


# --- one file system -----------------------------------------------------------------------------


def test_one_file_system_keeps_mount_points_empty_and_leaves_out_files_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walker, with os.stat saying ``mnt`` and ``bound`` are on another device."""
    src = tmp_path / "src"
    (src / "mnt" / "sub").mkdir(parents=True)
    (src / "mnt" / "sub" / "inner").write_bytes(b"in")
    (src / "bound").write_bytes(b"bound")
    (src / "plain").write_bytes(b"plain")
    real_stat = os.stat

    def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        result = real_stat(path, *args, **kwargs)
        if path in ("mnt", "bound") and kwargs.get("dir_fd") is not None:
            fields = list(result)
            fields[2] = result.st_dev + 1  # st_dev
            return os.stat_result(fields)
        return result

    monkeypatch.setattr(os, "stat", stat)  # the walker calls os.stat with dir_fd

    def scanned(options: dict[str, Any]) -> list[tuple[str, ...]]:
        source = FilesSource("src", {"path": str(src), **options})
        return [entry.path for entry in source.scan(lambda path, exc: None)]

    assert scanned({"one_file_system": True}) == [("mnt",), ("plain",)]
    assert scanned({})[:2] == [("bound",), ("mnt",)]  # without it, both are there


def test_one_file_system_on_a_real_mount(tmp_path: Path) -> None:
    """A tmpfs mounted inside the tree (in a private mount namespace) and a file bind-mounted
    from it: -x keeps the mount point, empty, and leaves the file out."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1)")
    stcore.init_repository(str(tmp_path / "repo")).close()
    src, other = tmp_path / "src", tmp_path / "other"
    (src / "mnt").mkdir(parents=True)
    other.mkdir()
    (src / "top").write_bytes(b"top")
    (src / "bound").write_bytes(b"")
    stcore_cmd = f"{shlex.quote(sys.executable)} -m stcore.cli --repo repo backup src --json"
    script = (
        "set -e; mount -t tmpfs none other; mount -t tmpfs none src/mnt; "
        "echo inner > src/mnt/inner; echo outer > other/file; "
        "mount --bind other/file src/bound; "
        f"{stcore_cmd} -x >one.json; {stcore_cmd} >all.json"
    )
    probe = subprocess.run([unshare, "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode(errors='replace')}")
    done = subprocess.run(
        [unshare, "-rm", "sh", "-c", script], cwd=tmp_path, capture_output=True, timeout=300
    )
    if b"mount:" in done.stderr and done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.decode(errors='replace')}")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    first = json.loads((tmp_path / "one.json").read_text())["id"]
    second = json.loads((tmp_path / "all.json").read_text())["id"]
    assert paths_in(str(tmp_path / "repo"), "src", first) == {b"mnt", b"top"}
    assert paths_in(str(tmp_path / "repo"), "src", second) == {
        b"mnt", b"mnt/inner", b"top", b"bound",
    }  # fmt: skip


# --- dry run -------------------------------------------------------------------------------------


def objects(repo: Path) -> dict[str, str]:
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(repo.rglob("*"))
        if p.is_file()
    }


def test_dry_run_writes_nothing_and_says_what_is_new_changed_and_unchanged(home: Path) -> None:
    src = tree(home)
    past = 1_600_000_000
    for path in src.rglob("*"):
        os.utime(path, (past, past), follow_symlinks=False)  # old enough for the files cache
    repo = home / "repo"
    before = objects(repo)
    first = ok(stcore_cli("--repo", "repo", "backup", "src", "-n", "--json", cwd=home))
    assert objects(repo) == before
    assert first["dry_run"] is True
    assert (first["files"], first["dirs"]) == (8, 3)
    assert first["size"] == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert first["new"] == {"files": 8, "bytes": first["size"]}
    assert first["sources"]["src"]["files_cache"] is False
    assert first["errors"] == []
    ok(stcore_cli("--repo", "repo", "backup", "src", "--json", cwd=home))
    (src / "keep.txt").write_bytes(b"changed!")
    (src / "new.txt").write_bytes(b"new")
    before = objects(repo)
    result = stcore_cli("--repo", "repo", "backup", "src", "--dry-run", "--json", cwd=home)
    plan = ok(result)
    assert objects(repo) == before
    assert plan["new"] == {"files": 1, "bytes": 3}
    assert plan["changed"] == {"files": 1, "bytes": 8}
    assert plan["unchanged"]["files"] == 7
    assert plan["sources"]["src"]["files_cache"] is True
    assert set(plan) == {
        "dry_run", "files", "dirs", "size", "new", "changed", "unchanged", "sources", "errors",
    }  # fmt: skip
    # the same with excludes, and as text
    text = stcore_cli("--repo", "repo", "backup", "src", "-n", "-e", "*.txt", cwd=home)
    lines = ok(text).decode().splitlines()
    assert lines[0].startswith("dry run, nothing written: would back up 4 files")
    assert all(len(line) <= 80 for line in lines)
    assert objects(repo) == before


def test_dry_run_lists_what_it_cannot_read_with_odd_names_and_exits_3(home: Path) -> None:
    src = home / "src"
    src.mkdir()
    os.mkfifo(os.fsencode(src) + b"/" + ODD)
    (src / "fine").write_bytes(b"fine")
    before = objects(home / "repo")
    result = stcore_cli("--repo", "repo", "backup", "src", "-n", cwd=home)
    assert result.returncode == 3, result.stderr
    assert ODD_SHOWN.encode() in result.stderr and b"\x1b" not in result.stderr
    assert b"1 new" in result.stdout
    as_json = stcore_cli("--repo", "repo", "backup", "src", "-n", "--json", cwd=home)
    assert as_json.returncode == 3
    (error,) = json.loads(as_json.stdout)["errors"]
    assert os.fsencode(error[0]).endswith(ODD)
    assert objects(home / "repo") == before


# --- standard input ------------------------------------------------------------------------------


def test_stdin_is_backed_up_as_one_file_and_dumps_and_restores(home: Path) -> None:
    data = os.urandom(3_000_000)
    summary = ok(
        stcore_cli(
            "--repo", "repo", "backup", "--stdin", "--stdin-filename", "db.sql", "--json",
            cwd=home, input=data,
        )
    )  # fmt: skip
    assert summary["sources"] == {"db.sql": "stdin"} and summary["size"] == len(data)
    assert ok(stcore_cli("--repo", "repo", "dump", "latest", "db.sql", "db.sql", cwd=home)) == data
    ok(stcore_cli("--repo", "repo", "restore", "latest", "--target", "out", cwd=home))
    restored = home / "out" / "db.sql" / "db.sql"
    assert restored.read_bytes() == data and restored.stat().st_mode & 0o777 == 0o644
    # without --stdin-filename: a file and a source named "stdin"
    ok(stcore_cli("--repo", "repo", "backup", "--stdin", cwd=home, input=b"plain"))
    assert ok(stcore_cli("--repo", "repo", "dump", "latest", "stdin", "stdin", cwd=home)) == (
        b"plain"
    )


def test_an_empty_stdin_gives_an_empty_file(home: Path) -> None:
    summary = ok(stcore_cli("--repo", "repo", "backup", "--stdin", "--json", cwd=home, input=b""))
    assert summary["files"] == 1 and summary["size"] == 0
    with stcore.open_repository(str(home / "repo")) as repo:
        (info,) = repo.snapshot("latest").sources["stdin"].files()
    assert (info.path, info.kind, info.size) == ("stdin", "file", 0)
    assert ok(stcore_cli("--repo", "repo", "dump", "latest", "stdin", "stdin", cwd=home)) == b""


def test_stdin_with_an_odd_filename_round_trips_and_prints_safely(home: Path) -> None:
    result = stcore_cli("--repo", "repo", "backup", "--stdin", "--stdin-filename", ODD, cwd=home,
                        input=b"odd")  # fmt: skip
    ok(result)
    shown = ok(stcore_cli("--repo", "repo", "snapshots", cwd=home)).decode()
    assert "\x1b" not in shown
    summary = ok(stcore_cli("--repo", "repo", "show", "latest", "--json", cwd=home))
    (name,) = summary["sources"]
    assert os.fsencode(name) == ODD
    assert ok(stcore_cli("--repo", "repo", "dump", "latest", ODD, ODD, cwd=home)) == b"odd"


def test_stdin_refuses_paths_sources_excludes_and_bad_names(home: Path) -> None:
    (home / "src").mkdir()
    base = ("--repo", "repo", "backup")
    for args, needle in (
        (("--stdin", "src"), "--stdin backs up standard input alone"),
        (("--stdin", "-s", "x"), "--stdin backs up standard input alone"),
        (("--stdin", "-e", "*.x"), "--stdin backs up standard input alone"),
        (("--stdin-filename", "x", "src"), "--stdin-filename needs --stdin"),
        (("--stdin", "--stdin-filename", "a/b"), "one file name"),
        (("--stdin", "--stdin-filename", ".."), "one file name"),
        (("--stdin", "--stdin-filename", "x" * 256), "at most 255"),
    ):
        usage_error(stcore_cli(*base, *args, cwd=home, input=b"data"), needle)
    with stcore.open_repository(str(home / "repo")) as repo:
        assert list(repo.snapshots()) == []


def test_stdin_dry_run_reads_it_through_and_writes_nothing(home: Path) -> None:
    before = objects(home / "repo")
    plan = ok(
        stcore_cli("--repo", "repo", "backup", "--stdin", "-n", "--json", cwd=home,
                   input=b"x" * 5_000_000)
    )  # fmt: skip
    assert plan["new"] == {"files": 1, "bytes": 5_000_000}
    assert plan["sources"]["stdin"]["type"] == "stdin"
    assert objects(home / "repo") == before


class Endless(io.RawIOBase):
    """``total`` bytes that are never there all at once: a read asking for more than
    ``limit`` (or for everything) fails the test."""

    def __init__(self, total: int, limit: int) -> None:
        super().__init__()
        self.left = total
        self.limit = limit
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        assert len(buffer) <= self.limit, f"asked for {len(buffer)} bytes at once"
        count = min(len(buffer), self.left)
        buffer[:count] = os.urandom(count) if count else b""
        self.left -= count
        self.reads += 1
        return count

    def read(self, size: int = -1) -> bytes:
        assert 0 <= size <= self.limit, f"read({size}): the whole stream asked for"
        return super().read(size)


def test_stdin_is_read_in_pieces_never_whole(repo: stcore.Repository) -> None:
    stream = Endless(total=40 * 1024 * 1024, limit=8 * 1024 * 1024)
    result = repo.backup([stdin_source("piped", stream)])  # type: ignore[arg-type]
    assert result.manifest.size == 40 * 1024 * 1024 and stream.left == 0
    assert stream.reads >= 5
    source = StdinSource("once", {"stream": io.BytesIO(b"abc")})
    source._open().close()
    with pytest.raises(OSError, match="only once"):
        source._open()


def test_a_few_hundred_mib_from_a_pipe_keep_memory_low(home: Path) -> None:
    """400 MiB from a generator process: the backup's peak RSS stays far below it."""
    mib = 400
    generator = (
        "import random, sys\n"
        "block = random.Random(7).randbytes(1 << 20)\n"
        f"for i in range({mib}):\n"
        "    sys.stdout.buffer.write(block[i % 9:] + block[:i % 9])\n"
    )
    # Measured from a small interpreter of its own: a child's peak RSS counts the pages it
    # shared with its parent when it was forked, and a pytest worker can hold hundreds of MiB.
    measure = (
        "import json, os, subprocess, sys\n"
        "producer = subprocess.Popen([sys.executable, '-c', sys.argv[1]], stdout=subprocess.PIPE)\n"
        "backup = subprocess.Popen([sys.executable, '-m', 'stcore.cli', '--repo', 'repo',\n"
        "    'backup', '--stdin', '--stdin-filename', 'big.bin', '--json'],\n"
        "    stdin=producer.stdout, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
        "producer.stdout.close()\n"
        "out = backup.stdout.read()\n"
        "_, status, usage = os.wait4(backup.pid, 0)\n"
        "print(json.dumps({'producer': producer.wait(), 'status': status,\n"
        "    'maxrss_kib': usage.ru_maxrss, 'summary': json.loads(out)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, generator],
        capture_output=True, text=True, cwd=home, timeout=300, check=True,
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert report["producer"] == 0 and os.waitstatus_to_exitcode(report["status"]) == 0
    summary = report["summary"]
    assert summary["size"] == mib << 20
    peak_mib = report["maxrss_kib"] / 1024  # KiB on Linux
    assert peak_mib < mib / 3, f"peak RSS {peak_mib:.0f} MiB for {mib} MiB of input"
    # the dump streams too: hashed as it comes, against the generator's bytes
    dump = subprocess.Popen(
        [sys.executable, "-m", "stcore.cli", "--repo", "repo", "dump", "latest", "big.bin",
         "big.bin"],
        stdout=subprocess.PIPE, cwd=home,
    )  # fmt: skip
    assert dump.stdout is not None
    got, length = hashlib.sha256(), 0
    while piece := dump.stdout.read(1 << 20):
        got.update(piece)
        length += len(piece)
    dump.stdout.close()
    assert dump.wait(timeout=120) == 0
    block = random.Random(7).randbytes(1 << 20)
    expected = hashlib.sha256()
    for i in range(mib):
        expected.update(block[i % 9 :] + block[: i % 9])
    assert length == mib << 20 and got.hexdigest() == expected.hexdigest()


def test_stdin_into_an_encrypted_repository_takes_the_password_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers import PASSWORD, init_encrypted

    init_encrypted(tmp_path / "repo").close()
    # no password and standard input is the data: never prompted for, never read as one
    refused = stcore_cli("--repo", "repo", "backup", "--stdin", cwd=tmp_path, input=b"secret")
    assert refused.returncode == 1 and b"Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    monkeypatch.setenv("STCORE_PASSWORD", PASSWORD)
    ok(stcore_cli("--repo", "repo", "backup", "--stdin", cwd=tmp_path, input=b"secret"))
    dumped = stcore_cli("--repo", "repo", "dump", "latest", "stdin", "stdin", cwd=tmp_path)
    assert ok(dumped) == b"secret"
