"""``stcore catalog``: maintain the local snapshot catalog."""

from __future__ import annotations

from stcore.cli.context import Context, pass_context
from stcore.cli.output import plural, say
from stcore.cli.root import cli


@cli.group()
def catalog() -> None:
    """Maintain the local snapshot catalog."""


@catalog.command("rebuild")
@pass_context
def catalog_rebuild(ctx: Context) -> None:
    """Rebuild the catalog from the repository's snapshot manifests."""
    with ctx.open() as repo:
        count = repo.rebuild_catalog()
    say(f"catalog rebuilt: {plural(count, 'snapshot')}")
