"""The exceptions stcore raises: one hierarchy, each with a message that says how to fix it.

Every expected failure derives from :class:`StcoreError`; the CLI prints its message on one line
and exits with :attr:`StcoreError.exit_code` instead of showing a traceback.
"""

from __future__ import annotations


class StcoreError(Exception):
    """Base class of every error stcore raises on purpose."""

    exit_code: int = 1


# --- plugins -----------------------------------------------------------------------------------


class PluginError(StcoreError):
    """A plugin could not be found, loaded or registered."""


class UnknownPluginError(PluginError):
    """A name was asked for that no installed plugin provides."""


class DuplicatePluginError(PluginError):
    """Two plugins registered the same name for the same kind."""


class PluginLoadError(PluginError):
    """A plugin is installed but failed to import or load."""


# --- configuration and sources -----------------------------------------------------------------


class ConfigError(StcoreError):
    """stcore.toml, the environment or command-line options are invalid."""


class SourceError(StcoreError):
    """A data source cannot be read at all (missing path, bad options)."""


class LeftOut(StcoreError):
    """Raised by a source entry's opener: the entry is left out of the snapshot on purpose (the
    ``-wal`` of a database whose consistent copy holds its content), which is not an error."""


# --- repository ----------------------------------------------------------------------------------


class RepositoryError(StcoreError):
    """The repository cannot be used as asked."""


class RepositoryNotFoundError(RepositoryError):
    """No repository exists at the given location."""


class RepositoryExistsError(RepositoryError):
    """``init`` was asked to create a repository where one already exists."""


class RepositoryLockedError(RepositoryError):
    """Another process holds a conflicting lock on the repository."""


class PasswordError(StcoreError):
    """No password was given, or none of the repository's keys opens with it."""


class FormatVersionError(RepositoryError):
    """The repository was written by a newer stcore with a format this one cannot read."""


class SnapshotNotFoundError(RepositoryError):
    """A snapshot reference matched no snapshot, or more than one, or is not a reference at all
    (``latest~x``, ``@yesterday``)."""


class PruneRefusedError(RepositoryError):
    """Prune found something the index does not account for and deleted nothing."""


class PathNotFoundError(RepositoryError):
    """A snapshot's source holds no file or directory at the path asked for."""


class NotADatabaseError(PathNotFoundError):
    """``connect()`` was asked to open a backed-up file that is not a SQLite database."""


class CorruptObjectError(RepositoryError):
    """Stored bytes do not match their hash or cannot be decoded."""


class IndexReplacedError(RepositoryError):
    """An index object vanished while in use: a compaction replaced it (sync plans again)."""


class RestoreError(RepositoryError):
    """A restore was refused (for example, a path would escape the target)."""


# --- backends ------------------------------------------------------------------------------------


class BackendError(StcoreError):
    """A storage backend failed."""


class ObjectNotFoundError(BackendError):
    """The requested object does not exist in the backend."""


class ObjectExistsError(BackendError):
    """A create-only write found the object already present."""


class ContainerNotFoundError(BackendError):
    """The bucket, container or directory holding the repository does not exist."""


class AccessDeniedError(BackendError):
    """The credentials are valid but not allowed to do this."""


class AuthenticationError(BackendError):
    """The credentials were rejected."""


class TransientBackendError(BackendError):
    """A failure that may succeed when retried (timeouts, 5xx, dropped connections)."""


class BackendUnavailableError(BackendError):
    """The endpoint cannot be reached at all."""


# --- services ------------------------------------------------------------------------------------


class SyncBusyError(StcoreError):
    """Another sync to the same remote is running on this machine."""


class DaemonBusyError(StcoreError):
    """Another scheduler already runs for this repository on this machine."""


class RunAbandoned(StcoreError):
    """Raised inside a scheduled run when the scheduler is stopping; the run is dropped safely."""


class WebUnavailableError(StcoreError):
    """Flask or prometheus_client is not installed (``pip install 'stcore[web]'``)."""
