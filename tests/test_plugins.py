"""The plugin framework: discovery, built-ins, broken plugins, duplicates and unknown names."""

from __future__ import annotations

import importlib.metadata
import json
import types
from pathlib import Path

import pytest

import stcore
from stcore.errors import DuplicatePluginError, PluginLoadError, UnknownPluginError
from stcore.registry import Registration, Registry
from tests.conftest import run_cli


def _plugin(**hooks: object) -> types.SimpleNamespace:
    return types.SimpleNamespace(**hooks)


def test_builtins_register_through_the_hooks() -> None:
    host = stcore.make_plugin_manager(entry_points=False)
    assert host.sources.names() == ["files", "json", "sqlite", "stdin"]
    assert host.compressors.names() == ["gzip", "lzma", "none", "zstd"]
    assert host.encryptors.names() == ["aes-256-gcm", "chacha20-poly1305", "none"]
    (builtin,) = host.plugins()
    assert builtin.name == "stcore.builtins" and builtin.distribution == "stcore"


def test_each_call_builds_an_independent_manager() -> None:
    first = stcore.make_plugin_manager(entry_points=False)
    second = stcore.make_plugin_manager(entry_points=False)
    assert first.manager is not second.manager
    assert first.sources is not second.sources


def test_entry_point_plugins_are_found() -> None:
    host = stcore.make_plugin_manager()
    assert "local" in host.backends


def test_a_distribution_with_unreadable_metadata_still_provides_its_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As while pip replaces a distribution: its entry points are listed, its METADATA is gone.

    The plugin loads; only where it came from is unknown.
    """
    info = tmp_path / "st_ghost-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[stcore]\nghost = st_local.plugin\n")
    dist = importlib.metadata.PathDistribution(info)
    monkeypatch.setattr(
        importlib.metadata, "entry_points", lambda group: dist.entry_points.select(group=group)
    )
    host = stcore.make_plugin_manager()
    assert "local" in host.backends and host.broken == []
    (ghost,) = [p for p in host.plugins() if p.name == "ghost"]
    assert (ghost.distribution, ghost.version) == ("unknown", "unknown")


def test_a_plugin_whose_hook_raises_is_isolated_and_reported() -> None:
    def st_register_sources() -> list[Registration]:
        raise RuntimeError("boom at import")

    broken = _plugin(st_register_sources=stcore.hookimpl(st_register_sources))
    host = stcore.make_plugin_manager(entry_points=False, extra_plugins=[("bad", broken)])
    assert [b.name for b in host.broken] == ["bad"]
    assert "boom at import" in host.broken[0].error
    assert host.sources.names() == ["files", "json", "sqlite", "stdin"]  # the rest still work
    with pytest.raises(PluginLoadError, match="bad"):
        host.require_healthy()


def test_a_registration_whose_load_fails_errors_only_when_used() -> None:
    def load() -> object:
        raise ImportError("no module named heavy_sdk")

    plugin = _plugin(
        st_register_backends=stcore.hookimpl(
            lambda: [Registration(name="heavy", load=load, schemes=("heavy",))]
        )
    )
    host = stcore.make_plugin_manager(entry_points=False, extra_plugins=[("heavy", plugin)])
    assert "heavy" in host.backends
    with pytest.raises(PluginLoadError, match=r"heavy.*heavy_sdk"):
        host.backends.get("heavy")


def test_duplicate_names_raise_naming_both_plugins_when_used() -> None:
    duplicate = _plugin(
        st_register_compressors=stcore.hookimpl(
            lambda: [Registration(name="zstd", load=lambda: None)]
        )
    )
    host = stcore.make_plugin_manager(entry_points=False, extra_plugins=[("rival", duplicate)])
    with pytest.raises(DuplicatePluginError, match=r"stcore\.builtins.*rival"):
        host.compressors.get("zstd")
    assert host.compressors.get("gzip") is not None


def test_unknown_names_list_what_is_installed() -> None:
    registry: Registry[object] = Registry("source")
    registry.add(Registration(name="files", load=lambda: None), plugin="p")
    with pytest.raises(
        UnknownPluginError, match=r"unknown source 'nope' \(installed sources: files\)"
    ):
        registry.get("nope")


def test_misspelled_hooks_are_caught() -> None:
    typo = _plugin(st_register_sorces=stcore.hookimpl(lambda: []))
    with pytest.raises(Exception, match="st_register_sorces"):
        stcore.make_plugin_manager(entry_points=False, extra_plugins=[("typo", typo)])


def test_backup_hooks_are_called_with_the_manifest(tmp_path: object) -> None:
    calls: list[tuple[str, object]] = []
    listener = _plugin(
        st_backup_started=stcore.hookimpl(
            lambda repository, snapshot_id, sources: calls.append(("started", sources))
        ),
        st_backup_finished=stcore.hookimpl(
            lambda repository, manifest: calls.append(("finished", manifest.id))
        ),
    )
    host = stcore.make_plugin_manager(extra_plugins=[("listener", listener)])
    from pathlib import Path

    root = Path(str(tmp_path))
    (root / "src").mkdir()
    (root / "src" / "f").write_text("x")
    repo = stcore.init_repository(str(root / "repo"), host=host)
    result = repo.backup(stcore.sources_for_paths([str(root / "src")], host=host))
    assert calls == [("started", ["src"]), ("finished", result.manifest.id)]


def test_a_failing_finished_hook_does_not_undo_the_backup(tmp_path: object) -> None:
    def explode(repository: str, manifest: object) -> None:
        raise RuntimeError("listener down")

    listener = _plugin(st_backup_finished=stcore.hookimpl(explode))
    host = stcore.make_plugin_manager(extra_plugins=[("listener", listener)])
    from pathlib import Path

    root = Path(str(tmp_path))
    (root / "src").mkdir()
    repo = stcore.init_repository(str(root / "repo"), host=host)
    result = repo.backup(stcore.sources_for_paths([str(root / "src")], host=host))
    assert [m.id for m in repo.snapshots()] == [result.manifest.id]


def test_cli_plugins_json_lists_local_and_builtins() -> None:
    result = run_cli("plugins", "--json")
    assert result.returncode == 0
    listing = json.loads(result.stdout)
    names = {p["name"]: p for p in listing["plugins"]}
    assert names["local"]["provides"] == {"backends": ["local"]}
    assert names["local"]["distribution"] == "st-local"
    assert "files" in names["stcore.builtins"]["provides"]["sources"]
    assert listing["broken"] == []
