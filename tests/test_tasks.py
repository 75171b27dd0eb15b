"""The use cases the CLI, the daemon and the seed facade share (stcore.tasks)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import stcore
from stcore.config import parse_settings
from stcore.errors import ConfigError
from stcore.repo.forget import Policy
from stcore.repository import Repository
from stcore.tasks import (
    apply_retention,
    backup_configured,
    configured_sources,
    forget_by_policy,
    repository_status,
)


def _settings(tmp_path: Path, **extra: object) -> stcore.config.Settings:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "a.json").write_text('{"a": 1}')
    (tmp_path / "data" / "notes.txt").write_text("notes")
    document = {
        "sources": {
            "doc": {"type": "json", "path": "data/a.json"},
            "notes": {"type": "files", "path": "data"},
        },
        "backup": {"tags": ["configured"]},
        **extra,
    }
    return parse_settings(document, tmp_path / "stcore.toml")


def test_backup_configured_backs_up_every_source_with_the_configured_tags(
    repo: Repository, tmp_path: Path
) -> None:
    result = backup_configured(repo, _settings(tmp_path), tags=["extra"])
    assert sorted(result.manifest.sources) == ["doc", "notes"]
    assert result.manifest.tags == ("configured", "extra")


def test_only_named_sources_and_unknown_names_are_one_line_errors(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    host = stcore.make_plugin_manager()
    assert [s.name for s in configured_sources(settings, host, ["notes"])] == ["notes"]
    with pytest.raises(ConfigError, match="no source named nope"):
        configured_sources(settings, host, ["nope"])
    with pytest.raises(ConfigError, match="nothing to back up"):
        configured_sources(parse_settings({}, None), host)


def test_forget_by_policy_forgets_what_the_policy_drops_then_prunes(
    repo: Repository, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for day in range(4):
        (tmp_path / "data" / "notes.txt").write_text(f"notes of day {day} " * 2000)
        repo.backup(configured_sources(settings, repo.host), time=start + dt.timedelta(days=day))
    dry = forget_by_policy(repo, Policy(last=2), dry_run=True)
    assert dry.removed == () and dry.kept == 2 and len(repo.snapshots()) == 4
    done = forget_by_policy(repo, Policy(last=2))
    assert len(done.removed) == 2 and len(repo.snapshots()) == 2
    assert done.pruned is not None and done.pruned.bytes_freed > 0
    assert repo.check(read_data=True).ok


def test_retention_applies_only_when_configured(repo: Repository, tmp_path: Path) -> None:
    assert apply_retention(repo, _settings(tmp_path)) is None
    settings = _settings(tmp_path, retention={"keep_last": 1})
    backup_configured(repo, settings)
    backup_configured(repo, settings)
    outcome = apply_retention(repo, settings)
    assert outcome is not None and len(outcome.removed) == 1


def test_status_answers_from_the_catalog_without_a_daemon(repo: Repository, tmp_path: Path) -> None:
    result = backup_configured(repo, _settings(tmp_path))
    status = repository_status(repo, [])
    assert status["snapshots"] == 1 and status["latest_snapshot"] == result.manifest.id
    assert status["daemon"]["running"] is False and status["remotes"] == []
