"""``stcore init``: create a new, empty repository (encrypted with --encrypt)."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, say
from stcore.cli.root import cli
from stcore.errors import ConfigError
from stcore.repository import (
    init_repository,
)


@cli.command()
@click.option("--compression", default=None, help="Compressor for new data (default: zstd).")
@click.option(
    "--level",
    type=int,
    default=None,
    help="Compression level (zstd default: 3, and 4 for database pages).",
)
@click.option(
    "--create-bucket", is_flag=True, help="Create the bucket/container/directory if it is missing."
)
@click.option(
    "--encrypt", is_flag=True, help="Encrypt everything but the config (asks a password)."
)
@click.option(
    "--cipher",
    type=click.Choice(["aes-256-gcm", "chacha20-poly1305"]),
    default="aes-256-gcm",
    show_default=True,
    help="With --encrypt: the cipher.",
)
@click.option(
    "--group-access",
    is_flag=True,
    help="Let the repository directory's group read it (files 0640, folders 0750).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def init(
    ctx: Context,
    compression: str | None,
    level: int | None,
    create_bucket: bool,
    encrypt: bool,
    cipher: str,
    group_access: bool,
    as_json: bool,
) -> None:
    """Create a new, empty repository (encrypted with --encrypt)."""
    url = ctx.url
    password = ctx.password(confirm=True) if encrypt else None
    if encrypt and password is None:
        raise ConfigError(
            "--encrypt needs a password: set STCORE_PASSWORD, or use --password-file or "
            "--password-command"
        )
    repo = init_repository(
        url,
        compression=compression or ctx.settings.compression,
        compression_level=level if level is not None else ctx.settings.compression_level,
        create=create_bucket or "://" not in url,
        host=ctx.host,
        options=ctx.settings.backend_options,
        encryption=cipher if encrypt else "none",
        password=password,
        group_access=group_access,
    )
    with repo:
        if as_json:
            emit_json(
                {
                    "repository": repo.location,
                    "id": repo.id,
                    "version": repo.config.version,
                    "encryption": repo.config.encryption,
                }
            )
        else:
            say(f"created stcore repository {repo.id} at {repo.location}")
