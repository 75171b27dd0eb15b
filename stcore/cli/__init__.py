"""The ``stcore`` command line: one module per command or command group (``cmd_*.py``), as
restic keeps ``cmd_*.go``, over one output helper (:mod:`stcore.cli.output`) so every command
prints the same way.

Exit codes: 0 success, 1 error (one line on stderr, no traceback), 2 usage error, 3 backup
finished but some entries could not be read (the snapshot holds everything else), 130 interrupted,
141 the reader of standard output went away.
Every listing command takes ``--json`` for scripts; progress bars appear only on a terminal.
A command's module is imported when the command is run (:data:`stcore.cli.root.COMMANDS`).
"""

from __future__ import annotations

from stcore.cli.output import PrintableLogHandler
from stcore.cli.root import cli, main
from stcore.text import printable

__all__ = ["PrintableLogHandler", "cli", "main", "printable"]
