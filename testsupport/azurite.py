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

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from testsupport.process import LOOPBACK, ServerProcess, free_port, wait_until_http_ready

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_NAME",
    "AzuriteServer",
    "azurite_main_js",
    "connection_string",
    "free_port",
    "start_azurite",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
EMULATORS = REPO_ROOT / ".emulators"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-azurite"

#: Azurite's well-known development account (public, documented by Microsoft; not a secret).
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


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


@dataclass(kw_only=True)
class AzuriteServer(ServerProcess):
    """A running Azurite blob service: where it answers, and how to stop it."""

    name: str = "Azurite"

    @property
    def blob_endpoint(self) -> str:
        """Path-style endpoint of the dev account, as used in a connection string."""
        return f"http://{self.host_port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_endpoint)


def start_azurite(log_dir: Path, *, timeout: float = 30.0) -> AzuriteServer:
    """Run Azurite's blob service (in memory, plain HTTP) on a free loopback port; wait for it."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH; install Node.js (>= 18) to run Azurite")
    main_js = azurite_main_js()
    port = free_port()
    # In-memory mode refuses --location; run in a scratch directory in case anything is written.
    workspace = log_dir / f"azurite-{port}"
    workspace.mkdir(parents=True, exist_ok=True)
    argv = [
        node, str(main_js),
        "--skipApiVersionCheck",
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--blobHost", LOOPBACK,
        "--blobPort", str(port),
        "--silent",
    ]  # fmt: skip
    server = AzuriteServer(port=port, log_path=log_dir / f"azurite-{port}.log")
    # Azurite reads AZURITE_ACCOUNTS to replace the dev account; the tests rely on the default.
    server.launch(argv, unset_env=("AZURITE_ACCOUNTS",), cwd=workspace)
    # Any answer to a container listing (an unsigned request gets 403) means it is up.
    wait_until_http_ready(server, f"{server.blob_endpoint}?comp=list", timeout)
    return server
