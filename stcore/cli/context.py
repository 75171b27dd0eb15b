"""What every command shares: the Context built from the global options, passwords,
exit codes, and parsing of times."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from stcore.config import Settings, load_dotenv_file, load_settings
from stcore.durations import parse_time
from stcore.errors import ConfigError
from stcore.plugins import PluginHost, make_plugin_manager
from stcore.repository import (
    Repository,
    open_remote_repository,
    open_repository,
)

#: exit codes (README.md and docs/cli.md list them)
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
#: the reader of our output went away (`stcore ls | head`): what a program killed by SIGPIPE gives
EXIT_BROKEN_PIPE = 141


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


def parse_when(value: str | None) -> dt.datetime | None:
    """``2026-11-24``, ``2026-11-24T13:00``, or a duration ago (``30min``, ``12h``, ``7d``)."""
    if value is None:
        return None
    try:
        return parse_time(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
