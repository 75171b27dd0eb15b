"""``stcore snapshots``: list snapshots, newest first, with the remotes each is synced to."""

from __future__ import annotations

import click
from rich.table import Table

from stcore.cli.context import Context, parse_when, pass_context
from stcore.cli.output import emit_json, err, human_size, out
from stcore.cli.root import cli


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--source", "-s", default=None, help="Only snapshots containing this source name.")
@click.option(
    "--type", "source_type", default=None, help="Only snapshots with a source of this type."
)
@click.option("--since", default=None, help="Not before this date/time, or e.g. 7d, 12h.")
@click.option("--until", default=None, help="Not after this date/time, or e.g. 1d.")
@click.option(
    "--tag", "-t", "tags", multiple=True, help="Only snapshots with this tag (repeatable)."
)
@click.option("--host", "hostname", default=None, help="Only snapshots from this host.")
@click.option("--limit", type=int, default=None, help="At most this many (newest first).")
@click.option(
    "--synced/--unsynced", default=None, help="Only snapshots already (or not yet) synced."
)
@click.option("--remote", default=None, help="With --synced/--unsynced: to this remote.")
@pass_context
def snapshots(
    ctx: Context,
    as_json: bool,
    source: str | None,
    source_type: str | None,
    since: str | None,
    until: str | None,
    tags: tuple[str, ...],
    hostname: str | None,
    limit: int | None,
    synced: bool | None,
    remote: str | None,
) -> None:
    """List snapshots, newest first, with the remotes each is synced to."""
    with ctx.open() as repo:
        found = repo.snapshots(
            since=parse_when(since),
            until=parse_when(until),
            source=source,
            source_type=source_type,
            tags=tags,
            host=hostname,
            synced=synced,
            remote=remote,
            limit=limit,
        )
        sync_state = {m.id: repo.catalog.synced_remotes(m.id) for m in found}
        damaged = repo.damaged_snapshots()
    for snapshot_id, reason in sorted(damaged.items()):
        err.print(
            f"warning: snapshot {snapshot_id} is damaged and left out: {reason}; "
            f"`stcore forget {snapshot_id}` removes it",
            highlight=False,
            markup=False,
        )
    if as_json:
        emit_json([{**m.summary(), "synced": sync_state[m.id]} for m in found])
        return
    # The id already reads as the UTC time (20261124T131102Z-...), so it is the first column.
    table = Table(box=None, pad_edge=False)
    table.add_column("id (UTC time)", no_wrap=True)
    for heading in ("host", "tags", "sources", "files", "size", "added", "synced to"):
        table.add_column(heading, no_wrap=heading in ("size", "added"))
    for m in found:
        row = m.summary()
        table.add_row(
            m.id + (" (partial)" if m.partial else ""),
            m.host,
            ",".join(m.tags),
            ",".join(f"{n}:{t}" for n, t in row["sources"].items()),
            str(row["files"]),
            human_size(m.size),
            human_size(m.added_bytes),
            ",".join(sorted(sync_state[m.id])) or "-",
        )
    out.print(table)
    out.print(f"{len(found)} snapshots", highlight=False)
