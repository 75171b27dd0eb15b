"""``stcore sync``: upload the snapshots (default: all) and data a remote lacks."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, human_rate, human_size, plural, progress_bar, say
from stcore.cli.root import cli
from stcore.errors import ConfigError


@cli.command()
@click.argument("snaps", nargs=-1)
@click.option("--remote", default=None, help="Remote to sync to (default: every configured one).")
@click.option("--concurrency", type=int, default=4, show_default=True, help="Parallel uploads.")
@click.option("--bwlimit", type=int, default=None, metavar="KIB/S", help="Upload bandwidth limit.")
@click.option(
    "--prune", "prune_remote", is_flag=True,
    help="Also forget on the remote what was forgotten here, then prune it.",
)  # fmt: skip
@click.option(
    "--create-bucket", is_flag=True,
    help="Create the remote's bucket, container or directory if it is missing.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
@pass_context
def sync(
    ctx: Context,
    snaps: tuple[str, ...],
    remote: str | None,
    concurrency: int,
    bwlimit: int | None,
    prune_remote: bool,
    create_bucket: bool,
    as_json: bool,
) -> None:
    """Upload the snapshots (default: all) and data a remote lacks.

    Packs go first, then indexes, then manifests: a remote never holds a snapshot whose data is
    missing, and a sync that was interrupted resumes where it stopped. The first sync to a
    remote makes it a copy of this repository (same id); --create-bucket creates its bucket
    first if there is none yet.
    """
    from stcore.sync import SyncOptions

    remotes = [ctx.settings.remote(remote)] if remote else list(ctx.settings.remotes)
    if not remotes:
        ctx.settings.remote(None)  # raises the "no remote is configured" error
    if prune_remote and snaps:
        raise ConfigError("--prune works on a whole sync; do not name snapshots with it")
    options = SyncOptions(
        concurrency=concurrency,
        bandwidth_limit=bwlimit * 1024 if bwlimit else None,
        prune=prune_remote,
        create_bucket=create_bucket,
    )
    results = []
    with ctx.open() as repo:
        ids = [repo.resolve(s).id for s in snaps] or None
        for target in remotes:
            with progress_bar(
                f"syncing to {target.name}", None, not as_json, count="object"
            ) as progress:  # the engine announces the bytes it will upload
                result = repo.sync(target, ids, options=options, progress=progress)
            results.append(result)
            if not as_json:
                skipped = result.snapshots_skipped
                say(
                    f"{target.name}: {plural(len(result.snapshots), 'snapshot')}, "
                    f"{plural(result.objects_uploaded, 'object')} "
                    f"({human_size(result.bytes_uploaded)}) uploaded in {result.seconds:.1f} s "
                    f"({human_rate(result.throughput)}); {skipped} "
                    f"{'was' if skipped == 1 else 'were'} already there"
                )
    if as_json:
        emit_json([r.to_json() for r in results])
