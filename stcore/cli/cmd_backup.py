"""``stcore backup``: back up PATHS, or every source in stcore.toml, into one new snapshot.

Also its options, as restic's: the filters added to every ``files`` source (``--exclude``...,
``--one-file-system``), ``--dry-run`` and ``--stdin``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, BinaryIO

import attrs
import click

from stcore.builtins.sources import TagSpec
from stcore.cli.context import EXIT_PARTIAL, EXIT_USAGE, Context, pass_context
from stcore.cli.estimate import estimated_total
from stcore.cli.output import (
    emit_json,
    err,
    fail,
    human_size,
    plural,
    progress_bar,
    say,
    styled,
)
from stcore.cli.root import cli
from stcore.errors import ConfigError
from stcore.globs import read_patterns
from stcore.interfaces import Source
from stcore.repo.backup import BackupPlan, plan_backup
from stcore.sources import add_filters, sources_for_paths, stdin_source
from stcore.tasks import configured_sources


def _check_tags(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    for spec in value:
        try:
            TagSpec.parse(spec, "--exclude-if-present")
        except ConfigError:
            raise click.BadParameter(
                f"{spec!r}: give NAME or NAME:HEADER, NAME a file name"
            ) from None
    return value


def _check_filename(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is not None and (value in ("", ".", "..") or "/" in value or "\0" in value):
        raise click.BadParameter(f"{value!r}: give one file name, without '/'")
    if value is not None and len(os.fsencode(value)) > 255:  # NAME_MAX: it could not be restored
        raise click.BadParameter(f"{len(os.fsencode(value))} bytes: a file name has at most 255")
    return value


def _patterns(given: tuple[str, ...], files: tuple[BinaryIO, ...]) -> list[str]:
    return [*given, *(pattern for file in files for pattern in read_patterns(file.read()))]


def _with_filters(ctx: Context, only: tuple[str, ...], filters: dict[str, Any]) -> list[Source]:
    """The configured sources, the filters added to each ``files`` source's own options; the
    other types are backed up as configured (a warning says so)."""
    if not filters:
        return configured_sources(ctx.settings, ctx.host, only)
    configs = tuple(
        attrs.evolve(s, options=add_filters(s.options, filters)) if s.type == "files" else s
        for s in ctx.settings.sources
    )
    sources = configured_sources(attrs.evolve(ctx.settings, sources=configs), ctx.host, only)
    for source in sources:
        if source.type_name != "files":
            err.print(
                styled(
                    "yellow",
                    "warning:",
                    f"source {source.name} is of type {source.type_name}: the exclude "
                    "options apply to files sources only",
                ),
                highlight=False,
            )
    return sources


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--tag", "-t", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option(
    "--source", "-s", "only", multiple=True, help="Back up only these configured sources."
)
@click.option("--host", "hostname", default=None, help="Host name to record (default: this one).")
@click.option(
    "--exclude",
    "-e",
    multiple=True,
    metavar="PATTERN",
    help="Leave out paths matching this glob (repeatable).",
)
@click.option("--iexclude", multiple=True, metavar="PATTERN", help="As --exclude, ignoring case.")
@click.option(
    "--exclude-file",
    "exclude_files",
    multiple=True,
    type=click.File("rb"),
    metavar="FILE",
    help="Read --exclude patterns from FILE: one a line, # comments (repeatable).",
)
@click.option(
    "--iexclude-file",
    "iexclude_files",
    multiple=True,
    type=click.File("rb"),
    metavar="FILE",
    help="Read --iexclude patterns from FILE (repeatable).",
)
@click.option(
    "--exclude-if-present",
    "tag_files",
    multiple=True,
    metavar="NAME[:HEADER]",
    callback=_check_tags,
    help="Of a directory holding file NAME (starting with HEADER), keep only NAME.",
)
@click.option(
    "--exclude-caches",
    is_flag=True,
    help="Of a directory holding a CACHEDIR.TAG, keep only the tag.",
)
@click.option(
    "--one-file-system",
    "-x",
    is_flag=True,
    help="Do not enter other file systems (their mount points are kept, empty).",
)
@click.option(
    "--dry-run",
    "-n",
    is_flag=True,
    help="Scan and report what would be backed up; write nothing.",
)
@click.option("--stdin", "from_stdin", is_flag=True, help="Back up standard input as one file.")
@click.option(
    "--stdin-filename",
    metavar="NAME",
    default=None,
    callback=_check_filename,
    help="With --stdin: the file's name, and its source's (default: stdin).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def backup(
    ctx: Context,
    paths: tuple[str, ...],
    tags: tuple[str, ...],
    only: tuple[str, ...],
    hostname: str | None,
    exclude: tuple[str, ...],
    iexclude: tuple[str, ...],
    exclude_files: tuple[BinaryIO, ...],
    iexclude_files: tuple[BinaryIO, ...],
    tag_files: tuple[str, ...],
    exclude_caches: bool,
    one_file_system: bool,
    dry_run: bool,
    from_stdin: bool,
    stdin_filename: str | None,
    as_json: bool,
) -> None:
    """Back up PATHS, or every source in stcore.toml, into one new snapshot.

    The exclude options and --one-file-system apply to PATHS and to every configured files
    source (added to its own). --stdin backs up standard input instead, as one file in a
    source of the same name (`pg_dump db | stcore backup --stdin --stdin-filename db.sql`).

    Exits 3 if some files could not be read: they are listed, everything else is saved.
    """
    filters: dict[str, Any] = {
        key: value
        for key, value in {
            "exclude": _patterns(exclude, exclude_files),
            "iexclude": _patterns(iexclude, iexclude_files),
            "exclude_if_present": list(tag_files),
            "exclude_caches": exclude_caches,
            "one_file_system": one_file_system,
        }.items()
        if value
    }
    if from_stdin:
        if paths or only or filters:
            fail(
                "--stdin backs up standard input alone: give no PATHS, --source or exclude options",
                EXIT_USAGE,
            )
        if sys.stdin is not None and sys.stdin.isatty():
            fail("--stdin: standard input is a terminal; pipe the data in", EXIT_USAGE)
        sources = [stdin_source(stdin_filename or "stdin")]
    elif stdin_filename is not None:
        fail("--stdin-filename needs --stdin", EXIT_USAGE)
    elif paths:
        sources = sources_for_paths(paths, host=ctx.host, filters=filters)
    elif not ctx.settings.sources and not only:
        raise ConfigError(
            "nothing to back up: give PATHS or configure [sources.NAME] in stcore.toml"
        )
    else:
        sources = _with_filters(ctx, only, filters)
    if dry_run:
        with (
            ctx.open() as repo,
            progress_bar("scanning", None, not as_json, count="file") as progress,
        ):
            plan = plan_backup(repo.store, sources, progress=progress)
        _show_plan(plan, as_json)
        if plan.errors:
            sys.exit(EXIT_PARTIAL)
        return
    with (
        ctx.open() as repo,
        progress_bar("backing up", None, not as_json, count="file") as progress,
        estimated_total(repo, sources, progress),  # the bar's total, from a scan beside it
    ):
        result = repo.backup(
            sources,
            tags=(*ctx.settings.tags, *tags),
            hostname=hostname,
            progress=progress,
        )
    manifest = result.manifest
    if as_json:
        emit_json({**manifest.summary(), "errors": [list(e) for e in result.errors]})
    else:
        say(
            f"snapshot {manifest.id} saved: {plural(manifest.files, 'file')}, "
            f"{human_size(manifest.size)} read, {human_size(manifest.added_bytes)} added to "
            "the repository"
        )
        for path, message in result.errors:
            err.print(styled("yellow", "could not read", f"{path}: {message}"), highlight=False)
    if result.partial:
        if not as_json:
            err.print(
                styled(
                    "yellow",
                    "warning:",
                    f"{plural(len(result.errors), 'entry')} could not be read; "
                    "the snapshot holds everything else",
                ),
                highlight=False,
            )
        sys.exit(EXIT_PARTIAL)


def _show_plan(plan: BackupPlan, as_json: bool) -> None:
    """The dry run's report: totals, then per source what the files cache says."""
    if as_json:
        emit_json(plan.to_json())
        return
    say(
        f"dry run, nothing written: would back up {plural(plan.total('files'), 'file')}, "
        f"{human_size(plan.total('size'))}, in {plural(plan.total('dirs'), 'directory')}"
    )
    for source in plan.sources:
        known = "" if source.cached else " (not in this machine's files cache)"
        say(
            f"{source.new_files} new ({human_size(source.new_bytes)}), "
            f"{source.changed_files} changed ({human_size(source.changed_bytes)}), "
            f"{source.unchanged_files} unchanged ({human_size(source.unchanged_bytes)})"
            f"{known}",
            prefix=f"  {source.name}: ",
        )
    for path, message in plan.errors:
        err.print(styled("yellow", "could not read", f"{path}: {message}"), highlight=False)
