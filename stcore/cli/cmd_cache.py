"""``stcore cache``: inspect or empty the local cache: fetched objects and SQLite working copies."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, human_size, plural, print_fields, say
from stcore.cli.root import cli


@cli.group()
def cache() -> None:
    """Inspect or empty the local cache: fetched objects and SQLite working copies."""


@cache.command("stats")
@click.option("--from", "from_remote", default=None, metavar="REMOTE", help="A configured remote.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_context
def cache_stats(ctx: Context, from_remote: str | None, as_json: bool) -> None:
    """Entries and bytes in the cache of this repository (or remote).

    The cache holds objects fetched from a remote repository and the SQLite working copies
    that connect() makes (for any repository); both count against the cache bound.
    """
    with ctx.open(from_remote, cache=True) as repo:
        assert repo.object_cache is not None
        numbers = repo.object_cache.stats()
    if as_json:
        emit_json(numbers)
        return
    entries = str(numbers["entries"])
    copies = numbers["kinds"].get("sqlite")
    if copies:
        entries += (
            f", including {plural(copies['entries'], 'SQLite working copy')} "
            f"({human_size(copies['bytes'])}) made by connect()"
        )
    print_fields(
        [
            ("entries", entries),
            ("size", f"{human_size(numbers['bytes'])} of {human_size(numbers['max_bytes'])}"),
            ("folder", numbers["path"]),
        ]
    )


@cache.command("clear")
@click.option("--from", "from_remote", default=None, metavar="REMOTE", help="A configured remote.")
@pass_context
def cache_clear(ctx: Context, from_remote: str | None) -> None:
    """Delete every cached object and SQLite working copy of this repository (or remote);
    nothing else is touched (connections already open keep reading their copy)."""
    with ctx.open(from_remote, cache=True) as repo:
        assert repo.object_cache is not None
        freed = repo.object_cache.clear()
    say(f"cache cleared: {human_size(freed)} freed")
