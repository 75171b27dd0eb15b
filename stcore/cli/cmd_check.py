"""``stcore check``: verify the repository's structure; with --read-data, every stored byte too."""

from __future__ import annotations

import sys

import click

from stcore.cli.context import EXIT_ERROR, EXIT_USAGE, Context, pass_context
from stcore.cli.output import emit_json, err, fail, human_size, plural, progress_bar, say, styled
from stcore.cli.root import cli
from stcore.errors import ConfigError
from stcore.repo.check import ReadSubset


@cli.command()
@click.option("--read-data", is_flag=True, help="Also read every pack and verify every blob.")
@click.option(
    "--read-data-subset", "subset_text", metavar="SUBSET", default=None,
    help="Read only some packs: N/M (group N of M, by pack id), P% (random), or SIZE (random "
    "packs adding up to SIZE, e.g. 500M).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def check(ctx: Context, read_data: bool, subset_text: str | None, as_json: bool) -> None:
    """Verify the repository's structure; with --read-data, every stored byte too.

    --read-data-subset 1/5, then 2/5, ... 5/5 (one a day, say) reads every pack once over
    five runs; 10% or 500M read a random choice of packs each time.

    Exits 1 if any problem is found, naming the damaged pack and blob.
    """
    subset = None
    if subset_text is not None:
        if read_data:
            fail("give --read-data or --read-data-subset, not both", EXIT_USAGE)
        try:
            subset = ReadSubset.parse(subset_text)
        except ConfigError as exc:
            fail(f"--read-data-subset: {exc}", EXIT_USAGE)
    reading = read_data or subset is not None
    # the engine announces the bytes of the packs it reads (a "total" event)
    with (
        ctx.open() as repo,
        progress_bar("checking", None, reading and not as_json, count="pack") as progress,
    ):
        result = repo.check(read_data=read_data, read_subset=subset, progress=progress)
    if as_json:
        emit_json(
            {
                "ok": result.ok,
                "snapshots": result.snapshots,
                "packs": result.packs,
                "blobs": result.blobs,
                "read_data": result.read_data,
                "read_subset": result.read_subset,
                "packs_read": list(result.packs_read),
                "bytes_read": result.bytes_read,
                "errors": list(result.errors),
                "warnings": list(result.warnings),
            }
        )
    else:
        for problem in result.errors:
            err.print(styled("red", "error:", problem), highlight=False)
        for note in result.warnings:
            err.print(styled("yellow", "warning:", note), highlight=False)
        verdict = "no errors found" if result.ok else f"{plural(len(result.errors), 'error')} found"
        if result.warnings:
            verdict += f", {plural(len(result.warnings), 'warning')}"
        if subset is not None:
            say(
                f"read data subset {result.read_subset}: {len(result.packs_read)} of "
                f"{plural(result.packs, 'pack')} ({human_size(result.bytes_read)})"
            )
        say(
            f"checked {plural(result.snapshots, 'snapshot')}, {plural(result.packs, 'pack')}, "
            f"{plural(result.blobs, 'blob')}{' (all data read)' if read_data else ''}: {verdict}"
        )
    if not result.ok:
        sys.exit(EXIT_ERROR)
