"""The hooks a stcore plugin can implement. This module declares them and nothing else.

A plugin is a module or object with functions marked ``@stcore.hookimpl`` whose names match the
specs below; it is found through the ``stcore`` entry-point group. Registration hooks return data
(:class:`~stcore.registry.Registration` lists) and every implementation is called; the core
collects the results. Notification hooks return nothing and are called for every plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from stcore.models import SnapshotManifest
    from stcore.registry import Registration

PROJECT_NAME = "stcore"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def st_register_sources() -> list[Registration]:
    """Return the data-source types this plugin provides.

    Each registration's ``load()`` returns a :class:`~stcore.interfaces.SourceFactory`. The
    registration's name is the ``type`` used in ``stcore.toml`` (``type = "sqlite"``).

    All implementations are called; their lists are merged. A name registered twice is an error
    naming both plugins.

    .. versionadded:: 0.1
    """


@hookspec
def st_register_compressors() -> list[Registration]:
    """Return the compressors this plugin provides.

    Each registration's ``load()`` returns a :class:`~stcore.interfaces.CompressorFactory`. The
    name is what ``compression = "zstd"`` selects.

    All implementations are called; their lists are merged.

    .. versionadded:: 0.1
    """


@hookspec
def st_register_encryptors() -> list[Registration]:
    """Return the encryptors this plugin provides (the optional client-side encryption hook).

    Each registration's ``load()`` returns a :class:`~stcore.interfaces.EncryptorFactory`. The
    built-in ``none`` encryptor leaves bytes as they are.

    All implementations are called; their lists are merged.

    .. versionadded:: 0.1
    """


@hookspec
def st_register_backends() -> list[Registration]:
    """Return the storage backends this plugin provides.

    Each registration's ``load()`` returns a :class:`~stcore.interfaces.BackendFactory`, and its
    ``schemes`` list the URL schemes it answers (``("s3",)`` for ``s3://bucket/prefix``).

    All implementations are called; their lists are merged.

    .. versionadded:: 0.1
    """


@hookspec
def st_backup_started(repository: str, snapshot_id: str, sources: list[str]) -> None:
    """Called when a backup begins, before any source is read.

    :param repository: the repository's location (no credentials).
    :param snapshot_id: the id the new snapshot will have.
    :param sources: the names of the sources being backed up.

    Return value is ignored. An exception raised here aborts the backup.

    .. versionadded:: 0.1
    """


@hookspec
def st_backup_finished(repository: str, manifest: SnapshotManifest) -> None:
    """Called after a snapshot manifest has been written and the backup is durable.

    :param repository: the repository's location (no credentials).
    :param manifest: the manifest just written.

    Return value is ignored. An exception raised here is reported but the backup stands.

    .. versionadded:: 0.1
    """
