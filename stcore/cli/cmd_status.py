"""``stcore status``:
per remote: last successful sync, pending snapshots and bytes, last error, next run."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, human_size, plural, print_fields, say
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
    if daemon_info["running"]:
        daemon_line = (
            f"running (pid {daemon_info['pid']}); next backup "
            f"{daemon_info['next_backup'] or '-'}, next sync {daemon_info['next_sync'] or '-'}"
        )
    else:
        daemon_line = "not running"
    print_fields(
        [
            ("repository", f"{document['repository']} ({document['id']})"),
            (
                "snapshots",
                f"{document['snapshots']} (latest: {document['latest_snapshot'] or '-'})",
            ),
            ("daemon", daemon_line),
        ]
    )
    if not document["remotes"]:
        say("no remotes configured")
    for remote in document["remotes"]:
        say(f"remote {remote['name']} ({remote['url']})")
        last_error = (
            f"{remote['last_error']} (at {remote['last_error_at']})"
            if remote["last_error"]
            else "-"
        )
        print_fields(
            [
                ("  last sync", remote["last_sync"] or "never"),
                (
                    "  pending",
                    f"{plural(remote['pending_snapshots'], 'snapshot')}, "
                    f"{human_size(remote['pending_bytes'])}",
                ),
                ("  last error", last_error),
                ("  next run", remote["next_run"] or "-"),
            ]
        )
