"""``stcore stats``: repository sizes: stored bytes, unique data, snapshots."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, human_size, out
from stcore.cli.root import cli


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_context
def stats(ctx: Context, as_json: bool) -> None:
    """Repository sizes: stored bytes, unique data, snapshots."""
    with ctx.open() as repo:
        numbers = repo.stats()
    if as_json:
        emit_json(numbers.to_json())
        return
    out.print(f"repository   {numbers.repository} ({numbers.id})", highlight=False)
    out.print(f"snapshots    {numbers.snapshots}", highlight=False)
    out.print(f"blobs        {numbers.blobs}", highlight=False)
    out.print(f"stored       {human_size(numbers.stored_bytes)}", highlight=False)
    out.print(f"unique data  {human_size(numbers.unique_data_bytes)}", highlight=False)
    out.print(f"all snapshots' size  {human_size(numbers.snapshot_bytes_total)}", highlight=False)
    if numbers.stored_bytes:
        ratio = numbers.snapshot_bytes_total / numbers.stored_bytes
        out.print(f"space saving {ratio:.1f}x (dedup + compression)", highlight=False)
