"""Each cloud plugin installs alone next to stcore (`pip install stcore st-s3`) and works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    for project in (ROOT, *(ROOT / "plugins" / p for p in ("st_s3", "st_gcs", "st_azure"))):
        _run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, project)
    return dist


@pytest.mark.slow
@pytest.mark.parametrize(
    ("distribution", "backend", "scheme"),
    [("st_s3", "s3", "s3"), ("st_gcs", "gcs", "gs"), ("st_azure", "azure", "az")],
)
def test_plugin_installs_alone_and_registers(
    wheels: Path, tmp_path: Path, distribution: str, backend: str, scheme: str
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    (stcore_wheel,) = wheels.glob("stcore-*.whl")
    (plugin_wheel,) = wheels.glob(f"{distribution}-*.whl")
    _run(python, "-m", "pip", "install", "--quiet", stcore_wheel, plugin_wheel)
    listing = json.loads(_run(env_dir / "bin" / "stcore", "plugins", "--json"))
    provided = {p["name"]: p["provides"] for p in listing["plugins"]}
    assert provided.get(backend) == {"backends": [backend]}
    assert "local" not in provided  # really alone: st-local is not installed
    assert listing["broken"] == []
    code = (
        "import stcore; h = stcore.make_plugin_manager(); "
        f"print(h.backends.by_scheme({scheme!r})); h.backends.get({backend!r})"
    )
    assert _run(python, "-c", code).strip() == backend
