"""Draw a :class:`~stcore.cli.output.ProgressReport` as one progress line on a terminal.

Kept apart from :mod:`stcore.cli.output` so that rich's progress and table modules are imported
only when a bar is drawn: a backup run from cron or a script (no terminal) does not pay for them
at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.progress import Progress, ProgressColumn, Task
from rich.progress_bar import ProgressBar
from rich.table import Column
from rich.text import Text

from stcore.cli.output import ProgressReport, human_rate, human_size, plural
from stcore.text import printable


@contextmanager
def drawn(
    report: ProgressReport,
    description: str,
    count: str | None,
    console: Console,
    clock: Callable[[], float],
) -> Iterator[None]:
    """Draw ``report`` on ``console`` (a terminal) until the block ends; the line is removed."""
    columns = _bar_columns(report, description, count, console.width)
    with Progress(*columns, console=console, transient=True, get_time=clock) as bar:
        bar.add_task(printable(description), total=None)
        report.drawn = True
        try:
            yield
        finally:
            report.drawn = False


def _clock_time(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def _bytes_of(done: int, total: int | None) -> str:
    """``123.4/245.8 MiB`` (one unit, chosen by the total), or ``123.4 MiB`` without a total."""
    if total is None:
        return human_size(done)
    power = 0
    while total >= 1024 ** (power + 1) and power < len(_BYTE_UNITS) - 1:
        power += 1
    if power == 0:
        return f"{done}/{total} B"
    unit = 1024**power
    return f"{done / unit:.1f}/{total / unit:.1f} {_BYTE_UNITS[power]}"


class _ReportColumn(ProgressColumn):
    """A progress bar column drawn from a :class:`ProgressReport`, in a fixed width."""

    def __init__(self, report: ProgressReport, width: int, justify: str = "right") -> None:
        self.report = report
        self.width = width
        super().__init__(
            table_column=Column(
                width=width, no_wrap=True, overflow="ellipsis",
                justify="left" if justify == "left" else "right",
            )
        )  # fmt: skip

    def render(self, task: Task) -> Any:
        return Text(self.text(task))

    def text(self, task: Task) -> str:
        raise NotImplementedError


class _LabelColumn(_ReportColumn):
    def __init__(self, report: ProgressReport, width: int, label: str) -> None:
        super().__init__(report, width, justify="left")
        self.label = printable(label)  # a remote's name is text

    def text(self, task: Task) -> str:
        return self.label


class _BarColumn(_ReportColumn):
    def render(self, task: Task) -> Any:
        total = self.report.shown_total
        return ProgressBar(
            total=total, completed=self.report.done, width=self.width,
            pulse=total is None, animation_time=task.get_time(),
        )  # fmt: skip


class _BytesColumn(_ReportColumn):
    def text(self, task: Task) -> str:
        return _bytes_of(self.report.done, self.report.shown_total)


class _RateColumn(_ReportColumn):
    def text(self, task: Task) -> str:
        rate = self.report.rate(task.get_time())
        return "" if rate is None else human_rate(rate)


class _CountColumn(_ReportColumn):
    def __init__(self, report: ProgressReport, width: int, noun: str) -> None:
        super().__init__(report, width)
        self.noun = noun

    def text(self, task: Task) -> str:
        return plural(self.report.counts.get(self.noun, 0), self.noun)


class _EtaColumn(_ReportColumn):
    """The time remaining (rich's TimeRemainingColumn estimates from its own samples; this one
    from the report's rate, the one shown beside it)."""

    def text(self, task: Task) -> str:
        if self.report.total is None:
            return ""
        left = self.report.remaining(task.get_time())
        return "ETA -:--" if left is None else f"ETA {_clock_time(left)}"


#: widths of the bar's columns: "1023.9/1023.9 MiB", "1023.9 MiB/s", "ETA 9:59:59"
BYTES_WIDTH, RATE_WIDTH, ETA_WIDTH = 17, 12, 11
#: the bar itself: narrower than this and the count, then the rate, are left out
BAR_MIN, BAR_MAX = 6, 40
#: spaces between the bar's columns (rich's progress table)
BAR_GAP = 1


def _bar_columns(
    report: ProgressReport, label: str, count: str | None, width: int
) -> list[ProgressColumn]:
    """The progress line's columns, fitted to ``width``: label, bar, bytes, rate, count, ETA."""
    label_width = min(cell_len(printable(label)), max(12, width // 4))
    optional = {"rate": RATE_WIDTH, "count": len(plural(999999, count)) if count else 0}
    if not count:
        del optional["count"]

    def bar_width() -> int:
        fixed = [label_width, BYTES_WIDTH, ETA_WIDTH, *optional.values()]
        return width - sum(fixed) - BAR_GAP * len(fixed)

    for dropped in ("count", "rate"):  # the count goes first, then the rate
        if bar_width() < BAR_MIN:
            optional.pop(dropped, None)
    label_width = max(1, label_width - max(0, BAR_MIN - bar_width()))
    columns: list[ProgressColumn] = [
        _LabelColumn(report, label_width, label),
        _BarColumn(report, max(1, min(BAR_MAX, bar_width()))),
        _BytesColumn(report, BYTES_WIDTH),
    ]
    if "rate" in optional:
        columns.append(_RateColumn(report, RATE_WIDTH))
    if count and "count" in optional:
        columns.append(_CountColumn(report, optional["count"], count))
    columns.append(_EtaColumn(report, ETA_WIDTH))
    return columns
