"""Wheels for stcore and st-local build, install into a fresh venv, and work there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_wheels_install_into_a_fresh_venv_and_back_up(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    for project in (ROOT, ROOT / "plugins" / "st_local"):
        _run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, project)
    wheels = sorted(p.name for p in dist.glob("*.whl"))
    assert [w.split("-")[0] for w in wheels] == ["st_local", "stcore"]

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    pip_env = {"PIP_CACHE_DIR": str(tmp_path / "pip-cache")}
    _run(python, "-m", "pip", "install", "--quiet", *dist.glob("*.whl"), env=pip_env)

    stcore_bin = env_dir / "bin" / "stcore"
    plugins = json.loads(_run(stcore_bin, "plugins", "--json"))
    assert "local" in {p["name"] for p in plugins["plugins"]}
    assert plugins["broken"] == []

    data = tmp_path / "data"
    data.mkdir()
    (data / "hello.txt").write_text("hello from a wheel")
    env = {"STCORE_REPO": str(tmp_path / "repo"), "STCORE_CACHE_DIR": str(tmp_path / "cache")}
    _run(stcore_bin, "init", env=env)
    backup = json.loads(_run(stcore_bin, "backup", "--json", data, env=env))
    assert backup["files"] == 1
    assert _run(stcore_bin, "dump", "latest", "data", "hello.txt", env=env) == "hello from a wheel"
    # The facade module ships in the stcore wheel too.
    _run(python, "-c", "from cloud_storage_manager import cloud_storage", cwd=tmp_path)
