"""``stcore unlock``: remove stale locks (every lock with --remove-all), as restic's ``unlock``."""

from __future__ import annotations

import datetime as dt

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, out, plural
from stcore.cli.root import cli
from stcore.repo.locks import LockInfo


def _describe(verb: str, lock: LockInfo) -> list[str]:
    """Two lines: the lock and what it is for, then who holds it since when."""
    kind = "exclusive" if lock.exclusive else "shared"
    when = "an unknown time"
    if lock.time is not None:
        try:
            when = dt.datetime.fromtimestamp(lock.time, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (ValueError, OverflowError, OSError):
            pass
    state = f"stale: {lock.stale}" if lock.stale else "live"
    return [
        f"{verb:8}{lock.id[:12]}  {lock.purpose or '?'} ({kind}), {state}",
        f"{'':8}pid {lock.pid} on {lock.host or '?'} since {when}",
    ]


@cli.command()
@click.option(
    "--remove-all", is_flag=True, help="Remove every lock, even those of running processes."
)
@click.option("--json", "as_json", is_flag=True, help="Print the removed and kept locks as JSON.")
@pass_context
def unlock(ctx: Context, remove_all: bool, as_json: bool) -> None:
    """Remove stale locks: those whose process is gone (on this host) or that were not
    refreshed for 30 minutes, and damaged ones. Locks of running processes stay unless
    --remove-all.

    Stale locks never block anything (backups and prune ignore them, and prune deletes them),
    so this is tidying; --remove-all is for a lock that only looks live (a process on another
    host that is known to be dead). A process whose lock it removed writes a new one at its
    next refresh, within five minutes.
    """
    with ctx.open() as repo:
        removed, kept = repo.unlock(remove_all=remove_all)
    if as_json:
        emit_json(
            {"removed": [lock.to_json() for lock in removed], "kept": [k.to_json() for k in kept]}
        )
        return
    for verb, locks in (("removed", removed), ("kept", kept)):
        for lock in locks:
            for line in _describe(verb, lock):
                out.print(line, highlight=False)
    summary = f"removed {plural(len(removed), 'lock')}"
    if kept:
        summary += f"; {len(kept)} held by running processes (--remove-all removes them too)"
    out.print(summary, highlight=False)
