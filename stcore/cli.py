"""The ``stcore`` command line.

Exit codes: 0 success, 1 error (one line on stderr, no traceback), 2 usage error, 3 backup
finished but some entries could not be read (the snapshot holds everything else), 130 interrupted.
Every listing command takes ``--json`` for scripts; progress bars appear only on a terminal.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import attrs
import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from stcore.config import Settings, load_dotenv_file, load_settings
from stcore.durations import parse_duration, parse_time
from stcore.errors import ConfigError, StcoreError
from stcore.plugins import PluginHost, make_plugin_manager
from stcore.repo.restore import DEFAULT_OVERWRITE, OVERWRITE_MODES, Overwrite
from stcore.repository import (
    Repository,
    init_repository,
    open_remote_repository,
    open_repository,
)
from stcore.sources import sources_for_paths
from stcore.tasks import configured_sources
from stcore.version import __version__

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130

#: what `printable` escapes: C0 controls, DEL and C1 controls (a terminal obeys them), the
#: bidirectional formatting characters and line/paragraph separators (they reorder or break what
#: is shown), and lone surrogates (surrogateescape's stand-ins for bytes that are not UTF-8; they
#: cannot be encoded). A backslash is left as it is: error messages quote names with repr(), which
#: already escapes them, and doubling would show those escapes doubled ('x\\x1b'); --json is exact.
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f"  # C0, DEL, C1
    r"\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"  # bidi formatting, U+2028, U+2029
    r"\ud800-\udfff]"  # lone surrogates
)
_NAMED_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x80 or 0xDC80 <= code <= 0xDCFF:  # an ASCII control, or the byte it stands for
        return f"\\x{code & 0xFF:02x}"
    return f"\\u{code:04x}"


def printable(text: str) -> str:
    r"""``text`` as it is safe to show on a terminal: never a control sequence, always encodable.

    ``\n``, ``\t``, ``\r`` and ``\xNN`` below 0x80 are those control characters; ``\xNN`` from
    0x80 is a byte of a name that is not UTF-8 (its surrogateescape character U+DC80+NN:
    ``os.fsencode`` gives the byte back); ``\uNNNN`` is a C1 control, a bidirectional formatting
    character, a line or paragraph separator, or another lone surrogate. Everything else, a
    backslash and non-ASCII letters included, is shown as it is, so the output is safe but not
    always exact: ``--json`` is. docs/cli.md, "Names and text in the output", says the same.
    """
    return _UNSAFE.sub(_escape_one, text)


class PlainConsole(Console):
    """A Console for users' text: every string it renders, table cells included, is shown
    through :func:`printable`. Markup and emoji codes are off (``[x]``, ``:smile:`` stay as
    written); a program literal that wants style prints a :func:`styled` Text instead."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(printable(text), **{**kwargs, "markup": False, "emoji": False})


out = PlainConsole(soft_wrap=True, markup=False, emoji=False)
err = PlainConsole(stderr=True, soft_wrap=True, markup=False, emoji=False)


def styled(style: str, label: str, text: str) -> Text:
    """``label`` in ``style`` (a program literal), a space, then ``text`` shown as printable."""
    return Text.assemble((label, style), " ", printable(text))


class Context:
    """What every command needs: settings, plugins, and how to open the repository."""

    def __init__(
        self,
        repo: str | None,
        config: str | None,
        password_file: str | None = None,
        password_command: str | None = None,
    ) -> None:
        load_dotenv_file()
        self.settings: Settings = load_settings(config)
        self.explicit_repo = repo
        self.password_file = password_file
        self.password_command = password_command
        self._host: PluginHost | None = None
        self._password: str | None = None

    def password(self, *, confirm: bool = False) -> str | None:
        """The repository password, asked for only when an encrypted repository needs it.

        ``--password-file`` > ``--password-command`` > ``STCORE_PASSWORD`` > a prompt when a
        terminal is attached; None otherwise (opening then fails with a clear message).
        """
        if self._password is None:
            self._password = read_password(
                self.password_file, self.password_command, prompt="repository password",
                confirm=confirm,
            )  # fmt: skip
        return self._password

    @property
    def host(self) -> PluginHost:
        if self._host is None:
            self._host = make_plugin_manager()
        return self._host

    @property
    def url(self) -> str:
        return self.settings.repository_url(self.explicit_repo)

    def open(self, remote: str | None = None, *, cache: bool | None = None) -> Repository:
        """The repository (``--repo``/config), or the configured ``remote`` when one is named."""
        if remote is not None:
            return open_remote_repository(
                self.settings.remote(remote), host=self.host, password=self.password
            )
        return open_repository(
            self.url,
            host=self.host,
            options=self.settings.backend_options,
            password=self.password,
            cache=cache,
        )


_pass_context = click.make_pass_decorator(Context)


def read_password(
    password_file: str | None,
    password_command: str | None,
    *,
    prompt: str,
    confirm: bool = False,
    env: str = "STCORE_PASSWORD",
) -> str | None:
    """A password from a file, a command's output, ``env``, or a terminal prompt."""
    import os
    import subprocess

    if password_file is not None:
        try:
            with open(os.path.expanduser(password_file)) as handle:
                return handle.readline().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read the password file {password_file}: {exc}") from exc
    if password_command is not None:
        result = subprocess.run(
            password_command, shell=True, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ConfigError(f"the password command exited with {result.returncode}")
        return result.stdout.rstrip("\r\n")
    if os.environ.get(env) is not None:
        return os.environ[env]
    if sys.stdin.isatty():
        return str(click.prompt(prompt, hide_input=True, confirmation_prompt=confirm))
    return None


def pass_context(command: Callable[..., Any]) -> Callable[..., Any]:
    """Pass the Context, and accept ``--repo`` after the command name too.

    ``stcore init --repo s3://b/p`` and ``stcore --repo s3://b/p init`` mean the same.
    """

    def with_repo(ctx: Context, /, *args: Any, repo: str | None = None, **kwargs: Any) -> Any:
        if repo is not None:
            ctx.explicit_repo = repo
        return command(ctx, *args, **kwargs)

    with_repo.__name__ = command.__name__
    with_repo.__doc__ = command.__doc__
    decorated = _pass_context(with_repo)
    return click.option(
        "--repo", "-r", "repo", metavar="URL", default=None, help="Repository path or URL."
    )(decorated)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    # The message is text (paths, names, other programs' errors), shown through printable(); a
    # message of several lines (another program's) is joined into one first.
    one_line = " ".join(message.split()) if "\n" in message else message
    err.print(styled("bold red", "stcore: error:", one_line), highlight=False)
    sys.exit(code)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def parse_when(value: str | None) -> dt.datetime | None:
    """``2026-11-24``, ``2026-11-24T13:00``, or a duration ago (``30min``, ``12h``, ``7d``)."""
    if value is None:
        return None
    try:
        return parse_time(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@contextmanager
def progress_bar(
    description: str, total: int | None, enabled: bool
) -> Iterator[Callable[[str, int], None]]:
    """A rich progress bar on a terminal; a no-op callback otherwise."""
    if not enabled or not err.is_terminal:
        yield lambda event, amount: None
        return
    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),  # a remote name is text
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[files]} files"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(printable(description), total=total, files=0)
        files = 0

        def update(event: str, amount: int) -> None:
            nonlocal files
            if event == "bytes":
                bar.advance(task, amount)
            elif event in ("file", "object"):
                files += amount
                bar.update(task, files=files)

        yield update


def _printable_click_error(exc: click.ClickException) -> None:
    # Click types `message` Final for its own code; rewriting it is the one way its usage errors
    # (which quote the command line) print through printable().
    exc.message = printable(exc.message)  # type: ignore[misc]


class StcoreGroup(click.Group):
    """Turns expected errors into one line and a meaningful exit code.

    Click prints its own usage errors, which quote what was typed (``No such option: ...``,
    ``Invalid value for '--since': ...``): their messages go through :func:`printable` too.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            _printable_click_error(exc)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            _printable_click_error(exc)
            raise
        except StcoreError as exc:
            fail(str(exc), exc.exit_code)
        except OSError as exc:  # the host refused (a full disk, a path too long): one line
            where = f"{os.fsdecode(exc.filename)}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}")
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)


@click.group(cls=StcoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--repo",
    "-r",
    metavar="URL",
    help="Repository path or URL (default: $STCORE_REPO, stcore.toml, ~/.local/share/stcore/repo).",
)
@click.option("--config", "-c", metavar="FILE", help="stcore.toml to use (default: ./stcore.toml).")
@click.option(
    "--password-file", metavar="FILE", help="Read the repository password from FILE's first line."
)
@click.option(
    "--password-command", metavar="CMD", help="Run CMD and use its output as the password."
)
@click.version_option(__version__, prog_name="stcore")
@click.pass_context
def cli(
    ctx: click.Context,
    repo: str | None,
    config: str | None,
    password_file: str | None,
    password_command: str | None,
) -> None:
    """Versioned, deduplicated backups of application data that AI code can read back.

    Encrypted repositories take their password from --password-file, --password-command,
    STCORE_PASSWORD, or a prompt.
    """
    ctx.obj = Context(repo, config, password_file, password_command)


@cli.command()
@click.option("--compression", default=None, help="Compressor for new data (default: zstd).")
@click.option("--level", type=int, default=None, help="Compression level (zstd default: 3).")
@click.option(
    "--create-bucket", is_flag=True, help="Create the bucket/container/directory if it is missing."
)
@click.option(
    "--encrypt", is_flag=True, help="Encrypt everything but the config (asks a password)."
)
@click.option(
    "--cipher",
    type=click.Choice(["aes-256-gcm", "chacha20-poly1305"]),
    default="aes-256-gcm",
    show_default=True,
    help="With --encrypt: the cipher.",
)
@click.option(
    "--group-access",
    is_flag=True,
    help="Let the repository directory's group read it (files 0640, folders 0750).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def init(
    ctx: Context,
    compression: str | None,
    level: int | None,
    create_bucket: bool,
    encrypt: bool,
    cipher: str,
    group_access: bool,
    as_json: bool,
) -> None:
    """Create a new, empty repository (encrypted with --encrypt)."""
    url = ctx.url
    password = ctx.password(confirm=True) if encrypt else None
    if encrypt and password is None:
        raise ConfigError(
            "--encrypt needs a password: set STCORE_PASSWORD, or use --password-file or "
            "--password-command"
        )
    repo = init_repository(
        url,
        compression=compression or ctx.settings.compression,
        compression_level=level if level is not None else ctx.settings.compression_level,
        create=create_bucket or "://" not in url,
        host=ctx.host,
        options=ctx.settings.backend_options,
        encryption=cipher if encrypt else "none",
        password=password,
        group_access=group_access,
    )
    with repo:
        if as_json:
            emit_json(
                {
                    "repository": repo.location,
                    "id": repo.id,
                    "version": repo.config.version,
                    "encryption": repo.config.encryption,
                }
            )
        else:
            out.print(f"created stcore repository {repo.id} at {repo.location}", highlight=False)


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--tag", "-t", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option(
    "--source", "-s", "only", multiple=True, help="Back up only these configured sources."
)
@click.option("--host", "hostname", default=None, help="Host name to record (default: this one).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def backup(
    ctx: Context,
    paths: tuple[str, ...],
    tags: tuple[str, ...],
    only: tuple[str, ...],
    hostname: str | None,
    as_json: bool,
) -> None:
    """Back up PATHS, or every source in stcore.toml, into one new snapshot.

    Exits 3 if some files could not be read: they are listed, everything else is saved.
    """
    if paths:
        sources = sources_for_paths(paths, host=ctx.host)
    elif not ctx.settings.sources and not only:
        raise ConfigError(
            "nothing to back up: give PATHS or configure [sources.NAME] in stcore.toml"
        )
    else:
        sources = configured_sources(ctx.settings, ctx.host, only)
    with ctx.open() as repo, progress_bar("backing up", None, not as_json) as progress:
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
        files = manifest.files
        out.print(
            f"snapshot {manifest.id} saved: {files} files, {human_size(manifest.size)} read, "
            f"{human_size(manifest.added_bytes)} added to the repository",
            highlight=False,
        )
        for path, message in result.errors:
            err.print(styled("yellow", "could not read", f"{path}: {message}"), highlight=False)
    if result.partial:
        if not as_json:
            err.print(
                styled(
                    "yellow",
                    "warning:",
                    f"{len(result.errors)} entries could not be read; "
                    "the snapshot holds everything else",
                ),
                highlight=False,
            )
        sys.exit(EXIT_PARTIAL)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--source", "-s", default=None, help="Only snapshots containing this source name.")
@click.option(
    "--type", "source_type", default=None, help="Only snapshots with a source of this type."
)
@click.option("--since", default=None, help="Not before this date/time, or e.g. 7d, 12h.")
@click.option("--until", default=None, help="Not after this date/time, or e.g. 1d.")
@click.option(
    "--tag", "-t", "tags", multiple=True, help="Only snapshots with this tag (repeatable)."
)
@click.option("--host", "hostname", default=None, help="Only snapshots from this host.")
@click.option("--limit", type=int, default=None, help="At most this many (newest first).")
@click.option(
    "--synced/--unsynced", default=None, help="Only snapshots already (or not yet) synced."
)
@click.option("--remote", default=None, help="With --synced/--unsynced: to this remote.")
@pass_context
def snapshots(
    ctx: Context,
    as_json: bool,
    source: str | None,
    source_type: str | None,
    since: str | None,
    until: str | None,
    tags: tuple[str, ...],
    hostname: str | None,
    limit: int | None,
    synced: bool | None,
    remote: str | None,
) -> None:
    """List snapshots, newest first, with the remotes each is synced to."""
    with ctx.open() as repo:
        found = repo.snapshots(
            since=parse_when(since),
            until=parse_when(until),
            source=source,
            source_type=source_type,
            tags=tags,
            host=hostname,
            synced=synced,
            remote=remote,
            limit=limit,
        )
        sync_state = {m.id: repo.catalog.synced_remotes(m.id) for m in found}
        damaged = repo.damaged_snapshots()
    for snapshot_id, reason in sorted(damaged.items()):
        err.print(
            f"warning: snapshot {snapshot_id} is damaged and left out: {reason}; "
            f"`stcore forget {snapshot_id}` removes it",
            highlight=False,
            markup=False,
        )
    if as_json:
        emit_json([{**m.summary(), "synced": sync_state[m.id]} for m in found])
        return
    # The id already reads as the UTC time (20261124T131102Z-...), so it is the first column.
    table = Table(box=None, pad_edge=False)
    table.add_column("id (UTC time)", no_wrap=True)
    for heading in ("host", "tags", "sources", "files", "size", "added", "synced to"):
        table.add_column(heading, no_wrap=heading in ("size", "added"))
    for m in found:
        row = m.summary()
        table.add_row(
            m.id + (" (partial)" if m.partial else ""),
            m.host,
            ",".join(m.tags),
            ",".join(f"{n}:{t}" for n, t in row["sources"].items()),
            str(row["files"]),
            human_size(m.size),
            human_size(m.added_bytes),
            ",".join(sorted(sync_state[m.id])) or "-",
        )
    out.print(table)
    out.print(f"{len(found)} snapshots", highlight=False)


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
    out.print(f"snapshot {document['id']}", highlight=False)
    out.print(f"  time     {document['time']}", highlight=False)
    out.print(f"  host     {document['host']}", highlight=False)
    out.print(f"  tags     {', '.join(document['tags']) or '-'}", highlight=False)
    out.print(f"  size     {human_size(document['size'])}", highlight=False)
    for name, source in document["sources"].items():
        out.print(
            f"  source {name} ({source['type']}): {source['files']} files, "
            f"{human_size(source['size'])}, {source['errors']} errors",
            highlight=False,
        )
        for entry in document.get("files", {}).get(name, []):
            out.print(
                f"    {entry['type']:7} {entry['size']:>12}  {entry['path']}", highlight=False
            )
    for problem in document["errors"]:
        out.print(Text("  ").append_text(styled("yellow", "unreadable", problem)), highlight=False)


@cli.command()
@click.argument("snap")
@click.option(
    "--target", required=True, type=click.Path(file_okay=False), help="Directory to restore into."
)
@click.option("--source", "-s", "sources", multiple=True, help="Only this source (repeatable).")
@click.option("--include", "-i", multiple=True, help="Only paths matching this glob (repeatable).")
@click.option(
    "--from", "from_remote", default=None, metavar="REMOTE",
    help="Read from this configured remote instead of the local repository.",
)  # fmt: skip
@click.option(
    "--overwrite", type=click.Choice(OVERWRITE_MODES), default=DEFAULT_OVERWRITE,
    show_default=True, help="What to do with what the target already has.",
)  # fmt: skip
@click.option(
    "--delete", is_flag=True,
    help="Remove what the restored folders hold that the snapshot does not.",
)  # fmt: skip
@click.option("--dry-run", "-n", is_flag=True, help="Only list what would be done.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_context
def restore(
    ctx: Context,
    snap: str,
    target: str,
    sources: tuple[str, ...],
    include: tuple[str, ...],
    from_remote: str | None,
    overwrite: Overwrite,
    delete: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Restore snapshot SNAP into TARGET/<source name>/...

    A file already there is kept if it matches the snapshot, else overwritten (--overwrite);
    every overwrite, skip and deletion is listed. With --repo pointing at a cloud URL, a fresh
    machine restores from the cloud alone.
    """
    with ctx.open(from_remote) as repo:
        manifest = repo.resolve(snap)
        total = sum(s.size for n, s in manifest.sources.items() if not sources or n in sources)
        with progress_bar("restoring", total, not as_json and not dry_run) as progress:
            result = repo.restore(
                manifest.id,
                target,
                sources=sources or None,
                include=include,
                overwrite=overwrite,
                delete=delete,
                dry_run=dry_run,
                progress=progress,
            )
    counts = {
        "created": result.created,
        "overwritten": result.overwritten,
        "kept": result.kept,
        "skipped": result.skipped,
        "deleted": result.deleted,
    }
    if as_json:
        emit_json(
            {
                "snapshot": result.snapshot_id,
                "target": result.target,
                "files": result.files,
                "dirs": result.dirs,
                "symlinks": result.symlinks,
                "bytes": result.bytes,
                **counts,
                "dry_run": result.dry_run,
                "actions": [action.to_json() for action in result.actions],
            }
        )
        return
    for action in result.actions:
        shown = action.path + ("/" if action.kind == "dir" else "")
        reason = f"  ({action.reason})" if action.reason else ""
        out.print(f"{action.action:9} {shown}{reason}", highlight=False)
    verb = "would restore" if result.dry_run else "restored"
    out.print(
        f"{verb} {result.files} files ({human_size(result.bytes)}) from {result.snapshot_id} "
        f"into {result.target}",
        highlight=False,
    )
    out.print(", ".join(f"{count} {word}" for word, count in counts.items()), highlight=False)


@cli.command()
@click.argument("snap")
@click.argument("source")
@click.argument("path")
@pass_context
def dump(ctx: Context, snap: str, source: str, path: str) -> None:
    """Write one file of a snapshot to standard output."""
    with ctx.open() as repo:
        snapshot = repo.snapshot(snap)
        try:
            view = snapshot.sources[source]
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        stream = sys.stdout.buffer
        for chunk in view.iter_chunks(path):
            stream.write(chunk)
        stream.flush()


@cli.command()
@click.argument("old")
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_context
def diff(ctx: Context, old: str, new: str, as_json: bool) -> None:
    """Show what changed from snapshot OLD to NEW.

    Each line starts with + (added), - (removed), M (content modified) or U (mode/mtime only).
    """
    from stcore.repo.diff import diff_snapshots

    with ctx.open() as repo:
        changes = list(diff_snapshots(repo.store, repo.resolve(old), repo.resolve(new)))
    if as_json:
        emit_json(
            [
                {"change": c.change, "source": c.source, "path": c.path, "type": c.kind}
                for c in changes
            ]
        )
        return
    for change in changes:
        out.print(
            f"{change.symbol()}  {change.source}:{change.path}", highlight=False, markup=False
        )
    counts = {
        kind: sum(1 for c in changes if c.change == kind)
        for kind in ("added", "removed", "modified", "metadata")
    }
    out.print(", ".join(f"{n} {k}" for k, n in counts.items()), highlight=False)


@cli.command()
@click.argument("snaps", nargs=-1)
@click.option("--remote", default=None, help="Remote to sync to (default: every configured one).")
@click.option("--concurrency", type=int, default=4, show_default=True, help="Parallel uploads.")
@click.option("--bwlimit", type=int, default=None, metavar="KIB/S", help="Upload bandwidth limit.")
@click.option(
    "--prune", "prune_remote", is_flag=True,
    help="Also forget on the remote what was forgotten here, then prune it.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
@pass_context
def sync(
    ctx: Context,
    snaps: tuple[str, ...],
    remote: str | None,
    concurrency: int,
    bwlimit: int | None,
    prune_remote: bool,
    as_json: bool,
) -> None:
    """Upload the snapshots (default: all) and data a remote lacks.

    Packs go first, then indexes, then manifests: a remote never holds a snapshot whose data is
    missing, and a sync that was interrupted resumes where it stopped.
    """
    from stcore.sync import SyncOptions

    remotes = [ctx.settings.remote(remote)] if remote else list(ctx.settings.remotes)
    if not remotes:
        ctx.settings.remote(None)  # raises the "no remote is configured" error
    if prune_remote and snaps:
        raise ConfigError("--prune works on a whole sync; do not name snapshots with it")
    options = SyncOptions(
        concurrency=concurrency,
        bandwidth_limit=bwlimit * 1024 if bwlimit else None,
        prune=prune_remote,
    )
    results = []
    with ctx.open() as repo:
        ids = [repo.resolve(s).id for s in snaps] or None
        for target in remotes:
            with progress_bar(f"syncing to {target.name}", None, not as_json) as progress:
                result = repo.sync(target, ids, options=options, progress=progress)
            results.append(result)
            if not as_json:
                out.print(
                    f"{target.name}: {len(result.snapshots)} snapshots, "
                    f"{result.objects_uploaded} objects ({human_size(result.bytes_uploaded)}) "
                    f"uploaded in {result.seconds:.1f}s "
                    f"({human_size(result.throughput)}/s); "
                    f"{result.snapshots_skipped} were already there",
                    highlight=False,
                )
    if as_json:
        emit_json([r.to_json() for r in results])


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


@cli.command()
@click.option(
    "--backup-interval", type=float, default=None, metavar="SECONDS",
    help="Back up the configured sources this often (default: $STCORE_BACKUP_INTERVAL or "
    "[daemon] backup_interval; no backups when unset).",
)  # fmt: skip
@click.option(
    "--sync-interval", type=float, default=None, metavar="SECONDS",
    help="Sync to every remote this often (default: $CLOUD_SYNC_INTERVAL, [daemon] "
    "sync_interval, or 3600).",
)  # fmt: skip
@click.option(
    "--auto-sync/--no-auto-sync", default=None,
    help="Sync on a schedule (default: $CLOUD_AUTO_SYNC or [daemon] auto_sync, else off).",
)  # fmt: skip
@click.option("--bwlimit", type=int, default=None, metavar="KIB/S", help="Upload bandwidth limit.")
@click.option(
    "--once", is_flag=True,
    help="Back up the configured sources and sync every remote (unless --no-auto-sync) now, "
    "then exit; 1 if a run failed.",
)  # fmt: skip
@pass_context
def daemon(
    ctx: Context,
    backup_interval: float | None,
    sync_interval: float | None,
    auto_sync: bool | None,
    bwlimit: int | None,
    once: bool,
) -> None:
    """Back up and sync on a schedule until SIGTERM or SIGINT (then exit 0).

    One run at a time: a second daemon for the same repository is refused, and a slow run delays
    the next. Each run is logged to stderr as one JSON line; `stcore status` shows the next run.
    """
    import signal

    from stcore.daemon import AutoSync
    from stcore.sync import SyncOptions

    auto = AutoSync.from_config(
        ctx.url,
        ctx.settings,
        backup_interval=backup_interval,
        sync_interval=sync_interval,
        auto_sync=(auto_sync is not False) if once else auto_sync,
        host=ctx.host,
        sync_options=SyncOptions(bandwidth_limit=bwlimit * 1024 if bwlimit else None),
        log_stream=sys.stderr,
    )
    try:
        if once:
            if not ctx.settings.sources and not (auto.auto_sync and ctx.settings.remotes):
                raise ConfigError("nothing to do: configure [sources.NAME] or [remotes.NAME]")
            records = auto.run_once()
            sys.exit(EXIT_OK if all(r.ok for r in records) else EXIT_ERROR)

        def stop(signum: int, frame: object) -> None:
            auto.request_stop()

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            auto.start()
            while not auto.wait(0.5):
                pass
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
    finally:
        auto.close()
    if auto.error is not None:
        fail(f"the scheduler stopped: {auto.error}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Per remote: last successful sync, pending snapshots and bytes, last error, next run."""
    from stcore.tasks import repository_status

    with ctx.open() as repo:
        document = repository_status(repo, ctx.settings.remotes)
    if as_json:
        emit_json(document)
        return
    daemon_info = document["daemon"]
    out.print(f"repository  {document['repository']} ({document['id']})", highlight=False)
    out.print(
        f"snapshots   {document['snapshots']} (latest: {document['latest_snapshot'] or '-'})",
        highlight=False,
    )
    if daemon_info["running"]:
        out.print(
            f"daemon      running (pid {daemon_info['pid']}); next backup "
            f"{daemon_info['next_backup'] or '-'}, next sync {daemon_info['next_sync'] or '-'}",
            highlight=False,
        )
    else:
        out.print("daemon      not running", highlight=False)
    if not document["remotes"]:
        out.print("no remotes configured", highlight=False)
    for remote in document["remotes"]:
        out.print(f"remote {remote['name']} ({remote['url']})", highlight=False)
        out.print(f"  last sync   {remote['last_sync'] or 'never'}", highlight=False)
        out.print(
            f"  pending     {remote['pending_snapshots']} snapshots, "
            f"{human_size(remote['pending_bytes'])}",
            highlight=False,
        )
        if remote["last_error"]:
            out.print(
                f"  last error  {remote['last_error']} (at {remote['last_error_at']})",
                highlight=False,
                markup=False,
            )
        else:
            out.print("  last error  -", highlight=False)
        out.print(f"  next run    {remote['next_run'] or '-'}", highlight=False)


@cli.command()
@click.option(
    "--host", "bind_host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port", type=int, default=8765, show_default=True, help="Port to listen on (0: any free)."
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests for this Host name (repeatable; loopback names always).",
)
@click.option(
    "--token-file",
    metavar="FILE",
    help="Require the bearer token on FILE's first line (default: $STCORE_STATUS_TOKEN).",
)
@click.option(
    "--show-paths", is_flag=True, help="Show local paths, bucket names and URLs (default: hidden)."
)
@click.option(
    "--cache-seconds",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="Reuse an answer this long before reading the catalog again.",
)
@click.option(
    "--refresh-seconds",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Look for snapshots made elsewhere this often (one listing of snapshots/).",
)
@pass_context
def serve(
    ctx: Context,
    bind_host: str,
    port: int,
    allow_hosts: tuple[str, ...],
    token_file: str | None,
    show_paths: bool,
    cache_seconds: float,
    refresh_seconds: float,
) -> None:
    """Serve /api/cloud/status, /healthz and /metrics (needs `pip install 'stcore[web]'`).

    Runs until SIGTERM or SIGINT, then exits 0. Prints the address it listens on to stderr.
    Answers loopback Host names only (and --allow-host ones); listening beyond loopback needs
    a bearer token (--token-file or STCORE_STATUS_TOKEN).
    """
    import signal
    import socketserver

    from stcore.web import allowed_host_names, is_loopback, make_app, read_token

    token = read_token(token_file)
    if token is None and not is_loopback(bind_host):
        fail(f"--host {bind_host} needs --token-file or STCORE_STATUS_TOKEN", EXIT_USAGE)
    names = list(allow_hosts)
    wildcard = bind_host in ("0.0.0.0", "::", "")
    if not wildcard:
        names.append(bind_host)  # the address it listens on, as a client names it
    try:
        allowed_host_names(names)
    except ValueError as exc:
        fail(f"--allow-host: {exc}", EXIT_USAGE)
    ctx.open().close()  # fail now, with the usual message, if there is no repository
    config = str(ctx.settings.path) if ctx.settings.path else None
    app = make_app(  # says what to install if Flask is missing
        repo_url=ctx.url,
        config=config,
        allowed_hosts=names,
        token=token,
        show_paths=show_paths,
        cache_seconds=cache_seconds,
        refresh_seconds=refresh_seconds,
    )
    from werkzeug.serving import make_server

    try:
        server = make_server(bind_host, port, app, threaded=True)
    except OSError as exc:
        fail(f"cannot listen on {bind_host}:{port}: {exc.strerror or exc}")
    # Stopping must not wait for request threads (a client holding a connection open would
    # keep the process alive after SIGTERM); they are daemon threads and end with it.
    if isinstance(server, socketserver.ThreadingMixIn):
        server.block_on_close = False

    class Stop(Exception):
        pass

    def stop(signum: int, frame: object) -> None:
        raise Stop

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host
    guarded = " (bearer token required)" if token is not None else ""
    click.echo(f"stcore: serving on http://{shown}:{server.server_port}{guarded}", err=True)
    if wildcard and not allow_hosts:
        click.echo("stcore: answering loopback Host names only: add --allow-host NAME", err=True)
    try:
        server.serve_forever()
    except Stop:
        pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        server.server_close()


@cli.command()
@click.argument("snaps", nargs=-1)
@click.option("--keep-last", type=int, default=0, metavar="N", help="Keep the N newest.")
@click.option("--keep-hourly", type=int, default=0, metavar="N", help="Newest of the last N hours.")
@click.option("--keep-daily", type=int, default=0, metavar="N", help="Newest of the last N days.")
@click.option("--keep-weekly", type=int, default=0, metavar="N", help="Newest of the last N weeks.")
@click.option(
    "--keep-monthly", type=int, default=0, metavar="N", help="Newest of the last N months."
)
@click.option("--keep-yearly", type=int, default=0, metavar="N", help="Newest of the last N years.")
@click.option(
    "--keep-within", default=None, metavar="DURATION",
    help="Everything within DURATION (e.g. 7d, 1y6mo) of the newest snapshot.",
)  # fmt: skip
@click.option("--keep-tag", "keep_tags", multiple=True, metavar="TAG", help="Snapshots with TAG.")
@click.option("--dry-run", "-n", is_flag=True, help="Only show what would be forgotten, and why.")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@pass_context
def forget(
    ctx: Context,
    snaps: tuple[str, ...],
    keep_last: int,
    keep_hourly: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    keep_yearly: int,
    keep_within: str | None,
    keep_tags: tuple[str, ...],
    dry_run: bool,
    as_json: bool,
) -> None:
    """Forget SNAPS, or the snapshots a --keep-* policy does not keep (restic's semantics).

    Snapshots are grouped by host and source set; a snapshot kept by any rule stays. Only the
    snapshot manifests are removed: the data they alone referenced stays in the packs until a
    prune reclaims it.
    """
    from stcore.repo.forget import Policy
    from stcore.tasks import forget_by_policy

    policy = Policy(
        last=keep_last,
        hourly=keep_hourly,
        daily=keep_daily,
        weekly=keep_weekly,
        monthly=keep_monthly,
        yearly=keep_yearly,
        within=parse_duration(keep_within) if keep_within else None,
        tags=keep_tags,
    )
    if snaps and not policy.empty():
        raise ConfigError("give snapshot ids or a --keep-* policy, not both")
    if not snaps and policy.empty():
        raise ConfigError(
            "no policy given: nothing would be kept, so nothing is forgotten "
            "(use --keep-last, --keep-daily, --keep-within, ...)"
        )
    with ctx.open() as repo:
        rows: list[dict[str, Any]]
        if snaps:
            named = [repo.resolve_id(s) for s in snaps]
            rows = [{"id": i, "keep": False, "reasons": ["named"]} for i in named]
        else:
            outcome = forget_by_policy(repo, policy, prune=False, dry_run=dry_run)
            doomed = [d.manifest for d in outcome.decisions if not d.keep]
            rows = [
                {"id": d.manifest.id, "keep": d.keep, "reasons": list(d.reasons)}
                for d in outcome.decisions
            ]
        if snaps:
            removed = [] if dry_run else repo.forget(named)
            forgotten = len(named)
        else:
            removed = list(outcome.removed)
            forgotten = len(doomed)
    if as_json:
        emit_json({"dry_run": dry_run, "decisions": rows, "removed": removed})
        return
    for row in rows:
        verdict = "keep  " if row["keep"] else "forget"
        out.print(f"{verdict} {row['id']}  {', '.join(row['reasons'])}", highlight=False)
    action = "would forget" if dry_run else "forgot"
    out.print(f"{action} {forgotten} snapshots; run prune to reclaim space", highlight=False)


@cli.command()
@click.option("--remote", default=None, help="Prune this configured remote instead.")
@click.option(
    "--repack-threshold", type=float, default=0.5, show_default=True,
    help="Repack packs whose live share is below this fraction.",
)  # fmt: skip
@click.option("--dry-run", "-n", is_flag=True, help="Only report what would be freed.")
@click.option(
    "--wait", type=float, default=600.0, show_default=True, metavar="SECONDS",
    help="How long to wait for running backups to finish.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a summary as JSON.")
@pass_context
def prune(
    ctx: Context,
    remote: str | None,
    repack_threshold: float,
    dry_run: bool,
    wait: float,
    as_json: bool,
) -> None:
    """Delete data no snapshot references and repack mostly-dead packs.

    Takes the repository's exclusive lock: running backups finish first, new ones wait.
    """
    with ctx.open(remote) as repo, progress_bar("pruning", None, not as_json) as progress:
        result = repo.prune(
            repack_threshold=repack_threshold, dry_run=dry_run, wait=wait, progress=progress
        )
    if as_json:
        emit_json({**result.to_json(), "dry_run": dry_run})
        return
    verb = "would free" if dry_run else "freed"
    out.print(
        f"{verb} {human_size(result.bytes_freed)}: {result.packs_deleted} of "
        f"{result.packs_before} packs deleted, {result.packs_repacked} repacked into "
        f"{result.packs_written}; {result.snapshots} snapshots kept "
        f"({human_size(result.bytes_after)} stored)"
        + (
            f"; removed {result.abandoned_removed} files left by interrupted writes"
            if result.abandoned_removed
            else ""
        ),
        highlight=False,
    )


@cli.group()
def key() -> None:
    """Manage the passwords (keys) that open an encrypted repository."""


def _new_password(new_password_file: str | None) -> str:
    password = read_password(
        new_password_file, None, prompt="new password", confirm=True, env="STCORE_NEW_PASSWORD"
    )
    if not password:
        raise ConfigError(
            "no new password: use --new-password-file, STCORE_NEW_PASSWORD, or a terminal"
        )
    return password


@key.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_context
def key_list(ctx: Context, as_json: bool) -> None:
    """List the keys; the one that opened the repository is marked."""
    with ctx.open() as repo:
        keys = repo.keys()
    if as_json:
        emit_json([entry.to_json() for entry in keys])
        return
    for entry in keys:
        marker = "*" if entry.current else " "
        out.print(
            f"{marker} {entry.id}  created {entry.created} on {entry.host}",
            highlight=False,
        )


@key.command("add")
@click.option("--new-password-file", metavar="FILE", help="Read the new password from FILE.")
@pass_context
def key_add(ctx: Context, new_password_file: str | None) -> None:
    """Add a key: another password that opens the repository."""
    with ctx.open() as repo:
        repo.keys()  # an unencrypted repository says so before a new password is asked
        key_id = repo.add_key(_new_password(new_password_file))
    out.print(f"added key {key_id}", highlight=False)


@key.command("remove")
@click.argument("key_id")
@pass_context
def key_remove(ctx: Context, key_id: str) -> None:
    """Remove a key (its password no longer opens the repository). The last key is kept."""
    with ctx.open() as repo:
        repo.remove_key(key_id)
    out.print(f"removed key {key_id}", highlight=False)


@key.command("passwd")
@click.option("--new-password-file", metavar="FILE", help="Read the new password from FILE.")
@pass_context
def key_passwd(ctx: Context, new_password_file: str | None) -> None:
    """Change the password: add a key for the new one, remove the key used to open."""
    with ctx.open() as repo:
        repo.keys()  # an unencrypted repository says so before a new password is asked
        old = repo.key_id
        new = repo.change_password(_new_password(new_password_file))
    out.print(f"password changed: key {old} replaced by {new}", highlight=False)


@cli.group()
def cache() -> None:
    """Inspect or empty the local cache: fetched objects and SQLite working copies."""


@cache.command("stats")
@click.option("--from", "from_remote", default=None, metavar="REMOTE", help="A configured remote.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_context
def cache_stats(ctx: Context, from_remote: str | None, as_json: bool) -> None:
    """Entries and bytes in the cache of this repository (or remote).

    The cache holds objects fetched from a remote repository and the SQLite working copies
    that connect() makes (for any repository); both count against the cache bound.
    """
    with ctx.open(from_remote, cache=True) as repo:
        assert repo.object_cache is not None
        numbers = repo.object_cache.stats()
    if as_json:
        emit_json(numbers)
        return
    out.print(
        f"{numbers['entries']} entries, {human_size(numbers['bytes'])} of "
        f"{human_size(numbers['max_bytes'])} in {numbers['path']}",
        highlight=False,
    )
    copies = numbers["kinds"].get("sqlite")
    if copies:
        plural = "y" if copies["entries"] == 1 else "ies"
        out.print(
            f"including {copies['entries']} SQLite working cop{plural} "
            f"({human_size(copies['bytes'])}) made by connect()",
            highlight=False,
        )


@cache.command("clear")
@click.option("--from", "from_remote", default=None, metavar="REMOTE", help="A configured remote.")
@pass_context
def cache_clear(ctx: Context, from_remote: str | None) -> None:
    """Delete every cached object and SQLite working copy of this repository (or remote);
    nothing else is touched (connections already open keep reading their copy)."""
    with ctx.open(from_remote, cache=True) as repo:
        assert repo.object_cache is not None
        freed = repo.object_cache.clear()
    out.print(f"cache cleared: {human_size(freed)} freed", highlight=False)


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
    out.print(
        f"{verb} {result.blobs} blobs in {result.packs} packs; "
        f"{result.indexes_removed} old index objects replaced",
        highlight=False,
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
    out.print(
        f"repaired {len(result.packs_repaired)} packs: {result.blobs_salvaged} blobs salvaged, "
        f"{result.blobs_lost} lost",
        highlight=False,
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
        out.print(f"snapshot {repaired.snapshot_id}{target}", highlight=False, markup=False)
        for change in repaired.changes:
            out.print(f"  {change}", highlight=False, markup=False)
    verb = "need repair" if dry_run else "repaired"
    out.print(
        f"{len(result.repaired)} of {result.snapshots_checked} snapshots {verb}"
        + (f"; forgot {len(result.forgotten)} originals" if result.forgotten else ""),
        highlight=False,
    )


@cli.group()
def catalog() -> None:
    """Maintain the local snapshot catalog."""


@catalog.command("rebuild")
@pass_context
def catalog_rebuild(ctx: Context) -> None:
    """Rebuild the catalog from the repository's snapshot manifests."""
    with ctx.open() as repo:
        count = repo.rebuild_catalog()
    out.print(f"catalog rebuilt: {count} snapshots", highlight=False)


class PrintableLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stcore's logged warnings (a broken plugin, a damaged lock) on stderr, as Python's
    last-resort handler prints them, but through :func:`printable`: they quote other programs'
    errors and repository text. The message stays one line; a traceback keeps its lines."""

    def format(self, record: logging.LogRecord) -> str:
        shown = printable(record.getMessage())  # one line, whatever it quotes
        if record.exc_info:  # a traceback keeps its lines
            trace = logging.Formatter().formatException(record.exc_info)
            shown += "".join(f"\n{printable(line)}" for line in trace.splitlines())
        return shown


#: seconds a thread may hold the GIL while another waits for it (Python's default is 5 ms)
SWITCH_INTERVAL = 0.001


def main() -> None:
    # A backup's main thread makes many short calls that release the GIL (hashing a page,
    # cutting a chunk) while sealing threads run Python between their zstd calls; after each
    # call it waits up to a switch interval to get the GIL back. 1 ms instead of 5 took the
    # benchmark's first backup from 3.27 s to 3.03 s (mean of six). The command-line tool owns
    # its process, so it sets this; embedders choose for themselves (docs/architecture.md).
    sys.setswitchinterval(SWITCH_INTERVAL)
    handler = PrintableLogHandler()
    handler.setLevel(logging.WARNING)
    logging.getLogger("stcore").addHandler(handler)
    cli(prog_name="stcore")


if __name__ == "__main__":
    main()
