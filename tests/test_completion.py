"""``stcore completion bash|zsh|fish``: the scripts load in real shells and complete.

* the bash script, sourced in a real ``bash``, registers ``_stcore_completion`` for ``stcore``,
  and calling it as bash does on ``stcore sn<TAB>`` offers ``snapshots``;
* the zsh and fish scripts are printed, and load in zsh and fish when those are installed (fish
  then completes ``stcore sn`` itself);
* click's protocol (``_STCORE_COMPLETE=bash_complete`` with COMP_WORDS/COMP_CWORD) completes
  commands, and snapshot ids for every snapshot argument, from a local repository;
* completing never prompts, never runs the password command, never touches the network and
  never prints an error: an encrypted repository without a password, a cloud URL, a broken
  stcore.toml, or a missing repository all complete to ``latest`` alone.
"""

from __future__ import annotations

import datetime as dt
import os
import pty
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import stcore
from stcore.cli import cli
from stcore.cli.cmd_completion import SNAPSHOT_ARGUMENTS, SnapshotRef
from tests.conftest import run_cli
from tests.helpers import PASSWORD, init_encrypted


@pytest.fixture
def on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has an ``stcore`` that runs this checkout's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "stcore"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m stcore.cli "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def complete(words: str, env: dict[str, str] | None = None, **kwargs: object) -> list[str]:
    """What click's bash protocol offers for the last word of ``words`` (an empty last word
    when ``words`` ends in a space)."""
    parts = words.split(" ")
    result = subprocess.run(
        [sys.executable, "-m", "stcore.cli"],
        env={
            **os.environ,
            **(env or {}),
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
            "_STCORE_COMPLETE": "bash_complete",
        },
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


@pytest.fixture
def two_snapshots(tmp_path: Path) -> tuple[str, list[str]]:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("a")
    times = [dt.datetime(2026, 1, day, tzinfo=dt.UTC) for day in (1, 2)]
    with stcore.init_repository(str(tmp_path / "repo")) as repo:
        ids = [
            repo.backup(stcore.sources_for_paths([str(source)]), time=when).manifest.id
            for when in times
        ]
    return str(tmp_path / "repo"), ids  # oldest first


# --- the scripts ---------------------------------------------------------------------------------


def script(shell: str) -> str:
    result = run_cli("completion", shell)
    assert result.returncode == 0, result.stderr
    return result.stdout


LOAD_BASH = 'eval "$(stcore completion bash)" && complete -p stcore'


def test_the_bash_script_loads_in_bash_and_registers_the_function(on_path: dict) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", LOAD_BASH],
        env=on_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "complete -o nosort -F _stcore_completion stcore"


def test_bash_completes_a_command_through_the_function(on_path: dict) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    program = (
        'eval "$(stcore completion bash)"\n'
        "COMP_WORDS=(stcore sn); COMP_CWORD=1; COMPREPLY=()\n"
        "_stcore_completion stcore sn stcore\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", program],
        env=on_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["snapshots"]


def test_the_zsh_and_fish_scripts_are_printed() -> None:
    zsh = script("zsh")
    assert zsh.startswith("#compdef stcore") and "_STCORE_COMPLETE=zsh_complete" in zsh
    fish = script("fish")
    assert "complete --no-files --command stcore" in fish and "fish_complete" in fish


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_the_zsh_script_loads_in_zsh(on_path: dict) -> None:
    program = (
        "autoload -Uz compinit && compinit -u -d $TMPDIR/zcompdump\n"
        'eval "$(stcore completion zsh)"\n'
        "print -r -- $_comps[stcore]\n"
    )
    result = subprocess.run(
        ["zsh", "-f", "-c", program],
        env={**on_path, "TMPDIR": on_path.get("HOME", "/tmp")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "_stcore_completion"


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_the_fish_script_loads_in_fish_and_completes(on_path: dict) -> None:
    program = "stcore completion fish | source; complete -C 'stcore sn'"
    result = subprocess.run(
        ["fish", "--no-config", "-c", program],
        env=on_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["snapshots"]


def test_help_says_how_to_install_and_an_unknown_shell_is_refused() -> None:
    shown = run_cli("completion", "--help")
    assert shown.returncode == 0
    for line in (
        """echo 'eval "$(stcore completion bash)"' >> ~/.bashrc""",
        """echo 'eval "$(stcore completion zsh)"' >> ~/.zshrc""",
        "stcore completion fish > ~/.config/fish/completions/stcore.fish",
    ):
        assert line in shown.stdout
    assert all(len(line) <= 80 for line in shown.stdout.splitlines())
    refused = run_cli("completion", "tcsh")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr


# --- the protocol --------------------------------------------------------------------------------


def test_commands_and_options_complete() -> None:
    assert complete("stcore sn") == ["snapshots"]
    assert set(complete("stcore s")) >= {"snapshots", "show", "stats", "status", "sync", "serve"}
    assert "--read-data-subset" in complete("stcore check --read-data-")
    assert complete("stcore completion ") == ["bash", "zsh", "fish"]


def test_every_snapshot_argument_completes_to_snapshot_ids(
    two_snapshots: tuple[str, list[str]],
) -> None:
    url, ids = two_snapshots
    newest_first = ["latest", *reversed(ids)]
    for words in (
        f"stcore --repo {url} restore ",
        f"stcore --repo {url} show ",
        f"stcore --repo {url} dump ",
        f"stcore --repo {url} diff ",
        f"stcore --repo {url} diff {ids[0]} ",
        f"stcore --repo {url} forget ",
        f"stcore --repo {url} forget {ids[0]} ",
        f"stcore --repo {url} sync ",
        f"stcore --repo {url} ls ",
        f"stcore --repo {url} tag ",
        f"stcore --repo {url} find --snapshot ",
        f"stcore show --repo {url} ",  # the command's own --repo
    ):
        assert complete(words) == newest_first, words
    assert complete("stcore show ", env={"STCORE_REPO": url}) == newest_first
    assert complete(f"stcore --repo {url} show {ids[1][:10]}") == [ids[1]]
    assert complete(f"stcore --repo {url} show zz") == []
    assert complete(f"stcore --repo {url} show [x]") == []
    assert complete(f"stcore --repo {url} dump {ids[0]} ") == []  # SOURCE is not a snapshot


def test_the_snapshot_arguments_listed_are_the_clis() -> None:
    commands = cli.every_command()
    for command, names in SNAPSHOT_ARGUMENTS.items():
        params = {p.name: p for p in commands[command].params}
        for name in names:
            assert isinstance(params[name].type, SnapshotRef), (command, name)
    # and no argument naming snapshots was missed
    for command in commands.values():
        for param in command.params:
            if param.name in ("snap", "snaps") or (param.metavar or "").startswith("SNAP"):
                assert isinstance(param.type, SnapshotRef), (command.name, param.name)


def test_an_encrypted_repository_completes_only_with_a_password_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STCORE_PASSWORD", raising=False)
    source = tmp_path / "src"
    source.mkdir()
    (source / "a").write_text("a")
    with init_encrypted(tmp_path / "enc") as repo:
        snapshot_id = repo.backup(stcore.sources_for_paths([str(source)])).manifest.id
    url = str(tmp_path / "enc")
    marker = tmp_path / "ran"
    # A terminal on stdin: a prompt would wait there (and time out); none may appear.
    controller, terminal = pty.openpty()
    try:
        started = time.monotonic()
        offered = complete(
            f"stcore --repo {url} --password-command 'touch {marker}' show ", stdin=terminal
        )
    finally:
        os.close(controller)
        os.close(terminal)
    assert time.monotonic() - started < 30
    assert offered == ["latest"] and not marker.exists()
    assert complete(f"stcore --repo {url} show ", env={"STCORE_PASSWORD": PASSWORD}) == [
        "latest",
        snapshot_id,
    ]
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    words = f"stcore --repo {url} --password-file {password_file} show "
    assert complete(words) == ["latest", snapshot_id]


def test_anything_in_the_way_means_no_ids_and_no_noise(tmp_path: Path) -> None:
    assert complete("stcore --repo s3://no-such-bucket-anywhere/x show ") == ["latest"]
    assert complete(f"stcore --repo {tmp_path / 'missing'} show ") == ["latest"]
    broken = tmp_path / "broken.toml"
    broken.write_text("[repository\nurl = ")
    assert complete(f"stcore --config {broken} show ") == ["latest"]
    (tmp_path / "notarepo").mkdir()
    (tmp_path / "notarepo" / "config").write_bytes(b"\x00\xff garbage")
    assert complete(f"stcore --repo {tmp_path / 'notarepo'} show ") == ["latest"]
