"""Scripts that read backed-up data through pyarrow exit cleanly (``stcore.access.lent``).

pyarrow's parquet reader used to drop the buffers our reads lent it on one of its pool threads
after ``read_table`` returned; when that raced the interpreter's finalization the process
aborted (``terminate called without an active exception``, exit 134) about half the time.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import stcore
from stcore.access import lent

RUNS = 20

SCRIPT = textwrap.dedent(
    """
    import sys

    import fsspec
    import pyarrow.parquet as pq

    fs = fsspec.filesystem("stcore", repo=sys.argv[1])
    table = pq.read_table("latest/tables/t.parquet", filesystem=fs, columns=["c3"])
    assert table.num_rows == 200_000, table.num_rows
    """
)


@pytest.fixture(scope="module")
def parquet_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding a 200,000-row, 7-column Parquet table in 10 row groups."""
    root = tmp_path_factory.mktemp("exit")
    tables = root / "tables"
    tables.mkdir()
    rng = np.random.default_rng(1)
    table = pa.table({f"c{i}": rng.random(200_000) for i in range(7)})
    pq.write_table(table, tables / "t.parquet", row_group_size=20_000)
    repository = stcore.init_repository(str(root / "repo"))
    with repository:
        repository.backup([stcore.make_source("tables", "files", {"path": str(tables)})])
    return root / "repo"


def test_a_parquet_column_read_through_stcore_exits_zero_every_time(
    parquet_repository: Path,
) -> None:
    codes = []
    for _ in range(RUNS):
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(parquet_repository)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "Traceback" not in done.stderr, done.stderr
        codes.append(done.returncode)
    assert codes == [0] * RUNS, f"exit codes {codes}: {done.stderr[-500:]}"


def test_the_exit_hook_waits_for_buffers_another_thread_is_dropping() -> None:
    held = [lent.LentBuffer(10) for _ in range(3)]
    before = lent.outstanding()

    def drop() -> None:
        for _ in range(3):
            time.sleep(0.01)  # each within the quiet period of the one before
            held.pop()

    dropper = threading.Thread(target=drop)
    dropper.start()
    assert lent.wait_for_returns() == before - 3
    dropper.join()


def test_the_exit_hook_stops_after_a_quiet_period_when_buffers_are_held() -> None:
    held = lent.LentBuffer(10)
    started = time.monotonic()
    assert lent.wait_for_returns(quiet=0.05) >= 1
    assert time.monotonic() - started < 1
    del held
