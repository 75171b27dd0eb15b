"""``stcore plugins``: list installed plugins, what each provides, and any that failed to load."""

from __future__ import annotations

import click
from rich.table import Table

from stcore.cli.context import Context, pass_context
from stcore.cli.output import emit_json, err, out, styled
from stcore.cli.root import cli


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_context
def plugins(ctx: Context, as_json: bool) -> None:
    """List installed plugins, what each provides, and any that failed to load."""
    host = ctx.host
    infos = host.plugins()
    conflicts = {
        kind: dict(registry.conflicts)
        for kind, registry in (
            ("source", host.sources),
            ("compressor", host.compressors),
            ("encryptor", host.encryptors),
            ("backend", host.backends),
        )
        if registry.conflicts
    }
    if as_json:
        emit_json(
            {
                "plugins": [
                    {
                        "name": p.name,
                        "distribution": p.distribution,
                        "version": p.version,
                        "provides": p.provides,
                    }
                    for p in infos
                ],
                "broken": [
                    {
                        "name": b.name,
                        "distribution": b.distribution,
                        "version": b.version,
                        "error": b.error,
                    }
                    for b in host.broken
                ],
                "conflicts": conflicts,
            }
        )
        return
    table = Table("plugin", "distribution", "version", "provides")
    for p in infos:
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in p.provides.items())
        table.add_row(p.name, p.distribution, p.version, provides)
    out.print(table)
    for broken in host.broken:
        err.print(
            styled(
                "red",
                "broken:",
                f"{broken.name} ({broken.distribution} {broken.version}): {broken.error}",
            ),
            highlight=False,
        )
    for kind, names in conflicts.items():
        for name, claimants in names.items():
            err.print(
                styled(
                    "red", "conflict:", f"{kind} {name!r} is provided by {', '.join(claimants)}"
                ),
                highlight=False,
            )
