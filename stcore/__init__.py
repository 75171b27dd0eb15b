"""stcore: versioned, deduplicated, compressed backups of application data, readable by AI code.

The public API lives here; everything else is an implementation detail::

    import stcore

    repo = stcore.init_repository("/srv/backups")          # or stcore.open_repository(...)
    repo.backup([stcore.make_source("docs", "files", {"path": "/srv/app/docs"})])
    latest = repo.snapshot("latest")
    latest.sources["docs"].read_text("README.md")
"""

from __future__ import annotations

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
from stcore.version import __version__

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
