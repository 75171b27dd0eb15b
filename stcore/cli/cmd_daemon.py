"""``stcore daemon``: back up and sync on a schedule until SIGTERM or SIGINT (then exit 0)."""

from __future__ import annotations

import sys

import click

from stcore.cli.context import EXIT_ERROR, EXIT_OK, Context, pass_context
from stcore.cli.output import fail
from stcore.cli.root import cli
from stcore.errors import ConfigError


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
