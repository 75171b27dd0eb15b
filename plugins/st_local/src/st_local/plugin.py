"""Registers the ``local`` backend with stcore (entry point ``local`` in group ``stcore``)."""

from __future__ import annotations

from typing import Any

from stcore import Registration, hookimpl


def _load() -> Any:
    from st_local.backend import LocalBackend

    return LocalBackend.open


@hookimpl
def st_register_backends() -> list[Registration]:
    return [
        Registration(
            name="local",
            load=_load,
            summary="a repository in a directory on this machine (the default)",
            schemes=("file", "local"),
        )
    ]
