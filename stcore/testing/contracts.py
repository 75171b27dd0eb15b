"""The contract test classes. See :mod:`stcore.testing` for how to use them."""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from stcore.errors import CorruptObjectError, ObjectExistsError, ObjectNotFoundError
from stcore.interfaces import (
    Backend,
    Compressor,
    Encryptor,
    Source,
    SourceEntry,
    StreamingBackend,
)


class BackendContract:
    """What every :class:`~stcore.interfaces.Backend` must do.

    Provide a ``backend`` fixture giving an empty backend. Override ``listing_count`` to prove
    pagination (cloud backends use 2,500) and ``large_size`` for the big-object round trip.
    """

    listing_count: int = 40
    large_size: int = 20 * 1024 * 1024

    @pytest.fixture
    def backend(self) -> Iterator[Backend]:
        raise NotImplementedError("a BackendContract subclass must provide a `backend` fixture")

    def test_written_bytes_read_back_equal(self, backend: Backend) -> None:
        backend.write("data/ab/object", b"hello world")
        assert backend.read("data/ab/object") == b"hello world"

    def test_empty_object_round_trips(self, backend: Backend) -> None:
        backend.write("empty", b"")
        assert backend.read("empty") == b""
        assert backend.stat("empty").size == 0

    def test_write_is_create_only_and_keeps_the_original(self, backend: Backend) -> None:
        backend.write("config", b"first")
        with pytest.raises(ObjectExistsError):
            backend.write("config", b"second")
        assert backend.read("config") == b"first"

    def test_reading_a_missing_key_raises_not_found(self, backend: Backend) -> None:
        with pytest.raises(ObjectNotFoundError):
            backend.read("snapshots/missing")

    def test_range_reads_return_the_slice(self, backend: Backend) -> None:
        payload = bytes(range(256)) * 4
        backend.write("ranged", payload)
        assert backend.read("ranged", 10, 20) == payload[10:30]
        assert backend.read("ranged", 1000) == payload[1000:]
        assert backend.read("ranged", 1000, 100) == payload[1000:]
        assert backend.read("ranged", 0, 1) == payload[:1]

    def test_range_read_at_or_past_the_end_is_empty(self, backend: Backend) -> None:
        backend.write("short", b"abc")
        assert backend.read("short", 3, 10) == b""

    def test_stat_reports_size_and_missing_keys(self, backend: Backend) -> None:
        backend.write("sized", b"x" * 1234)
        assert backend.stat("sized").size == 1234
        assert backend.stat("sized").key == "sized"
        with pytest.raises(ObjectNotFoundError):
            backend.stat("unsized")

    def test_list_filters_by_prefix(self, backend: Backend) -> None:
        for key in ("data/aa/1", "data/ab/2", "index/3", "snapshots/4", "config"):
            backend.write(key, key.encode())
        assert sorted(o.key for o in backend.list("data/")) == ["data/aa/1", "data/ab/2"]
        assert sorted(o.key for o in backend.list("data/ab")) == ["data/ab/2"]
        assert sorted(o.key for o in backend.list("index/")) == ["index/3"]
        assert len(list(backend.list())) == 5
        assert list(backend.list("nothing/")) == []

    def test_list_reports_sizes(self, backend: Backend) -> None:
        backend.write("index/sized", b"12345")
        assert [(o.key, o.size) for o in backend.list("index/")] == [("index/sized", 5)]

    def test_list_returns_every_object_of_a_large_listing(self, backend: Backend) -> None:
        keys = {f"many/{i:05d}" for i in range(self.listing_count)}
        for key in keys:
            backend.write(key, b"")
        assert {o.key for o in backend.list("many/")} == keys

    def test_delete_removes_and_missing_delete_raises(self, backend: Backend) -> None:
        backend.write("doomed", b"x")
        backend.delete("doomed")
        with pytest.raises(ObjectNotFoundError):
            backend.read("doomed")
        with pytest.raises(ObjectNotFoundError):
            backend.delete("doomed")

    def test_a_deleted_key_can_be_written_again(self, backend: Backend) -> None:
        backend.write("phoenix", b"old")
        backend.delete("phoenix")
        backend.write("phoenix", b"new")
        assert backend.read("phoenix") == b"new"

    def test_large_object_round_trips_with_range_reads(self, backend: Backend) -> None:
        payload = os.urandom(self.large_size)
        backend.write("data/la/large", payload)
        assert backend.stat("data/la/large").size == len(payload)
        middle = len(payload) // 2
        assert backend.read("data/la/large", middle, 4096) == payload[middle : middle + 4096]
        assert backend.read("data/la/large") == payload

    @pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
    def test_any_bytes_like_object_can_be_written_and_reused_after(
        self, backend: Backend, large: bool
    ) -> None:
        # Packs are written from a reused bytearray through a memoryview: the backend must store
        # the bytes as they were during the call, whatever the caller does with the buffer after.
        payload = os.urandom(self.large_size if large else 4096)
        buffer = bytearray(payload + b"tail")
        with memoryview(buffer) as view:
            backend.write("data/bl/view", view[: len(payload)])
        buffer[:] = bytes(len(buffer))
        backend.write("data/bl/bytearray", bytearray(payload))
        assert backend.read("data/bl/view") == payload
        assert backend.read("data/bl/bytearray") == payload

    def test_streamed_objects_commit_create_only_and_aborts_leave_nothing(
        self, backend: Backend
    ) -> None:
        """Only for backends that offer ``open_writer`` (:class:`StreamingBackend`)."""
        if not isinstance(backend, StreamingBackend):
            pytest.skip("this backend does not stream objects")
        pieces = [os.urandom(n) for n in (1, 4096, 300_000, 7)]
        writer = backend.open_writer()
        for piece in pieces:
            writer.write(memoryview(piece))
        writer.commit("data/st/streamed")
        assert backend.read("data/st/streamed") == b"".join(pieces)
        again = backend.open_writer()
        again.write(b"other bytes")
        with pytest.raises(ObjectExistsError):
            again.commit("data/st/streamed")
        assert backend.read("data/st/streamed") == b"".join(pieces)
        dropped = backend.open_writer()
        dropped.write(b"never stored")
        dropped.abort()
        dropped.abort()
        assert [info.key for info in backend.list()] == ["data/st/streamed"]
        assert backend.count_abandoned() >= 0
        assert backend.discard_abandoned() >= 0
        assert [info.key for info in backend.list()] == ["data/st/streamed"]

    def test_concurrent_create_only_writes_let_exactly_one_win(self, backend: Backend) -> None:
        outcomes: list[str] = []
        lock = threading.Lock()

        def attempt(i: int) -> None:
            try:
                backend.write("contended", f"writer {i}".encode())
                result = "won"
            except ObjectExistsError:
                result = "lost"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["lost", "lost", "lost", "won"], outcomes
        assert backend.read("contended").startswith(b"writer ")

    def test_location_is_a_nonempty_string(self, backend: Backend) -> None:
        assert isinstance(backend.location, str) and backend.location


class CompressorContract:
    """What every :class:`~stcore.interfaces.Compressor` must do. Provide ``compressor``."""

    @pytest.fixture
    def compressor(self) -> Compressor:
        raise NotImplementedError("a CompressorContract subclass must provide `compressor`")

    @pytest.mark.parametrize(
        "payload",
        [b"", b"a", b"abc" * 100_000, os.urandom(100_000), json.dumps(list(range(5000))).encode()],
        ids=["empty", "one-byte", "repetitive", "random", "json"],
    )
    def test_round_trip(self, compressor: Compressor, payload: bytes) -> None:
        packed = compressor.compress(payload)
        assert compressor.decompress(packed, len(payload)) == payload

    def test_repetitive_data_shrinks_unless_the_codec_is_identity(
        self, compressor: Compressor
    ) -> None:
        payload = b"stcore " * 10_000
        packed = compressor.compress(payload)
        if compressor.name == "none":
            assert packed == payload
        else:
            assert len(packed) < len(payload) // 10

    def test_compress_many_is_compress_of_each_when_offered(self, compressor: Compressor) -> None:
        """``compress_many`` is optional (:class:`~stcore.interfaces.BatchCompressor`); when a
        compressor has it, it returns the same frames as ``compress`` one at a time."""
        many = getattr(compressor, "compress_many", None)
        if many is None:
            pytest.skip("no compress_many: the packer compresses one blob at a time")
        items = [b"", b"a", b"abc" * 1000, os.urandom(5000), b"", b"stcore " * 300]
        for batch in (items, items[2:4], items[:1], [], [items[2]] * 3):
            assert many(batch) == [compressor.compress(item) for item in batch]

    def test_the_page_compressor_writes_frames_this_one_reads_when_offered(
        self, compressor: Compressor
    ) -> None:
        """``for_pages`` is optional (:class:`~stcore.interfaces.PagedCompressor`); what it
        returns writes frames with the same code, which this compressor decodes."""
        for_pages = getattr(compressor, "for_pages", None)
        if for_pages is None:
            pytest.skip("no for_pages: page runs are compressed like other chunks")
        pages = for_pages()
        assert pages.code == compressor.code
        page = (b"\x0d\x00\x00\x00\x01\x0f\xf4" + b"row payload " * 400)[:4096]
        assert compressor.decompress(pages.compress(page), len(page)) == page

    def test_has_a_name_and_a_frame_code(self, compressor: Compressor) -> None:
        assert isinstance(compressor.name, str) and compressor.name
        assert isinstance(compressor.code, int) and 0 <= compressor.code <= 255

    def test_garbage_input_raises_corrupt_object(self, compressor: Compressor) -> None:
        garbage = b"\xff\x00 not a compressed frame \x13\x37" * 3
        if compressor.name == "none":
            # The identity codec has no invalid input: it must hand the bytes back untouched.
            assert compressor.decompress(garbage, len(garbage)) == garbage
            return
        with pytest.raises(CorruptObjectError):
            compressor.decompress(garbage, 1000)

    def test_a_frame_larger_than_declared_is_refused_without_decoding_it_whole(
        self, compressor: Compressor
    ) -> None:
        """``raw_size`` is a bound: a frame that decodes to more (a damaged or hostile one, a
        "decompression bomb") raises CorruptObjectError, having produced at most about
        ``raw_size`` bytes; a reader must never allocate what a frame merely claims."""
        bomb = compressor.compress(bytes(64 * 1024 * 1024))
        tracemalloc.start()
        try:
            with pytest.raises(CorruptObjectError):
                compressor.decompress(bomb, 4096)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8 * 1024 * 1024, f"decoding a 4 KiB-bounded frame took {peak} bytes"


class EncryptorContract:
    """What every :class:`~stcore.interfaces.Encryptor` must do. Provide ``encryptor``."""

    @pytest.fixture
    def encryptor(self) -> Encryptor:
        raise NotImplementedError("an EncryptorContract subclass must provide `encryptor`")

    @pytest.mark.parametrize("payload", [b"", b"secret", os.urandom(70_000)])
    def test_round_trip(self, encryptor: Encryptor, payload: bytes) -> None:
        sealed = encryptor.encrypt(payload, b"data:abc")
        assert len(sealed) == len(payload) + encryptor.overhead
        assert encryptor.decrypt(sealed, b"data:abc") == payload

    def test_ciphertext_hides_the_plaintext_unless_identity(self, encryptor: Encryptor) -> None:
        payload = b"marker-string-" * 20
        sealed = encryptor.encrypt(payload, b"aad")
        if encryptor.name == "none":
            assert sealed == payload
        else:
            assert b"marker-string-" not in sealed

    def test_tampering_and_wrong_associated_data_are_detected(self, encryptor: Encryptor) -> None:
        if encryptor.overhead == 0:
            # No room for a tag means no authentication: such an encryptor must be the identity,
            # so it cannot pretend to protect anything (integrity then rests on the blob hashes).
            assert encryptor.decrypt(b"payload", b"index:2") == b"payload"
            assert encryptor.name == "none"
            return
        sealed = bytearray(encryptor.encrypt(b"payload bytes", b"index:1"))
        with pytest.raises(CorruptObjectError):
            encryptor.decrypt(bytes(sealed), b"index:2")
        sealed[len(sealed) // 2] ^= 0x01
        with pytest.raises(CorruptObjectError):
            encryptor.decrypt(bytes(sealed), b"index:1")


class SourceContract:
    """What every :class:`~stcore.interfaces.Source` must do. Provide a scannable ``source``."""

    @pytest.fixture
    def source(self) -> Iterator[Source]:
        raise NotImplementedError("a SourceContract subclass must provide `source`")

    def _scan(self, source: Source) -> tuple[list[SourceEntry], list[tuple[str, BaseException]]]:
        errors: list[tuple[str, BaseException]] = []
        entries = list(source.scan(lambda path, exc: errors.append((path, exc))))
        return entries, errors

    def test_scan_yields_valid_relative_paths(self, source: Source) -> None:
        entries, _ = self._scan(source)
        assert entries, "the fixture source should contain at least one entry"
        for entry in entries:
            assert entry.path, "the root itself is not an entry"
            for part in entry.path:
                assert part not in ("", ".", "..") and "/" not in part and "\0" not in part

    def test_scan_is_depth_first_sorted_with_parents_first(self, source: Source) -> None:
        entries, _ = self._scan(source)
        paths = [entry.path for entry in entries]
        assert paths == sorted(paths), "entries must be sorted depth-first by name"
        assert len(set(paths)) == len(paths), "no path may be yielded twice"
        seen_dirs: set[tuple[str, ...]] = set()
        for entry in entries:
            if len(entry.path) > 1:
                assert entry.path[:-1] in seen_dirs, f"{entry.path} comes before its directory"
            if entry.kind == "dir":
                seen_dirs.add(entry.path)

    def test_file_entries_open_to_their_declared_size(self, source: Source) -> None:
        entries, _ = self._scan(source)
        for entry in entries:
            if entry.kind == "file":
                assert entry.opener is not None
                with entry.opener() as stream:
                    read = len(stream.read())
                # a negative size: not known until the stream ends (standard input)
                assert read == entry.size or entry.size < 0
            elif entry.kind == "symlink":
                assert entry.target is not None

    def test_describe_is_json_serialisable(self, source: Source) -> None:
        description: dict[str, Any] = source.describe()
        json.dumps(description)
        assert isinstance(source.name, str) and isinstance(source.type_name, str)

    def test_close_can_be_called_twice(self, source: Source) -> None:
        self._scan(source)
        source.close()
        source.close()
