"""scripts/test, the README's second command: its fast path and where it leaves files."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _cache_entries() -> set[str]:
    cache = ROOT / ".cache"
    return {p.name for p in cache.iterdir()} if cache.is_dir() else set()


def test_fast_runs_skip_install_and_lint_and_leave_no_temporary_folders() -> None:
    before = _cache_entries()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [str(ROOT / "scripts" / "test"), "--fast", "--collect-only", "-q", "-n", "0",
         "tests/test_durations.py"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "install: skipped" in done.stdout and "lint: skipped" in done.stdout
    assert "==> ruff" not in done.stdout and "installing stcore" not in done.stdout
    assert "test_durations.py::" in done.stdout  # pytest ran, with the arguments given
    left = {n for n in _cache_entries() - before if n.startswith(("pytest-tmp.", "tmp."))}
    assert not left, f"scripts/test left {left} in .cache"


@pytest.mark.skipif(not os.environ.get("CI"), reason="checks the run CI makes: scripts/test")
def test_the_suite_writes_its_temporary_files_inside_the_checkout() -> None:
    """Under scripts/test (as in CI) every process the tests start inherits a TMPDIR inside
    the checkout's .cache, made for this run."""
    temporary = Path(tempfile.gettempdir()).resolve()
    assert temporary.parent == (ROOT / ".cache").resolve() and temporary.name.startswith("tmp.")
