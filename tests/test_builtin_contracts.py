"""The built-in compressors, encryptor and sources run the same contract kit as plugins."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from stcore.builtins.compressors import GzipCompressor, LzmaCompressor, NoCompressor, ZstdCompressor
from stcore.builtins.encryptors import NoEncryptor
from stcore.builtins.sources import FilesSource, JsonSource, SqliteSource, StdinSource
from stcore.interfaces import Compressor, Encryptor, Source
from stcore.testing import CompressorContract, EncryptorContract, SourceContract
from tests.trees import make_sample_tree


class TestZstd(CompressorContract):
    @pytest.fixture
    def compressor(self) -> Compressor:
        return ZstdCompressor(level=3)


class TestGzip(CompressorContract):
    @pytest.fixture
    def compressor(self) -> Compressor:
        return GzipCompressor()


class TestLzma(CompressorContract):
    @pytest.fixture
    def compressor(self) -> Compressor:
        return LzmaCompressor(level=1)


class TestNoCompression(CompressorContract):
    @pytest.fixture
    def compressor(self) -> Compressor:
        return NoCompressor()


class TestNoEncryption(EncryptorContract):
    @pytest.fixture
    def encryptor(self) -> Encryptor:
        return NoEncryptor()


class TestFilesSource(SourceContract):
    @pytest.fixture
    def source(self, tmp_path: Path) -> Iterator[Source]:
        source = FilesSource("files", {"path": str(make_sample_tree(tmp_path / "t", big_size=10))})
        yield source
        source.close()


class TestJsonSource(SourceContract):
    @pytest.fixture
    def source(self, tmp_path: Path) -> Iterator[Source]:
        (tmp_path / "docs" / "nested").mkdir(parents=True)
        (tmp_path / "docs" / "a.json").write_text(json.dumps({"a": 1}))
        (tmp_path / "docs" / "nested" / "b.jsonl").write_text('{"b": 1}\n{"b": 2}\n')
        (tmp_path / "single.json").write_text("[1, 2, 3]")
        source = JsonSource(
            "docs", {"paths": [str(tmp_path / "docs"), str(tmp_path / "single.json")]}
        )
        yield source
        source.close()


class TestSqliteSource(SourceContract):
    @pytest.fixture
    def source(self, tmp_path: Path) -> Iterator[Source]:
        db = sqlite3.connect(tmp_path / "app.db")
        db.execute("CREATE TABLE t (x)")
        db.executemany("INSERT INTO t VALUES (?)", [(os.urandom(100),) for _ in range(100)])
        db.commit()
        db.close()
        source = SqliteSource("db", {"path": str(tmp_path / "app.db")})
        yield source
        source.close()


class TestStdinSource(SourceContract):
    @pytest.fixture
    def source(self) -> Iterator[Source]:
        stream = io.BytesIO(os.urandom(300_000))
        source = StdinSource("db.sql", {"filename": "db.sql", "stream": stream})
        yield source
        source.close()


def test_zstd_level_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="between -7 and 22"):
        ZstdCompressor(level=40)
