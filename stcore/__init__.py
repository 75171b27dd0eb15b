"""stcore: versioned, deduplicated, compressed backups of application data, readable by AI code.

The public API lives here; everything else is an implementation detail::

    import stcore

    repo = stcore.init_repository("/srv/backups")          # or stcore.open_repository(...)
    repo.backup([stcore.make_source("docs", "files", {"path": "/srv/app/docs"})])
    latest = repo.snapshot("latest")
    latest.sources["docs"].read_text("README.md")
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from stcore.version import __version__

#: each public name -> the module it lives in, imported when the name is first used (PEP 562):
#: ``import stcore.cli`` (every command's start) then loads only what that command needs
_EXPORTS = {
    "BackupResult": "stcore.repo.backup",
    "CheckResult": "stcore.repo.check",
    "KeyInfo": "stcore.repo.keys",
    "PluginHost": "stcore.plugins",
    "PruneResult": "stcore.repo.prune",
    "Registration": "stcore.registry",
    "Repository": "stcore.repository",
    "RepositoryStats": "stcore.repo.stats",
    "RestoreResult": "stcore.repo.restore",
    "Snapshot": "stcore.access.views",
    "SnapshotManifest": "stcore.models",
    "SourceView": "stcore.access.views",
    "StcoreError": "stcore.errors",
    "SyncResult": "stcore.sync",
    "hookimpl": "stcore.hookspecs",
    "init_repository": "stcore.repository",
    "make_plugin_manager": "stcore.plugins",
    "make_source": "stcore.sources",
    "open_repository": "stcore.repository",
    "sources_for_paths": "stcore.sources",
}

if TYPE_CHECKING:
    from stcore.access.views import Snapshot, SourceView
    from stcore.errors import StcoreError
    from stcore.hookspecs import hookimpl
    from stcore.models import SnapshotManifest
    from stcore.plugins import PluginHost, make_plugin_manager
    from stcore.registry import Registration
    from stcore.repo.backup import BackupResult
    from stcore.repo.check import CheckResult
    from stcore.repo.keys import KeyInfo
    from stcore.repo.prune import PruneResult
    from stcore.repo.restore import RestoreResult
    from stcore.repo.stats import RepositoryStats
    from stcore.repository import Repository, init_repository, open_repository
    from stcore.sources import make_source, sources_for_paths
    from stcore.sync import SyncResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        # ``import stcore`` once loaded every submodule: ``stcore.errors.X`` still works
        if not name.startswith("_") and importlib.util.find_spec(f"stcore.{name}") is not None:
            return importlib.import_module(f"stcore.{name}")
        raise AttributeError(f"module 'stcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later uses are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "BackupResult",
    "CheckResult",
    "KeyInfo",
    "PluginHost",
    "PruneResult",
    "Registration",
    "Repository",
    "RepositoryStats",
    "RestoreResult",
    "Snapshot",
    "SnapshotManifest",
    "SourceView",
    "StcoreError",
    "SyncResult",
    "__version__",
    "hookimpl",
    "init_repository",
    "make_plugin_manager",
    "make_source",
    "open_repository",
    "sources_for_paths",
]
