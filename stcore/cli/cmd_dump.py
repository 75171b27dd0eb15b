"""``stcore dump``: write one file of a snapshot to standard output."""

from __future__ import annotations

import sys

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.root import cli
from stcore.errors import ConfigError


@cli.command()
@click.argument("snap")
@click.argument("source")
@click.argument("path")
@pass_context
def dump(ctx: Context, snap: str, source: str, path: str) -> None:
    """Write one file of a snapshot to standard output."""
    with ctx.open() as repo:
        snapshot = repo.snapshot(snap)
        try:
            view = snapshot.sources[source]
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        stream = sys.stdout.buffer
        for chunk in view.iter_chunks(path):
            stream.write(chunk)
        stream.flush()
