"""The command line imports a command's module when the command is asked for, so a backup does
not load restore, check, sync or the progress bar's drawing before it starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import stcore.cli
from stcore.cli.root import COMMANDS, cli

CLI_DIR = Path(stcore.cli.__file__).parent


def test_every_command_module_is_listed_and_defines_its_command() -> None:
    modules = sorted(p.stem.removeprefix("cmd_") for p in CLI_DIR.glob("cmd_*.py"))
    assert sorted(COMMANDS) == modules
    commands = cli.every_command()
    assert sorted(commands) == modules
    for name, command in commands.items():
        assert command.name == name
        assert command.callback is not None or hasattr(command, "commands")


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line}
    assert listed == set(COMMANDS)


def _loaded_after(code: str) -> set[str]:
    run = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(run.stdout.split())


def test_a_backup_loads_only_what_a_backup_needs() -> None:
    loaded = _loaded_after("import stcore.cli; stcore.cli.cli.get_command(None, 'backup')")
    assert {"stcore.cli.cmd_backup", "stcore.repo.backup"} <= loaded
    for heavy in (
        "stcore.repo.restore",
        "stcore.repo.check",
        "stcore.repo.repair",
        "stcore.sync",
        "stcore.access.views",
        "stcore.cli.cmd_restore",
        "stcore.cli.bars",
        "rich.progress",
        "rich.table",
    ):
        assert heavy not in loaded, heavy


def test_the_public_api_loads_on_first_use() -> None:
    loaded = _loaded_after("import stcore")
    assert "stcore.repository" not in loaded and "stcore.repo.restore" not in loaded
    loaded = _loaded_after("import stcore; stcore.Snapshot; from stcore import hookimpl")
    assert {"stcore.access.views", "stcore.hookspecs"} <= loaded
    assert set(stcore.__all__) <= set(dir(stcore))
    for name in stcore.__all__:
        assert getattr(stcore, name) is not None
    loaded = _loaded_after("import stcore; print(stcore.errors.StcoreError, stcore.repository)")
    assert {"stcore.errors", "stcore.repository"} <= loaded  # modules as attributes, as before
    with pytest.raises(AttributeError, match="no_such_name"):
        stcore.no_such_name  # type: ignore[attr-defined]  # noqa: B018
