"""Making configured sources from names, types and options."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stcore.errors import SourceError
from stcore.interfaces import Source
from stcore.plugins import PluginHost, make_plugin_manager


def make_source(
    name: str, type_name: str, options: Mapping[str, Any], *, host: PluginHost | None = None
) -> Source:
    """Instantiate source type ``type_name`` (``files``, ``json``, ``sqlite``, a plugin's...)."""
    host = host or make_plugin_manager()
    factory = host.sources.get(type_name)
    return factory(name, options)


def sources_for_paths(paths: Iterable[str], *, host: PluginHost | None = None) -> list[Source]:
    """``files`` sources for plain paths (``stcore backup PATH...``), named after each path."""
    host = host or make_plugin_manager()
    sources: list[Source] = []
    names: dict[str, str] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        name = path.absolute().name or "root"
        if name in names:
            raise SourceError(
                f"{raw} and {names[name]} would both be stored as source {name!r}; "
                "name them in stcore.toml instead"
            )
        names[name] = raw
        sources.append(make_source(name, "files", {"path": str(path)}, host=host))
    return sources
