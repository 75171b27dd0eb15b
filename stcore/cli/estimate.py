"""A backup's expected size, for its progress bar's total: ``files`` sources are walked on a
thread beside the backup (names and sizes only, as restic's scanner does), a ``sqlite`` source
is its file's size, and any other source counts what its last snapshot held."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from stcore.builtins.sources import FilesSource, SqliteSource
from stcore.cli.output import ProgressReport
from stcore.interfaces import Source
from stcore.repository import Repository

#: how long the end of a backup waits for a scan still walking (it stops at its next entry)
JOIN_SECONDS = 1.0


def _walk_size(source: FilesSource, stop: threading.Event) -> int | None:
    """The bytes of the files ``source`` would back up; None if stopped first."""
    total = 0
    for entry in source.scan(lambda path, exc: None):  # the backup reports what it cannot read
        if stop.is_set():
            return None
        if entry.kind == "file":
            total += entry.size
    return total


def _known_size(repo: Repository, source: Source) -> int | None:
    """A source's size without walking it: its file's, or in its last snapshot; None if neither
    is known."""
    if isinstance(source, SqliteSource):
        try:
            return os.path.getsize(source.path)
        except OSError:
            return None
    for manifest in repo.snapshots(source=source.name, limit=1):
        summary = manifest.sources.get(source.name)
        if summary is not None:
            return summary.size
    return None


@contextmanager
def estimated_total(
    repo: Repository, sources: Sequence[Source], report: ProgressReport
) -> Iterator[None]:
    """While the body backs up ``sources``, work out their size and give it to ``report``
    (:meth:`~stcore.cli.output.ProgressReport.estimate_total`), if a bar shows it and every
    source's size can be known; the scan stops when the body ends."""
    if not report.drawn:
        yield
        return
    walked = [s for s in sources if isinstance(s, FilesSource)]
    known = [_known_size(repo, s) for s in sources if not isinstance(s, FilesSource)]
    if None in known:
        yield
        return
    base = sum(size for size in known if size is not None)
    stop = threading.Event()

    def scan() -> None:
        total = base
        for source in walked:
            try:
                size = _walk_size(source, stop)
            except Exception:  # an estimate only: the backup itself reports the error
                return
            if size is None:
                return
            total += size
        report.estimate_total(total)

    thread = threading.Thread(target=scan, name="st-backup-estimate", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(JOIN_SECONDS)
