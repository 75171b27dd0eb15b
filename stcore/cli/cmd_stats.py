"""``stcore stats``: repository sizes: stored bytes, unique data, snapshots."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, human_size, print_fields
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
    fields = [
        ("repository", f"{numbers.repository} ({numbers.id})"),
        ("snapshots", str(numbers.snapshots)),
        ("blobs", str(numbers.blobs)),
        ("stored", human_size(numbers.stored_bytes)),
        ("unique data", human_size(numbers.unique_data_bytes)),
        ("all snapshots' size", human_size(numbers.snapshot_bytes_total)),
    ]
    if numbers.stored_bytes:
        ratio = numbers.snapshot_bytes_total / numbers.stored_bytes
        fields.append(("space saving", f"{ratio:.1f}x (dedup + compression)"))
    print_fields(fields)
