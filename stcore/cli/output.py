"""How every command prints: text made safe for a terminal, tables and lines that fit it,
counts, sizes and rates, JSON, progress bars and the one-line error."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, NoReturn

import attrs
import click
from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segment, SegmentLines
from rich.text import Text

from stcore.cli.context import EXIT_BROKEN_PIPE, EXIT_ERROR
from stcore.text import printable


class PlainConsole(Console):
    """A Console for users' text: every string it renders, table cells included, is shown
    through :func:`printable`. Markup and emoji codes are off (``[x]``, ``:smile:`` stay as
    written); a program literal that wants style prints a :func:`styled` Text instead."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(printable(text), **{**kwargs, "markup": False, "emoji": False})

    def on_broken_pipe(self) -> None:
        reader_gone()


def reader_gone() -> NoReturn:
    """Standard output's reader closed it (``stcore snapshots | head``): stop quietly, with the
    status of a program the pipe's SIGPIPE ended, and let nothing more be written there."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(EXIT_BROKEN_PIPE)


out = PlainConsole(soft_wrap=True, markup=False, emoji=False)


err = PlainConsole(stderr=True, soft_wrap=True, markup=False, emoji=False)


def styled(style: str, label: str, text: str) -> Text:
    """``label`` in ``style`` (a program literal), a space, then ``text`` shown as printable."""
    return Text.assemble((label, style), " ", printable(text))


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    # The message is text (paths, names, other programs' errors), shown through printable(); a
    # message of several lines (another program's) is joined into one first.
    one_line = " ".join(message.split()) if "\n" in message else message
    err.print(styled("bold red", "stcore: error:", one_line), highlight=False)
    sys.exit(code)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def human_size(size: float) -> str:
    """``size`` bytes in binary units, the one unit system of every size and rate shown:
    ``512 B``, ``1.5 KiB``, ``257.7 MiB``, ``3.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def human_rate(bytes_per_second: float) -> str:
    """A rate in :func:`human_size`'s units: ``12.3 MiB/s``."""
    return f"{human_size(bytes_per_second)}/s"


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """``count`` and ``noun``, in the plural unless ``count`` is 1: ``plural(1, "snapshot")`` is
    ``1 snapshot``, ``plural(0, "snapshot")`` ``0 snapshots``, ``plural(2, "entry")``
    ``2 entries``. The plural of the last word follows English spelling (``-y`` after a
    consonant becomes ``-ies``; ``-s``, ``-x``, ``-z``, ``-ch``, ``-sh`` take ``-es``; anything
    else ``-s``); pass ``plural_noun`` for any other (``plural(n, "child", "children")``)."""
    if count == 1:
        return f"{count} {noun}"
    if plural_noun is None:
        if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u", ""):
            plural_noun = noun[:-1] + "ies"
        elif noun.endswith(("s", "x", "z", "ch", "sh")):
            plural_noun = noun + "es"
        else:
            plural_noun = noun + "s"
    return f"{count} {plural_noun}"


# --- lines and tables that fit the terminal ------------------------------------------------------

#: spaces between two table columns
TABLE_GAP = 2

#: what a table cell holds: one text, or a list shown one item a line (tags, sources, remotes)
Cell = str | Sequence[str]


@attrs.frozen
class TableColumn:
    """One column of :func:`print_table`.

    ``kind`` says how its cells may be laid out: ``"id"`` (ids, and names a user copies: always
    whole on one line), ``"number"`` (counts and sizes: one line, right-aligned) or ``"text"``
    (wrapped at spaces and between the items of a list cell; only a word wider than the whole
    column is folded onto the next line, never cut). ``drop`` is the order in which a narrow
    terminal leaves columns out: 0 is always shown; while the table does not fit, the shown
    column with the lowest non-zero ``drop`` is left out (docs/cli.md, "Output", lists them).
    """

    heading: str
    kind: Literal["id", "number", "text"] = "text"
    drop: int = 0


@attrs.define
class _Measure:
    column: TableColumn
    need: int  # wide enough for every line of every cell on one line
    floor: int  # the narrowest it may be: its widest word ("text"), else ``need``
    width: int = 0


def _cell_lines(cell: Cell) -> list[str]:
    items = [cell] if isinstance(cell, str) else list(cell)
    return [printable(item) for item in items] or [""]


def _measure(column: TableColumn, cells: list[list[str]], header: bool) -> _Measure:
    lines = [line for cell in cells for line in cell]
    heading = [column.heading] if header and column.heading else []
    need = max((cell_len(line) for line in lines + heading), default=0)
    if column.kind != "text":
        return _Measure(column, need, need)
    words = [w for line in lines + heading for w in line.split()]
    return _Measure(column, need, min(need, max((cell_len(w) for w in words), default=0)))


def _fit(measures: list[_Measure], width: int) -> list[_Measure]:
    """The columns to show and each one's width, for a table at most ``width`` wide."""
    shown = list(measures)

    def spare() -> int:
        return width - sum(m.width for m in shown) - TABLE_GAP * (len(shown) - 1)

    for m in shown:
        m.width = m.floor
    while spare() < 0 and any(m.column.drop for m in shown):
        first = min((m for m in shown if m.column.drop), key=lambda m: m.column.drop)
        shown.remove(first)
    room = spare()
    if room < 0:
        return []  # too narrow for a table: the caller shows each row as a record
    texts = [m for m in shown if m.column.kind == "text"]
    while room > 0 and any(m.width < m.need for m in texts):  # widen text columns, evenly
        for m in texts:
            if room and m.width < m.need:
                m.width += 1
                room -= 1
    return shown


def _fit_fields(measures: list[_Measure], width: int) -> list[_Measure]:
    """Label and value widths for ``label  value`` lines: the label whole, unless the terminal
    is narrower than it; the value wrapped, a word wider than the rest folded."""
    label, value = measures
    label.width = max(1, min(label.need, width - TABLE_GAP - 1))
    value.width = max(1, min(value.need, width - TABLE_GAP - label.width))
    return measures


def _rstripped(line: list[Segment]) -> list[Segment]:
    """``line`` without the spaces a table pads its last cell with."""
    line = list(line)
    while line and not line[-1].control and not line[-1].text.strip(" "):
        line.pop()
    if line and not line[-1].control:
        last = line[-1]
        line[-1] = Segment(last.text.rstrip(" "), last.style)
    return line


def print_table(
    columns: Sequence[TableColumn],
    rows: Iterable[Sequence[Cell]],
    *,
    console: Console | None = None,
) -> list[str]:
    """Print ``rows`` under ``columns`` as wide as the console (``out``) allows, never wider;
    return the headings of the columns left out to make it fit.

    A cell is a string, or a list of strings shown one a line (``["daily", "v[1]"]``); every
    string is shown through :func:`printable`. No id and no name is ever cut: ``"id"`` and
    ``"number"`` columns stay whole on one line, ``"text"`` columns wrap at spaces and between
    list items. A terminal too narrow for the table leaves out the ``drop`` columns (lowest
    first); one too narrow even for the others shows each row as a record of ``heading  value``
    lines, every column included. Every command prints its tables with it::

        print_table(
            [TableColumn("id", "id"), TableColumn("tags"), TableColumn("size", "number", drop=1)],
            [[m.id, list(m.tags), human_size(m.size)] for m in manifests],
        )
    """
    console = console or out
    cells = [[_cell_lines(cell) for cell in row] for row in rows]
    if any(len(row) != len(columns) for row in cells):
        raise ValueError("every row needs one cell per column")
    if not cells:
        return []  # no rows, no headings: the count line after it says "0 ..."
    measures = [
        _measure(column, [row[i] for row in cells], True) for i, column in enumerate(columns)
    ]
    shown = _fit(measures, console.width)
    if not shown:  # not even the columns that always show fit: one record per row
        for number, row in enumerate(cells):
            if number:
                console.print()
            record = [[[c.heading], lines] for c, lines in zip(columns, row, strict=True)]
            _print_fields(console, record, console.width)
        return []
    index = [measures.index(m) for m in shown]
    _render(console, shown, [[row[i] for i in index] for row in cells], header=True)
    return [m.column.heading for m in measures if m not in shown]


def print_fields(fields: Sequence[tuple[str, Cell]], *, console: Console | None = None) -> None:
    """``label  value`` lines, the values aligned; on a terminal each value is wrapped beside
    its label (its continuation lines stay in its column), as :func:`say` wraps. Indent a label
    with leading spaces to show it under a line of :func:`say`::

        print_fields([("repository", repo.location), ("snapshots", str(count))])
    """
    console = console or out
    cells = [[_cell_lines(label), _cell_lines(value)] for label, value in fields]
    _print_fields(console, cells, console.width if console.is_terminal else UNWRAPPED)


def _print_fields(console: Console, cells: list[list[list[str]]], width: int) -> None:
    columns = (TableColumn("", "id"), TableColumn(""))
    measures = [_measure(c, [row[i] for row in cells], False) for i, c in enumerate(columns)]
    _render(console, _fit_fields(measures, width), cells, header=False)


def _render(
    console: Console, shown: list[_Measure], cells: list[list[list[str]]], *, header: bool
) -> None:
    from rich.table import Table  # here: a command that prints no table need not import it

    table = Table(
        box=None, show_header=header, show_edge=False, pad_edge=False, header_style="bold",
        padding=(0, TABLE_GAP // 2), collapse_padding=False,
    )  # fmt: skip
    for m in shown:
        table.add_column(
            m.column.heading,
            width=m.width,
            justify="right" if m.column.kind == "number" else "left",
            no_wrap=m.column.kind != "text" and m.width >= m.need,
            overflow="fold",
        )
    for row in cells:
        table.add_row(*(Text("\n".join(lines)) for lines in row))
    width = sum(m.width for m in shown) + TABLE_GAP * (len(shown) - 1)
    lines = console.render_lines(table, console.options.update_width(width), pad=False)
    console.print(
        SegmentLines([_rstripped(line) for line in lines], new_lines=True), end="", soft_wrap=True
    )


#: the width :func:`say` and :func:`print_fields` fit to when the output is not a terminal
UNWRAPPED = 1_000_000


def say(text: str, *, prefix: str = "", console: Console | None = None) -> None:
    """Print ``prefix`` and ``text`` (both shown through :func:`printable`), on a terminal
    wrapped at spaces to its width; continuation lines are indented as wide as ``prefix``, so
    a list of ``say(path, prefix="+  ")`` reads as two columns. Into a pipe or a file the line
    stays whole (grep sees it; a pipe has no width to fit). Streams: use it for long lists
    (diff, restore actions), where a table would hold every row first."""
    console = console or out
    prefix = printable(prefix)
    indent = cell_len(prefix)
    shown = Text(printable(text))
    width = console.width if console.is_terminal else UNWRAPPED
    lines = shown.wrap(console, max(1, width - indent), overflow="fold") if text else [shown]
    for number, line in enumerate(lines):
        line.rstrip()
        lead = prefix if number == 0 else " " * indent
        console.print(Text.assemble(lead, line), soft_wrap=True, highlight=False)


# --- progress -------------------------------------------------------------------------------------


class ProgressReport:
    """What a command hands the engine as its progress callback (``report(event, amount)``),
    and what it was told. Thread-safe: engines report from worker threads.

    Events: ``("bytes", n)``, n more bytes done; ``("total", n)``, the bytes the whole
    operation will report (it may come again when a plan changes; the last counts); any other
    name counts items of that kind (``("file", 1)``, ``("object", 1)``, ``("pack", 1)``).

    The rate is measured from the start of the data: the clock starts when the report is made,
    and again at a ``total`` that comes before any byte (restore, check and prune announce
    their total when planning is over, and planning is not transfer time). It ends at the last
    bytes reported.
    """

    def __init__(
        self, total: int | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.total = total
        self.done = 0
        self.counts: dict[str, int] = {}
        self.started = clock()
        self.last: float | None = None  # when the last bytes were reported
        #: whether a progress bar shows it (worth estimating a total for)
        self.drawn = False

    def __call__(self, event: str, amount: int) -> None:
        with self._lock:
            if event == "bytes":
                self.done += amount
                self.last = self._clock()
            elif event == "total":
                self.total = amount
                if not self.done:
                    self.started = self._clock()
            else:
                self.counts[event] = self.counts.get(event, 0) + amount

    def estimate_total(self, total: int) -> None:
        """Set the total from an estimate made beside the operation (a backup's pre-scan):
        unlike a ``total`` event, never a new start for the rate."""
        with self._lock:
            self.total = total

    @property
    def shown_total(self) -> int | None:
        """The total, or the bytes done if an estimate fell short."""
        return None if self.total is None else max(self.total, self.done)

    def rate(self, now: float | None = None) -> float | None:
        """Bytes a second from the start of the data to ``now`` (default: the last bytes);
        None before any byte."""
        total = self.shown_total
        finished = total is not None and self.done >= total
        end = self.last if now is None or finished else now  # done: no idle tail
        if not self.done or end is None or end <= self.started:
            return None
        return self.done / (end - self.started)

    def remaining(self, now: float | None = None) -> float | None:
        """Seconds left at the rate so far; None without a total or a rate."""
        total = self.shown_total
        if total is None:
            return None
        if self.done >= total:
            return 0.0
        rate = self.rate(self._clock() if now is None else now)
        return (total - self.done) / rate if rate else None


@contextmanager
def progress_bar(
    description: str,
    total: int | None,
    enabled: bool,
    *,
    count: str | None = None,
    console: Console | None = None,
    clock: Callable[[], float] | None = None,
) -> Iterator[ProgressReport]:
    """A :class:`ProgressReport` to pass the engine as its progress callback, drawn as a
    progress line on ``console`` (``err``) when ``enabled`` and it is a terminal.

    The line fits the terminal: label, bar, bytes done of the total (binary units), the rate,
    the ``count`` of items (``count="file"`` counts ``("file", n)`` events; None shows none)
    and the time remaining. ``total`` is the bytes expected when the command knows them; the
    engine may announce them (a ``total`` event), and a command with an estimate made beside
    the operation calls :meth:`ProgressReport.estimate_total`. The report outlives the bar:
    its :meth:`~ProgressReport.rate` is the one a summary line shows.
    """
    console = console or err
    clock = clock or time.monotonic
    report = ProgressReport(total, clock=clock)
    if not enabled or not console.is_terminal:
        yield report
        return
    from stcore.cli.bars import drawn  # rich's progress, imported only to draw on a terminal

    with drawn(report, description, count, console, clock):
        yield report


class PrintableLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stcore's logged warnings (a broken plugin, a damaged lock) on stderr, as Python's
    last-resort handler prints them, but through :func:`printable`: they quote other programs'
    errors and repository text. The message stays one line; a traceback keeps its lines."""

    def format(self, record: logging.LogRecord) -> str:
        shown = printable(record.getMessage())  # one line, whatever it quotes
        if record.exc_info:  # a traceback keeps its lines
            trace = logging.Formatter().formatException(record.exc_info)
            shown += "".join(f"\n{printable(line)}" for line in trace.splitlines())
        return shown
