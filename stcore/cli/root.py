"""The ``stcore`` group itself: global options, expected errors turned into one line, and
``main``."""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import click

from stcore.cli.context import EXIT_INTERRUPTED, Context
from stcore.cli.output import PrintableLogHandler, fail, reader_gone
from stcore.errors import StcoreError
from stcore.text import printable
from stcore.version import __version__


def _printable_click_error(exc: click.ClickException) -> None:
    # Click types `message` Final for its own code; rewriting it is the one way its usage errors
    # (which quote the command line) print through printable().
    # Line by line: a group called bare answers with its whole help, which keeps its lines.
    lines = exc.message.split("\n")
    exc.message = "\n".join(printable(line) for line in lines)  # type: ignore[misc]


#: every command; ``stcore.cli.cmd_NAME`` defines command NAME on the group when it is imported
COMMANDS = (
    "backup",
    "cache",
    "catalog",
    "check",
    "completion",
    "daemon",
    "diff",
    "dump",
    "find",
    "forget",
    "init",
    "key",
    "ls",
    "plugins",
    "prune",
    "repair",
    "restore",
    "serve",
    "show",
    "snapshots",
    "stats",
    "status",
    "sync",
    "tag",
    "unlock",
)


class StcoreGroup(click.Group):
    """Turns expected errors into one line and a meaningful exit code, and imports each command
    when it is asked for (click's lazily loaded subcommands).

    Click prints its own usage errors, which quote what was typed (``No such option: ...``,
    ``Invalid value for '--since': ...``): their messages go through :func:`printable` too.

    Importing every command module at start made every command import restore, check, repair,
    sync and the dashboard's modules before doing anything; a backup now imports what it needs
    (374 modules, not 420). ``--help`` and completion import them all.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def every_command(self) -> Mapping[str, click.Command]:
        """Every command, each imported: what ``commands`` holds once all were asked for."""
        for name in COMMANDS:
            self._load(name)
        return self.commands

    def _load(self, name: str) -> None:
        """Import command ``name``'s module unless the command is on the group already."""
        if name in self.commands:
            return
        importlib.import_module(f"stcore.cli.cmd_{name}")  # its decorator adds it to the group
        from stcore.cli.cmd_completion import complete_snapshot_arguments

        complete_snapshot_arguments(self)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            _printable_click_error(exc)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            _printable_click_error(exc)
            raise
        except StcoreError as exc:
            fail(str(exc), exc.exit_code)
        except BrokenPipeError:
            reader_gone()
        except OSError as exc:  # the host refused (a full disk, a path too long): one line
            where = f"{os.fsdecode(exc.filename)}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}")
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)


@click.group(cls=StcoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--repo",
    "-r",
    metavar="URL",
    help="Repository path or URL (default: $STCORE_REPO, stcore.toml, ~/.local/share/stcore/repo).",
)
@click.option("--config", "-c", metavar="FILE", help="stcore.toml to use (default: ./stcore.toml).")
@click.option(
    "--password-file", metavar="FILE", help="Read the repository password from FILE's first line."
)
@click.option(
    "--password-command", metavar="CMD", help="Run CMD and use its output as the password."
)
@click.version_option(__version__, prog_name="stcore")
@click.pass_context
def cli(
    ctx: click.Context,
    repo: str | None,
    config: str | None,
    password_file: str | None,
    password_command: str | None,
) -> None:
    """Versioned, deduplicated backups of application data that AI code can read back.

    Encrypted repositories take their password from --password-file, --password-command,
    STCORE_PASSWORD, or a prompt.
    """
    ctx.obj = Context(repo, config, password_file, password_command)


#: seconds a thread may hold the GIL while another waits for it (Python's default is 5 ms)
SWITCH_INTERVAL = 0.001


#: the collector's thresholds for the command-line tool (Python's defaults: 700, 10, 10)
GC_THRESHOLDS = (10_000, 50, 50)


def main() -> None:
    # A backup's main thread makes many short calls that release the GIL (hashing a page,
    # cutting a chunk) while sealing threads run Python between their zstd calls; after each
    # call it waits up to a switch interval to get the GIL back. 1 ms instead of 5 took the
    # benchmark's first backup from 3.27 s to 3.03 s (mean of six). The command-line tool owns
    # its process, so it sets this; embedders choose for themselves (docs/architecture.md).
    sys.setswitchinterval(SWITCH_INTERVAL)
    # A backup makes a few Python objects per file (entries, tree nodes) and keeps almost none,
    # and stcore makes few reference cycles; with the default thresholds the collector ran
    # every 700 of them and rescanned every imported module's objects at each full pass.
    # Freezing what is loaded now and collecting the young generation less often took the
    # Linux tree's first backup from 9.09 s to 8.19 s (no-change 3.22 s to 2.95 s).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    handler = PrintableLogHandler()
    handler.setLevel(logging.WARNING)
    logging.getLogger("stcore").addHandler(handler)
    cli(prog_name="stcore")
