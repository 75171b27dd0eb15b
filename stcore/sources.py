"""Making configured sources from names, types and options."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

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


#: the ``files`` options ``stcore backup`` adds to every files source (restic's filters)
FILTER_OPTIONS = ("exclude", "iexclude", "exclude_if_present", "exclude_caches", "one_file_system")


def add_filters(options: Mapping[str, Any], filters: Mapping[str, Any]) -> dict[str, Any]:
    """A ``files`` source's ``options`` with ``filters`` (keys of :data:`FILTER_OPTIONS`) added:
    a list after the source's own (which stay), a flag turned on (never off)."""
    merged = dict(options)
    for key, value in filters.items():
        if key not in FILTER_OPTIONS:
            raise ValueError(f"not a filter option: {key!r}")
        own = merged.get(key)
        if isinstance(value, bool):
            if value:
                merged[key] = True
        elif value:
            if own is None:
                merged[key] = list(value)
            elif isinstance(own, str):
                merged[key] = [own, *value]
            elif isinstance(own, list | tuple):
                merged[key] = [*own, *value]
            # else: left as it is, for the source to refuse with its own message
    return merged


def sources_for_paths(
    paths: Iterable[str],
    *,
    host: PluginHost | None = None,
    filters: Mapping[str, Any] | None = None,
) -> list[Source]:
    """``files`` sources for plain paths (``stcore backup PATH...``), named after each path,
    with ``filters`` (see :func:`add_filters`) as their options."""
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
        options = add_filters({"path": str(path)}, filters or {})
        sources.append(make_source(name, "files", options, host=host))
    return sources


def stdin_source(filename: str = "stdin", stream: BinaryIO | None = None) -> Source:
    """The source of ``stcore backup --stdin``: one file ``filename`` streamed from ``stream``
    (standard input by default), in a source of the same name, as restic names it."""
    from stcore.builtins.sources import StdinSource

    return StdinSource(filename, {"filename": filename, "stream": stream})
