"""Bytecode for the benchmarks' timed children, as an installed wheel has it.

Some machines set ``PYTHONDONTWRITEBYTECODE``. A checkout's modules then have no bytecode, and
every timed ``stcore`` command compiled the package again before doing its work (0.1 to 0.3 s
of each command here). The benchmarks call :func:`compile_packages` first, in the runner (the
AI-access cases, whose children import what the runner does) or, run as a script, in a child
that resolves imports as ``python -m`` does, from the current directory first (``run.py``).
"""

from __future__ import annotations

import compileall
import importlib.util
import os
import sys
from pathlib import Path

#: what the benchmarks' children import
PACKAGES = ("stcore", "st_local", "st_s3", "cloud_storage_manager")


def compile_packages(names: tuple[str, ...] = PACKAGES) -> list[Path]:
    """Write the bytecode of each of ``names`` where this interpreter finds it (a package's
    whole folder); return those places. One that is not installed is skipped."""
    compiled = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            compileall.compile_dir(origin.parent, quiet=1)
        else:
            compileall.compile_file(origin, quiet=1)
        compiled.append(origin.parent if origin.name == "__init__.py" else origin)
    return compiled


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())  # as `python -m stcore.cli` will: the current folder first
    for place in compile_packages():
        print(f"compiled {place}")
