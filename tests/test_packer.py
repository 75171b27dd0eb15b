"""The packer: streamed and in-memory packs hold what the index says, failures leave nothing."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stcore
from stcore.builtins.compressors import NoCompressor, ZstdCompressor
from stcore.builtins.crypto import AesGcmEncryptor
from stcore.errors import BackendError, CorruptObjectError
from stcore.interfaces import BytesLike, ObjectInfo, StreamingBackend
from stcore.repo.format import Codec, hash_id, object_key
from stcore.repo.packer import Packer
from stcore.repository import Repository


class PlainBackend:
    """A local backend seen through the plain protocol only (no ``open_writer``)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.location = inner.location  # type: ignore[attr-defined]
        self.largest_write = 0

    def write(self, key: str, data: BytesLike) -> None:
        self.largest_write = max(self.largest_write, len(data))
        self._inner.write(key, data)  # type: ignore[attr-defined]

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._inner.read(key, offset, length)  # type: ignore[attr-defined,no-any-return]

    def stat(self, key: str) -> ObjectInfo:
        return self._inner.stat(key)  # type: ignore[attr-defined,no-any-return]

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self._inner.list(prefix)  # type: ignore[attr-defined,no-any-return]

    def delete(self, key: str) -> None:
        self._inner.delete(key)  # type: ignore[attr-defined]

    def close(self) -> None:
        pass


def _pack_blobs(repo: Repository, backend: object, blobs: list[bytes]) -> list[object]:
    packer = Packer(backend, repo.codec, pack_size=64 * 1024, workers=2)  # type: ignore[arg-type]
    for data in blobs:
        packer.add(repo.codec.blob_id(data), "data", data)
    return list(packer.finish().values())


@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "in-memory"])
def test_every_pack_is_named_by_its_hash_and_holds_its_index_entries(
    repo: Repository, streaming: bool
) -> None:
    rng = random.Random(8)
    blobs = [rng.randbytes(rng.choice([100, 4096, 40_000])) for _ in range(300)]
    backend = repo.backend if streaming else PlainBackend(repo.backend)
    assert isinstance(backend, StreamingBackend) == streaming
    entries = _pack_blobs(repo, backend, blobs + blobs[::7])  # a blob added again is stored once
    assert len(entries) == len(blobs)
    packs = {info.key for info in repo.backend.list("data/")}
    assert len(packs) > 10
    for key in packs:
        assert hash_id(repo.backend.read(key)).hex() == key.rsplit("/", 1)[-1]
    by_id = {repo.codec.blob_id(b): b for b in blobs}
    for entry in entries:
        stored = repo.backend.read(
            object_key("data", entry.pack_id),  # type: ignore[attr-defined]
            entry.offset,  # type: ignore[attr-defined]
            entry.stored_length,  # type: ignore[attr-defined]
        )
        blob_id = entry.blob_id  # type: ignore[attr-defined]
        assert repo.codec.unseal_blob(blob_id, stored, len(by_id[blob_id])) == by_id[blob_id]
    if not streaming:
        assert backend.largest_write < 64 * 1024 + 40_000 + 64 * 1024  # type: ignore[union-attr]


def test_a_full_disk_during_a_backup_leaves_no_temporary_and_no_snapshot(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "big.bin").write_bytes(random.Random(2).randbytes(40 * 1024 * 1024))
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync_until_full(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > 1:  # the first pack lands, the disk is full from the second on
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_until_full)
    with pytest.raises(BackendError, match="no space left"):
        repo.backup(stcore.sources_for_paths([str(source)]))
    monkeypatch.undo()
    root = Path(repo.location)
    assert [p for p in root.rglob("*") if p.name.startswith(".tmp-")] == []
    assert list(repo.backend.list("snapshots/")) == []
    assert repo.check(read_data=True).ok
    result = repo.backup(stcore.sources_for_paths([str(source)]))
    repo.restore(result.manifest.id, tmp_path / "out")
    assert (tmp_path / "out" / "src" / "big.bin").read_bytes() == (source / "big.bin").read_bytes()


def test_an_interrupted_backup_leaves_no_temporary(repo: Repository, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for i in range(6):
        (source / f"part-{i}.bin").write_bytes(random.Random(i).randbytes(8 * 1024 * 1024))
    seen = {"bytes": 0}

    def interrupt_midway(event: str, amount: int) -> None:
        if event == "bytes":
            seen["bytes"] += amount
            if seen["bytes"] > 36 * 1024 * 1024:  # inside the third pack
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        repo.backup(stcore.sources_for_paths([str(source)]), progress=interrupt_midway)
    root = Path(repo.location)
    assert [p for p in root.rglob("*") if p.name.startswith(".tmp-")] == []
    assert list(repo.backend.list("snapshots/")) == []
    assert repo.check(read_data=True).ok


_blob_bodies = st.lists(
    st.one_of(
        st.binary(max_size=3000),  # random: stored as is, behind a zero frame code
        st.builds(
            lambda text, n: text * n, st.binary(min_size=1, max_size=20), st.integers(1, 500)
        ),
    ),
    max_size=12,
)


@given(bodies=_blob_bodies)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_sealing_a_batch_is_sealing_each_blob(repo: Repository, bodies: list[bytes]) -> None:
    codec = repo.codec
    batch = [(codec.blob_id(body), body) for body in bodies]
    sealed = codec.seal_blobs(batch)
    assert sealed == [codec.seal_blob(blob_id, body) for blob_id, body in batch]
    for (blob_id, body), stored in zip(batch, sealed, strict=True):
        assert codec.unseal_blob(blob_id, stored, len(body)) == body


def _encrypted_codec() -> Codec:
    zstd, none = ZstdCompressor(), NoCompressor()
    return Codec(
        compressors={zstd.code: zstd, none.code: none},
        compressor=zstd,
        encryptor=AesGcmEncryptor(os.urandom(32)),
        id_key=os.urandom(32),
    )


@given(bodies=_blob_bodies)
@settings(max_examples=30, deadline=None)
def test_an_encrypted_batch_unseals_blob_by_blob(bodies: list[bytes]) -> None:
    codec = _encrypted_codec()
    batch = [(codec.blob_id(body), body) for body in bodies]
    for (blob_id, body), stored in zip(batch, codec.seal_blobs(batch), strict=True):
        assert codec.unseal_blob(blob_id, stored, len(body)) == body
        with pytest.raises(CorruptObjectError):  # bound to its own id, as one sealed alone
            codec.unseal_blob(bytes(32), stored, len(body))


class _RecordingCodec(Codec):
    """The repository's codec, recording each batch it seals and whether it was page runs."""

    def __init__(self, codec: Codec) -> None:
        super().__init__(
            compressors=codec.compressors,
            compressor=codec.compressor,
            encryptor=codec.encryptor,
            id_key=codec.id_key,
            page_compressor=codec.page_compressor,
        )
        self.batches: list[tuple[bool, list[bytes]]] = []

    def seal_blobs(
        self, blobs: Sequence[tuple[bytes, bytes]], *, paged: bool = False
    ) -> list[bytes]:
        self.batches.append((paged, [data for _, data in blobs]))
        return super().seal_blobs(blobs, paged=paged)


@given(st.lists(st.booleans(), min_size=1, max_size=40))
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_batch_is_all_page_runs_or_none(repo: Repository, kinds: list[bool]) -> None:
    """Page runs are compressed as pages: a batch never mixes them with other blobs."""
    codec = _RecordingCodec(repo.codec)
    packer = Packer(repo.backend, codec, pack_size=1 << 20, workers=1)
    added = {}
    for n, paged in enumerate(kinds):
        data = (b"page %d " if paged else b"chunk %d ") % n * 500
        added[data] = paged
        packer.add(codec.blob_id(data), "data", data, paged)
    packer.finish()
    sealed = [(paged, data) for paged, batch in codec.batches for data in batch]
    assert sorted(data for _, data in sealed) == sorted(added)
    assert all(added[data] == paged for paged, data in sealed)
