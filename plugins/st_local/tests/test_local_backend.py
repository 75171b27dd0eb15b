"""st-local against the backend contract, plus what only a local directory can show."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from st_local.backend import LocalBackend

from stcore.errors import BackendError, ContainerNotFoundError
from stcore.plugins import make_plugin_manager
from stcore.testing import BackendContract


class TestLocalBackendContract(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Iterator[LocalBackend]:
        backend = LocalBackend.open(str(tmp_path / "repo"), options={}, create=True)
        yield backend
        backend.close()


def test_is_registered_through_the_entry_point() -> None:
    host = make_plugin_manager()
    assert "local" in host.backends
    assert host.backends.by_scheme("file") == "local"
    plugin = next(p for p in host.plugins() if p.name == "local")
    assert plugin.distribution == "st-local"


def test_missing_directory_without_create_says_how_to_init(tmp_path: Path) -> None:
    with pytest.raises(ContainerNotFoundError, match="stcore init"):
        LocalBackend.open(str(tmp_path / "absent"), options={})


def test_file_urls_are_accepted(tmp_path: Path) -> None:
    backend = LocalBackend.open(f"file://{tmp_path}", options={})
    backend.write("k", b"v")
    assert (tmp_path / "k").read_bytes() == b"v"


def test_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    backend = LocalBackend.open(str(tmp_path), options={})
    for key in ("../outside", "data/../../x", "", "/abs", "a//b"):
        with pytest.raises(BackendError, match="invalid object key"):
            backend.write(key, b"x")


@pytest.mark.parametrize("pread", ["short", "absent"], ids=["pread-returns-3-bytes", "no-pread"])
def test_reads_are_whole_however_the_system_call_splits_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pread: str
) -> None:
    """Reads use ``os.pread``, which may return fewer bytes than asked; where it is missing
    (Windows) they seek and read. Either way every range reads as the file holds it."""
    backend = LocalBackend.open(str(tmp_path), options={})
    data = bytes(range(256)) * 4
    backend.write("data/ab/k", data)
    if pread == "short":
        real = os.pread
        monkeypatch.setattr(os, "pread", lambda fd, n, at: real(fd, min(n, 3), at))
    else:
        monkeypatch.delattr(os, "pread")
    for offset, length in [(0, None), (0, 1024), (5, 17), (1000, None), (1000, 100), (2000, 5)]:
        end = None if length is None else offset + length
        assert backend.read("data/ab/k", offset, length) == data[offset:end]


def test_a_folder_where_an_object_belongs_is_an_error_whatever_the_range(tmp_path: Path) -> None:
    backend = LocalBackend.open(str(tmp_path), options={})
    (tmp_path / "data" / "ab" / "k").mkdir(parents=True)
    for offset, length in [(0, None), (0, 0), (0, 10), (10**6, None)]:
        with pytest.raises(BackendError, match="Is a directory"):
            backend.read("data/ab/k", offset, length)


def test_a_negative_range_is_refused(tmp_path: Path) -> None:
    backend = LocalBackend.open(str(tmp_path), options={})
    backend.write("k", b"abc")
    for offset, length in [(-1, None), (0, -1), (0, -5)]:
        with pytest.raises(ValueError, match="no such range"):
            backend.read("k", offset, length)


def test_no_temporary_file_is_left_behind_after_a_failed_write(tmp_path: Path) -> None:
    backend = LocalBackend.open(str(tmp_path), options={})
    backend.write("data/aa/x", b"1")
    with pytest.raises(BackendError):
        backend.write("data/aa/x", b"2")
    assert sorted(os.listdir(tmp_path / "data" / "aa")) == ["x"]
    assert [o.key for o in backend.list()] == ["data/aa/x"]


def test_read_only_directory_gives_access_denied(tmp_path: Path) -> None:
    """Runs in a child process without the capabilities that let root ignore permissions."""
    tmp_path.chmod(0o500)
    caps = "-dac_override,-dac_read_search"
    prefix = (
        ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"] if os.geteuid() == 0 else []
    )
    script = (
        "import sys\n"
        "from st_local.backend import LocalBackend\n"
        "from stcore.errors import AccessDeniedError\n"
        "backend = LocalBackend.open(sys.argv[1], options={})\n"
        "try:\n"
        "    backend.write('x', b'1')\n"
        "except AccessDeniedError as exc:\n"
        "    print(exc)\n"
        "    raise SystemExit(0)\n"
        "raise SystemExit(1)\n"
    )
    try:
        result = subprocess.run(
            [*prefix, sys.executable, "-c", script, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        tmp_path.chmod(0o700)
    assert result.returncode == 0, result.stderr
    assert "permission denied" in result.stdout


def test_full_disk_is_reported_without_losing_existing_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend.open(str(tmp_path), options={})
    backend.write("kept", b"safe")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(BackendError, match="no space left"):
        backend.write("new", b"data")
    monkeypatch.undo()
    assert backend.read("kept") == b"safe"
    assert [o.key for o in backend.list()] == ["kept"]


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


def test_a_full_disk_while_streaming_leaves_no_temporary_and_no_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalBackend.open(str(tmp_path), options={})
    writer = backend.open_writer()
    writer.write(b"first piece")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(BackendError, match="no space left"):
        writer.commit("data/ab/pack")
    monkeypatch.undo()
    assert list(backend.list()) == []
    assert _temporaries(tmp_path) == []


def test_a_failing_write_while_streaming_aborts_the_object(tmp_path: Path) -> None:
    backend = LocalBackend.open(str(tmp_path), options={})
    writer = backend.open_writer()

    class Exploding:
        def write(self, data: object) -> None:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            pass

    writer._handle = Exploding()  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="no space left"):
        writer.write(b"x" * 10)
    assert _temporaries(tmp_path) == []


def test_writes_abandoned_by_a_dead_process_are_discarded_once_old(tmp_path: Path) -> None:
    backend = LocalBackend.open(str(tmp_path), options={})
    backend.write("kept", b"safe")
    dead = backend.open_writer()
    dead.write(b"a pack its process never finished")
    (stale,) = _temporaries(tmp_path)
    live = backend.open_writer()
    live.write(b"a pack being written right now")
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    assert backend.count_abandoned() == 1
    assert backend.discard_abandoned() == 1
    assert backend.count_abandoned() == 0
    assert not stale.exists()
    live.commit("data/li/live")  # the fresh one was left alone
    assert backend.read("data/li/live") == b"a pack being written right now"
    assert sorted(o.key for o in backend.list()) == ["data/li/live", "kept"]
