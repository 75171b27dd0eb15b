"""``stcore snapshots``: list snapshots, newest first, with the remotes each is synced to."""

from __future__ import annotations

from collections.abc import Iterable

import click

from stcore.cli.context import Context, parse_when, pass_context
from stcore.cli.output import (
    TableColumn,
    emit_json,
    err,
    human_size,
    plural,
    print_table,
    say,
)
from stcore.cli.root import cli
from stcore.models import SnapshotManifest


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
    print_table(SNAPSHOT_COLUMNS, [_row(m, sync_state[m.id]) for m in found])
    say(plural(len(found), "snapshot"))


#: The id already reads as the UTC time (20261124T131102Z-...), so it is the first column. A
#: narrow terminal leaves out added, files, size, host, then synced to (docs/cli.md, "Output").
SNAPSHOT_COLUMNS = (
    TableColumn("id (UTC time)", "id"),
    TableColumn("host", drop=4),
    TableColumn("tags"),
    TableColumn("sources"),
    TableColumn("files", "number", drop=2),
    TableColumn("size", "number", drop=3),
    TableColumn("added", "number", drop=1),
    TableColumn("synced to", drop=5),
)


def _row(m: SnapshotManifest, synced: Iterable[str]) -> list[str | list[str]]:
    """One snapshot's cells; lists (tags, sources, remotes) show one item a line."""
    return [
        [m.id, "(partial)"] if m.partial else m.id,
        m.host,
        list(m.tags),
        [f"{name} ({kind})" for name, kind in m.source_types.items()],
        str(m.files),
        human_size(m.size),
        human_size(m.added_bytes),
        sorted(synced) or "-",
    ]
