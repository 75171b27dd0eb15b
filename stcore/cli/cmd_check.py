"""``stcore check``: verify the repository's structure; with --read-data, every stored byte too."""

from __future__ import annotations

import sys

import click

from stcore.cli.context import EXIT_ERROR, Context, pass_context
from stcore.cli.output import emit_json, err, out, progress_bar, styled
from stcore.cli.root import cli


@cli.command()
@click.option("--read-data", is_flag=True, help="Also read every pack and verify every blob.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def check(ctx: Context, read_data: bool, as_json: bool) -> None:
    """Verify the repository's structure; with --read-data, every stored byte too.

    Exits 1 if any problem is found, naming the damaged pack and blob.
    """
    with ctx.open() as repo:
        total = sum(info.size for info in repo.backend.list("data/")) if read_data else None
        with progress_bar("checking", total, read_data and not as_json) as progress:
            result = repo.check(read_data=read_data, progress=progress)
    if as_json:
        emit_json(
            {
                "ok": result.ok,
                "snapshots": result.snapshots,
                "packs": result.packs,
                "blobs": result.blobs,
                "read_data": result.read_data,
                "errors": list(result.errors),
                "warnings": list(result.warnings),
            }
        )
    else:
        for problem in result.errors:
            err.print(styled("red", "error:", problem), highlight=False)
        for note in result.warnings:
            err.print(styled("yellow", "warning:", note), highlight=False)
        verdict = "no errors found" if result.ok else f"{len(result.errors)} errors found"
        if result.warnings:
            verdict += f", {len(result.warnings)} warnings"
        out.print(
            f"checked {result.snapshots} snapshots, {result.packs} packs, {result.blobs} blobs"
            f"{' (all data read)' if read_data else ''}: {verdict}",
            highlight=False,
        )
    if not result.ok:
        sys.exit(EXIT_ERROR)
