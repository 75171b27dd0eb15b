"""``stcore serve``: serve the status dashboard (/), /api/cloud/status, /healthz and /metrics
(needs `pip install 'stcore[web]'`)."""

from __future__ import annotations

import click

from stcore.cli.context import EXIT_USAGE, Context, pass_context
from stcore.cli.output import fail
from stcore.cli.root import cli


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
    """Serve the status dashboard and its API (needs `pip install 'stcore[web]'`).

    At / an HTML dashboard (charts drawn by the server, refreshed every 30 s), at
    /api/cloud/status its data as JSON, /healthz and /metrics for probes and Prometheus.
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

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, stop)
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
        # Not the previous handlers back: a second stop signal during shutdown asks the same
        # (`timeout` sends SIGTERM to the process and to its group, so it often comes twice),
        # and under the default handler it would end the process with 143 instead of 0.
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_IGN)
        server.server_close()
