"""``stcore backup``: back up PATHS, or every source in stcore.toml, into one new snapshot."""

from __future__ import annotations

import sys

import click

from stcore.cli.context import EXIT_PARTIAL, Context, pass_context
from stcore.cli.output import emit_json, err, human_size, out, progress_bar, styled
from stcore.cli.root import cli
from stcore.errors import ConfigError
from stcore.sources import sources_for_paths
from stcore.tasks import configured_sources


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--tag", "-t", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option(
    "--source", "-s", "only", multiple=True, help="Back up only these configured sources."
)
@click.option("--host", "hostname", default=None, help="Host name to record (default: this one).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def backup(
    ctx: Context,
    paths: tuple[str, ...],
    tags: tuple[str, ...],
    only: tuple[str, ...],
    hostname: str | None,
    as_json: bool,
) -> None:
    """Back up PATHS, or every source in stcore.toml, into one new snapshot.

    Exits 3 if some files could not be read: they are listed, everything else is saved.
    """
    if paths:
        sources = sources_for_paths(paths, host=ctx.host)
    elif not ctx.settings.sources and not only:
        raise ConfigError(
            "nothing to back up: give PATHS or configure [sources.NAME] in stcore.toml"
        )
    else:
        sources = configured_sources(ctx.settings, ctx.host, only)
    with ctx.open() as repo, progress_bar("backing up", None, not as_json) as progress:
        result = repo.backup(
            sources,
            tags=(*ctx.settings.tags, *tags),
            hostname=hostname,
            progress=progress,
        )
    manifest = result.manifest
    if as_json:
        emit_json({**manifest.summary(), "errors": [list(e) for e in result.errors]})
    else:
        files = manifest.files
        out.print(
            f"snapshot {manifest.id} saved: {files} files, {human_size(manifest.size)} read, "
            f"{human_size(manifest.added_bytes)} added to the repository",
            highlight=False,
        )
        for path, message in result.errors:
            err.print(styled("yellow", "could not read", f"{path}: {message}"), highlight=False)
    if result.partial:
        if not as_json:
            err.print(
                styled(
                    "yellow",
                    "warning:",
                    f"{len(result.errors)} entries could not be read; "
                    "the snapshot holds everything else",
                ),
                highlight=False,
            )
        sys.exit(EXIT_PARTIAL)
