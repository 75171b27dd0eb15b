"""stcore.toml, environment precedence, and the seed-compatible cloud_storage facade."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from cloud_storage_manager import CloudStorageManager
from stcore.config import default_repository, load_settings
from stcore.errors import ConfigError, StcoreError


def _write_app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "data" / "models").mkdir(parents=True)
    (app / "data" / "ai_hub.json").write_text(json.dumps({"signals": [1, 2, 3]}))
    (app / "data" / "models" / "weights.bin").write_bytes(os.urandom(1000))
    (app / "stcore.toml").write_text(
        """
[repository]
url = "backups"

[sources.ai_hub]
type = "json"
path = "data/ai_hub.json"

[sources.models]
type = "files"
path = "data/models"
"""
    )
    return app


def test_relative_paths_in_the_config_are_relative_to_the_file(tmp_path: Path) -> None:
    app = _write_app(tmp_path)
    settings = load_settings(app / "stcore.toml")
    assert settings.repository == str(app / "backups")
    assert settings.sources[0].options["path"] == str(app / "data" / "ai_hub.json")


def test_repository_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(_write_app(tmp_path) / "stcore.toml")
    assert settings.repository_url() == settings.repository
    monkeypatch.setenv("STCORE_REPO", "/from/env")
    assert settings.repository_url() == "/from/env"
    assert settings.repository_url("/explicit") == "/explicit"
    monkeypatch.delenv("STCORE_REPO")
    assert load_settings().repository_url() == default_repository()


def test_bad_config_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "stcore.toml").write_text("[sources.x]\npath = 'a'\n")
    with pytest.raises(ConfigError, match=r"\[sources.x\] needs a `type`"):
        load_settings(tmp_path / "stcore.toml")
    (tmp_path / "bad.toml").write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "bad.toml")


def test_cli_backs_up_configured_sources(tmp_path: Path) -> None:
    app = _write_app(tmp_path)
    from tests.conftest import run_cli

    assert run_cli("init", cwd=app).returncode == 0
    result = run_cli("backup", "--json", cwd=app)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sources"] == {"ai_hub": "json", "models": "files"}


def test_facade_backup_list_get_query_statistics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _write_app(tmp_path)
    monkeypatch.chdir(app)
    storage = CloudStorageManager()
    storage.init_repository()  # the facade never creates one itself
    result = storage.backup_all_data()
    assert result["success"] is True
    assert set(result) >= {"backup_id", "timestamp", "size_bytes", "local_path", "cloud_synced"}
    assert result["cloud_synced"] is False
    second = storage.backup_all_data(tags=["manual"])
    listed = storage.list_backups(limit=10)
    assert [b["backup_id"] for b in listed] == [second["backup_id"], result["backup_id"]]
    backup = storage.get_backup(result["backup_id"])
    assert backup is not None
    assert backup["data_sources"]["ai_hub"] == {"signals": [1, 2, 3]}
    assert len(backup["data_sources"]["models"].read_bytes("weights.bin")) == 1000
    assert storage.get_backup("nope") is None
    assert [b["backup_id"] for b in storage.query_backups(tags=["manual"])] == [second["backup_id"]]
    assert len(storage.query_backups(source="ai_hub", source_type="json")) == 2
    assert storage.query_backups(start_date="2999-01-01") == []
    stats = storage.get_statistics()
    assert stats["total_backups"] == 2 and stats["provider"] == "local"
    assert stats["cloud_synced"] == 0 and stats["total_size_mb"] > 0
    storage.close()


def test_facade_data_sources_load_only_what_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _write_app(tmp_path)
    monkeypatch.chdir(app)
    storage = CloudStorageManager()
    storage.init_repository()  # the facade never creates one itself
    backup_id = storage.backup_all_data()["backup_id"]
    backup = storage.get_backup(backup_id)
    assert backup is not None
    repo = storage.repository
    reads: list[str] = []
    original = repo.backend.read

    def counting_read(key: str, offset: int = 0, length: int | None = None) -> bytes:
        reads.append(key)
        return original(key, offset, length)

    monkeypatch.setattr(repo.backend, "read", counting_read)
    sources = backup["data_sources"]
    assert reads == []  # nothing fetched until a source is used
    sources["ai_hub"]
    assert 0 < len(reads) <= 3  # the source's tree and its one document
    storage.close()


def test_facade_cleanup_forgets_old_backups_but_keeps_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _write_app(tmp_path)
    monkeypatch.chdir(app)
    storage = CloudStorageManager()
    storage.init_repository()  # the facade never creates one itself
    storage.backup_all_data()
    storage.backup_all_data()
    result = storage.cleanup_old_backups(keep_days=0)
    assert result["removed"] == 1 and result["kept"] == 1
    assert len(storage.list_backups()) == 1
    storage.close()


def test_facade_reports_errors_instead_of_raising(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = CloudStorageManager(repository=str(tmp_path / "repo"))
    storage.init_repository()  # the facade never creates one itself
    result = storage.backup_all_data()
    assert result["success"] is False and "no data sources configured" in result["error"]
    sync = storage.sync_to_cloud()
    assert sync["success"] is False and "no cloud remote is configured" in sync["error"]
    # the data call raises the same message, as the one documented type
    with pytest.raises(ConfigError) as raised:
        storage.get_backup("latest", from_cloud=True)
    assert str(raised.value) == sync["error"]
    assert "CLOUD_PROVIDER" in sync["error"] and "[remotes.NAME]" in sync["error"]
    monkeypatch.setenv("CLOUD_PROVIDER", "aws")
    sync = storage.sync_to_cloud()
    assert sync["success"] is False and "AWS_S3_BUCKET" in sync["error"]
    with pytest.raises(StcoreError, match="AWS_S3_BUCKET"):
        storage.get_backup("latest", from_cloud=True)


def test_facade_syncs_to_a_remote_and_reads_back_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _write_app(tmp_path)
    with open(app / "stcore.toml", "a") as config:
        config.write('\n[remotes.mirror]\nurl = "mirror"\n')
    (app / "mirror").mkdir()
    monkeypatch.chdir(app)
    storage = CloudStorageManager()
    storage.init_repository()  # the facade never creates one itself
    first = storage.backup_all_data()["backup_id"]
    assert storage.query_backups(cloud_synced=True) == []
    result = storage.sync_to_cloud()
    assert result["success"] is True and result["synced"] == [first]
    assert result["objects_uploaded"] > 0
    second = storage.backup_all_data()["backup_id"]
    only = storage.sync_to_cloud(second)
    assert only["synced"] == [second]
    assert storage.sync_to_cloud()["objects_uploaded"] == 0
    assert [b["backup_id"] for b in storage.query_backups(cloud_synced=True)] == [second, first]
    assert storage.list_backups()[0]["synced_to"].keys() == {"mirror"}
    remote = storage.get_backup(first, from_cloud=True)
    assert remote is not None and remote["from_cloud"] is True
    assert remote["data_sources"]["ai_hub"] == {"signals": [1, 2, 3]}
    # along a listing, the cloud copy is listed once and the local manifests are used for the
    # backups it holds; one it does not hold is still not found there
    third = storage.backup_all_data()["backup_id"]
    assert [b["backup_id"] for b in storage.list_backups()] == [third, second, first]
    assert storage.get_backup(third, from_cloud=True) is None
    again = storage.get_backup(second, from_cloud=True)
    assert again is not None and again["data_sources"]["ai_hub"] == {"signals": [1, 2, 3]}
    storage.close()


def test_facade_cloud_reads_describe_backups_as_the_catalog_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """get_backup from the cloud starts from the listing's description (no catalog query per
    backup while read-ahead runs); it matches a fresh one, callers' edits do not leak into it,
    and a backup listed before it was synced is described afresh."""
    app = _write_app(tmp_path)
    with open(app / "stcore.toml", "a") as config:
        config.write('\n[remotes.mirror]\nurl = "mirror"\n')
    (app / "mirror").mkdir()
    monkeypatch.chdir(app)
    storage = CloudStorageManager()
    storage.init_repository()
    first = storage.backup_all_data()["backup_id"]
    second = storage.backup_all_data()["backup_id"]
    listed = storage.list_backups()  # before the sync: neither is synced
    assert [b["cloud_synced"] for b in listed] == [False, False]
    assert storage.sync_to_cloud()["success"] is True
    fresh = storage.get_backup(first, from_cloud=True)
    assert fresh is not None and fresh["synced_to"].keys() == {"mirror"}
    listed = storage.list_backups()
    assert [b["synced_to"].keys() for b in listed] == [{"mirror"}, {"mirror"}]
    listed[0]["tags"].append("edited by the caller")
    queries: list[str] = []
    original = storage.repository.catalog.synced_remotes
    monkeypatch.setattr(
        storage.repository.catalog,
        "synced_remotes",
        lambda snapshot_id: queries.append(snapshot_id) or original(snapshot_id),
    )
    for backup_id in (second, first):
        backup = storage.get_backup(backup_id, from_cloud=True)
        assert backup is not None and backup["from_cloud"] is True
        local = storage.get_backup(backup_id)
        assert local is not None
        assert {k: v for k, v in backup.items() if k not in ("data_sources", "from_cloud")} == {
            k: v for k, v in local.items() if k not in ("data_sources", "from_cloud")
        }
        assert "edited by the caller" not in backup["tags"]
    assert queries == [second, first]  # the local reads asked; the cloud reads did not
    storage.close()


def test_facade_module_import_does_no_io_and_prints_status(tmp_path: Path) -> None:
    app = _write_app(tmp_path)
    code = (
        "from cloud_storage_manager import cloud_storage; "
        "cloud_storage.init_repository(); "
        "print(cloud_storage.backup_all_data()['success'])"
    )
    env = {**os.environ}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=app, env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == "True", out.stderr
    status = subprocess.run(
        [sys.executable, "-m", "cloud_storage_manager"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
    )
    document = json.loads(status.stdout)
    assert document["success"] is True
    assert document["statistics"]["total_backups"] == 1
    assert len(document["recent_backups"]) == 1


def test_dotenv_sets_the_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("CLOUD_PROVIDER=gcp\nSTCORE_REPO=" + str(tmp_path / "r") + "\n")
    monkeypatch.chdir(tmp_path)
    # load_dotenv writes os.environ directly: patch.dict puts it back exactly as it was, so the
    # variables cannot leak into later tests (monkeypatch.delenv would restore them instead).
    with mock.patch.dict(os.environ):
        os.environ.pop("CLOUD_PROVIDER", None)
        os.environ.pop("STCORE_REPO", None)
        storage = CloudStorageManager()
        storage.init_repository()  # the facade never creates one itself
        assert storage.repository_url == str(tmp_path / "r")
        assert storage.provider == "gcp"
    assert "CLOUD_PROVIDER" not in os.environ


def test_the_facade_never_creates_a_repository_implicitly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _write_app(tmp_path)
    monkeypatch.chdir(app)
    storage = CloudStorageManager(repository=str(tmp_path / "unmounted" / "repo"))
    result = storage.backup_all_data()
    assert result["success"] is False and "stcore init" in result["error"]
    assert not (tmp_path / "unmounted").exists()
    assert storage.init_repository()["success"] is True
    assert storage.backup_all_data()["success"] is True


# --- the error contract ------------------------------------------------------------------------


def _one_line(error: BaseException | str) -> str:
    text = str(error)
    assert "\n" not in text and "\x1b" not in text and "Traceback" not in text, text
    return text


def test_bad_dates_name_the_argument_and_the_forms_it_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = CloudStorageManager(repository=str(tmp_path / "repo"))
    storage.init_repository()
    cases = {
        ("start_date", "not-a-date"): ("start_date: 'not-a-date' is not a date", "2026-11-24"),
        ("end_date", "2026-13-01"): ("end_date: '2026-13-01' is not a date", "7d"),
        ("start_date", "7m"): ("start_date: '7m' is ambiguous", "7min"),
        ("end_date", 20261101): ("end_date must be a datetime, a date or text", "not int"),
        ("start_date", "\x1b[31m[x]\n"): ("start_date: '\\x1b[31m[x]\\n' is not a date", ""),
    }
    for (argument, value), (start, words) in cases.items():
        with pytest.raises(ConfigError) as raised:
            storage.query_backups(**{argument: value})  # type: ignore[arg-type]
        message = _one_line(raised.value)
        assert message.startswith(start) and words in message, message
    # what is valid still is
    assert storage.query_backups(start_date="7d", end_date=dt.date(2999, 1, 1)) == []
    assert storage.query_backups(start_date=dt.datetime(2000, 1, 1)) == []
    storage.close()


def test_a_filter_the_method_does_not_have_is_a_type_error_that_suggests_one(
    tmp_path: Path,
) -> None:
    storage = CloudStorageManager(repository=str(tmp_path / "repo"))
    with pytest.raises(TypeError) as raised:
        storage.query_backups(start_dat="7d", sorce="x")
    assert _one_line(raised.value).startswith(
        "query_backups() got unknown filters: sorce (did you mean source?), "
        "start_dat (did you mean start_date?); filters: start_date, end_date,"
    )


def test_action_calls_return_failures_and_data_calls_raise_stcore_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the repository exists: every action answers success False, every data call
    raises one StcoreError subclass with the same one-line hint, never another exception."""
    monkeypatch.chdir(tmp_path)
    storage = CloudStorageManager(repository=str(tmp_path / "missing"))
    for action in (
        storage.backup_all_data,
        storage.cleanup_old_backups,
        storage.sync_to_cloud,
        storage.status,
    ):
        result = action()
        assert result["success"] is False, action
        assert "stcore init" in _one_line(result["error"]) or "no " in result["error"], action
    for data_call in (
        storage.list_backups,
        storage.get_statistics,
        lambda: storage.query_backups(source="x"),
        lambda: storage.get_backup("latest"),
    ):
        with pytest.raises(StcoreError) as raised:
            data_call()
        assert "stcore init" in _one_line(raised.value)
    assert not (tmp_path / "missing").exists()
    # a bad argument to an action is a failure too, naming the argument
    storage = CloudStorageManager(repository=str(tmp_path / "repo"))
    storage.init_repository()
    for keep_days in (-1, "30", 1.5, True):
        result = storage.cleanup_old_backups(keep_days=keep_days)  # type: ignore[arg-type]
        assert result["success"] is False and "keep_days" in _one_line(result["error"])
    assert storage.cleanup_old_backups(keep_days=0)["success"] is True
    storage.close()


def test_a_backup_that_does_not_exist_is_none_but_a_failing_store_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stcore.errors import TransientBackendError

    app = _write_app(tmp_path)
    monkeypatch.chdir(app)
    storage = CloudStorageManager()
    storage.init_repository()
    storage.backup_all_data()
    assert storage.get_backup("0" * 64) is None
    assert storage.get_backup("latest~9") is None
    assert storage.get_backup("latest") is not None

    def failing(reference: str) -> None:
        raise TransientBackendError("read timed out")

    monkeypatch.setattr(storage.repository, "snapshot", failing)
    with pytest.raises(TransientBackendError, match="read timed out"):
        storage.get_backup("latest")
    storage.close()


def test_the_facade_module_names_the_exception_types_it_documents() -> None:
    import cloud_storage_manager

    assert cloud_storage_manager.StcoreError is StcoreError
    assert cloud_storage_manager.ConfigError is ConfigError
    assert issubclass(ConfigError, StcoreError)
    for name in ("success", "StcoreError", "ConfigError", "TypeError"):
        assert name in (cloud_storage_manager.__doc__ or ""), name


def test_the_status_command_says_what_is_wrong_on_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "STCORE_REPO": str(tmp_path / "missing")}
    result = subprocess.run(
        [sys.executable, "-m", "cloud_storage_manager"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("cloud_storage_manager: error: ")
    assert "stcore init" in result.stderr and result.stderr.count("\n") == 1
