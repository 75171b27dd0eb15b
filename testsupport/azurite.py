"""Start Azurite, Microsoft's Azure Storage emulator, on a loopback port for tests.

Azurite is a Node.js program. ``scripts/install-azurite`` installs it (and npm's download cache)
under ``.emulators/`` inside the checkout, so nothing lands in the user's home directory;
:func:`start_azurite` runs that script first when Azurite is missing, so a fresh checkout works
without a separate setup step.

Only the blob service is started, with in-memory persistence (nothing written to disk, nothing
left behind), on a free port. Its output goes to a log file, never to a pipe: a pipe nobody reads
fills up and the server then blocks on logging and stops answering.

Azurite checks shared-key signatures for its well-known development account, so a wrong account
key is rejected as it would be by Azure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "AzuriteServer",
    "azurite_main_js",
    "connection_string",
    "free_port",
    "start_azurite",
]

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
EMULATORS = REPO_ROOT / ".emulators"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-azurite"

#: Azurite's well-known development account (public, documented by Microsoft; not a secret).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def connection_string(blob_endpoint: str, account_key: str = ACCOUNT_KEY) -> str:
    """A connection string for the dev account whose ``BlobEndpoint`` is ``blob_endpoint``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
        f"AccountKey={account_key};BlobEndpoint={blob_endpoint};"
    )


def azurite_main_js(*, install: bool = True) -> Path:
    """The blob service entry point of the Azurite installed under ``.emulators/``.

    Runs ``scripts/install-azurite`` when it is missing (and ``install`` is true), so tests on a
    fresh checkout need no manual step; npm then needs the registry once.
    """
    main_js = EMULATORS / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
    if main_js.is_file() or not install:
        if not main_js.is_file():
            raise RuntimeError(f"Azurite is not installed; run {INSTALL_SCRIPT}")
        return main_js
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0 or not main_js.is_file():
        raise RuntimeError(
            f"{INSTALL_SCRIPT} failed (status {result.returncode}); "
            f"output:\n{(result.stdout + result.stderr)[-4000:]}"
        )
    return main_js


@dataclass
class AzuriteServer:
    """A running Azurite blob service: where it answers, and how to stop it."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: object = field(repr=False, default=None)

    @property
    def host_port(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def blob_endpoint(self) -> str:
        """Path-style endpoint of the dev account, as used in a connection string."""
        return f"http://{self.host_port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_endpoint)

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

    def __enter__(self) -> AzuriteServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_until_ready(server: AzuriteServer, timeout: float) -> None:
    """Poll until Azurite answers HTTP; any status (an unsigned request gets 403) means it is up."""
    url = f"{server.blob_endpoint}?comp=list"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            server.stop()
            raise RuntimeError(
                f"Azurite exited with status {server.process.returncode} before answering; "
                f"log:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                response.read()
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(
        f"Azurite did not answer on {server.host_port} within {timeout:.0f}s; "
        f"log:\n{server.log_tail()}"
    )


def start_azurite(log_dir: Path, *, timeout: float = 30.0) -> AzuriteServer:
    """Run Azurite's blob service (in memory, plain HTTP) on a free loopback port; wait for it."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH; install Node.js (>= 18) to run Azurite")
    main_js = azurite_main_js()
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    # In-memory mode refuses --location; run in a scratch directory in case anything is written.
    workspace = log_dir / f"azurite-{port}"
    workspace.mkdir(exist_ok=True)
    argv = [
        node, str(main_js),
        "--skipApiVersionCheck",
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--blobHost", LOOPBACK,
        "--blobPort", str(port),
        "--silent",
    ]  # fmt: skip
    log_path = log_dir / f"azurite-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed by AzuriteServer.stop
    env = dict(os.environ)
    # Azurite reads AZURITE_ACCOUNTS to replace the dev account; the tests rely on the default.
    env.pop("AZURITE_ACCOUNTS", None)
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workspace,
        env=env,
    )
    server = AzuriteServer(port=port, process=process, log_path=log_path, _log=log)
    _wait_until_ready(server, timeout)
    return server
