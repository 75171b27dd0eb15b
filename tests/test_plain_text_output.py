"""Human output treats users' text as text: brackets, markup-like tags and control characters in
tags, file names and error messages are printed as they are, never interpreted or lost."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import click
import pytest
from rich.cells import cell_len

import stcore
from stcore.cli import cli
from tests.conftest import run_cli


@pytest.mark.parametrize("tag", ["v[/1]", "[bold]x[/bold]", "[x]", "[/x]", "a[red]b"])
def test_a_tag_with_brackets_is_listed_as_written(tmp_path: Path, tag: str) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "[draft] plan.txt").write_text("plan")
    repo.backup(stcore.sources_for_paths([str(tmp_path / "src")]), tags=[tag])
    wide = {"COLUMNS": "200"}  # the 80-column table cuts long cells (a separate issue)
    listed = run_cli("--repo", repo.location, "snapshots", env=wide)
    assert listed.returncode == 0, listed.stderr
    assert tag in listed.stdout and "Traceback" not in listed.stderr
    shown = run_cli("--repo", repo.location, "show", "latest", "--files", env=wide)
    assert shown.returncode == 0, shown.stderr
    assert tag in shown.stdout and "[draft] plan.txt" in shown.stdout


def test_brackets_in_an_error_message_survive(tmp_path: Path) -> None:
    result = run_cli("--repo", str(tmp_path / "no [such] repo"), "snapshots")
    assert result.returncode == 1
    assert "no [such] repo" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("--repo", str(tmp_path / "x"), "sync")
    assert "[remotes.NAME]" in missing.stderr


# --- every command, hostile text -----------------------------------------------------------------
#
# Users' and repositories' text reaches every command's human output: tags, host names, source
# names (a backed-up directory's name), file names, remote names, the repository's and the
# cache's paths, and error messages quoting any of them (a symlink's target is in none: it is
# restored, and a hostile one is in the tree below). Each command below
# is run with text that rich would read as markup or emoji, that a terminal would obey (ESC, BEL,
# CR, CSI, DEL, a bidi override), a newline and a tab, and a byte that is not UTF-8. Its output
# must hold no control character but line ends, decode as UTF-8, show the text as written with
# controls as visible escapes (docs/cli.md, "Names and text in the output"), and no traceback.

#: what a terminal would obey (ESC, BEL, CR, CSI, a bidi override, DEL), a newline and a tab
CONTROLS = "\x1b[31m\x1b]0;t\x07 \x07\r\x9b\u202e\x7f\n\tend"
CONTROLS_SHOWN = "\\x1b[31m\\x1b]0;t\\x07 \\x07\\r\\u009b\\u202e\\x7f\\n\\tend"
#: brackets and an emoji code (never interpreted), then the controls: tags, hosts, remote names
TEXT = "[x] [/x] v[/1] [bold]b[/bold] :smile: " + CONTROLS
SHOWN = "[x] [/x] v[/1] [bold]b[/bold] :smile: " + CONTROLS_SHOWN
#: a file or folder name in the backed-up tree (no slash), not UTF-8, and how it shows
NAME = b"caf\xe9 [x] [bold]b[bold] :smile: " + CONTROLS.encode()
NAME_SHOWN = "caf\\xe9 [x] [bold]b[bold] :smile: " + CONTROLS_SHOWN
#: the same in UTF-8: tags, hosts, source names, the repository's and the cache's folders
#: (UTF-8 here; the non-UTF-8 tag, host, source name and repository path have their own tests)
FOLDER = "café [x] [bold]b[bold] :smile: " + CONTROLS
FOLDER_SHOWN = "café [x] [bold]b[bold] :smile: " + CONTROLS_SHOWN
#: no control character but the line end; rich's styles would be ESC too, but NO_COLOR is set
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@attrs.define
class World:
    """A repository at a hostile path, holding two snapshots of a hostile tree, and its env."""

    root: Path
    repo: bytes
    source: bytes
    env: dict[str, str]
    first: str
    second: str
    encrypted: bytes

    def run(self, *args: str | bytes, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        """`stcore` as a user runs it: stdout/stderr as bytes, a UTF-8 locale that refuses
        to encode what is not text (PYTHONIOENCODING=utf-8, the usual terminal's setting)."""
        return subprocess.run(
            [sys.executable, "-m", "stcore.cli", *args],
            capture_output=True,
            env=self.env,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )


def _toml_key(text: str) -> str:
    return json.dumps(text)  # a JSON string with ASCII escapes is a TOML basic string


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("hostile")
    home = root / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "STCORE_CACHE_DIR": str(root / f"cache {FOLDER}"),
        "PYTHONIOENCODING": "utf-8",
        "NO_COLOR": "1",
        "COLUMNS": "400",
        "STCORE_PASSWORD": "hostile text test",
    }
    for name in ("STCORE_REPO", "STCORE_CONFIG", "CLOUD_PROVIDER", "CLOUD_AUTO_SYNC"):
        env.pop(name, None)
    source = os.fsencode(root / FOLDER)  # its name is the source's name
    os.makedirs(source + b"/" + NAME)
    with open(source + b"/" + NAME + b"/" + NAME, "wb") as handle:
        handle.write(b"inside")
    with open(source + b"/caf\xe9", "wb") as handle:
        handle.write(b"cafe")
    for piece in ("[draft] plan.txt", "\x1b[2J", "bell\x07", "cr\rx", "nl\nx", ":smile:"):
        (Path(os.fsdecode(source)) / piece).write_text(piece)
    os.makedirs(source + b"/[bold]b[")  # its file's path: [bold]b[/bold]
    with open(source + b"/[bold]b[/bold]", "wb") as handle:
        handle.write(b"bold")
    os.symlink(b"../" + NAME + b"/\x1b]0;t\x07", source + b"/link")
    repo = os.fsencode(root / f"repo {FOLDER}")
    (root / "stcore.toml").write_text(f'[remotes.{_toml_key(TEXT)}]\nurl = "mirror"\n')
    (root / "mirror").mkdir()
    partial = World(root, repo, source, env, "", "", os.fsencode(root / f"encrypted {FOLDER}"))
    for args in (
        ["--repo", repo, "init"],
        ["--repo", repo, "backup", source, "-t", TEXT, "-t", FOLDER, "--host", FOLDER],
    ):
        done = partial.run(*args)
        assert done.returncode == 0, done.stderr.decode()
    with open(source + b"/added " + NAME, "wb") as handle:
        handle.write(b"new")
    os.remove(source + b"/caf\xe9")
    done = partial.run("--repo", repo, "backup", source, "-t", TEXT, "--host", FOLDER)
    assert done.returncode == 0, done.stderr.decode()
    listed_run = partial.run("--repo", repo, "snapshots", "--json")
    assert listed_run.returncode == 0, listed_run.stderr.decode()
    listed = json.loads(listed_run.stdout)
    second, first = (s["id"] for s in listed)
    made = partial.run("--repo", partial.encrypted, "init", "--encrypt")
    assert made.returncode == 0, made.stderr.decode()
    yield attrs.evolve(partial, first=first, second=second)


#: what a command's invocation needs: the world and a fresh folder of the test's own
Args = list[str | bytes]
Invocation = Callable[[World, Path], list[tuple[Args, int, list[str]]]]

#: how the start of FOLDER, NAME and TEXT reads in an error message that quotes it with repr()
#: (most of stcore's and click's): the same escapes up to there
QUOTED = "[x] [bold]b[bold] :smile: \\x1b[31m\\x1b]0;t\\x07"
TEXT_QUOTED = "[x] [/x] v[/1] [bold]b[/bold] :smile: \\x1b[31m\\x1b]0;t\\x07"


def _r(w: World) -> Args:
    return ["--repo", w.repo]


def _missing(w: World) -> Args:
    """--repo at a hostile path that holds no repository: every command's first error."""
    return ["--repo", str(w.root / f"missing {FOLDER}")]


MISSING = "missing " + FOLDER_SHOWN.split("\\r")[0]


def _backup(w: World, t: Path) -> list[tuple[Args, int, list[str]]]:
    """A FIFO is listed as not backed up (exit 3), by its name."""
    source = t / FOLDER
    source.mkdir()
    os.mkfifo(os.fsencode(source) + b"/fifo " + NAME)
    repo = str(t / "repo")
    return [
        (["--repo", repo, "init"], 0, []),
        (["--repo", repo, "backup", os.fsencode(source), "-t", TEXT], 3, ["fifo " + NAME_SHOWN]),
        ([*_r(w), "backup", bytes(w.root) + b"/gone " + NAME], 1, [QUOTED]),
    ]


def _daemon(w: World, t: Path) -> list[tuple[Args, int, list[str]]]:
    """One run: its log line on stderr is JSON, ASCII, with TEXT escaped."""
    (t / FOLDER).mkdir()
    (t / FOLDER / "f").write_text("f")
    (t / "mirror").mkdir()
    (t / "stcore.toml").write_text(
        f'[remotes.{_toml_key(TEXT)}]\nurl = "mirror"\n'
        f'[sources.{_toml_key(TEXT)}]\ntype = "files"\npath = {_toml_key(FOLDER)}\n'
    )
    repo, config = str(t / "repo"), str(t / "stcore.toml")
    return [
        (["--repo", repo, "init"], 0, []),
        (["--repo", repo, "--config", config, "daemon", "--once"], 0, [_toml_key(TEXT)[1:-1]]),
    ]


#: per command path: invocations as (arguments, exit code, texts the output must show)
def _tag(w: World, t: Path) -> list[tuple[Args, int, list[str]]]:
    """A tag as written, on a repository of its own (the world's snapshots keep their ids)."""
    (t / FOLDER).mkdir()
    (t / FOLDER / "f").write_text("f")
    repo = str(t / "repo")
    return [
        (["--repo", repo, "init"], 0, []),
        (["--repo", repo, "backup", str(t / FOLDER)], 0, []),
        (["--repo", repo, "tag", "latest", "--add", TEXT, "--add", NAME], 0,
         [f"tags: {SHOWN}, {NAME_SHOWN}\n"]),
        ([*_r(w), "tag", NAME, "--add", "x"], 1, [QUOTED]),
    ]  # fmt: skip


def _unlock(w: World, t: Path) -> list[tuple[Args, int, list[str]]]:
    """A stale lock whose host and purpose are hostile text."""
    repo = t / "repo"
    stcore.init_repository(str(repo)).close()
    (repo / "locks").mkdir(exist_ok=True)
    lock = {"host": FOLDER, "pid": 1, "time": 0, "exclusive": False, "purpose": TEXT}
    (repo / "locks" / ("a" * 32)).write_text(json.dumps(lock))
    return [
        (["--repo", str(repo), "unlock"], 0,
         [f"  {SHOWN} (shared), stale", f"on {FOLDER_SHOWN} since"]),
        ([*_missing(w), "unlock"], 1, [MISSING]),
    ]  # fmt: skip


INVOCATIONS: dict[str, Invocation] = {
    "stcore": lambda w, t: [
        ([b"--\x1b[2J" + NAME], 2, ["No such option", "--\\x1b[2Jcaf\\udce9 " + QUOTED]),
        ([NAME], 2, ["No such command", QUOTED]),
        ([*_missing(w), "snapshots"], 1, [MISSING]),
    ],
    "stcore backup": _backup,
    "stcore cache": lambda w, t: [(["cache", NAME], 2, [QUOTED])],
    "stcore cache clear": lambda w, t: [
        ([*_r(w), "cache", "clear", "--from", FOLDER], 1, [QUOTED])
    ],
    "stcore cache stats": lambda w, t: [([*_r(w), "cache", "stats"], 0, ["cache " + FOLDER_SHOWN])],
    "stcore catalog": lambda w, t: [(["catalog", NAME], 2, [QUOTED])],
    "stcore catalog rebuild": lambda w, t: [([*_missing(w), "catalog", "rebuild"], 1, [MISSING])],
    "stcore check": lambda w, t: [([*_missing(w), "check"], 1, [MISSING])],
    "stcore daemon": _daemon,
    "stcore diff": lambda w, t: [
        ([*_r(w), "diff", w.first, w.second], 0, [f"+  {FOLDER_SHOWN}:added {NAME_SHOWN}"]),
        ([*_r(w), "diff", w.first, NAME], 1, [QUOTED]),
    ],
    "stcore dump": lambda w, t: [
        ([*_r(w), "dump", w.second, NAME, "x"], 1, [QUOTED]),
        ([*_r(w), "dump", w.second, FOLDER, b"nl\nx/" + NAME], 1, ["nl\\nx/caf\\udce9 " + QUOTED]),
    ],
    "stcore forget": lambda w, t: [
        ([*_r(w), "forget", "--keep-tag", TEXT, "--dry-run"], 0, ["tag " + SHOWN]),
        ([*_r(w), "forget", NAME, "--dry-run"], 1, [QUOTED]),
    ],
    "stcore init": lambda w, t: [
        ([*_r(w), "init"], 1, [QUOTED]),
        (["--repo", str(t / f"new {FOLDER}"), "init"], 0, ["new " + FOLDER_SHOWN]),
    ],
    "stcore key": lambda w, t: [(["key", NAME], 2, [QUOTED])],
    "stcore key add": lambda w, t: [([*_missing(w), "key", "add"], 1, [MISSING])],
    "stcore key list": lambda w, t: [
        (["--repo", w.encrypted, "key", "list"], 0, ["created"]),
        ([*_missing(w), "key", "list"], 1, [MISSING]),
    ],
    "stcore key passwd": lambda w, t: [([*_missing(w), "key", "passwd"], 1, [MISSING])],
    "stcore key remove": lambda w, t: [
        (["--repo", w.encrypted, "key", "remove", NAME], 1, [QUOTED]),
    ],
    "stcore plugins": lambda w, t: [
        (["plugins"], 0, ["files"]),
        (["--config", bytes(t) + b"/" + NAME, "plugins"], 1, [QUOTED]),
    ],
    "stcore prune": lambda w, t: [
        ([*_r(w), "prune", "--dry-run", "--remote", FOLDER], 1, [QUOTED])
    ],
    "stcore repair": lambda w, t: [(["repair", NAME], 2, [QUOTED])],
    "stcore repair index": lambda w, t: [([*_missing(w), "repair", "index"], 1, [MISSING])],
    "stcore repair packs": lambda w, t: [([*_r(w), "repair", "packs", NAME], 1, [QUOTED])],
    "stcore repair snapshots": lambda w, t: [([*_missing(w), "repair", "snapshots"], 1, [MISSING])],
    "stcore restore": lambda w, t: [
        (
            [*_r(w), "restore", w.second, "--target", bytes(t) + b"/to " + NAME],
            0,
            ["to " + NAME_SHOWN],
        ),
        ([*_r(w), "restore", NAME, "--target", str(t / "x")], 1, [QUOTED]),
    ],
    # serve runs until stopped; what it prints itself is the address it bound (see the report)
    "stcore serve": lambda w, t: [([*_r(w), "serve", "--port", NAME], 2, ["caf\\udce9 " + QUOTED])],
    "stcore show": lambda w, t: [
        (
            [*_r(w), "show", w.first, "--files"],
            0,
            [
                f"host     {FOLDER_SHOWN}\n",
                f"tags     {SHOWN}, {FOLDER_SHOWN}\n",
                f"source {FOLDER_SHOWN} (files)",
                f"  {NAME_SHOWN}/{NAME_SHOWN}\n",
                "  [bold]b[/bold]\n",
                "  caf\\xe9\n",
                "  nl\\nx\n",
            ],
        ),
        ([*_r(w), "show", NAME], 1, [QUOTED]),
    ],
    "stcore snapshots": lambda w, t: [
        ([*_r(w), "snapshots"], 0, [FOLDER_SHOWN, SHOWN]),
        ([*_r(w), "snapshots", "--since", NAME], 2, [QUOTED]),
    ],
    "stcore stats": lambda w, t: [([*_r(w), "stats"], 0, ["repo " + FOLDER_SHOWN])],
    "stcore status": lambda w, t: [([*_r(w), "status"], 0, [f"remote {SHOWN} ("])],
    "stcore sync": lambda w, t: [([*_r(w), "sync"], 0, [f"{SHOWN}: "])],
    "stcore find": lambda w, t: [
        (
            [*_r(w), "find", b"caf\xe9*", "[[]bold]*"],
            0,
            [
                f"  {FOLDER_SHOWN}/{NAME_SHOWN}/{NAME_SHOWN}\n",
                f"  {FOLDER_SHOWN}/caf\\xe9\n",
                f"{FOLDER_SHOWN}/[bold]b[\n",
            ],
        ),
        ([*_r(w), "find", "x", "--snapshot", NAME], 1, [QUOTED]),
    ],
    "stcore ls": lambda w, t: [
        (
            [*_r(w), "ls", w.first, "-l"],
            0,
            [
                f"  {FOLDER_SHOWN}/{NAME_SHOWN}/{NAME_SHOWN}\n",
                f"  {FOLDER_SHOWN}/[bold]b[/bold]\n",
                f"  {FOLDER_SHOWN}/nl\\nx\n",
                f"  {FOLDER_SHOWN}/link -> ../{NAME_SHOWN}/\\x1b]0;t\\x07\n",
            ],
        ),
        ([*_r(w), "ls", w.first, NAME], 1, [QUOTED]),
    ],
    "stcore completion": lambda w, t: [(["completion", NAME], 2, [QUOTED])],
    "stcore tag": _tag,
    "stcore unlock": _unlock,
}

#: commands whose human output is not tested here, and why
EXEMPT: dict[str, str] = {}


def _commands(command: click.Command, path: str) -> Iterator[str]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, f"{path} {name}")


cli.every_command()  # each imported, so each group's .commands lists them all
COMMAND_PATHS = list(_commands(cli, "stcore"))


def assert_safe_output(result: subprocess.CompletedProcess[bytes], code: int) -> str:
    """Both streams: UTF-8, no control character but line ends, no traceback; returns them."""
    stdout = result.stdout.decode("utf-8")  # strict: a raw byte that is not UTF-8 fails here
    stderr = result.stderr.decode("utf-8")
    both = stdout + stderr
    assert result.returncode == code, both
    assert "Traceback" not in stderr, stderr
    assert not RAW_CONTROL.search(both), ascii(both)
    return both


def test_every_command_is_covered() -> None:
    assert {"stcore", "stcore backup", "stcore key list", "stcore restore"} <= set(COMMAND_PATHS)
    assert set(INVOCATIONS) | set(EXEMPT) == set(COMMAND_PATHS)


@pytest.mark.parametrize("path", COMMAND_PATHS)
def test_each_command_prints_hostile_text_safely(world: World, tmp_path: Path, path: str) -> None:
    assert path in INVOCATIONS or path in EXEMPT, f"cover {path!r} here, or exempt it (and why)"
    if path in EXEMPT:
        pytest.skip(EXEMPT[path])
    for args, code, shown in INVOCATIONS[path](world, tmp_path):
        result = world.run(*args)
        both = assert_safe_output(result, code)
        for text in shown:
            assert text in both, f"{text!r} not in {both!r}"
        if code == 1:  # errors are one line (tests/helpers.py's rule)
            assert len(result.stderr.decode().strip().splitlines()) == 1, result.stderr


def test_the_snapshots_table_fits_80_columns(world: World) -> None:
    """The table is as wide as the terminal: escapes are measured as what they print."""
    result = subprocess.run(
        [sys.executable, "-m", "stcore.cli", "--repo", world.repo, "snapshots"],
        capture_output=True,
        env={**world.env, "COLUMNS": "80"},
        timeout=120,
    )
    both = assert_safe_output(result, 0)
    assert all(cell_len(line) <= 80 for line in both.splitlines()), both


def test_json_output_round_trips_the_exact_bytes(world: World) -> None:
    """--json is ASCII JSON; a name's bytes come back with os.fsencode (docs/cli.md)."""

    def json_of(*args: str | bytes) -> object:
        result = world.run(*_r(world), *args, "--json")
        assert result.returncode == 0, result.stderr.decode()
        return json.loads(result.stdout.decode("ascii"))  # strict: ASCII only

    listed = json_of("snapshots")
    assert isinstance(listed, list)
    assert {os.fsencode(tag) for s in listed for tag in s["tags"]} == {
        TEXT.encode(),
        FOLDER.encode(),
    }
    assert {s["host"] for s in listed} == {FOLDER}
    shown = json_of("show", world.first, "--files")
    assert isinstance(shown, dict)
    (files,) = shown["files"].values()
    assert list(shown["files"]) == [FOLDER]
    paths = {os.fsencode(f["path"]) for f in files}
    assert {NAME + b"/" + NAME, b"caf\xe9", b"nl\nx", b"cr\rx", b"[bold]b[/bold]"} <= paths
    changes = json_of("diff", world.first, world.second)
    assert isinstance(changes, list)
    assert {(c["change"], os.fsencode(c["path"])) for c in changes} >= {
        ("added", b"added " + NAME),
        ("removed", b"caf\xe9"),
    }


def test_printable_escapes_what_a_terminal_would_obey() -> None:
    from stcore.cli import printable

    assert printable("[bold]x[/bold] :smile: café ünïcode \\ back") == (
        "[bold]x[/bold] :smile: café ünïcode \\ back"
    )
    assert printable("\x1b[2J\x1b]0;t\x07\x00\x7f") == "\\x1b[2J\\x1b]0;t\\x07\\x00\\x7f"
    assert printable("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert printable("\x9b\x85\u202e\u2066\u2028") == "\\u009b\\u0085\\u202e\\u2066\\u2028"
    assert printable(os.fsdecode(b"caf\xe9\xff")) == "caf\\xe9\\xff"
    assert printable("\ud800") == "\\ud800"
    for char in map(chr, range(0x110000)):
        shown = printable(char)
        shown.encode("utf-8")  # never a surrogate left
        assert not RAW_CONTROL.search(shown) and "\x85" not in shown


def test_a_tag_host_or_source_name_that_is_not_utf8(tmp_path: Path) -> None:
    source = os.fsencode(tmp_path) + b"/" + NAME
    os.makedirs(source)
    repo = str(tmp_path / "repo")
    assert run_cli("--repo", repo, "init").returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "stcore.cli", "--repo", repo, "backup", source, "-t", NAME],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "stcore.cli", "--repo", repo, "show", "latest"],
        capture_output=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr.decode()
    assert NAME_SHOWN in shown.stdout.decode()  # the tag, and the source named for the folder
    for args in (["snapshots", "--tag", NAME], ["snapshots", "--source", NAME]):
        listed = subprocess.run(
            [sys.executable, "-m", "stcore.cli", "--repo", repo, *args, "--json"],
            capture_output=True,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr.decode()
        (found,) = json.loads(listed.stdout)
        assert os.fsencode(found["tags"][0]) == NAME


def test_a_repository_at_a_path_that_is_not_utf8(tmp_path: Path) -> None:
    repo = os.fsencode(tmp_path) + b"/repo " + NAME
    made = subprocess.run(
        [sys.executable, "-m", "stcore.cli", "--repo", repo, "init"],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=120,
    )
    assert made.returncode == 0, made.stderr.decode()
    assert "repo " + NAME_SHOWN in made.stdout.decode()


def test_logged_warnings_are_printable() -> None:
    """stcore's warnings (a broken plugin, a damaged lock) quote others' text: one safe line."""
    import logging

    from stcore.cli import PrintableLogHandler

    record = logging.LogRecord("stcore.plugins", logging.WARNING, "", 1, "broke: %s", (TEXT,), None)
    assert PrintableLogHandler().format(record) == f"broke: {SHOWN}"
