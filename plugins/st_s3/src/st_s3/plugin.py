"""Registers the ``s3`` backend with stcore (entry point ``s3`` in group ``stcore``).

boto3 takes most of a second to import, so it is only imported by ``load()``, the first time a
repository with an ``s3://`` URL is opened; ``stcore plugins`` and local repositories never pay it.
"""

from __future__ import annotations

from typing import Any

from stcore import Registration, hookimpl


def _load() -> Any:
    from st_s3.backend import S3Backend

    return S3Backend.open


@hookimpl
def st_register_backends() -> list[Registration]:
    return [
        Registration(
            name="s3",
            load=_load,
            summary="a repository in an Amazon S3 or S3-compatible bucket (s3://bucket/prefix)",
            schemes=("s3",),
        )
    ]
