"""What this machine knows is damaged: blobs whose stored copies failed verification or whose
pack is missing, recorded by ``check`` so the next backup stores them again.

The record is a small JSON file in the repository's cache directory (blob id -> the packs whose
copy of it is bad). It changes nothing in the repository itself, so it needs no lock and a wrong
record costs at most a blob stored twice. With it, one backup of the unchanged source heals a
repository: the backup does not deduplicate against a damaged copy, and readers prefer a good
copy over a damaged one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from stcore.localfiles import atomic_write

FILE_NAME = "damaged-blobs.json"

#: blob id -> ids of the packs whose copy of that blob is damaged or missing
Damage = dict[bytes, set[bytes]]


def load_damage(cache_dir: Path) -> Damage:
    """The record, empty if there is none or it cannot be read (it is only a hint)."""
    try:
        document = json.loads((cache_dir / FILE_NAME).read_text())
        return {
            bytes.fromhex(blob): {bytes.fromhex(p) for p in packs}
            for blob, packs in document.items()
        }
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def save_damage(cache_dir: Path, damage: Mapping[bytes, set[bytes]]) -> None:
    """Replace the record (an empty one removes the file)."""
    path = cache_dir / FILE_NAME
    if not damage:
        path.unlink(missing_ok=True)
        return
    document = {blob.hex(): sorted(p.hex() for p in packs) for blob, packs in damage.items()}
    atomic_write(path, json.dumps(document, indent=1, sort_keys=True))
