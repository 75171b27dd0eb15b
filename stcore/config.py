"""Configuration: ``stcore.toml``, environment variables and ``.env``, in that order of detail.

Where the repository is, first match wins:

1. ``--repo`` on the command line (or ``url=`` in the library),
2. ``STCORE_REPO``,
3. ``[repository] url`` in ``stcore.toml``,
4. the default, ``$XDG_DATA_HOME/stcore/repo`` (``~/.local/share/stcore/repo``).

``stcore.toml`` is found through ``--config``, ``STCORE_CONFIG``, or the current directory.
Relative paths inside it are relative to the file, not to where stcore runs.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from stcore.durations import shown as quoted
from stcore.errors import ConfigError
from stcore.repo.locks import DEFAULT_LOCK_WAIT
from stcore.repo.objectcache import DEFAULT_CACHE_BYTES

CONFIG_NAME = "stcore.toml"
PATH_OPTIONS = ("path", "paths")

#: The tables stcore.toml may have at its top level; anything else is refused.
TABLES: tuple[str, ...] = ("repository", "sources", "remotes", "daemon", "retention", "backup")

#: The keys each table accepts (``remotes.NAME``: every ``[remotes.*]`` table). ``[sources.NAME]``
#: is missing on purpose: its ``type`` picks a source plugin, which reads the other options.
#: ``retention`` lists what :meth:`stcore.repo.forget.Policy.from_mapping` accepts, which refuses
#: the rest itself. tests/test_docs.py checks both agree, and that docs/configuration.md
#: documents every table and key.
KEYS: dict[str, tuple[str, ...]] = {
    "repository": ("url", "compression", "compression_level", "options"),
    "backup": ("tags",),
    "daemon": ("backup_interval", "sync_interval", "auto_sync"),
    "retention": (
        "keep_last",
        "keep_hourly",
        "keep_daily",
        "keep_weekly",
        "keep_monthly",
        "keep_yearly",
        "keep_within",
        "keep_tags",
    ),
    "remotes.NAME": ("url", "options"),
}

#: The options each built-in source type takes besides ``type`` (a plugin's source type takes
#: whatever its plugin reads: its options are passed on unchecked). tests/test_config_keys.py
#: checks these are exactly the options the built-in sources read, and that
#: docs/configuration.md documents them.
SOURCE_OPTIONS: dict[str, tuple[str, ...]] = {
    "files": (
        "path",
        "include",
        "exclude",
        "iexclude",
        "exclude_if_present",
        "exclude_caches",
        "one_file_system",
    ),
    "json": ("path", "paths"),
    "sqlite": ("path",),
}

#: Every environment variable stcore (and cloud_storage_manager) reads. docs/configuration.md
#: documents each; tests/test_docs.py finds the ones the code reads and checks they are listed.
ENVIRONMENT: tuple[str, ...] = (
    "STCORE_REPO",
    "STCORE_CONFIG",
    "STCORE_CACHE_DIR",
    "STCORE_CACHE_MAX_BYTES",
    "STCORE_PASSWORD",
    "STCORE_LOCK_WAIT",
    "STCORE_NEW_PASSWORD",
    "STCORE_STATUS_TOKEN",
    "CLOUD_PROVIDER",
    "AWS_S3_BUCKET",
    "GCP_BUCKET",
    "AZURE_CONTAINER",
    "STCORE_REMOTE_PREFIX",
    "STCORE_BACKUP_INTERVAL",
    "CLOUD_SYNC_INTERVAL",
    "CLOUD_AUTO_SYNC",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
)


def default_cache_root() -> Path:
    """``$STCORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/stcore``, else ``~/.cache/stcore``."""
    explicit = os.environ.get("STCORE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "stcore"


def cache_limit_from_env(default: int = DEFAULT_CACHE_BYTES) -> int:
    """The object cache's bound: ``STCORE_CACHE_MAX_BYTES``, or 1 GiB."""
    return _positive_number("STCORE_CACHE_MAX_BYTES", default, int)


def lock_wait_from_env(default: float = DEFAULT_LOCK_WAIT) -> float:
    """How long writers wait for a conflicting lock: ``STCORE_LOCK_WAIT`` seconds (default 600)."""
    return _positive_number("STCORE_LOCK_WAIT", default, float, zero=True)


def password_from_env() -> str | None:
    """``STCORE_PASSWORD``, the password of an encrypted repository, if set."""
    return os.environ.get("STCORE_PASSWORD")


_Number = TypeVar("_Number", int, float)


def _positive_number(
    variable: str, default: _Number, kind: type[_Number], *, zero: bool = False
) -> _Number:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{variable}={raw!r} is not a number") from None
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{variable}={raw!r} must be {'at least 0' if zero else 'positive'}")
    return value


def default_repository() -> str:
    data_home = os.environ.get("XDG_DATA_HOME")
    base = Path(data_home) if data_home else Path.home() / ".local" / "share"
    return str(base / "stcore" / "repo")


@attrs.frozen(kw_only=True)
class SourceConfig:
    name: str
    type: str
    options: dict[str, Any]


@attrs.frozen(kw_only=True)
class RemoteConfig:
    """A mirror the local repository syncs to: ``[remotes.NAME]`` or the seed's variables."""

    name: str
    url: str
    options: dict[str, Any] = attrs.field(factory=dict)


#: The seed application's CLOUD_PROVIDER values -> URL scheme and the variable naming the bucket.
SEED_PROVIDERS = {
    "aws": ("s3", "AWS_S3_BUCKET"),
    "s3": ("s3", "AWS_S3_BUCKET"),
    "gcp": ("gs", "GCP_BUCKET"),
    "gcs": ("gs", "GCP_BUCKET"),
    "azure": ("az", "AZURE_CONTAINER"),
}


def seed_remote() -> RemoteConfig | None:
    """The remote the seed's variables describe (``CLOUD_PROVIDER=aws`` + ``AWS_S3_BUCKET``...).

    Objects go under ``STCORE_REMOTE_PREFIX`` (default ``stcore``) in the bucket. None when the
    provider is ``local`` or unset.
    """
    provider = os.environ.get("CLOUD_PROVIDER", "local").strip().lower() or "local"
    if provider == "local":
        return None
    if provider not in SEED_PROVIDERS:
        known = ", ".join(["local", *SEED_PROVIDERS])
        raise ConfigError(f"CLOUD_PROVIDER={provider!r} is not one of {known}")
    scheme, variable = SEED_PROVIDERS[provider]
    bucket = os.environ.get(variable, "").strip()
    if not bucket:
        raise ConfigError(f"CLOUD_PROVIDER={provider} needs {variable} to name the bucket")
    prefix = os.environ.get("STCORE_REMOTE_PREFIX", "stcore").strip("/")
    return RemoteConfig(name=provider, url=f"{scheme}://{bucket}/{prefix}".rstrip("/"))


@attrs.frozen(kw_only=True)
class Settings:
    """Everything stcore.toml and the environment say, merged."""

    path: Path | None = None
    repository: str | None = None
    compression: str = "zstd"
    compression_level: int | None = None
    #: passed to the backend as they are: ``[repository.options]``
    backend_options: dict[str, Any] = attrs.field(factory=dict)
    sources: tuple[SourceConfig, ...] = ()
    tags: tuple[str, ...] = ()
    configured_remotes: tuple[RemoteConfig, ...] = ()
    #: ``[daemon]`` as written (validated by :func:`stcore.daemon.daemon_config`)
    daemon: dict[str, Any] = attrs.field(factory=dict)
    #: ``[retention]`` as written (``keep_daily = 7``...), applied by the daemon after backups
    retention: dict[str, Any] = attrs.field(factory=dict)

    @property
    def remotes(self) -> tuple[RemoteConfig, ...]:
        """``[remotes.*]`` from stcore.toml, plus the seed's ``CLOUD_PROVIDER`` remote if set."""
        seed = seed_remote()
        names = {r.name for r in self.configured_remotes}
        if seed is not None and seed.name not in names:
            return (*self.configured_remotes, seed)
        return self.configured_remotes

    def remote(self, name: str | None) -> RemoteConfig:
        remotes = self.remotes
        if not remotes:
            raise ConfigError(
                'no remote is configured: add [remotes.NAME] url = "s3://bucket/prefix" to '
                "stcore.toml, or set CLOUD_PROVIDER and its bucket variable"
            )
        if name is None:
            if len(remotes) > 1:
                listed = ", ".join(r.name for r in remotes)
                raise ConfigError(f"several remotes are configured ({listed}); pick one")
            return remotes[0]
        for remote in remotes:
            if remote.name == name:
                return remote
        listed = ", ".join(r.name for r in remotes)
        raise ConfigError(f"no remote named {name!r} (configured: {listed})")

    def repository_url(self, explicit: str | None = None) -> str:
        return explicit or os.environ.get("STCORE_REPO") or self.repository or default_repository()


def load_dotenv_file(directory: Path | None = None) -> None:
    """Load ``.env`` from ``directory`` (default: the current one) without overriding variables."""
    from dotenv import load_dotenv

    path = (directory or Path.cwd()) / ".env"
    if path.is_file():
        load_dotenv(path, override=False)


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    env = os.environ.get("STCORE_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"STCORE_CONFIG names {path}, which does not exist")
        return path
    local = Path.cwd() / CONFIG_NAME
    return local if local.is_file() else None


def _resolve_paths(options: dict[str, Any], base: Path) -> dict[str, Any]:
    resolved = dict(options)
    for key in PATH_OPTIONS:
        value = resolved.get(key)
        if isinstance(value, str):
            resolved[key] = str(base / Path(value).expanduser())
        elif isinstance(value, list):
            resolved[key] = [str(base / Path(v).expanduser()) for v in value]
    return resolved


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]{1,60}")


def _name(key: str) -> str:
    """A key or table name as a message shows it: bare when TOML would write it bare, quoted
    (control characters escaped, cut short) otherwise, so the message stays one line."""
    return key if _BARE_KEY.fullmatch(key) else quoted(key)


def suggested(unknown: Iterable[str], allowed: Iterable[str]) -> str:
    """``pth (did you mean path?), zzz``: each unknown name, with the allowed one closest to it
    (difflib) when one is close."""
    choices = list(allowed)
    parts = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
        if not close and name.lower() in choices:
            close = [name.lower()]
        parts.append(_name(name) + (f" (did you mean {close[0]}?)" if close else ""))
    return ", ".join(parts)


def unknown_names_message(
    unknown: Iterable[str], allowed: Iterable[str], what: str, allowed_label: str = "allowed"
) -> str:
    """``unknown [x] keys: pth (did you mean path?), zzz; allowed: path, paths``."""
    choices = list(allowed)
    return f"unknown {what}: {suggested(unknown, choices)}; {allowed_label}: {', '.join(choices)}"


def _check_names(
    table: Mapping[str, Any], allowed: Iterable[str], where: str, shown_table: str, label: str = ""
) -> None:
    """Refuse keys of ``table`` not in ``allowed``: one line naming the file, the table, each
    unknown key with a "did you mean", and the allowed keys."""
    choices = tuple(allowed)
    unknown = [key for key in table if key not in choices]
    if unknown:
        message = unknown_names_message(
            unknown, choices, f"[{shown_table}] keys", label or "allowed"
        )
        raise ConfigError(f"{where}: {message}")


def _check_keys(table: Mapping[str, Any], name: str, where: str, *, shown: str = "") -> None:
    """Refuse keys :data:`KEYS` does not list for ``name``, in one line naming the allowed ones."""
    _check_names(table, KEYS[name], where, shown or name)


def _check_source(name: str, table: Mapping[str, Any], where: str) -> None:
    """A ``[sources.NAME]`` table: it has a ``type``, and a built-in type's options are known
    (``pth`` is reported as an unknown key, not as a missing ``path``). A plugin's source
    type takes any options: the plugin reads and checks them itself."""
    shown_table = f"sources.{_name(name)}"
    if "type" not in table:
        near = [key for key in table if difflib.get_close_matches(key, ["type"], cutoff=0.6)]
        hint = f" (did you mean type instead of {', '.join(map(_name, near))}?)" if near else ""
        raise ConfigError(f'{where}: [{shown_table}] needs a `type` (e.g. type = "files"){hint}')
    type_name = table["type"]
    if not isinstance(type_name, str):
        raise ConfigError(f'{where}: [{shown_table}] type must be text (e.g. type = "files")')
    if type_name in SOURCE_OPTIONS:
        allowed = ("type", *SOURCE_OPTIONS[type_name])
        _check_names(table, allowed, where, shown_table, f"a {type_name} source takes")


def parse_settings(document: Mapping[str, Any], path: Path | None) -> Settings:
    base = path.parent if path else Path.cwd()
    where = str(path) if path else "configuration"
    unknown_tables = [name for name in document if name not in TABLES]
    if unknown_tables:
        message = unknown_names_message(unknown_tables, TABLES, "top-level tables")
        raise ConfigError(f"{where}: {message}")
    repository = document.get("repository", {})
    if not isinstance(repository, Mapping):
        raise ConfigError(f"{where}: [repository] must be a table")
    _check_keys(repository, "repository", where)
    backend_options = repository.get("options", {})
    if not isinstance(backend_options, Mapping):
        raise ConfigError(f"{where}: [repository.options] must be a table")
    url = repository.get("url")
    if isinstance(url, str) and "://" not in url:
        url = str(base / Path(url).expanduser())
    sources = []
    raw_sources = document.get("sources", {})
    if not isinstance(raw_sources, Mapping):
        raise ConfigError(f"{where}: [sources] must be a table of tables")
    for name, table in raw_sources.items():
        if not isinstance(table, Mapping):
            raise ConfigError(
                f'{where}: [sources.{_name(name)}] must be a table (e.g. type = "files")'
            )
        _check_source(name, table, where)
        options = {k: v for k, v in table.items() if k != "type"}
        sources.append(
            SourceConfig(name=name, type=str(table["type"]), options=_resolve_paths(options, base))
        )
    remotes = []
    raw_remotes = document.get("remotes", {})
    if not isinstance(raw_remotes, Mapping):
        raise ConfigError(f"{where}: [remotes] must be a table of tables")
    for name, table in raw_remotes.items():
        if isinstance(table, Mapping):
            _check_keys(table, "remotes.NAME", where, shown=f"remotes.{_name(name)}")
        if not isinstance(table, Mapping) or not isinstance(table.get("url"), str):
            raise ConfigError(
                f'{where}: [remotes.{_name(name)}] needs a `url` (e.g. "s3://bucket/p")'
            )
        remote_url = table["url"]
        if "://" not in remote_url:
            remote_url = str(base / Path(remote_url).expanduser())
        options = table.get("options", {})
        if not isinstance(options, Mapping):
            raise ConfigError(f"{where}: [remotes.{_name(name)}.options] must be a table")
        remotes.append(RemoteConfig(name=name, url=remote_url, options=dict(options)))
    daemon = document.get("daemon", {})
    if not isinstance(daemon, Mapping):
        raise ConfigError(f"{where}: [daemon] must be a table")
    _check_keys(daemon, "daemon", where)
    retention = document.get("retention", {})
    if not isinstance(retention, Mapping):
        raise ConfigError(f"{where}: [retention] must be a table")
    unknown_retention = [key for key in retention if key not in KEYS["retention"]]
    if unknown_retention:  # worded as Policy.from_mapping words it, with the suggestions
        raise ConfigError(
            f"{where}: [retention]: unknown keys {suggested(unknown_retention, KEYS['retention'])}"
            f"; allowed: {', '.join(KEYS['retention'])}"
        )
    if retention:
        from stcore.repo.forget import Policy

        Policy.from_mapping(dict(retention), f"{where}: [retention]")  # fail early on typos
    backup = document.get("backup", {})
    if not isinstance(backup, Mapping):
        raise ConfigError(f"{where}: [backup] must be a table")
    _check_keys(backup, "backup", where)
    tags = backup.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ConfigError(f'{where}: [backup] tags must be a list of strings (e.g. ["nightly"])')
    return Settings(
        path=path,
        repository=url,
        compression=str(repository.get("compression", "zstd")),
        compression_level=repository.get("compression_level"),
        backend_options=dict(backend_options),
        sources=tuple(sources),
        tags=tuple(tags),
        configured_remotes=tuple(remotes),
        daemon=dict(daemon),
        retention=dict(retention),
    )


def load_settings(explicit: str | os.PathLike[str] | None = None) -> Settings:
    """Read stcore.toml (if any) into :class:`Settings`."""
    path = find_config(explicit)
    if path is None:
        return Settings()
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return parse_settings(document, path)
