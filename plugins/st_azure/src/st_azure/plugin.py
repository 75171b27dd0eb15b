"""Registers the ``azure`` backend with stcore (entry point ``azure`` in group ``stcore``).

The Azure SDK is imported only in ``_load``, when an ``az://`` URL is first opened, so listing
plugins or using other backends never pays for it.
"""

from __future__ import annotations

from typing import Any

from stcore import Registration, hookimpl


def _load() -> Any:
    from st_azure.backend import AzureBackend

    return AzureBackend.open


@hookimpl
def st_register_backends() -> list[Registration]:
    return [
        Registration(
            name="azure",
            load=_load,
            summary="a repository in an Azure Blob Storage container (az://container/prefix)",
            schemes=("az", "azure"),
        )
    ]
