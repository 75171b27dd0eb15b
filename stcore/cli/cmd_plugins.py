"""``stcore plugins``: list installed plugins, what each provides, and any that failed to load."""

from __future__ import annotations

import click

from stcore.cli.context import Context, pass_context
from stcore.cli.output import TableColumn, emit_json, err, print_table, styled
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
    print_table(
        PLUGIN_COLUMNS,
        [
            [
                p.name,
                p.distribution,
                p.version,
                [f"{kind}: {', '.join(names)}" for kind, names in p.provides.items()],
            ]
            for p in infos
        ],
    )
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


#: what each plugin provides, one kind a line; a narrow terminal leaves out the version, then
#: the distribution (docs/cli.md, "Output")
PLUGIN_COLUMNS = (
    TableColumn("plugin", "id"),
    TableColumn("distribution", drop=2),
    TableColumn("version", "id", drop=1),
    TableColumn("provides"),
)
