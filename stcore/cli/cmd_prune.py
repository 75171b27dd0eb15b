"""``stcore prune``: delete data no snapshot references and repack mostly-dead packs."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, human_size, out, progress_bar
from stcore.cli.root import cli


@cli.command()
@click.option("--remote", default=None, help="Prune this configured remote instead.")
@click.option(
    "--repack-threshold", type=float, default=0.5, show_default=True,
    help="Repack packs whose live share is below this fraction.",
)  # fmt: skip
@click.option("--dry-run", "-n", is_flag=True, help="Only report what would be freed.")
@click.option(
    "--wait", type=float, default=600.0, show_default=True, metavar="SECONDS",
    help="How long to wait for running backups to finish.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
@pass_context
def prune(
    ctx: Context,
    remote: str | None,
    repack_threshold: float,
    dry_run: bool,
    wait: float,
    as_json: bool,
) -> None:
    """Delete data no snapshot references and repack mostly-dead packs.

    Takes the repository's exclusive lock: running backups finish first, new ones wait.
    """
    with ctx.open(remote) as repo, progress_bar("pruning", None, not as_json) as progress:
        result = repo.prune(
            repack_threshold=repack_threshold, dry_run=dry_run, wait=wait, progress=progress
        )
    if as_json:
        emit_json({**result.to_json(), "dry_run": dry_run})
        return
    verb = "would free" if dry_run else "freed"
    out.print(
        f"{verb} {human_size(result.bytes_freed)}: {result.packs_deleted} of "
        f"{result.packs_before} packs deleted, {result.packs_repacked} repacked into "
        f"{result.packs_written}; {result.snapshots} snapshots kept "
        f"({human_size(result.bytes_after)} stored)"
        + (
            f"; removed {result.abandoned_removed} files left by interrupted writes"
            if result.abandoned_removed
            else ""
        ),
        highlight=False,
    )
