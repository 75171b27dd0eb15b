"""Building the plugin manager, and the one typed facade through which the core calls hooks.

:func:`make_plugin_manager` registers the hookspecs, then the built-ins, then every plugin in the
``stcore`` entry-point group. A plugin that fails to import, or whose registration hook raises, is
recorded in :attr:`PluginHost.broken` and skipped; it only becomes an error when something asks
for a name it would have provided. Nothing happens at import time: every call builds a new host.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import pluggy

from stcore import hookspecs
from stcore.errors import PluginLoadError
from stcore.interfaces import BackendFactory, CompressorFactory, EncryptorFactory, SourceFactory
from stcore.models import SnapshotManifest
from stcore.registry import Registration, Registry

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "stcore"
BUILTINS_NAME = "stcore.builtins"


@attrs.frozen(kw_only=True)
class BrokenPlugin:
    """A plugin that could not be loaded, kept so ``stcore plugins`` can show it."""

    name: str
    distribution: str
    version: str
    error: str


@attrs.frozen(kw_only=True)
class PluginInfo:
    """One loaded plugin: where it comes from and what it provides."""

    name: str
    distribution: str
    version: str
    provides: dict[str, list[str]]


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> tuple[str, str]:
    """The distribution and version that installed ``entry_point``, for messages only.

    A distribution whose metadata cannot be read (pip is replacing it under us, or it was
    half-removed by hand) is "unknown", not a reason to refuse the plugin or every command.
    """
    dist = entry_point.dist
    if dist is None:
        return ("unknown", "unknown")
    try:
        return (dist.metadata["Name"] or "unknown", dist.version or "unknown")
    except Exception:  # each Python version fails differently on unreadable metadata
        return ("unknown", "unknown")


@attrs.define
class PluginHost:
    """Typed access to the plugins: registries by kind, broken plugins, notifications."""

    manager: pluggy.PluginManager
    sources: Registry[SourceFactory] = attrs.field(factory=lambda: Registry("source"))
    compressors: Registry[CompressorFactory] = attrs.field(factory=lambda: Registry("compressor"))
    encryptors: Registry[EncryptorFactory] = attrs.field(factory=lambda: Registry("encryptor"))
    backends: Registry[BackendFactory] = attrs.field(factory=lambda: Registry("backend"))
    broken: list[BrokenPlugin] = attrs.field(factory=list)
    _origins: dict[str, tuple[str, str]] = attrs.field(factory=dict, alias="_origins")

    # --- loading --------------------------------------------------------------------------------

    def add_plugin(self, plugin: object, name: str, origin: tuple[str, str]) -> None:
        """Register ``plugin`` and collect its registrations; a failing plugin is set aside."""
        self.manager.register(plugin, name=name)
        self._origins[name] = origin
        try:
            for kind, registry in self._registries().items():
                hook = getattr(hookspecs, f"st_register_{kind}")
                registry.add_all(self._call_one(plugin, hook.__name__), plugin=name)
        except Exception as exc:
            self.manager.unregister(plugin)
            for registry in self._registries().values():
                registry.discard_plugin(name)
            self._record_broken(name, origin, exc)

    def _call_one(self, plugin: object, hook_name: str) -> Iterable[Registration]:
        impl: Callable[[], list[Registration] | None] | None = getattr(plugin, hook_name, None)
        if impl is None:
            return []
        return impl() or []

    def _record_broken(self, name: str, origin: tuple[str, str], exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("plugin %s (%s %s) is broken and was skipped: %s", name, *origin, error)
        self.broken.append(
            BrokenPlugin(name=name, distribution=origin[0], version=origin[1], error=error)
        )

    def load_entry_points(self) -> None:
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            origin = _distribution_of(entry_point)
            if self.manager.has_plugin(entry_point.name):
                continue
            try:
                plugin = entry_point.load()
            except Exception as exc:
                self._record_broken(entry_point.name, origin, exc)
                continue
            self.add_plugin(plugin, entry_point.name, origin)

    def _registries(self) -> dict[str, Registry[Any]]:
        return {
            "sources": self.sources,
            "compressors": self.compressors,
            "encryptors": self.encryptors,
            "backends": self.backends,
        }

    # --- queries --------------------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """Every loaded plugin with what it provides, built-ins first."""
        infos = []
        for name, origin in self._origins.items():
            if not self.manager.has_plugin(name):
                continue
            provides = {
                kind: [p.registration.name for p in registry.entries() if p.plugin == name]
                for kind, registry in self._registries().items()
            }
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=origin[0],
                    version=origin[1],
                    provides={k: v for k, v in provides.items() if v},
                )
            )
        return infos

    def require_healthy(self) -> None:
        """Raise if any plugin is broken (for callers that want all-or-nothing)."""
        if self.broken:
            details = "; ".join(f"{b.name} ({b.distribution}): {b.error}" for b in self.broken)
            raise PluginLoadError(f"broken plugins: {details}")

    # --- notifications --------------------------------------------------------------------------

    def notify_backup_started(self, repository: str, snapshot_id: str, sources: list[str]) -> None:
        self.manager.hook.st_backup_started(
            repository=repository, snapshot_id=snapshot_id, sources=sources
        )

    def notify_backup_finished(self, repository: str, manifest: SnapshotManifest) -> None:
        try:
            self.manager.hook.st_backup_finished(repository=repository, manifest=manifest)
        except Exception:
            log.exception("a st_backup_finished hook failed; the backup is complete regardless")


def make_plugin_manager(
    *, entry_points: bool = True, extra_plugins: Iterable[tuple[str, object]] = ()
) -> PluginHost:
    """Build a fresh :class:`PluginHost`: hookspecs, built-ins, extra plugins, entry points.

    ``extra_plugins`` are ``(name, plugin)`` pairs registered before entry points (tests and
    embedding applications use it to add plugins without installing a distribution).
    """
    from stcore import builtins
    from stcore.version import __version__

    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    host = PluginHost(manager)
    host.add_plugin(builtins.plugin, BUILTINS_NAME, ("stcore", __version__))
    for name, plugin in extra_plugins:
        host.add_plugin(plugin, name, ("(registered in code)", ""))
    if entry_points:
        host.load_entry_points()
    manager.check_pending()
    return host
