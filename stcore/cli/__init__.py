"""The ``stcore`` command line: one module per command or command group (``cmd_*.py``), as
restic keeps ``cmd_*.go``, over one output helper (:mod:`stcore.cli.output`) so every command
prints the same way.

Exit codes: 0 success, 1 error (one line on stderr, no traceback), 2 usage error, 3 backup
finished but some entries could not be read (the snapshot holds everything else), 130 interrupted,
141 the reader of standard output went away.
Every listing command takes ``--json`` for scripts; progress bars appear only on a terminal.
"""

from __future__ import annotations

# Importing a command module registers its command on the group.
from stcore.cli import (  # noqa: F401
    cmd_backup,
    cmd_cache,
    cmd_catalog,
    cmd_check,
    cmd_completion,
    cmd_daemon,
    cmd_diff,
    cmd_dump,
    cmd_find,
    cmd_forget,
    cmd_init,
    cmd_key,
    cmd_ls,
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
    cmd_tag,
    cmd_unlock,
)
from stcore.cli.output import PrintableLogHandler
from stcore.cli.root import cli, main
from stcore.text import printable

cmd_completion.complete_snapshot_arguments(cli)

__all__ = ["PrintableLogHandler", "cli", "main", "printable"]
