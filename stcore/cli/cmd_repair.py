"""``stcore repair``:
repair a damaged repository: rebuild the index, salvage packs, rewrite snapshots."""

from __future__ import annotations

import attrs
import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, err, plural, progress_bar, say, styled
from stcore.cli.root import cli


@cli.group()
def repair() -> None:
    """Repair a damaged repository: rebuild the index, salvage packs, rewrite snapshots."""


@repair.command("index")
@click.option("--dry-run", "-n", is_flag=True, help="Only report what the new index would hold.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def repair_index(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """Rebuild the index from the packs' own trailers.

    Run it when check or prune says the index does not account for the packs (a lost or
    damaged index object). Takes the exclusive lock.
    """
    with ctx.open() as repo, progress_bar("reading packs", None, not as_json) as progress:
        result = repo.repair_index(dry_run=dry_run, progress=progress)
    if as_json:
        emit_json(attrs.asdict(result))
        return
    for problem in result.unreadable:
        err.print(styled("yellow", "warning:", problem), highlight=False)
    verb = "would index" if dry_run else "indexed"
    say(
        f"{verb} {plural(result.blobs, 'blob')} in {plural(result.packs, 'pack')}; "
        f"{plural(result.indexes_removed, 'old index object')} replaced"
    )


@repair.command("packs")
@click.argument("pack_ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def repair_packs(ctx: Context, pack_ids: tuple[str, ...], as_json: bool) -> None:
    """Salvage the readable blobs of damaged packs and delete the packs.

    PACK_IDS default to the packs `stcore check --read-data` found damaged on this machine.
    Blobs that no longer verify are lost; `stcore repair snapshots` then rewrites what used them.
    """
    with ctx.open() as repo, progress_bar("salvaging", None, not as_json) as progress:
        result = repo.repair_packs(pack_ids, progress=progress)
    if as_json:
        emit_json(attrs.asdict(result))
        return
    say(
        f"repaired {plural(len(result.packs_repaired), 'pack')}: "
        f"{plural(result.blobs_salvaged, 'blob')} salvaged, {result.blobs_lost} lost"
    )


@repair.command("snapshots")
@click.option("--dry-run", "-n", is_flag=True, help="Only list what would change.")
@click.option("--forget", is_flag=True, help="Also forget each original damaged snapshot.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def repair_snapshots(ctx: Context, dry_run: bool, forget: bool, as_json: bool) -> None:
    """Rewrite snapshots that reference lost data, tagged `repaired`.

    A file keeps its chunks up to the first lost one (or is removed if none is left); a
    directory whose listing is lost is removed. The originals stay unless --forget.
    """
    with ctx.open() as repo:
        result = repo.repair_snapshots(dry_run=dry_run, forget=forget)
    if as_json:
        emit_json(attrs.asdict(result))
        return
    for repaired in result.repaired:
        target = f" -> {repaired.new_id}" if repaired.new_id else ""
        say(f"snapshot {repaired.snapshot_id}{target}")
        for change in repaired.changes:
            say(change, prefix="  ")
    count = len(result.repaired)
    verb = ("needs repair" if count == 1 else "need repair") if dry_run else "repaired"
    say(
        f"{count} of {plural(result.snapshots_checked, 'snapshot')} {verb}"
        + (f"; forgot {plural(len(result.forgotten), 'original')}" if result.forgotten else "")
    )
