"""stcore: versioned, deduplicated, compressed backups of application data, readable by AI code.

The public API lives here; everything else is an implementation detail.
"""

from __future__ import annotations

__version__ = "0.1.0"

from stcore.errors import StcoreError
from stcore.hookspecs import hookimpl
from stcore.registry import Registration

__all__ = [
    "Registration",
    "StcoreError",
    "__version__",
    "hookimpl",
]
