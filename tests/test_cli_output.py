"""Human output (issue 16): it fits the terminal, 80 columns or 60, without cutting an id or a
name; counts take the singular for one; sizes and rates are in one unit system (KiB, MiB);
long commands draw a progress bar with a total, a rate and the time remaining, and that rate
is the data's, measured from its first byte to its last."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
from rich.cells import cell_len

import stcore
from stcore.cli.estimate import estimated_total
from stcore.cli.output import (
    PlainConsole,
    ProgressReport,
    TableColumn,
    human_rate,
    human_size,
    plural,
    print_fields,
    print_table,
    progress_bar,
    say,
)
from stcore.config import RemoteConfig
from stcore.repo.chunker import ChunkerParams
from stcore.repo.restore import PROGRESS_STEP
from stcore.sources import make_source

MiB = 1024 * 1024

#: what a terminal is sent besides text: CSI sequences (cursor, erase, style) and OSC ones
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")


def console(width: int, *, terminal: bool = False) -> tuple[PlainConsole, io.StringIO]:
    """The CLI's kind of console, writing into a buffer; ``terminal`` makes it act as one."""
    buffer = io.StringIO()
    made = PlainConsole(
        file=buffer, width=width, force_terminal=terminal, color_system=None,
        soft_wrap=True, markup=False, emoji=False,
    )  # fmt: skip
    return made, buffer


def screen_lines(raw: str) -> list[str]:
    """What a terminal shows of ``raw``, line by line: control sequences removed, each
    carriage return starting the line again (a progress bar redraws itself that way)."""
    lines: list[str] = []
    for line in ANSI.sub("", raw).replace("\r\n", "\n").split("\n"):
        lines.extend(part for part in line.split("\r") if part.strip())
    return lines


def assert_fits(lines: list[str], width: int) -> None:
    too_wide = [line for line in lines if cell_len(line) > width]
    assert not too_wide, "\n".join(lines)


# --- plurals and units ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "noun", "shown"),
    [
        (0, "snapshot", "0 snapshots"),
        (1, "snapshot", "1 snapshot"),
        (2, "snapshot", "2 snapshots"),
        (0, "entry", "0 entries"),
        (1, "entry", "1 entry"),
        (2, "entry", "2 entries"),
        (2, "key", "2 keys"),  # a vowel before the y
        (2, "pass", "2 passes"),
        (1, "SQLite working copy", "1 SQLite working copy"),
        (2, "SQLite working copy", "2 SQLite working copies"),
    ],
)
def test_a_count_takes_the_singular_only_for_one(count: int, noun: str, shown: str) -> None:
    assert plural(count, noun) == shown


def test_an_irregular_plural_is_given() -> None:
    assert [plural(n, "child", "children") for n in (0, 1, 2)] == [
        "0 children", "1 child", "2 children",
    ]  # fmt: skip


def test_sizes_and_rates_are_in_binary_units() -> None:
    assert human_size(512) == "512 B"
    assert human_size(1536) == "1.5 KiB"
    assert human_size(257.7 * MiB) == "257.7 MiB"
    assert human_size(3 * 1024 * MiB) == "3.0 GiB"
    assert human_rate(12.3 * MiB) == "12.3 MiB/s"


# --- tables ---------------------------------------------------------------------------------------

SNAPSHOT_LIKE = [
    TableColumn("id (UTC time)", "id"),
    TableColumn("host", drop=4),
    TableColumn("tags"),
    TableColumn("sources"),
    TableColumn("files", "number", drop=2),
    TableColumn("size", "number", drop=3),
    TableColumn("added", "number", drop=1),
    TableColumn("synced to", drop=5),
]
IDS = ["20261124T131102Z-3fa2c1d9", "20261125T020000Z-0b1c2d3e", "20261126T020000Z-77aa88bb"]
SOURCES = ["customer_documents_archive", "ml_checkpoints_nightly", "ai_hub"]
TAGS = ["daily", "[x]", "v[/1]", "nightly-run", "keep-forever", "project:atlas"]
REMOTES = ["offsite-backblaze", "nas-basement", "cold-archive-eu"]


def _snapshot_rows() -> list[list[str | list[str]]]:
    return [
        [
            [snapshot_id, "(partial)"] if number == 1 else snapshot_id,
            "build-server-07",
            TAGS[: 2 + 2 * number],
            [f"{name} (files)" for name in SOURCES[: number + 1]],
            "12345",
            "1023.9 MiB",
            "12.0 KiB",
            REMOTES[: number + 1],
        ]
        for number, snapshot_id in enumerate(IDS)
    ]


@pytest.mark.parametrize("width", [80, 60])
def test_a_table_fits_and_keeps_every_id_and_name_whole(width: int) -> None:
    out, buffer = console(width)
    left_out = print_table(SNAPSHOT_LIKE, _snapshot_rows(), console=out)
    shown = buffer.getvalue()
    assert_fits(shown.splitlines(), width)
    lines = shown.splitlines()
    for text in (*IDS, *SOURCES, *TAGS):  # whole, on one line, never cut
        assert any(text in line for line in lines), (text, shown)
    if "synced to" not in left_out:
        assert all(name in shown for name in REMOTES), shown
    assert all(line == line.rstrip() for line in lines)  # no padding after the last cell


def test_a_wide_terminal_shows_every_column_in_one_table() -> None:
    out, buffer = console(200)
    assert print_table(SNAPSHOT_LIKE, _snapshot_rows(), console=out) == []
    heading = buffer.getvalue().splitlines()[0]
    assert heading.split("  ")[0] == "id (UTC time)"
    assert all(column.heading in heading for column in SNAPSHOT_LIKE)


def test_at_80_columns_long_names_leave_out_every_optional_column() -> None:
    out, buffer = console(80)
    left_out = print_table(SNAPSHOT_LIKE, _snapshot_rows(), console=out)
    assert left_out == ["host", "files", "size", "added", "synced to"]  # in the table's order
    assert buffer.getvalue().startswith("id (UTC time)")  # still a table: id, tags, sources
    assert set(buffer.getvalue().splitlines()[0].split()) == {
        "id",
        "(UTC",
        "time)",
        "tags",
        "sources",
    }


def test_columns_are_left_out_in_their_drop_order_then_rows_become_records() -> None:
    columns = [
        TableColumn("name", "id"),
        TableColumn("first", "number", drop=1),
        TableColumn("second", "number", drop=2),
        TableColumn("notes"),
    ]
    rows = [["a" * 10, "1" * 10, "2" * 10, "word " * 2 + "x" * 10]]
    full = 4 * 10 + 3 * 2
    expected = {
        full: [],
        full - 1: ["first"],
        22 + 12: ["first"],
        22 + 11: ["first", "second"],
        22: ["first", "second"],
    }
    for width, left_out in expected.items():
        out, buffer = console(width)
        assert print_table(columns, rows, console=out) == left_out, width
        assert_fits(buffer.getvalue().splitlines(), width)
    out, buffer = console(21)  # too narrow for name and notes side by side: a record
    assert print_table(columns, rows, console=out) == []
    record = buffer.getvalue().splitlines()
    assert [line.split()[0] for line in record if not line.startswith(" ")] == [
        "name", "first", "second", "notes",
    ]  # fmt: skip
    assert "a" * 10 in record[0] and "x" * 10 in buffer.getvalue()


def test_cells_are_text_measured_as_printed() -> None:
    out, buffer = console(40)
    print_table(
        [TableColumn("tag", "id"), TableColumn("note")],
        [["[bold]b[/bold]", "bell\x07 and \x1b[2J erase"], [":smile:", "-"]],
        console=out,
    )
    shown = buffer.getvalue()
    assert "[bold]b[/bold]" in shown and ":smile:" in shown and "\\x1b[2J" in shown
    assert "\x1b" not in shown and "\x07" not in shown
    assert_fits(shown.splitlines(), 40)


def test_a_table_without_rows_prints_nothing() -> None:
    out, buffer = console(80)
    assert print_table(SNAPSHOT_LIKE, [], console=out) == []
    assert buffer.getvalue() == ""


# --- lines and fields -----------------------------------------------------------------------------

LONG_PATH = "docs:reports/2026/quarterly review of the " + "x" * 70 + " project/summary.txt"


def test_on_a_terminal_a_long_line_wraps_under_its_prefix() -> None:
    out, buffer = console(60, terminal=True)
    say(LONG_PATH, prefix="+  ", console=out)
    lines = screen_lines(buffer.getvalue())
    assert_fits(lines, 60)
    assert lines[0].startswith("+  docs:") and all(line.startswith("   ") for line in lines[1:])
    # every character is there, in order: only spaces and line ends were added
    assert "".join(line[3:] for line in lines).replace(" ", "") == LONG_PATH.replace(" ", "")


def test_into_a_pipe_a_line_stays_whole() -> None:
    out, buffer = console(60)
    say(LONG_PATH, prefix="+  ", console=out)
    assert buffer.getvalue() == f"+  {LONG_PATH}\n"


def test_fields_wrap_beside_their_labels() -> None:
    out, buffer = console(50, terminal=True)
    print_fields(
        [("repository", LONG_PATH), ("snapshots", "3"), ("  last sync", "never")], console=out
    )
    lines = screen_lines(buffer.getvalue())
    assert_fits(lines, 50)
    assert lines[0].startswith("repository   docs:")
    continued = [line for line in lines[1:] if not line.strip().startswith(("snapshots", "last"))]
    assert continued and all(line.startswith(" " * 13) for line in continued)
    assert "snapshots    3" in lines and "  last sync  never" in lines


# --- progress -------------------------------------------------------------------------------------


@attrs.define
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def last_frame(raw: str, label: str) -> str:
    frames = [line for line in screen_lines(raw) if line.startswith(label)]
    assert frames, raw
    return frames[-1]


def test_the_bar_shows_the_total_the_rate_the_count_and_the_time_remaining() -> None:
    out, buffer = console(80, terminal=True)
    clock = Clock()
    with progress_bar("restoring", 999, True, count="file", console=out, clock=clock) as report:
        clock.now = 130.0  # planning: not transfer time
        report("total", 100 * MiB)  # the engine's total replaces the command's estimate
        clock.now = 132.0
        report("bytes", 50 * MiB)
        report("file", 1)
    frame = last_frame(buffer.getvalue(), "restoring")
    assert "50.0/100.0 MiB" in frame  # binary units, a total
    assert "25.0 MiB/s" in frame  # 50 MiB in the 2 s since the data began
    assert "1 file " in frame and "ETA 0:02" in frame
    assert "?" not in frame and " MB" not in frame
    assert cell_len(frame) <= 80


@pytest.mark.parametrize("width", [80, 60])
def test_the_bar_fits_a_narrow_terminal(width: int) -> None:
    out, buffer = console(width, terminal=True)
    label = "syncing to offsite-backblaze-eu-central"
    with progress_bar(label, None, True, count="object", console=out, clock=Clock()) as report:
        report("total", 3 * 1024 * MiB)
        report("bytes", 1024 * MiB)
    frame = last_frame(buffer.getvalue(), "syncing")
    assert cell_len(frame) <= width
    assert "1.0/3.0 GiB" in frame and "ETA" in frame


def test_no_terminal_no_bar_but_the_report_still_counts() -> None:
    out, buffer = console(80)
    clock = Clock()
    with progress_bar("restoring", None, True, count="file", console=out, clock=clock) as report:
        assert not report.drawn
        clock.now += 4
        report("bytes", 8 * MiB)
    assert buffer.getvalue() == ""
    assert report.rate() == 2 * MiB


def test_the_rate_runs_from_the_start_of_the_data_to_its_last_byte() -> None:
    clock = Clock(0.0)
    report = ProgressReport(clock=clock)
    clock.now = 10.0  # ten seconds of planning
    report("total", 20 * MiB)
    clock.now = 11.0
    report("bytes", 10 * MiB)
    assert report.remaining(11.0) == pytest.approx(1.0)
    clock.now = 12.0
    report("bytes", 10 * MiB)
    assert report.rate() == pytest.approx(10 * MiB)  # 20 MiB in 2 s, not in 12
    clock.now = 30.0  # writing the index, closing: after the last byte
    assert report.rate(30.0) == pytest.approx(10 * MiB)
    assert report.remaining() == 0.0


def test_an_estimated_total_does_not_restart_the_clock() -> None:
    clock = Clock(0.0)
    report = ProgressReport(clock=clock)
    clock.now = 1.0
    report("bytes", MiB)
    clock.now = 2.0
    report.estimate_total(4 * MiB)  # a backup's pre-scan ends while it runs
    report("bytes", MiB)
    assert report.total == 4 * MiB and report.rate() == pytest.approx(MiB)
    report("bytes", 3 * MiB)  # an estimate that fell short
    assert report.shown_total == 5 * MiB


# --- what the engine reports ----------------------------------------------------------------------

Events = list[tuple[str, int]]


def recorder() -> tuple[Events, Callable[[str, int], None]]:
    events: Events = []
    lock = threading.Lock()

    def record(event: str, amount: int) -> None:
        with lock:
            events.append((event, amount))

    return events, record


def _bytes(events: Events) -> int:
    return sum(n for e, n in events if e == "bytes")


def _totals(events: Events) -> list[int]:
    return [n for e, n in events if e == "total"]


def _fill(folder: Path, files: dict[str, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in files.items():
        (folder / name).write_bytes(os.urandom(size))
    return folder


def test_restore_announces_the_bytes_it_writes_and_reports_them_per_mib(tmp_path: Path) -> None:
    repo = stcore.init_repository(
        str(tmp_path / "repo"),
        chunker=ChunkerParams(min_size=4096, avg_size=16384, max_size=65536),
    )
    source = _fill(tmp_path / "src", {"big.bin": 5 * MiB, "small.txt": 100})
    repo.backup(stcore.sources_for_paths([str(source)]))
    blobs = len(repo.snapshot("latest").sources["src"]._file("big.bin").content)
    events, record = recorder()
    result = repo.restore("latest", tmp_path / "out", progress=record)
    assert events[0] == ("total", 5 * MiB + 100)  # before any byte
    assert _bytes(events) == result.bytes == 5 * MiB + 100
    steps = [n for e, n in events if e == "bytes"]
    assert len(steps) < blobs / 4  # not one event per 16 KiB blob
    assert sum(1 for n in steps if n < PROGRESS_STEP) <= repo.store.blob_reader().workers * 2
    again, record = recorder()
    repo.restore("latest", tmp_path / "out", progress=record)  # everything is kept
    assert _totals(again) == [0] and _bytes(again) == 0
    repo.close()


def test_check_announces_the_packs_it_reads(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"), pack_size=512 * 1024)
    # 8 MiB: at least two chunks (4 MiB at most each), so at least two 512 KiB packs
    repo.backup(stcore.sources_for_paths([str(_fill(tmp_path / "src", {"a": 8 * MiB}))]))
    packs = {info.key: info.size for info in repo.backend.list("data/")}
    events, record = recorder()
    assert repo.check(read_data=True, progress=record).ok
    assert _totals(events) == [sum(packs.values())] and _bytes(events) == sum(packs.values())
    assert sum(n for e, n in events if e == "pack") == len(packs) > 1
    structural, record = recorder()
    repo.check(progress=record)
    assert structural == []
    repo.close()


def test_prune_announces_the_bytes_it_repacks(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    source = _fill(tmp_path / "src", {"kept.bin": 300_000, "gone.bin": 300_000})
    first = repo.backup(stcore.sources_for_paths([str(source)])).manifest
    (source / "gone.bin").unlink()
    repo.backup(stcore.sources_for_paths([str(source)]))
    repo.forget([first.id])
    events, record = recorder()
    result = repo.prune(repack_threshold=1.0, progress=record)
    assert result.packs_repacked >= 1
    assert _totals(events) and _totals(events)[-1] == _bytes(events) >= 300_000
    repo.close()


def test_sync_announces_the_bytes_it_uploads(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    repo.backup(stcore.sources_for_paths([str(_fill(tmp_path / "src", {"a": MiB, "b": 10}))]))
    (tmp_path / "mirror").mkdir()
    events, record = recorder()
    result = repo.sync(RemoteConfig(name="m", url=str(tmp_path / "mirror")), progress=record)
    assert _totals(events) == [result.bytes_uploaded] and _bytes(events) == result.bytes_uploaded
    assert sum(n for e, n in events if e == "object") == result.objects_uploaded
    repo.close()


def test_a_backup_counts_unchanged_files_in_its_bytes(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    source = _fill(tmp_path / "src", {"a": MiB, "b": 5000})
    sources = stcore.sources_for_paths([str(source)])
    repo.backup(sources)
    events, record = recorder()
    again = repo.backup(stcore.sources_for_paths([str(source)]), progress=record).manifest
    assert again.added_bytes < 5000  # nothing was read again
    assert _bytes(events) == again.size == MiB + 5000  # yet the bar reaches its total
    repo.close()


def test_a_backup_reports_files_in_batches_and_every_one_by_the_end(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    source = _fill(tmp_path / "src", {f"f{i:03}": 10 for i in range(300)})
    for file in source.iterdir():
        os.utime(file, ns=(0, 0))  # old enough for the files cache
    for again in (False, True):  # read, then unchanged (from the files cache)
        events, record = recorder()
        manifest = repo.backup(stcore.sources_for_paths([str(source)]), progress=record).manifest
        assert (manifest.added_bytes < 3000) is again
        counted = [n for e, n in events if e == "file"]
        assert sum(counted) == manifest.files == 300
        if again:  # unchanged: a callback per batch, not per file
            assert len(counted) <= 300 // 64 + 1
        assert _bytes(events) == manifest.size == 3000
    repo.close()


class _Stop(Exception):
    pass


def test_a_callback_that_stops_a_backup_is_heard_after_the_file_being_read(
    tmp_path: Path,
) -> None:
    """The daemon stops a run from its progress callback: a file that was read (even an empty
    one, which reports no bytes) is reported at once, so the run stops after it."""
    repo = stcore.init_repository(str(tmp_path / "repo"))
    source = _fill(tmp_path / "src", {f"empty{i:02}": 0 for i in range(40)})
    events, record = recorder()

    def stop_at_first_file(event: str, amount: int) -> None:
        record(event, amount)
        if event == "file":
            raise _Stop

    with pytest.raises(_Stop):
        repo.backup(stcore.sources_for_paths([str(source)]), progress=stop_at_first_file)
    assert [e for e in events if e[0] == "file"] == [("file", 1)]
    assert repo.snapshots() == []
    repo.close()


def _drawn(total: int | None = None) -> ProgressReport:
    report = ProgressReport(total)
    report.drawn = True  # as progress_bar sets it when a bar shows the report
    return report


def _wait_for_total(report: ProgressReport) -> int | None:
    deadline = time.monotonic() + 10
    while report.total is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return report.total


def test_a_backup_bar_gets_its_total_from_a_scan_beside_it(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    source = _fill(tmp_path / "src", {"a": 300_000, "b": 1234})
    _fill(source / "sub", {"c": 4321})
    report = _drawn()
    with estimated_total(repo, stcore.sources_for_paths([str(source)]), report):
        assert _wait_for_total(report) == 300_000 + 1234 + 4321
    quiet = ProgressReport()  # no bar: no scan
    with estimated_total(repo, stcore.sources_for_paths([str(source)]), quiet):
        time.sleep(0.05)
    assert quiet.total is None
    repo.close()


def test_another_source_is_estimated_from_its_last_snapshot(tmp_path: Path) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    document = tmp_path / "state.json"
    document.write_text(json.dumps({"weights": list(range(1000))}))
    docs = make_source("state", "json", {"path": str(document)})
    report = _drawn()
    with estimated_total(repo, [docs], report):
        time.sleep(0.05)
    assert report.total is None  # never backed up: nothing to go by
    repo.backup([docs])
    report = _drawn()
    with estimated_total(repo, [make_source("state", "json", {"path": str(document)})], report):
        assert _wait_for_total(report) == document.stat().st_size
    repo.close()


# --- the commands, on a terminal ------------------------------------------------------------------


def on_terminal(
    *args: str, width: int = 80, env: dict[str, str], cwd: Path | None = None
) -> tuple[int, list[str]]:
    """Run ``stcore ARGS`` with a terminal ``width`` columns wide as its stdin, stdout and
    stderr; its exit code and the lines it showed (every frame of a progress bar included)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, width, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "stcore.cli", *args],
        stdin=follower, stdout=follower, stderr=follower, cwd=cwd,
        env={**os.environ, **env, "COLUMNS": str(width), "TERM": "xterm-256color"},
    )  # fmt: skip
    os.close(follower)
    received = bytearray()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if not ready:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        received += chunk
    os.close(leader)
    code = process.wait(timeout=60)
    return code, screen_lines(received.decode("utf-8", "replace"))


@attrs.frozen
class Project:
    folder: Path
    env: dict[str, str]
    ids: list[str]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """An encrypted repository with two snapshots of two sources with long names, tagged six
    times, synced to three remotes."""
    folder = tmp_path_factory.mktemp("project")
    home = folder / "home"
    env = {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "STCORE_CACHE_DIR": str(home / "cache"),
        "STCORE_PASSWORD": "output test",
    }
    remotes = "".join(f'[remotes.{name}]\nurl = "{folder / name}"\n' for name in REMOTES)
    sources = "".join(
        f'[sources.{name}]\ntype = "files"\npath = "{folder / "data" / name}"\n'
        for name in SOURCES[:2]
    )
    (folder / "stcore.toml").write_text(
        f'[repository]\nurl = "{folder / "repo"}"\n{sources}{remotes}'
    )
    for name in SOURCES[:2]:
        _fill(folder / "data" / name / "reports 2026", {"q1 summary.txt": 2000, "q2.bin": 70_000})
    for name in REMOTES:
        (folder / name).mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "stcore.cli", *args],
            capture_output=True, text=True, cwd=folder, env={**os.environ, **env}, timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    run("init", "--encrypt")
    tags = [arg for tag in TAGS for arg in ("-t", tag)]
    run("backup", *tags)
    _fill(folder / "data" / SOURCES[0] / "reports 2026", {"q3 draft.txt": 3000})
    run("backup", *tags)
    run("sync")
    ids = [s["id"] for s in json.loads(run("snapshots", "--json").stdout)]
    yield Project(folder, env, ids)


COMMANDS = [
    ["snapshots"],
    ["stats"],
    ["status"],
    ["key", "list"],
    ["cache", "stats"],
    ["plugins"],
    ["forget", "--keep-last", "1", "--dry-run"],
    ["diff", "latest~1", "latest"],
    ["show", "latest", "--files"],
    ["check", "--read-data"],
]


@pytest.mark.parametrize("width", [80, 60])
@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_each_command_fits_the_terminal(project: Project, args: list[str], width: int) -> None:
    code, lines = on_terminal(*args, width=width, env=project.env, cwd=project.folder)
    assert code == 0, lines
    assert_fits(lines, width)
    assert not any("Traceback" in line for line in lines)


@pytest.mark.parametrize("width", [80, 60])
def test_the_snapshots_table_keeps_every_id_and_name(project: Project, width: int) -> None:
    code, lines = on_terminal("snapshots", width=width, env=project.env, cwd=project.folder)
    assert code == 0
    shown = "\n".join(lines)
    for text in (*project.ids, *SOURCES[:2], *TAGS):
        assert any(text in line for line in lines), (text, shown)
    assert lines[-1] == "2 snapshots"
    if any("synced to" in line for line in lines):
        assert all(name in shown for name in REMOTES), shown
    if width == 60:  # too narrow for the long source names beside an id: records
        assert sum(line.startswith("id (UTC time)  2026") for line in lines) == 2


def test_singular_counts_in_the_summaries(project: Project) -> None:
    code, lines = on_terminal(
        "forget", "--keep-last", "1", "--dry-run", env=project.env, cwd=project.folder
    )
    assert code == 0 and "would forget 1 snapshot; run prune to reclaim space" in lines


def _rate(line: str) -> float:
    match = re.search(r" at ([0-9.]+) (B|KiB|MiB|GiB)/s\)", line)
    assert match, line
    unit: int = 1024 ** ["B", "KiB", "MiB", "GiB"].index(match.group(2))
    return float(match.group(1)) * unit


@pytest.fixture
def data_repo(tmp_path: Path) -> tuple[str, dict[str, str]]:
    env = {"STCORE_PASSWORD": "rate test"}
    source = _fill(tmp_path / "data", {"a.bin": 8 * MiB, "b.bin": 8 * MiB, "c.txt": 100})
    repo = str(tmp_path / "repo")
    for args in (("init", "--encrypt"), ("backup", str(source))):
        done = subprocess.run(
            [sys.executable, "-m", "stcore.cli", "--repo", repo, *args],
            capture_output=True, text=True, env={**os.environ, **env}, timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    return repo, env


def test_restore_shows_the_rate_of_its_data(
    data_repo: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """The rate counts the bytes from the start of the data to the last byte, so it is never
    below the average over the whole command (the old bar's estimate, over its last 1000
    updates of 4 KiB each, could show a fraction of it)."""
    repo, env = data_repo
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "stcore.cli", "--repo", repo, "restore", "latest",
         "--target", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=240,
    )  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    (summary,) = [line for line in done.stdout.splitlines() if line.startswith("restored")]
    assert summary.startswith("restored 3 files (16.0 MiB at ")
    assert _rate(summary) >= 16 * MiB / took * 0.95  # rounded to 0.1 of its unit


@pytest.mark.parametrize(
    "args",
    [["restore", "latest", "--target", "{out}"], ["check", "--read-data"], ["backup", "{data}"]],
    ids=lambda args: args[0],
)
def test_a_long_command_draws_a_bar_with_a_total_a_rate_and_an_eta(
    data_repo: tuple[str, dict[str, str]], tmp_path: Path, args: list[str]
) -> None:
    repo, env = data_repo
    if args[0] == "backup":
        _fill(tmp_path / "more", {"d.bin": 8 * MiB, "e.bin": 8 * MiB})
    filled = [a.format(out=tmp_path / "out", data=tmp_path / "more") for a in args]
    code, lines = on_terminal("--repo", repo, *filled, env=env)
    assert code == 0, lines
    assert_fits(lines, 80)
    label = {"restore": "restoring", "check": "checking", "backup": "backing up"}[args[0]]
    frame = [line for line in lines if line.startswith(label)][-1]
    assert re.search(r" 16\.0/16\.0 MiB ", frame), frame  # the total, in binary units
    assert re.search(r" [0-9.]+ (KiB|MiB|GiB)/s ", frame), frame
    assert "ETA " in frame and "?" not in frame, frame


@pytest.mark.parametrize("group", [[], ["cache"], ["key"], ["catalog"], ["repair"]])
def test_a_group_called_bare_prints_its_help_on_its_lines(group: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stcore.cli", *group], capture_output=True, text=True, timeout=60
    )
    shown = done.stdout + done.stderr
    assert done.returncode == 2
    assert "\\n" not in shown and shown.startswith("Usage: stcore")
    assert "\nCommands:\n" in shown and "\nOptions:\n" in shown


# outputs larger than a pipe's buffer, so the writer surely meets the closed pipe
@pytest.mark.parametrize("command", [["show", "latest", "--files"], ["diff", "latest~1", "latest"]])
def test_a_reader_that_goes_away_ends_any_command_quietly(
    tmp_path: Path, command: list[str]
) -> None:
    """`stcore ... | head -n 1` through rich's console too: no error line, status 141."""
    (tmp_path / "d").mkdir()
    for n in range(2000):
        (tmp_path / "d" / f"file-{n:05d}").write_text(str(n))
    repo = stcore.init_repository(str(tmp_path / "repo"))
    for _ in range(2):
        repo.backup(stcore.sources_for_paths([str(tmp_path / "d")]))
        (tmp_path / "d" / "file-00000").write_text("changed")
        for n in range(0, 2000, 2):
            (tmp_path / "d" / f"file-{n:05d}").write_text(f"changed {n}")
    repo.close()
    script = (
        f'"$0" -m stcore.cli --repo {tmp_path / "repo"} {" ".join(command)} | head -n 1 '
        '>/dev/null; echo "status ${PIPESTATUS[0]}" >&2'
    )
    done = subprocess.run(
        ["bash", "-c", script, sys.executable],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "80"},
    )  # fmt: skip
    assert done.stderr == "status 141\n", done.stderr
