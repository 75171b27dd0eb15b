"""``stcore diff``: show what changed from snapshot OLD to NEW."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, say
from stcore.cli.root import cli


@cli.command()
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_context
def diff(ctx: Context, old: str, new: str, as_json: bool) -> None:
    """Show what changed from snapshot OLD to NEW.

    Each line starts with + (added), - (removed), M (content modified) or U (mode/mtime only).
    """
    from stcore.repo.diff import diff_snapshots

    with ctx.open() as repo:
        changes = list(diff_snapshots(repo.store, repo.resolve(old), repo.resolve(new)))
    if as_json:
        emit_json(
            [
                {"change": c.change, "source": c.source, "path": c.path, "type": c.kind}
                for c in changes
            ]
        )
        return
    for change in changes:  # a long path goes on under itself, beside the symbols
        say(f"{change.source}:{change.path}", prefix=f"{change.symbol()}  ")
    counts = {
        kind: sum(1 for c in changes if c.change == kind)
        for kind in ("added", "removed", "modified", "metadata")
    }
    say(", ".join(f"{n} {k}" for k, n in counts.items()))
