"""Registers the ``gcs`` backend with stcore (entry point ``gcs`` in group ``stcore``).

The Google SDK is imported only in :func:`_load`, so listing plugins or running a local
backup never pays for importing ``google.cloud.storage``.
"""

from __future__ import annotations

from typing import Any

from stcore import Registration, hookimpl


def _load() -> Any:
    from st_gcs.backend import GcsBackend

    return GcsBackend.open


@hookimpl
def st_register_backends() -> list[Registration]:
    return [
        Registration(
            name="gcs",
            load=_load,
            summary="a repository in a Google Cloud Storage bucket (gs://bucket/prefix)",
            schemes=("gs", "gcs"),
        )
    ]
