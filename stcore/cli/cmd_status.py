"""``stcore status``:
per remote: last successful sync, pending snapshots and bytes, last error, next run."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, human_size, out
from stcore.cli.root import cli


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Per remote: last successful sync, pending snapshots and bytes, last error, next run."""
    from stcore.tasks import repository_status

    with ctx.open() as repo:
        document = repository_status(repo, ctx.settings.remotes)
    if as_json:
        emit_json(document)
        return
    daemon_info = document["daemon"]
    out.print(f"repository  {document['repository']} ({document['id']})", highlight=False)
    out.print(
        f"snapshots   {document['snapshots']} (latest: {document['latest_snapshot'] or '-'})",
        highlight=False,
    )
    if daemon_info["running"]:
        out.print(
            f"daemon      running (pid {daemon_info['pid']}); next backup "
            f"{daemon_info['next_backup'] or '-'}, next sync {daemon_info['next_sync'] or '-'}",
            highlight=False,
        )
    else:
        out.print("daemon      not running", highlight=False)
    if not document["remotes"]:
        out.print("no remotes configured", highlight=False)
    for remote in document["remotes"]:
        out.print(f"remote {remote['name']} ({remote['url']})", highlight=False)
        out.print(f"  last sync   {remote['last_sync'] or 'never'}", highlight=False)
        out.print(
            f"  pending     {remote['pending_snapshots']} snapshots, "
            f"{human_size(remote['pending_bytes'])}",
            highlight=False,
        )
        if remote["last_error"]:
            out.print(
                f"  last error  {remote['last_error']} (at {remote['last_error_at']})",
                highlight=False,
                markup=False,
            )
        else:
            out.print("  last error  -", highlight=False)
        out.print(f"  next run    {remote['next_run'] or '-'}", highlight=False)
