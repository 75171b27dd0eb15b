"""Human output treats users' text as text: brackets, markup-like tags and control characters in
tags, file names and error messages are printed as they are, never interpreted or lost."""

from __future__ import annotations

from pathlib import Path

import pytest

import stcore
from tests.conftest import run_cli


@pytest.mark.parametrize("tag", ["v[/1]", "[bold]x[/bold]", "[x]", "[/x]", "a[red]b"])
def test_a_tag_with_brackets_is_listed_as_written(tmp_path: Path, tag: str) -> None:
    repo = stcore.init_repository(str(tmp_path / "repo"))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "[draft] plan.txt").write_text("plan")
    repo.backup(stcore.sources_for_paths([str(tmp_path / "src")]), tags=[tag])
    wide = {"COLUMNS": "200"}  # the 80-column table cuts long cells (a separate issue)
    listed = run_cli("--repo", repo.location, "snapshots", env=wide)
    assert listed.returncode == 0, listed.stderr
    assert tag in listed.stdout and "Traceback" not in listed.stderr
    shown = run_cli("--repo", repo.location, "show", "latest", "--files", env=wide)
    assert shown.returncode == 0, shown.stderr
    assert tag in shown.stdout and "[draft] plan.txt" in shown.stdout


def test_brackets_in_an_error_message_survive(tmp_path: Path) -> None:
    result = run_cli("--repo", str(tmp_path / "no [such] repo"), "snapshots")
    assert result.returncode == 1
    assert "no [such] repo" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("--repo", str(tmp_path / "x"), "sync")
    assert "[remotes.NAME]" in missing.stderr
