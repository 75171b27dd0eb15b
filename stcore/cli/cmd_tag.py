"""``stcore tag``: add, remove or replace the tags of existing snapshots, as restic's ``tag``."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, out, plural
from stcore.cli.root import cli


@cli.command()
@click.argument("snaps", nargs=-1)
@click.option("--add", "add", multiple=True, metavar="TAG", help="Add TAG (repeatable).")
@click.option("--remove", "remove", multiple=True, metavar="TAG", help="Remove TAG (repeatable).")
@click.option(
    "--set", "set_tags", multiple=True, metavar="TAG",
    help='Replace every tag with the TAGs given (repeatable; --set "" removes them all).',
)  # fmt: skip
@click.option(
    "--tag", "-t", "tags", multiple=True, metavar="TAG",
    help="Without SNAPS: only snapshots with this tag (repeatable: all of them).",
)  # fmt: skip
@click.option(
    "--host", "hostname", default=None, metavar="NAME", help="Without SNAPS: only from this host."
)
@click.option(
    "--source", "-s", default=None, metavar="NAME",
    help="Without SNAPS: only snapshots containing this source.",
)  # fmt: skip
@click.option(
    "--wait", type=float, default=None, metavar="SECONDS",
    help="How long to wait for the exclusive lock (default: $STCORE_LOCK_WAIT, else 600).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print what changed as JSON.")
@pass_context
def tag(
    ctx: Context,
    snaps: tuple[str, ...],
    add: tuple[str, ...],
    remove: tuple[str, ...],
    set_tags: tuple[str, ...],
    tags: tuple[str, ...],
    hostname: str | None,
    source: str | None,
    wait: float | None,
    as_json: bool,
) -> None:
    """Add, remove (--add, --remove) or replace (--set) the tags of snapshots SNAPS, or of
    every snapshot the filters select when no SNAPS are given (all of them without filters).

    A tag is taken as written: spaces, commas and brackets are part of it. A changed snapshot
    gets a new id (the same time, a new random part); the old one is deleted after the new one
    is written, under the repository's exclusive lock. A remote keeps the old snapshot until a
    sync --prune.
    """
    if set_tags and (add or remove):
        raise click.UsageError("--set replaces every tag: give it without --add or --remove")
    if not (set_tags or add or remove):
        raise click.UsageError("nothing to do: give --add, --remove or --set")
    if "" in add or "" in remove:
        raise click.UsageError('a tag cannot be empty (--set "" removes every tag)')
    if snaps and (tags or hostname is not None or source is not None):
        raise click.UsageError("give snapshots or filters (--tag, --host, --source), not both")
    with ctx.open() as repo:
        if snaps:
            refs = list(snaps)
        else:
            refs = [m.id for m in repo.snapshots(tags=tags, host=hostname, source=source)]
        result = repo.tag(refs, add=add, remove=remove, set_tags=set_tags or None, wait=wait)
    if as_json:
        emit_json(result.to_json())
        return
    for done in result.finished:
        out.print("finished an interrupted tag change:", highlight=False)
        out.print(f"  {done.old_id} is now {done.manifest.id}", highlight=False)
    for change in result.changed:
        out.print(f"{change.old_id} is now {change.manifest.id}", highlight=False)
        out.print(f"  tags: {', '.join(change.manifest.tags) or '-'}", highlight=False)
    for snapshot_id in result.missing:
        out.print(f"{snapshot_id} no longer exists (forgotten meanwhile)", highlight=False)
    count = len(result.changed)
    if count:
        out.print(
            f"changed the tags of {plural(count, 'snapshot')}",
            highlight=False,
        )
    else:
        out.print("no snapshots were modified", highlight=False)
