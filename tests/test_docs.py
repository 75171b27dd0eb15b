"""Docs match the code: every hookspec is documented with its exact signature and tested."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from stcore import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = [
    name
    for name, value in vars(hookspecs).items()
    if name.startswith("st_") and inspect.isfunction(value)
]


def _signature(name: str) -> str:
    function = getattr(hookspecs, name)
    return f"{name}{inspect.signature(function)}".replace("'", "")


def test_there_are_hooks_for_every_plugin_kind() -> None:
    for kind in ("sources", "compressors", "encryptors", "backends"):
        assert f"st_register_{kind}" in HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_each_hook_has_a_docs_heading_with_its_exact_signature(name: str) -> None:
    text = (ROOT / "docs" / "plugin-hooks.md").read_text()
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


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "scripts/demo" in readme and "scripts/test" in readme
    assert (ROOT / "scripts" / "demo").exists() and (ROOT / "scripts" / "test").exists()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in ci


@pytest.mark.slow
def test_the_readme_demo_command_backs_up_and_lists(tmp_path: Path) -> None:
    import os
    import subprocess

    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("STCORE_REPO", None)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "data" / "stcore" / "repo" / "config").is_file()
    assert "1 snapshots" in result.stdout
    assert "no errors found" in result.stdout
