"""``stcore restore``: restore snapshot SNAP into TARGET/<source name>/."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, human_rate, human_size, plural, progress_bar, say
from stcore.cli.root import cli
from stcore.repo.restore import DEFAULT_OVERWRITE, OVERWRITE_MODES, Overwrite


@cli.command()
@click.argument("snap")
@click.option(
    "--target", required=True, type=click.Path(file_okay=False), help="Directory to restore into."
)
@click.option("--source", "-s", "sources", multiple=True, help="Only this source (repeatable).")
@click.option("--include", "-i", multiple=True, help="Only paths matching this glob (repeatable).")
@click.option(
    "--from", "from_remote", default=None, metavar="REMOTE",
    help="Read from this configured remote instead of the local repository.",
)  # fmt: skip
@click.option(
    "--overwrite", type=click.Choice(OVERWRITE_MODES), default=DEFAULT_OVERWRITE,
    show_default=True, help="What to do with what the target already has.",
)  # fmt: skip
@click.option(
    "--delete", is_flag=True,
    help="Remove what the restored folders hold that the snapshot does not.",
)  # fmt: skip
@click.option("--dry-run", "-n", is_flag=True, help="Only list what would be done.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def restore(
    ctx: Context,
    snap: str,
    target: str,
    sources: tuple[str, ...],
    include: tuple[str, ...],
    from_remote: str | None,
    overwrite: Overwrite,
    delete: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Restore snapshot SNAP into TARGET/<source name>/...

    A file already there is kept if it matches the snapshot, else overwritten (--overwrite);
    every overwrite, skip and deletion is listed. With --repo pointing at a cloud URL, a fresh
    machine restores from the cloud alone.
    """
    with ctx.open(from_remote) as repo:
        manifest = repo.resolve(snap)
        total = sum(s.size for n, s in manifest.sources.items() if not sources or n in sources)
        with progress_bar(
            "restoring", total, not as_json and not dry_run, count="file"
        ) as progress:  # the engine then announces the bytes it will write
            result = repo.restore(
                manifest.id,
                target,
                sources=sources or None,
                include=include,
                overwrite=overwrite,
                delete=delete,
                dry_run=dry_run,
                progress=progress,
            )
    counts = {
        "created": result.created,
        "overwritten": result.overwritten,
        "kept": result.kept,
        "skipped": result.skipped,
        "deleted": result.deleted,
    }
    if as_json:
        emit_json(
            {
                "snapshot": result.snapshot_id,
                "target": result.target,
                "files": result.files,
                "dirs": result.dirs,
                "symlinks": result.symlinks,
                "bytes": result.bytes,
                **counts,
                "dry_run": result.dry_run,
                "actions": [action.to_json() for action in result.actions],
            }
        )
        return
    for action in result.actions:
        shown = action.path + ("/" if action.kind == "dir" else "")
        reason = f"  ({action.reason})" if action.reason else ""
        say(f"{shown}{reason}", prefix=f"{action.action:9} ")
    verb = "would restore" if result.dry_run else "restored"
    rate = None if result.dry_run else progress.rate()  # from the first byte to the last
    at = f" at {human_rate(rate)}" if rate else ""
    say(
        f"{verb} {plural(result.files, 'file')} ({human_size(result.bytes)}{at}) from "
        f"{result.snapshot_id} into {result.target}"
    )
    say(", ".join(f"{count} {word}" for word, count in counts.items()))
