"""A real S3 endpoint for tests: moto's standalone server in a child process on loopback.

Tests talk to it over HTTP exactly as to AWS (signing, retries, connection pooling, error
bodies), which in-process mocks skip. The server logs to a file, not a pipe: a pipe nobody reads
fills up and blocks the server mid-test. Usage::

    with moto_s3_server() as endpoint_url:
        boto3.client("s3", endpoint_url=endpoint_url, ...)

``env`` adds variables for the server process only, e.g. ``{"INITIAL_NO_AUTH_ACTION_COUNT":
"0"}`` for a server that checks credentials (moto accepts any by default).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Self

from testsupport.process import LOOPBACK, ServerProcess, free_port, wait_until_http_ready

__all__ = ["MotoServer", "free_port", "moto_s3_server"]

#: moto's server with conditional writes made atomic, as S3 makes them (see the module)
ATOMIC_MOTO = Path(__file__).with_name("moto_atomic.py")


class MotoServer(ServerProcess):
    """One moto server process (:data:`ATOMIC_MOTO`); :meth:`start` waits until it answers HTTP.

    Its log lives in a temporary directory of its own, removed by :meth:`stop`.
    """

    def __init__(self, env: Mapping[str, str] | None = None, startup_timeout: float = 30.0) -> None:
        self._tempdir = Path(tempfile.mkdtemp(prefix="moto-s3-"))
        super().__init__(
            name="moto server", port=free_port(), log_path=self._tempdir / "moto-server.log"
        )
        self.endpoint_url = f"http://{self.host_port}"
        self._env = dict(env or {})
        self._startup_timeout = startup_timeout

    def start(self) -> str:
        self.launch(
            [sys.executable, str(ATOMIC_MOTO), "-H", LOOPBACK, "-p", str(self.port)],
            extra_env=self._env,
            # The server must not inherit a proxy or a real endpoint meant for the tests' clients.
            unset_env=("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "HTTP_PROXY", "HTTPS_PROXY"),
        )
        wait_until_http_ready(
            self, f"{self.endpoint_url}/moto-api/data.json", self._startup_timeout
        )
        return self.endpoint_url

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._tempdir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self


@contextlib.contextmanager
def moto_s3_server(env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Start moto's server on a free loopback port, yield its endpoint URL, then stop it."""
    with MotoServer(env) as server:
        yield server.endpoint_url
