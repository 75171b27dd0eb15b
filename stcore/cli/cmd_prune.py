"""``stcore prune``: delete data no snapshot references and repack mostly-dead packs."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, human_size, plural, progress_bar, say
from stcore.cli.root import cli
from stcore.repo.prune import DEFAULT_REPACK_THRESHOLD, PruneResult

#: the options ``forget --prune`` takes too
repack_threshold_option = click.option(
    "--repack-threshold", type=float, default=DEFAULT_REPACK_THRESHOLD, show_default=True,
    help="Repack packs whose live share is below this fraction.",
)  # fmt: skip
wait_option = click.option(
    "--wait", type=float, default=600.0, show_default=True, metavar="SECONDS",
    help="How long to wait for running backups to finish.",
)  # fmt: skip


@cli.command()
@click.option("--remote", default=None, help="Prune this configured remote instead.")
@repack_threshold_option
@click.option("--dry-run", "-n", is_flag=True, help="Only report what would be freed.")
@wait_option
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
    for line in summary(result, dry_run):
        say(line)


def summary(result: PruneResult, dry_run: bool) -> list[str]:
    """What a prune prints, in lines that fit 80 columns (``forget --prune`` prints it too)."""
    verb = "would free" if dry_run else "freed"
    lines = [
        f"{verb} {human_size(result.bytes_freed)}: {result.packs_deleted} of "
        f"{plural(result.packs_before, 'pack')} deleted, {result.packs_repacked} repacked into "
        f"{result.packs_written}",
        f"{plural(result.snapshots, 'snapshot')} kept ({human_size(result.bytes_after)} stored)",
    ]
    if result.abandoned_removed:
        lines.append(
            f"removed {plural(result.abandoned_removed, 'file')} left by interrupted writes"
        )
    return lines
