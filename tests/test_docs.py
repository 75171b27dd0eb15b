"""Docs match the code, parametrized over the live registries, so nothing undocumented is added.

- every hook of a freshly built plugin manager: docs/plugin-hooks.md, with its exact signature,
  and exercised by a test;
- every command of the click tree: docs/cli.md, with each option in that command's section;
- every stcore.toml table and key (:data:`stcore.config.KEYS`) and environment variable
  (:data:`stcore.config.ENVIRONMENT`): docs/configuration.md.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import attrs
import click
import pluggy
import pytest

from stcore.cli import cli
from stcore.config import ENVIRONMENT, KEYS, SEED_PROVIDERS, TABLES
from stcore.errors import ConfigError
from stcore.plugins import make_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# --- hooks ---------------------------------------------------------------------------------------


def _live_hooks() -> dict[str, pluggy.HookCaller]:
    """The ``st_*`` hooks of a plugin manager built as stcore builds it, plugins included."""
    relay = make_plugin_manager().manager.hook
    return {name: caller for name, caller in vars(relay).items() if name.startswith("st_")}


HOOKS = sorted(_live_hooks())


def _signature(name: str) -> str:
    spec = _live_hooks()[name].spec
    assert spec is not None, f"{name} is implemented by a plugin but has no hookspec"
    return f"{name}{inspect.signature(spec.function)}".replace("'", "")


def test_there_are_hooks_for_every_plugin_kind() -> None:
    for kind in ("sources", "compressors", "encryptors", "backends"):
        assert f"st_register_{kind}" in HOOKS
    assert "st_backup_started" in HOOKS and "st_backup_finished" in HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_each_hook_has_a_docs_heading_with_its_exact_signature(name: str) -> None:
    text = (DOCS / "plugin-hooks.md").read_text()
    headings = re.findall(r"^### `(.+)`$", text, flags=re.MULTILINE)
    assert _signature(name) in headings, f"docs/plugin-hooks.md needs: ### `{_signature(name)}`"


@pytest.mark.parametrize("name", HOOKS)
def test_each_hook_is_exercised_by_a_test(name: str) -> None:
    tests = "".join(
        p.read_text()
        for p in [*ROOT.glob("tests/test_*.py"), *ROOT.glob("plugins/*/tests/*.py")]
        if p.name != "test_docs.py"
    )
    assert name in tests or (
        name.replace("st_register_", "") in ("sources compressors encryptors backends")
        and f"host.{name.removeprefix('st_register_')}" in tests
    )


# --- command line --------------------------------------------------------------------------------


def _walk(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _walk(sub, f"{path} {name}")


cli.every_command()  # each imported, so each group's .commands lists them all
COMMANDS = dict(_walk(cli, "stcore"))


def _cli_sections() -> dict[str, str]:
    """docs/cli.md's ``### `stcore ...``` headings -> the text up to the next heading."""
    text = (DOCS / "cli.md").read_text()
    parts = re.split(r"^(#{1,3} .*)$", text, flags=re.MULTILINE)
    sections: dict[str, str] = {}
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        match = re.fullmatch(r"### `(stcore(?: [a-z-]+)*)`", heading)
        if match:
            assert match.group(1) not in sections, f"docs/cli.md: {heading} appears twice"
            sections[match.group(1)] = body
    return sections


def _long_options(command: click.Command) -> list[str]:
    return [
        opt
        for param in command.params
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("--") and opt != "--help"
    ]


def test_the_command_tree_is_walked() -> None:
    assert {"stcore", "stcore backup", "stcore key add", "stcore cache clear"} <= set(COMMANDS)
    assert "--keep-last" in _long_options(COMMANDS["stcore forget"])
    assert "--no-auto-sync" in _long_options(COMMANDS["stcore daemon"])


@pytest.mark.parametrize("path", COMMANDS)
def test_each_command_has_a_heading_in_docs_cli(path: str) -> None:
    assert path in _cli_sections(), f"docs/cli.md needs: ### `{path}`"


@pytest.mark.parametrize("path", COMMANDS)
def test_each_option_and_argument_is_documented_in_its_commands_section(path: str) -> None:
    section = _cli_sections().get(path, "")
    command = COMMANDS[path]
    missing = [
        opt
        for opt in _long_options(command)
        if not re.search(rf"(?<![\w-]){opt}(?![\w-])", section)
    ]
    missing += [
        param.human_readable_name
        for param in command.params
        if isinstance(param, click.Argument)
        and not re.search(rf"`{param.human_readable_name}`", section)
    ]
    assert not missing, f"docs/cli.md, ### `{path}`, does not mention: {', '.join(missing)}"


def test_every_command_in_docs_cli_exists() -> None:
    text = (DOCS / "cli.md").read_text()
    headings = re.findall(r"^### (.*)$", text, flags=re.MULTILINE)
    stale = [h for h in headings if h.strip("`") not in COMMANDS]
    assert not stale, f"docs/cli.md documents commands that do not exist: {stale}"


# --- configuration keys and environment variables -----------------------------------------------


def _config_sections() -> dict[str, str]:
    """docs/configuration.md's ``### `[table]``` headings -> the text up to the next heading."""
    text = (DOCS / "configuration.md").read_text()
    parts = re.split(r"^(#{1,3} .*)$", text, flags=re.MULTILINE)
    return {
        match.group(1): body
        for heading, body in zip(parts[1::2], parts[2::2], strict=True)
        if (match := re.fullmatch(r"### `\[(.+)\]`", heading))
    }


KEY_PAIRS = [(table, key) for table, keys in KEYS.items() for key in keys]


@pytest.mark.parametrize("table", TABLES)
def test_each_top_level_table_is_documented(table: str) -> None:
    sections = _config_sections()
    assert table in sections or f"{table}.NAME" in sections, (
        f"docs/configuration.md needs: ### `[{table}]` (or `[{table}.NAME]`)"
    )


@pytest.mark.parametrize(("table", "key"), KEY_PAIRS)
def test_each_config_key_is_documented_in_its_tables_section(table: str, key: str) -> None:
    sections = _config_sections()
    assert table in sections, f"docs/configuration.md needs: ### `[{table}]`"
    assert f"`{key}`" in sections[table], f"docs/configuration.md, [{table}], needs `{key}`"


def test_every_documented_table_is_in_the_registry() -> None:
    documented = set(_config_sections())
    known = set(KEYS) | {f"{t}.NAME" for t in TABLES} | set(TABLES)
    assert documented <= known, f"stale tables in docs/configuration.md: {documented - known}"


def test_the_retention_keys_are_the_ones_the_policy_accepts() -> None:
    from stcore.repo.forget import Policy

    assert set(KEYS["retention"]) == {f"keep_{f.name}" for f in attrs.fields(Policy)}
    samples = {"keep_within": "7d", "keep_tags": ["nightly"]}
    for key in KEYS["retention"]:
        policy = Policy.from_mapping({key: samples.get(key, 2)})
        assert not policy.empty(), f"[retention] {key} has no effect"
    with pytest.raises(ConfigError, match="keep_fortnightly"):
        Policy.from_mapping({"keep_fortnightly": 1})


def _environment_table() -> list[str]:
    text = (DOCS / "configuration.md").read_text()
    section = text.split("\n## Environment\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section, flags=re.MULTILINE)


@pytest.mark.parametrize("variable", ENVIRONMENT)
def test_each_environment_variable_is_in_the_docs_table(variable: str) -> None:
    assert variable in _environment_table(), f"docs/configuration.md's table needs `{variable}`"


def test_the_docs_table_lists_only_registered_variables() -> None:
    table = _environment_table()
    assert len(table) == len(set(table))
    assert set(table) <= set(ENVIRONMENT), set(table) - set(ENVIRONMENT)


#: ``os.environ.get("X")``, ``os.environ["X"]``, ``environ.get("X")``, ``env.get("X")``,
#: ``os.getenv("X")``; and any string naming one of stcore's own variables, wherever it is read
#: (``_positive_number("STCORE_LOCK_WAIT", ...)``, ``env="STCORE_NEW_PASSWORD"``).
READS = re.compile(
    r"""(?:\b(?:environ|env)(?:\.get\(|\[)|\bgetenv\()\s*["']([A-Z][A-Z0-9_]*)["']"""
    r"""|["']((?:STCORE|CLOUD|XDG)_[A-Z0-9_]+)["']"""
)


def _variables_read_by_the_code() -> set[str]:
    found: set[str] = set()
    for path in [*ROOT.glob("stcore/**/*.py"), ROOT / "cloud_storage_manager.py"]:
        for match in READS.finditer(path.read_text()):
            found.add(match.group(1) or match.group(2))
    return found | {variable for _, variable in SEED_PROVIDERS.values()}


def test_every_environment_variable_the_code_reads_is_registered() -> None:
    found = _variables_read_by_the_code()
    assert {"STCORE_REPO", "STCORE_LOCK_WAIT", "CLOUD_AUTO_SYNC", "XDG_CACHE_HOME"} <= found
    unregistered = sorted(found - set(ENVIRONMENT))
    assert not unregistered, f"add to stcore.config.ENVIRONMENT and docs: {unregistered}"


def test_every_registered_environment_variable_is_read_by_the_code() -> None:
    assert set(ENVIRONMENT) <= _variables_read_by_the_code()


# --- README --------------------------------------------------------------------------------------


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "scripts/demo" in readme and "scripts/test" in readme
    assert (ROOT / "scripts" / "demo").exists() and (ROOT / "scripts" / "test").exists()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in ci


def _copy_of_this_checkout(dest: Path) -> Path:
    """The checkout's files (tracked, and new ones not ignored) under ``dest``; no .venv.

    Its ``.cache/pip`` is this checkout's pip cache, so the copy's install reads the wheels the
    test setup already downloaded instead of fetching them again.
    """
    import shutil
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".cache").mkdir(exist_ok=True)
    (ROOT / ".cache" / "pip").mkdir(parents=True, exist_ok=True)
    (dest / ".cache" / "pip").symlink_to(ROOT / ".cache" / "pip")
    return dest


@pytest.mark.slow
def test_the_readme_demo_command_backs_up_and_lists(tmp_path: Path) -> None:
    """On a copy of the checkout with no .venv, as on a fresh machine.

    Not in this checkout: its ``pip install -e`` would reinstall stcore and st-local in the
    environment the other test workers are importing from, and for a moment they would find
    no local backend.
    """
    import os
    import subprocess

    checkout = _copy_of_this_checkout(tmp_path / "checkout")
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    for name in ("STCORE_REPO", "VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(name, None)
    result = subprocess.run(
        ["bash", str(checkout / "scripts" / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "==> creating .venv" in result.stdout
    assert (checkout / ".venv" / "bin" / "stcore").is_file()
    assert (tmp_path / "data" / "stcore" / "repo" / "config").is_file()
    assert "1 snapshot\n" in result.stdout or "1 snapshot " in result.stdout
    assert "no errors found" in result.stdout
