"""What a backup loads: heavy libraries only where they are needed (memory is a benchmark target).

An unencrypted backup from the command line must not import cryptography (its OpenSSL bindings,
about 9 MiB) nor tenacity (which loads asyncio and tornado, about 14 MiB): each is imported by
the function that needs it. Checked in a fresh interpreter, since the test process has both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("cryptography", "tenacity", "asyncio", "tornado")

SCRIPT = """
import json, sys
from stcore.cli.root import cli
try:
    cli(["init", "--repo", sys.argv[1]], standalone_mode=False)
    cli(["backup", "--repo", sys.argv[1], sys.argv[2]], standalone_mode=False)
finally:
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_an_unencrypted_backup_loads_no_crypto_and_no_retry_library(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("a\n")
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "repo"), str(source)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    loaded = set(json.loads(run.stdout.strip().splitlines()[-1]))
    assert "stcore" in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
