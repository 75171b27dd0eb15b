"""``stcore forget``:
forget SNAPS, or the snapshots a --keep-* policy does not keep (restic's semantics)."""

from __future__ import annotations

from typing import Any

import click

from stcore.cli.cmd_prune import repack_threshold_option, summary, wait_option
from stcore.cli.context import Context, pass_context
from stcore.cli.output import TableColumn, emit_json, plural, print_table, progress_bar, say
from stcore.cli.root import cli
from stcore.durations import parse_duration
from stcore.errors import ConfigError


@cli.command()
@click.argument("snaps", nargs=-1)
@click.option("--keep-last", type=int, default=0, metavar="N", help="Keep the N newest.")
@click.option("--keep-hourly", type=int, default=0, metavar="N", help="Newest of the last N hours.")
@click.option("--keep-daily", type=int, default=0, metavar="N", help="Newest of the last N days.")
@click.option("--keep-weekly", type=int, default=0, metavar="N", help="Newest of the last N weeks.")
@click.option(
    "--keep-monthly", type=int, default=0, metavar="N", help="Newest of the last N months."
)
@click.option("--keep-yearly", type=int, default=0, metavar="N", help="Newest of the last N years.")
@click.option(
    "--keep-within", default=None, metavar="DURATION",
    help="Everything within DURATION (e.g. 7d, 1y6mo) of the newest snapshot.",
)  # fmt: skip
@click.option("--keep-tag", "keep_tags", multiple=True, metavar="TAG", help="Snapshots with TAG.")
@click.option(
    "--prune", "then_prune", is_flag=True,
    help="Then prune, if anything was forgotten (as restic's forget --prune).",
)  # fmt: skip
@repack_threshold_option
@wait_option
@click.option("--dry-run", "-n", is_flag=True, help="Only show what would be forgotten, and why.")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@pass_context
def forget(
    ctx: Context,
    snaps: tuple[str, ...],
    keep_last: int,
    keep_hourly: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    keep_yearly: int,
    keep_within: str | None,
    keep_tags: tuple[str, ...],
    then_prune: bool,
    repack_threshold: float,
    wait: float,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Forget SNAPS, or the snapshots a --keep-* policy does not keep (restic's semantics).

    Snapshots are grouped by host and source set; a snapshot kept by any rule stays. Only the
    snapshot manifests are removed: the data they alone referenced stays in the packs until a
    prune reclaims it, or --prune does it now (with --dry-run, it shows what that would free).
    """
    from stcore.repo.forget import Policy
    from stcore.tasks import forget_by_policy

    policy = Policy(
        last=keep_last,
        hourly=keep_hourly,
        daily=keep_daily,
        weekly=keep_weekly,
        monthly=keep_monthly,
        yearly=keep_yearly,
        within=parse_duration(keep_within) if keep_within else None,
        tags=keep_tags,
    )
    if snaps and not policy.empty():
        raise ConfigError("give snapshot ids or a --keep-* policy, not both")
    if not snaps and policy.empty():
        raise ConfigError(
            "no policy given: nothing would be kept, so nothing is forgotten "
            "(use --keep-last, --keep-daily, --keep-within, ...)"
        )
    with ctx.open() as repo:
        rows: list[dict[str, Any]]
        if snaps:
            named = [repo.resolve_id(s) for s in snaps]
            rows = [{"id": i, "keep": False, "reasons": ["named"]} for i in named]
        else:
            outcome = forget_by_policy(repo, policy, prune=False, dry_run=dry_run)
            doomed = [d.manifest for d in outcome.decisions if not d.keep]
            rows = [
                {"id": d.manifest.id, "keep": d.keep, "reasons": list(d.reasons)}
                for d in outcome.decisions
            ]
        if snaps:
            removed = [] if dry_run else repo.forget(named)
            forgotten = len(named)
        else:
            removed = list(outcome.removed)
            forgotten = len(doomed)
        pruned = None
        # restic's meaning: prune runs if snapshots were forgotten (would be, in a dry run).
        if then_prune and (removed or (dry_run and forgotten)):
            going = [row["id"] for row in rows if not row["keep"]] if dry_run else ()
            with progress_bar("pruning", None, not as_json) as progress:
                pruned = repo.prune(
                    repack_threshold=repack_threshold,
                    dry_run=dry_run,
                    wait=wait,
                    progress=progress,
                    ignore_snapshots=going,
                )
    if as_json:
        emit_json(
            {
                "dry_run": dry_run,
                "decisions": rows,
                "removed": removed,
                "pruned": None if pruned is None else pruned.to_json(),
            }
        )
        return
    print_table(
        DECISION_COLUMNS,
        [["keep" if row["keep"] else "forget", row["id"], row["reasons"]] for row in rows],
    )
    action = f"{'would forget' if dry_run else 'forgot'} {plural(forgotten, 'snapshot')}"
    if pruned is not None:
        say(action)
        for line in summary(pruned, dry_run):
            say(line)
    elif then_prune:
        say(f"{action}; nothing to prune")
    else:
        say(f"{action}; run prune to reclaim space")


#: each snapshot's fate and the rules that decided it, one a line
DECISION_COLUMNS = (
    TableColumn("", "id"),
    TableColumn("snapshot", "id"),
    TableColumn("why"),
)
