"""``stcore://`` after ``pip install stcore`` alone: fsspec is a core dependency, and the core
distribution's own metadata registers the protocol (the ``fsspec.specs`` entry point), so no
extra and no import is needed. ``stcore[fsspec]`` stays as an alias for old install commands."""

from __future__ import annotations

import email
import importlib.metadata
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINT = "stcore.access.fs:StcoreFileSystem"


def _fsspec_requirements(lines: list[str]) -> list[Requirement]:
    return [r for r in map(Requirement, lines) if r.name == "fsspec"]


def test_fsspec_is_a_core_dependency_and_the_extra_an_alias() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (core,) = _fsspec_requirements(project["dependencies"])
    assert core.marker is None and not core.extras
    (alias,) = _fsspec_requirements(project["optional-dependencies"]["fsspec"])
    assert str(alias.specifier) == str(core.specifier)
    assert project["entry-points"]["fsspec.specs"] == {"stcore": ENTRY_POINT}


def test_the_installed_distribution_requires_fsspec_and_registers_the_protocol() -> None:
    requires = importlib.metadata.requires("stcore") or []
    assert any(r.marker is None for r in _fsspec_requirements(requires)), (
        f"the installed metadata is older than pyproject.toml (reinstall): {requires}"
    )
    (entry,) = [
        e for e in importlib.metadata.entry_points(group="fsspec.specs") if e.name == "stcore"
    ]
    assert entry.value == ENTRY_POINT
    assert entry.dist is not None and entry.dist.metadata["Name"] == "stcore"


def test_fsspec_finds_stcore_without_stcore_being_imported(tmp_path: Path) -> None:
    import stcore

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("read through fsspec")
    with stcore.init_repository(str(tmp_path / "repo")) as repo:
        repo.backup(stcore.sources_for_paths([str(tmp_path / "src")]))
    code = (
        "import sys, fsspec\n"
        "assert not any(m.startswith('stcore') for m in sys.modules), 'stcore imported early'\n"
        "cls = fsspec.get_filesystem_class('stcore')\n"
        f"with fsspec.open('stcore://latest/src/a.txt', 'rt', repo={str(tmp_path / 'repo')!r}) "
        "as f:\n"
        "    print(cls.__module__, cls.__name__, f.read())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.stdout == "stcore.access.fs StcoreFileSystem read through fsspec\n", result.stderr


@pytest.mark.slow
def test_the_core_wheels_metadata_requires_fsspec_and_registers_the_protocol(
    tmp_path: Path,
) -> None:
    """What `pip install stcore` installs, read from the wheel itself."""
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("stcore-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        message = email.message_from_bytes(archive.read(metadata))
        entry_text = archive.read(entry_points).decode()
    requires = message.get_all("Requires-Dist") or []
    fsspec = _fsspec_requirements(requires)
    assert any(r.marker is None for r in fsspec), requires
    assert any(r.marker is not None and "fsspec" in str(r.marker) for r in fsspec), requires
    section = entry_text.split("[fsspec.specs]", 1)[1].split("[", 1)[0]
    assert f"stcore = {ENTRY_POINT}" in section


def test_without_fsspec_the_error_names_the_install_command() -> None:
    """A broken install (fsspec removed after stcore): one line naming what to install."""
    program = (
        "import sys, importlib.abc\n"
        "class Gone(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'fsspec':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Gone())\n"
        "try:\n"
        "    import stcore.access.fs\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc.name, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == (
        "fsspec stcore:// needs fsspec, a dependency of stcore that is missing here: "
        "pip install 'fsspec>=2024.2'"
    )
