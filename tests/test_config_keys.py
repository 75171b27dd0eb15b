"""stcore.toml refuses unknown tables and keys in one line naming the file, table and allowed keys.

The allowed keys come from one registry, :data:`stcore.config.KEYS`, which tests/test_docs.py
checks against docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stcore.config import KEYS, TABLES, load_settings
from stcore.errors import ConfigError


def _error(tmp_path: Path, document: str) -> str:
    path = tmp_path / "stcore.toml"
    path.write_text(document)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_misspelled_repository_key_names_the_allowed_ones(tmp_path: Path) -> None:
    message = _error(tmp_path, '[repository]\npth = "backups"\n')
    assert message == (
        f"{tmp_path / 'stcore.toml'}: unknown [repository] keys: pth "
        "(allowed: url, compression, compression_level, options)"
    )


def test_an_unknown_key_in_a_remote_names_that_remote(tmp_path: Path) -> None:
    message = _error(tmp_path, '[remotes.x]\nurl = "s3://b/p"\nregion = "eu"\n')
    assert message == (
        f"{tmp_path / 'stcore.toml'}: unknown [remotes.x] keys: region (allowed: url, options)"
    )


def test_a_misspelled_remote_url_is_reported_as_unknown_not_missing(tmp_path: Path) -> None:
    message = _error(tmp_path, '[remotes.x]\nulr = "s3://b/p"\n')
    assert "unknown [remotes.x] keys: ulr (allowed: url, options)" in message


def test_an_unknown_backup_key(tmp_path: Path) -> None:
    message = _error(tmp_path, '[backup]\ntag = ["nightly"]\n')
    assert message == f"{tmp_path / 'stcore.toml'}: unknown [backup] keys: tag (allowed: tags)"


def test_backup_tags_must_be_a_list_of_strings(tmp_path: Path) -> None:
    message = _error(tmp_path, '[backup]\ntags = "nightly"\n')
    assert message.endswith('[backup] tags must be a list of strings (e.g. ["nightly"])')
    assert load_settings(_write(tmp_path, '[backup]\ntags = ["a", "b"]\n')).tags == ("a", "b")


def test_an_unknown_daemon_key(tmp_path: Path) -> None:
    message = _error(tmp_path, "[daemon]\nbackup_every = 5\nsync = 1\n")
    assert message == (
        f"{tmp_path / 'stcore.toml'}: unknown [daemon] keys: backup_every, sync "
        "(allowed: backup_interval, sync_interval, auto_sync)"
    )


def test_an_unknown_top_level_table(tmp_path: Path) -> None:
    message = _error(tmp_path, '[repositry]\nurl = "backups"\n')
    assert message == (
        f"{tmp_path / 'stcore.toml'}: unknown top-level tables: repositry "
        f"(allowed: {', '.join(TABLES)})"
    )


def test_an_unknown_retention_key_is_still_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, "[retention]\nkeep_dayly = 7\n")
    assert "[retention]" in message and "keep_dayly" in message


def test_every_registered_key_is_accepted(tmp_path: Path) -> None:
    document = """
[repository]
url = "backups"
compression = "gzip"
compression_level = 4
[repository.options]
retry_total = 2

[sources.data]
type = "files"
path = "data"

[remotes.cloud]
url = "s3://bucket/prefix"
[remotes.cloud.options]
region = "eu-west-1"

[backup]
tags = ["nightly"]

[daemon]
backup_interval = 60
sync_interval = 120
auto_sync = true

[retention]
keep_last = 1
keep_hourly = 1
keep_daily = 1
keep_weekly = 1
keep_monthly = 1
keep_yearly = 1
keep_within = "7d"
keep_tags = ["keep"]
"""
    for keys in KEYS.values():
        assert all(f"{key} =" in document or f".{key}]" in document for key in keys)
    settings = load_settings(_write(tmp_path, document))
    assert settings.compression == "gzip" and settings.compression_level == 4
    assert settings.backend_options == {"retry_total": 2}
    assert settings.configured_remotes[0].options == {"region": "eu-west-1"}
    assert settings.tags == ("nightly",)
    assert settings.daemon["auto_sync"] is True
    assert settings.retention["keep_within"] == "7d"


def _write(tmp_path: Path, document: str) -> Path:
    path = tmp_path / "stcore.toml"
    path.write_text(document)
    return path
