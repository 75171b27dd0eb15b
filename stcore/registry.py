"""Registrations and the registry that owns plugin names.

Plugins answer the registration hooks with :class:`Registration` values: data, not behaviour.
The :class:`Registry` of each kind (source, compressor, encryptor, backend) checks names for
duplicates, imports an implementation only when it is first asked for, and turns an unknown name
into an error that lists what is installed and which ``pip install`` would add it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from stcore.errors import DuplicatePluginError, PluginLoadError, UnknownPluginError

T = TypeVar("T")

#: Names that well-known plugin distributions provide, so an unknown name can say what to install.
INSTALL_HINTS: Mapping[str, Mapping[str, str]] = {
    "backend": {
        "local": "st-local",
        "file": "st-local",
        "s3": "st-s3",
        "gs": "st-gcs",
        "gcs": "st-gcs",
        "az": "st-azure",
        "azure": "st-azure",
    },
}


@attrs.frozen(kw_only=True)
class Registration:
    """One named implementation a plugin offers.

    ``load`` is called the first time the name is used; it returns the implementation (a class
    or factory) and is where heavy imports belong. ``schemes`` lists the URL schemes a backend
    answers to (``s3`` for ``s3://bucket/prefix``).
    """

    name: str = attrs.field(validator=attrs.validators.matches_re(r"^[a-z][a-z0-9_\-]*$"))
    load: Callable[[], Any]
    summary: str = ""
    schemes: tuple[str, ...] = attrs.field(default=(), converter=tuple[str, ...])


@attrs.frozen(kw_only=True)
class Provided:
    """A registration together with the plugin that provided it (for listings and errors)."""

    registration: Registration
    plugin: str


@attrs.define
class Registry(Generic[T]):
    """Name -> implementation for one kind of plugin."""

    kind: str
    _entries: dict[str, Provided] = attrs.field(factory=dict, alias="_entries")
    _loaded: dict[str, T] = attrs.field(factory=dict, alias="_loaded")
    #: name -> every plugin that claimed it, for names claimed more than once.
    conflicts: dict[str, list[str]] = attrs.field(factory=dict)

    def add(self, registration: Registration, plugin: str) -> None:
        """Record ``registration`` from ``plugin``.

        A name another plugin already took is recorded as a conflict rather than raised here, so
        one clash between two third-party plugins does not disable everything else; using the
        name raises :class:`DuplicatePluginError` naming both.
        """
        existing = self._entries.get(registration.name)
        if existing is not None:
            claimants = self.conflicts.setdefault(registration.name, [existing.plugin])
            claimants.append(plugin)
            return
        self._entries[registration.name] = Provided(registration=registration, plugin=plugin)

    def add_all(self, registrations: Iterable[Registration], plugin: str) -> None:
        for registration in registrations:
            self.add(registration, plugin)

    def discard_plugin(self, plugin: str) -> None:
        """Forget every name ``plugin`` registered (used when a plugin turns out broken)."""
        for name in [n for n, p in self._entries.items() if p.plugin == plugin]:
            del self._entries[name]
        for name, claimants in list(self.conflicts.items()):
            if plugin in claimants:
                claimants.remove(plugin)
                if len(claimants) < 2:
                    del self.conflicts[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Provided]:
        return [self._entries[name] for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def by_scheme(self, scheme: str) -> str:
        """The name of the backend that answers URLs of ``scheme``."""
        for provided in self.entries():
            if scheme in provided.registration.schemes:
                return provided.registration.name
        raise self._unknown(scheme, what="URL scheme")

    def get(self, name: str) -> T:
        """The implementation registered as ``name``, loading it on first use."""
        if name in self._loaded:
            return self._loaded[name]
        if name in self.conflicts:
            plugins = " and ".join(repr(p) for p in self.conflicts[name])
            raise DuplicatePluginError(
                f"{self.kind} {name!r} is provided by {plugins}; uninstall all but one of them"
            )
        provided = self._entries.get(name)
        if provided is None:
            raise self._unknown(name)
        try:
            implementation: T = provided.registration.load()
        except Exception as exc:
            raise PluginLoadError(
                f"{self.kind} {name!r} from plugin {provided.plugin!r} failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._loaded[name] = implementation
        return implementation

    def _unknown(self, name: str, what: str | None = None) -> UnknownPluginError:
        installed = ", ".join(self.names()) or "none"
        message = f"unknown {what or self.kind} {name!r} (installed {self.kind}s: {installed})"
        hint = INSTALL_HINTS.get(self.kind, {}).get(name)
        if hint:
            message += f"; `pip install {hint}` would add it"
        return UnknownPluginError(message)
