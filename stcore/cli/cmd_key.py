"""``stcore key``: manage the passwords (keys) that open an encrypted repository."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context, read_password
from stcore.cli.output import TableColumn, emit_json, print_table, say
from stcore.cli.root import cli
from stcore.errors import ConfigError


@cli.group()
def key() -> None:
    """Manage the passwords (keys) that open an encrypted repository."""


def _new_password(new_password_file: str | None) -> str:
    password = read_password(
        new_password_file, None, prompt="new password", confirm=True, env="STCORE_NEW_PASSWORD"
    )
    if not password:
        raise ConfigError(
            "no new password: use --new-password-file, STCORE_NEW_PASSWORD, or a terminal"
        )
    return password


@key.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_context
def key_list(ctx: Context, as_json: bool) -> None:
    """List the keys; the one that opened the repository is marked."""
    with ctx.open() as repo:
        keys = repo.keys()
    if as_json:
        emit_json([entry.to_json() for entry in keys])
        return
    print_table(
        KEY_COLUMNS,
        [["*" if e.current else "", e.id, str(e.created), e.host or "-"] for e in keys],
    )


#: ``*`` marks the key that opened the repository; a narrow terminal leaves out the host
KEY_COLUMNS = (
    TableColumn("", "id"),
    TableColumn("id", "id"),
    TableColumn("created", "id"),
    TableColumn("host", drop=1),
)


@key.command("add")
@click.option("--new-password-file", metavar="FILE", help="Read the new password from FILE.")
@pass_context
def key_add(ctx: Context, new_password_file: str | None) -> None:
    """Add a key: another password that opens the repository."""
    with ctx.open() as repo:
        repo.keys()  # an unencrypted repository says so before a new password is asked
        key_id = repo.add_key(_new_password(new_password_file))
    say(f"added key {key_id}")


@key.command("remove")
@click.argument("key_id")
@pass_context
def key_remove(ctx: Context, key_id: str) -> None:
    """Remove a key (its password no longer opens the repository). The last key is kept."""
    with ctx.open() as repo:
        repo.remove_key(key_id)
    say(f"removed key {key_id}")


@key.command("passwd")
@click.option("--new-password-file", metavar="FILE", help="Read the new password from FILE.")
@pass_context
def key_passwd(ctx: Context, new_password_file: str | None) -> None:
    """Change the password: add a key for the new one, remove the key used to open."""
    with ctx.open() as repo:
        repo.keys()  # an unencrypted repository says so before a new password is asked
        old = repo.key_id
        new = repo.change_password(_new_password(new_password_file))
    say(f"password changed: key {old} replaced by {new}")
