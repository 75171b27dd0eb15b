"""``stcore completion``: print the shell script that completes stcore's commands, options and
snapshot ids (click's shell completion, driven by ``_STCORE_COMPLETE``)."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import click
from click.shell_completion import CompletionItem, get_completion_class

from stcore.cli.root import cli
from stcore.models import SNAPSHOT_ID

SHELLS = ("bash", "zsh", "fish")

#: seconds a <TAB> may spend reading snapshot ids before it offers none
SNAPSHOT_COMPLETION_TIMEOUT = 2.0

#: command -> its arguments (and options) that name snapshots: they complete to snapshot ids
SNAPSHOT_ARGUMENTS = {
    "diff": ("old", "new"),
    "dump": ("snap",),
    "find": ("snaps",),  # --snapshot
    "forget": ("snaps",),
    "ls": ("snap",),
    "restore": ("snap",),
    "show": ("snap",),
    "sync": ("snaps",),
    "tag": ("snaps",),
}

INSTALL = """\
\b
Install (then open a new shell):
  bash: echo 'eval "$(stcore completion bash)"' >> ~/.bashrc
  zsh:  echo 'eval "$(stcore completion zsh)"' >> ~/.zshrc   (after compinit)
  fish: stcore completion fish > ~/.config/fish/completions/stcore.fish
"""


@cli.command(epilog=INSTALL)
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    Completes commands, options and, for a local repository whose password is not asked for,
    snapshot ids. The script runs `stcore` to complete, so stcore must be on the PATH.
    """
    root = ctx.find_root()
    script_class = get_completion_class(shell)
    assert script_class is not None  # click knows the three SHELLS
    script = script_class(root.command, {}, root.info_name or "stcore", "_STCORE_COMPLETE")
    click.echo(script.source(), nl=False)


class SnapshotRef(click.types.StringParamType):
    """A snapshot reference: text, whose completions are the ids in the repository's catalog."""

    name = "snapshot"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        refs = ["latest", *snapshot_ids(ctx)]
        return [CompletionItem(ref) for ref in refs if ref.startswith(incomplete)]


def snapshot_ids(ctx: click.Context, timeout: float = SNAPSHOT_COMPLETION_TIMEOUT) -> list[str]:
    """The snapshot ids of the repository the command line names, newest first; none when
    finding them would mean the network, a password prompt or a command, or takes too long.

    A completion must never fail loudly: anything that goes wrong means no ids (and nothing
    logged: stderr is the user's terminal, in the middle of a command line).
    """
    found: list[str] = []

    def read() -> None:
        try:
            found.extend(_local_snapshot_ids(ctx))
        except Exception:  # see the docstring: no ids, quietly
            pass

    logging.disable(logging.CRITICAL)
    worker = threading.Thread(target=read, daemon=True, name="st-complete")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return []  # it stays quiet until the process, which only completes, exits
    logging.disable(logging.NOTSET)
    return found


def _local_snapshot_ids(ctx: click.Context) -> list[str]:
    from stcore.config import load_dotenv_file, load_settings
    from stcore.repository import open_repository

    load_dotenv_file()  # as the command itself would: .env may name the repository

    given: dict[str, Any] = {}
    for level in reversed(_chain(ctx)):  # the subcommand's --repo wins over the group's
        given.update({k: v for k, v in level.params.items() if v is not None})
    settings = load_settings(given.get("config"))
    url = settings.repository_url(given.get("repo"))
    if "://" in url and not url.startswith("file://"):
        return []  # a cloud repository: a <TAB> does not wait on the network

    def password() -> str | None:
        password_file = given.get("password_file")
        if password_file is not None:
            with open(os.path.expanduser(password_file)) as handle:
                return handle.readline().rstrip("\r\n")
        return os.environ.get("STCORE_PASSWORD")  # never a prompt, never a command

    with open_repository(url, options=settings.backend_options, password=password) as repo:
        # Only well-formed ids: a completion is fed to the shell (a "," or a newline would break
        # its protocol, a control character would reach the terminal).
        return [m.id for m in repo.snapshots() if SNAPSHOT_ID.fullmatch(m.id)]


def _chain(ctx: click.Context) -> list[click.Context]:
    """``ctx`` and its parents, innermost first."""
    chain = []
    current: click.Context | None = ctx
    while current is not None:
        chain.append(current)
        current = current.parent
    return chain


def complete_snapshot_arguments(group: click.Group) -> None:
    """Make the snapshot arguments of ``group``'s commands (:data:`SNAPSHOT_ARGUMENTS`) complete
    to snapshot ids; their values are the same text as before. (A command that is not there is
    skipped: the CLI must start whatever it has; tests/test_completion.py checks the table.)"""
    for command_name, names in SNAPSHOT_ARGUMENTS.items():
        command = group.commands.get(command_name)
        for param in command.params if command is not None else ():
            if param.name in names and isinstance(param.type, click.types.StringParamType):
                param.type = SnapshotRef()
