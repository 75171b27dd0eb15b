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
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """One ``python -m moto.server`` process; :meth:`start` waits until it answers HTTP."""

    def __init__(self, env: Mapping[str, str] | None = None, startup_timeout: float = 30.0) -> None:
        self.port = free_port()
        self.endpoint_url = f"http://{HOST}:{self.port}"
        self._env = dict(env or {})
        self._startup_timeout = startup_timeout
        self._tempdir = Path(tempfile.mkdtemp(prefix="moto-s3-"))
        self.log_path = self._tempdir / "moto-server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        env = {**os.environ, **self._env}
        # The server must not inherit a proxy or a real endpoint meant for the tests' clients.
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "HTTP_PROXY", "HTTPS_PROXY"):
            env.pop(name, None)
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self._wait_until_ready()
        return self.endpoint_url

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        # Bypass any proxy configured in the environment: the server is on loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"moto server exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            try:
                with opener.open(f"{self.endpoint_url}/moto-api/data.json", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # it answered, even if not 200
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"moto server did not answer on {self.endpoint_url} within "
                    f"{self._startup_timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(self._tempdir, ignore_errors=True)

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def moto_s3_server(env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Start moto's server on a free loopback port, yield its endpoint URL, then stop it."""
    server = MotoServer(env)
    server.start()
    try:
        yield server.endpoint_url
    finally:
        server.stop()
