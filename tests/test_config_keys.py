"""stcore.toml refuses unknown tables and keys in one line naming the file, the table, each
unknown key with the allowed key closest to it ("did you mean"), and the allowed keys.

The allowed keys come from registries: :data:`stcore.config.KEYS` (which tests/test_docs.py
checks against docs/configuration.md) and, for the built-in source types,
:data:`stcore.config.SOURCE_OPTIONS` (checked here against what the sources read). A plugin's
source type takes any options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stcore.config import KEYS, SOURCE_OPTIONS, TABLES, load_settings
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
        f"{tmp_path / 'stcore.toml'}: unknown [repository] keys: pth; "
        "allowed: url, compression, compression_level, options"
    )


def test_an_unknown_key_in_a_remote_names_that_remote(tmp_path: Path) -> None:
    message = _error(tmp_path, '[remotes.x]\nurl = "s3://b/p"\nregion = "eu"\n')
    assert message == (
        f"{tmp_path / 'stcore.toml'}: unknown [remotes.x] keys: region; allowed: url, options"
    )


def test_a_misspelled_remote_url_is_reported_as_unknown_not_missing(tmp_path: Path) -> None:
    message = _error(tmp_path, '[remotes.x]\nulr = "s3://b/p"\n')
    assert message.endswith(
        "unknown [remotes.x] keys: ulr (did you mean url?); allowed: url, options"
    )


def test_an_unknown_backup_key(tmp_path: Path) -> None:
    message = _error(tmp_path, '[backup]\ntag = ["nightly"]\n')
    assert message == (
        f"{tmp_path / 'stcore.toml'}: unknown [backup] keys: tag (did you mean tags?); "
        "allowed: tags"
    )


def test_backup_tags_must_be_a_list_of_strings(tmp_path: Path) -> None:
    message = _error(tmp_path, '[backup]\ntags = "nightly"\n')
    assert message.endswith('[backup] tags must be a list of strings (e.g. ["nightly"])')
    assert load_settings(_write(tmp_path, '[backup]\ntags = ["a", "b"]\n')).tags == ("a", "b")


def test_an_unknown_daemon_key(tmp_path: Path) -> None:
    message = _error(tmp_path, "[daemon]\nbackup_every = 5\nsync = 1\n")
    assert message == (
        f"{tmp_path / 'stcore.toml'}: unknown [daemon] keys: "
        "backup_every (did you mean backup_interval?), sync (did you mean auto_sync?); "
        "allowed: backup_interval, sync_interval, auto_sync"
    )


def test_an_unknown_top_level_table(tmp_path: Path) -> None:
    message = _error(tmp_path, '[repositry]\nurl = "backups"\n')
    assert message == (
        f"{tmp_path / 'stcore.toml'}: unknown top-level tables: repositry "
        f"(did you mean repository?); allowed: {', '.join(TABLES)}"
    )


def test_an_unknown_retention_key_is_still_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, "[retention]\nkeep_dayly = 7\n")
    assert message == (
        f"{tmp_path / 'stcore.toml'}: [retention]: unknown keys keep_dayly (did you mean "
        f"keep_daily?); allowed: {', '.join(KEYS['retention'])}"
    )


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


# --- sources -------------------------------------------------------------------------------------

FILES_TAKES = ", ".join(("type", *SOURCE_OPTIONS["files"]))


def test_a_misspelled_source_option_is_reported_by_name_not_as_a_missing_path(
    tmp_path: Path,
) -> None:
    message = _error(tmp_path, '[sources.models]\ntype = "files"\npth = "data"\n')
    assert message == (
        f"{tmp_path / 'stcore.toml'}: unknown [sources.models] keys: pth (did you mean path?); "
        f"a files source takes: {FILES_TAKES}"
    )
    assert "needs a `path`" not in message


def test_several_misspellings_are_reported_together_each_with_its_suggestion(
    tmp_path: Path,
) -> None:
    message = _error(
        tmp_path,
        '[sources.models]\ntype = "files"\nPath = "data"\nexlude = ["*.tmp"]\n'
        'includes = ["*.bin"]\ncolour = "red"\n',
    )
    assert message.endswith(
        "unknown [sources.models] keys: Path (did you mean path?), colour, "
        "exlude (did you mean exclude?), includes (did you mean include?); "
        f"a files source takes: {FILES_TAKES}"
    )
    json_message = _error(tmp_path, '[sources.hub]\ntype = "json"\npaht = "a"\npath_s = ["b"]\n')
    assert json_message.endswith(
        "unknown [sources.hub] keys: paht (did you mean path?), path_s (did you mean paths?); "
        "a json source takes: type, path, paths"
    )


def test_an_option_of_another_source_type_is_unknown_for_this_one(tmp_path: Path) -> None:
    message = _error(tmp_path, '[sources.db]\ntype = "sqlite"\npath = "a.db"\nexclude = ["x"]\n')
    assert message.endswith("unknown [sources.db] keys: exclude; a sqlite source takes: type, path")


def test_a_misspelled_type_key_says_which_key_it_probably_is(tmp_path: Path) -> None:
    message = _error(tmp_path, '[sources.x]\ntpye = "files"\npath = "a"\n')
    assert message.endswith(
        '[sources.x] needs a `type` (e.g. type = "files") (did you mean type instead of tpye?)'
    )
    plain = _error(tmp_path, '[sources.x]\npath = "a"\n')
    assert plain.endswith('[sources.x] needs a `type` (e.g. type = "files")')
    not_text = _error(tmp_path, '[sources.x]\ntype = 3\npath = "a"\n')
    assert not_text.endswith('[sources.x] type must be text (e.g. type = "files")')


def test_a_plugin_source_type_takes_its_own_options(tmp_path: Path) -> None:
    settings = load_settings(
        _write(tmp_path, '[sources.cache]\ntype = "redis"\nhost = "localhost"\npth = "x"\n')
    )
    (source,) = settings.sources
    assert (source.type, source.options["host"]) == ("redis", "localhost")
    assert source.options["pth"] == "x"  # the plugin reads (and checks) its own options


def test_misspellings_in_every_kind_of_table_suggest_the_right_key(tmp_path: Path) -> None:
    cases = {
        '[repository]\nURL = "backups"\n': "URL (did you mean url?)",
        '[repository]\ncompresion = "zstd"\n': "compresion (did you mean compression?)",
        '[remotes.cloud]\nurl = "s3://b/p"\noptoins = {}\n': "optoins (did you mean options?)",
        "[daemon]\nsync_intervall = 5\nauto_synk = true\n": (
            "auto_synk (did you mean auto_sync?), sync_intervall (did you mean sync_interval?)"
        ),
        "[retention]\nkeep_lats = 3\n": "keep_lats (did you mean keep_last?)",
        '[backup]\ntgas = ["x"]\n': "tgas (did you mean tags?)",
        '[source.x]\ntype = "files"\n': "source (did you mean sources?)",
    }
    for document, expected in cases.items():
        assert expected in _error(tmp_path, document), document


def test_hostile_keys_and_names_stay_on_one_quoted_line(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        '[sources."a\\nb"]\ntype = "files"\npath = "d"\n"[x]" = 1\n"p\\u0007th" = 2\n'
        '"\\u001b[31mred" = 3\n',
    )
    assert "\n" not in message and "\x07" not in message and "\x1b" not in message
    assert "[sources.'a\\nb']" in message
    assert "'[x]'" in message and "'p\\x07th' (did you mean path?)" in message
    long_name = "k" * 500
    assert len(_error(tmp_path, f'[daemon]\n"{long_name}" = 1\n')) < 300


def test_the_cli_reports_a_misspelled_source_option_on_one_line(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    _write(tmp_path, '[repository]\nurl = "repo"\n[sources.d]\ntype = "files"\nexlcude = ["x"]\n')
    result = run_cli("backup", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "unknown [sources.d] keys: exlcude (did you mean exclude?)" in result.stderr
    assert "Traceback" not in result.stderr


class _Recording(dict[str, Any]):
    """An options mapping that records which keys its reader asked for."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


@pytest.mark.parametrize("type_name", sorted(SOURCE_OPTIONS))
def test_the_source_option_registry_is_what_each_built_in_source_reads(
    tmp_path: Path, type_name: str
) -> None:
    import sqlite3

    from stcore.plugins import make_plugin_manager

    database = tmp_path / "a.db"
    sqlite3.connect(database).close()
    (tmp_path / "doc.json").write_text("{}")
    path = {"files": tmp_path, "json": tmp_path / "doc.json", "sqlite": database}[type_name]
    options = _Recording({"path": str(path)})
    factory = make_plugin_manager().sources.get(type_name)
    factory("s", options).close()
    assert options.asked == set(SOURCE_OPTIONS[type_name])


def test_the_built_in_source_options_are_documented() -> None:
    text = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    section = text.split("### `[sources.NAME]`", 1)[1].split("\n### ", 1)[0]
    for type_name, options in SOURCE_OPTIONS.items():
        line = next(part for part in section.split("\n- ") if part.startswith(f"`{type_name}`"))
        for option in options:
            assert f"`{option}`" in line, f"docs/configuration.md: {type_name} needs `{option}`"
