"""Developer sessions. `scripts/test` (what CI runs) does the same work in one environment.

nox -s tests          # core + st-local
nox -s s3 gcs azure   # one backend plugin each, against its emulator
nox -s lint layers typecheck
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "layers", "typecheck", "tests", "s3", "gcs", "azure", "integration"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
PLUGINS = {"s3": "plugins/st_s3", "gcs": "plugins/st_gcs", "azure": "plugins/st_azure"}


def _install_core(session: nox.Session) -> None:
    session.install("-e", ".[test]", "-e", "plugins/st_local")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The core suite with only st-local installed."""
    _install_core(session)
    session.run("pytest", "tests", "plugins/st_local/tests", *session.posargs)


def _plugin_session(name: str) -> None:
    path = PLUGINS[name]

    @nox.session(name=name, python=PYTHON)
    def run(session: nox.Session) -> None:
        _install_core(session)
        session.install("-e", f"{path}[test]")
        if name == "azure":
            session.run("scripts/install-azurite", external=True)
        session.run("pytest", f"{path}/tests", *session.posargs)

    run.__doc__ = f"st-{name} against its emulator."


for _name in PLUGINS:
    _plugin_session(_name)


@nox.session(python=PYTHON)
def integration(session: nox.Session) -> None:
    """init, backup, restore, check end to end on all three cloud emulators."""
    _install_core(session)
    for path in PLUGINS.values():
        session.install("-e", f"{path}[test]")
    session.run("scripts/install-azurite", external=True)
    session.run("pytest", "integration", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run(
        "ruff", "check", "stcore", "cloud_storage_manager.py", "plugins", "tests", "testsupport",
        "integration", "noxfile.py",
    )  # fmt: skip


@nox.session(python=PYTHON)
def layers(session: nox.Session) -> None:
    """Imports point down: the import-linter contracts in pyproject.toml."""
    _install_core(session)
    session.install("import-linter")
    session.run("lint-imports", "--no-cache")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")
