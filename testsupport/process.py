"""A server child process for tests: a free loopback port, a log file, a readiness poll, a stop.

Every emulator in ``testsupport`` runs the same way, and this module is that way, once:

* it listens on :data:`LOOPBACK` only, on a port :func:`free_port` picked;
* its output goes to a log file, never to a pipe: a pipe that nobody reads fills up and the
  server then blocks on logging and stops answering, often hundreds of requests into a test;
* :func:`wait_until_http_ready` polls it, bypassing any proxy, until it answers HTTP, and on
  failure stops it and raises with the tail of its log;
* :meth:`ServerProcess.stop` terminates it (kills it if it ignores SIGTERM), also at interpreter
  exit, so a test run that dies early leaves no server listening behind it.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

__all__ = ["LOOPBACK", "ServerProcess", "free_port", "wait_until_http_ready"]

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(kw_only=True)
class ServerProcess:
    """A server child process on ``LOOPBACK:port`` whose output goes to ``log_path``.

    ``process`` is ``None`` until :meth:`launch` runs it. ``name`` is what error messages call it.
    """

    name: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host_port(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def launch(
        self,
        argv: Sequence[str],
        *,
        extra_env: Mapping[str, str] | None = None,
        unset_env: Iterable[str] = (),
        cwd: Path | None = None,
    ) -> None:
        """Start ``argv`` with this environment plus ``extra_env``, minus ``unset_env``.

        The child writes to its own copy of the log's descriptor, so ours is closed at once.
        """
        env = {**os.environ, **(extra_env or {})}
        for name in unset_env:
            env.pop(name, None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
            )
        atexit.register(self.stop)

    def log_text(self) -> str:
        """Everything the server has logged so far ("" when there is no log (yet or any more))."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, limit: int = 4000) -> str:
        """The last ``limit`` characters of the log, for error messages."""
        return self.log_text()[-limit:]

    def stop(self) -> None:
        """Terminate the process (kill it if it ignores SIGTERM); safe to call more than once."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def wait_until_http_ready(server: ServerProcess, url: str, timeout: float) -> None:
    """Poll ``url`` until ``server`` answers HTTP; any status, even an error, means it is up.

    If the process exits first, or ``timeout`` seconds pass, the server is stopped and a
    ``RuntimeError`` carries the tail of its log (read before :meth:`~ServerProcess.stop`,
    which may delete it).
    """
    process = server.process
    if process is None:
        raise RuntimeError(f"{server.name} was never launched")
    # Bypass any proxy configured in the environment: the server is on loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            problem = f"exited with status {process.returncode} before answering"
            break
        try:
            with opener.open(url, timeout=1) as response:
                response.read()
            return
        except urllib.error.HTTPError as answer:
            answer.close()
            return  # it answered, just not with 200: the server is up
        except OSError:
            pass
        if time.monotonic() > deadline:
            problem = f"did not answer on {server.host_port} within {timeout:.0f}s"
            break
        time.sleep(0.05)
    log_tail = server.log_tail()
    server.stop()
    raise RuntimeError(f"{server.name} {problem}; log:\n{log_tail}")
