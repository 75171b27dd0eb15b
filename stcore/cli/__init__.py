"""The ``stcore`` command line: one module per command or command group (``cmd_*.py``), as
restic keeps ``cmd_*.go``, over one output helper (:mod:`stcore.cli.output`) so every command
prints the same way.

Exit codes: 0 success, 1 error (one line on stderr, no traceback), 2 usage error, 3 backup
finished but some entries could not be read (the snapshot holds everything else), 130 interrupted.
Every listing command takes ``--json`` for scripts; progress bars appear only on a terminal.
"""

from __future__ import annotations

# Importing a command module registers its command on the group.
from stcore.cli import (  # noqa: F401
    cmd_backup,
    cmd_cache,
    cmd_catalog,
    cmd_check,
    cmd_daemon,
    cmd_diff,
    cmd_dump,
    cmd_forget,
    cmd_init,
    cmd_key,
    cmd_plugins,
    cmd_prune,
    cmd_repair,
    cmd_restore,
    cmd_serve,
    cmd_show,
    cmd_snapshots,
    cmd_stats,
    cmd_status,
    cmd_sync,
)
from stcore.cli.output import PrintableLogHandler, printable
from stcore.cli.root import cli, main

__all__ = ["PrintableLogHandler", "cli", "main", "printable"]
