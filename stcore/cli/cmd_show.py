"""``stcore show``: show one snapshot's metadata (SNAP: id, unique prefix, or 'latest')."""

from __future__ import annotations

import click
from rich.text import Text

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, human_size, out, plural, say, styled
from stcore.cli.root import cli


@cli.command()
@click.argument("snap")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--files", "list_files", is_flag=True, help="Also list every file.")
@pass_context
def show(ctx: Context, snap: str, as_json: bool, list_files: bool) -> None:
    """Show one snapshot's metadata (SNAP: id, unique prefix, or 'latest')."""
    with ctx.open() as repo:
        snapshot = repo.snapshot(snap)
        document = snapshot.manifest.to_json()
        if list_files:
            document["files"] = {
                name: [
                    {"path": f.path, "type": f.kind, "size": f.size, "mode": oct(f.mode)}
                    for f in view.files()
                ]
                for name, view in snapshot.sources.items()
            }
    if as_json:
        emit_json(document)
        return
    say(f"snapshot {document['id']}")
    say(document["time"], prefix="  time     ")
    say(document["host"], prefix="  host     ")
    say(", ".join(document["tags"]) or "-", prefix="  tags     ")
    say(human_size(document["size"]), prefix="  size     ")
    for name, source in document["sources"].items():
        say(
            f"source {name} ({source['type']}): {plural(source['files'], 'file')}, "
            f"{human_size(source['size'])}, {plural(source['errors'], 'error')}",
            prefix="  ",
        )
        for entry in document.get("files", {}).get(name, []):  # a long path under itself
            say(entry["path"], prefix=f"    {entry['type']:7} {entry['size']:>12}  ")
    for problem in document["errors"]:
        out.print(Text("  ").append_text(styled("yellow", "unreadable", problem)), highlight=False)
