"""How every command prints: text made safe for a terminal, tables, JSON, sizes, progress
bars and the one-line error."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from stcore.cli.context import EXIT_ERROR

#: what `printable` escapes: C0 controls, DEL and C1 controls (a terminal obeys them), the
#: bidirectional formatting characters and line/paragraph separators (they reorder or break what
#: is shown), and lone surrogates (surrogateescape's stand-ins for bytes that are not UTF-8; they
#: cannot be encoded). A backslash is left as it is: error messages quote names with repr(), which
#: already escapes them, and doubling would show those escapes doubled ('x\\x1b'); --json is exact.
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    r"\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"  # bidi formatting, U+2028, U+2029
    r"\ud800-\udfff]"  # lone surrogates
)


_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x80 or 0xDC80 <= code <= 0xDCFF:  # an ASCII control, or the byte it stands for
        return f"\\x{code & 0xFF:02x}"
    return f"\\u{code:04x}"


def printable(text: str) -> str:
    r"""``text`` as it is safe to show on a terminal: never a control sequence, always encodable.

    ``\n``, ``\t``, ``\r`` and ``\xNN`` below 0x80 are those control characters; ``\xNN`` from
    0x80 is a byte of a name that is not UTF-8 (its surrogateescape character U+DC80+NN:
    ``os.fsencode`` gives the byte back); ``\uNNNN`` is a C1 control, a bidirectional formatting
    character, a line or paragraph separator, or another lone surrogate. Everything else, a
    backslash and non-ASCII letters included, is shown as it is, so the output is safe but not
    always exact: ``--json`` is. docs/cli.md, "Names and text in the output", says the same.
    """
    return _UNSAFE.sub(_escape_one, text)


class PlainConsole(Console):
    """A Console for users' text: every string it renders, table cells included, is shown
    through :func:`printable`. Markup and emoji codes are off (``[x]``, ``:smile:`` stay as
    written); a program literal that wants style prints a :func:`styled` Text instead."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(printable(text), **{**kwargs, "markup": False, "emoji": False})


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
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@contextmanager
def progress_bar(
    description: str, total: int | None, enabled: bool
) -> Iterator[Callable[[str, int], None]]:
    """A rich progress bar on a terminal; a no-op callback otherwise."""
    if not enabled or not err.is_terminal:
        yield lambda event, amount: None
        return
    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),  # a remote name is text
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[files]} files"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(printable(description), total=total, files=0)
        files = 0

        def update(event: str, amount: int) -> None:
            nonlocal files
            if event == "bytes":
                bar.advance(task, amount)
            elif event in ("file", "object"):
                files += amount
                bar.update(task, files=files)

        yield update


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
