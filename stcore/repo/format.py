"""Byte layouts of repository format v1: blob frames, packs, index objects, trees, config.

``docs/format.md`` is the prose version of this module; change both together.

Every stored frame is ``encrypt(code || compressed, associated_data)`` where ``code`` is the
compressor's one-byte frame code. The associated data names what the frame is (``blob:<id>``,
``tree-list``, ``snapshot:<id>``...), so an encrypting plugin can refuse a frame moved elsewhere.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import blake3

from stcore.errors import CorruptObjectError, FormatVersionError
from stcore.interfaces import Compressor, Encryptor
from stcore.models import BLOB_TYPE_CODES, BLOB_TYPES_BY_CODE, BlobType, IndexEntry, TreeNode

FORMAT_VERSION = 1
DEFAULT_PACK_SIZE = 16 * 1024 * 1024
ID_LENGTH = 32

PACK_MAGIC = b"STPK"
#: trailer length (u32) + magic + format version (u8)
PACK_FOOTER = struct.Struct("<I4sB")
#: blob id, type code, stored length, raw length
PACK_TRAILER_ENTRY = struct.Struct("<32sBII")

INDEX_MAGIC = b"STIX"
#: blob id, type code, pack number (into the index's pack list), offset, stored length, raw length
INDEX_ENTRY = struct.Struct("<32sBIIII")


def hash_id(data: bytes | memoryview) -> bytes:
    """The id of stored bytes (packs, index objects): BLAKE3, unkeyed, 32 bytes."""
    return blake3.blake3(data).digest()


def object_key(kind: str, object_id: bytes | str) -> str:
    """Where an object lives in a backend: ``data/ab/ab12...``, ``index/ab12...``..."""
    name = object_id.hex() if isinstance(object_id, bytes) else object_id
    if kind == "data":
        return f"data/{name[:2]}/{name}"
    return f"{kind}/{name}"


@attrs.define
class Codec:
    """Compression + encryption of frames, and the blob id function of one repository."""

    compressors: Mapping[int, Compressor]
    compressor: Compressor
    encryptor: Encryptor
    id_key: bytes | None = None

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """BLAKE3 of the plaintext; keyed when encrypted, so that ids leak nothing."""
        if self.id_key is None:
            return blake3.blake3(data, max_threads=1).digest()
        return blake3.blake3(data, key=self.id_key, max_threads=1).digest()

    def seal(self, data: bytes | memoryview, associated_data: bytes) -> bytes:
        """Compress (unless that does not shrink it), frame, encrypt."""
        raw = bytes(data)
        compressed = self.compressor.compress(raw)
        if len(compressed) < len(raw):
            frame = bytes((self.compressor.code,)) + compressed
        else:
            frame = b"\x00" + raw
        return self.encryptor.encrypt(frame, associated_data)

    def unseal(self, stored: bytes, associated_data: bytes, raw_length: int | None = None) -> bytes:
        frame = self.encryptor.decrypt(stored, associated_data)
        if not frame:
            raise CorruptObjectError("empty frame")
        code = frame[0]
        compressor = self.compressors.get(code)
        if compressor is None:
            raise CorruptObjectError(
                f"frame uses compressor code {code}, which no installed plugin provides"
            )
        bound = raw_length if raw_length is not None else 1 << 31
        return compressor.decompress(frame[1:], bound)

    def seal_blob(self, blob_id: bytes, data: bytes | memoryview) -> bytes:
        return self.seal(data, b"blob:" + blob_id)

    def unseal_blob(self, blob_id: bytes, stored: bytes, raw_length: int) -> bytes:
        """Decode a blob and verify it hashes to its id."""
        data = self.unseal(stored, b"blob:" + blob_id, raw_length)
        if len(data) != raw_length or self.blob_id(data) != blob_id:
            raise CorruptObjectError(f"blob {blob_id.hex()} does not match its hash")
        return data


# --- packs -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class PackedBlob:
    blob_id: bytes
    blob_type: BlobType
    offset: int
    stored_length: int
    raw_length: int


def encode_pack_trailer(codec: Codec, blobs: Iterable[PackedBlob]) -> bytes:
    """The sealed trailer followed by the fixed-size footer."""
    items = list(blobs)
    payload = struct.pack("<I", len(items)) + b"".join(
        PACK_TRAILER_ENTRY.pack(
            b.blob_id, BLOB_TYPE_CODES[b.blob_type], b.stored_length, b.raw_length
        )
        for b in items
    )
    sealed = codec.seal(payload, b"pack-trailer")
    return sealed + PACK_FOOTER.pack(len(sealed), PACK_MAGIC, FORMAT_VERSION)


def decode_pack_footer(footer: bytes, pack_size: int) -> int:
    """Trailer length from the last bytes of a pack."""
    if len(footer) != PACK_FOOTER.size:
        raise CorruptObjectError("pack is too short to hold a footer")
    trailer_length, magic, version = PACK_FOOTER.unpack(footer)
    if magic != PACK_MAGIC:
        raise CorruptObjectError("pack footer has the wrong magic bytes")
    if version > FORMAT_VERSION:
        raise FormatVersionError(f"pack written in format {version}; upgrade stcore to read it")
    if trailer_length + PACK_FOOTER.size > pack_size:
        raise CorruptObjectError("pack trailer length exceeds the pack size")
    return int(trailer_length)


def decode_pack_trailer(codec: Codec, sealed: bytes) -> list[PackedBlob]:
    payload = codec.unseal(sealed, b"pack-trailer")
    if len(payload) < 4:
        raise CorruptObjectError("pack trailer is truncated")
    (count,) = struct.unpack_from("<I", payload)
    if len(payload) != 4 + count * PACK_TRAILER_ENTRY.size:
        raise CorruptObjectError("pack trailer length does not match its entry count")
    blobs, offset = [], 0
    for blob_id, code, stored, raw in PACK_TRAILER_ENTRY.iter_unpack(payload[4:]):
        if code not in BLOB_TYPES_BY_CODE:
            raise CorruptObjectError(f"pack trailer names unknown blob type {code}")
        blobs.append(
            PackedBlob(
                blob_id=blob_id,
                blob_type=BLOB_TYPES_BY_CODE[code],
                offset=offset,
                stored_length=stored,
                raw_length=raw,
            )
        )
        offset += stored
    return blobs


# --- index objects ---------------------------------------------------------------------------


def encode_index(codec: Codec, entries: Iterable[IndexEntry]) -> bytes:
    items = list(entries)
    packs = sorted({e.pack_id for e in items})
    numbers = {pack_id: n for n, pack_id in enumerate(packs)}
    payload = b"".join(
        [
            INDEX_MAGIC,
            bytes((FORMAT_VERSION,)),
            struct.pack("<I", len(packs)),
            *packs,
            struct.pack("<I", len(items)),
            *(
                INDEX_ENTRY.pack(
                    e.blob_id,
                    BLOB_TYPE_CODES[e.blob_type],
                    numbers[e.pack_id],
                    e.offset,
                    e.stored_length,
                    e.raw_length,
                )
                for e in items
            ),
        ]
    )
    return codec.seal(payload, b"index")


#: one row of an index object: blob id, type code, pack id, offset, stored length, raw length
IndexRow = tuple[bytes, int, bytes, int, int, int]


def decode_index_rows(codec: Codec, stored: bytes) -> list[IndexRow]:
    """The rows of an index object, checked; cheaper than ``IndexEntry`` objects in bulk."""
    payload = codec.unseal(stored, b"index")
    try:
        if payload[:4] != INDEX_MAGIC:
            raise CorruptObjectError("index object has the wrong magic bytes")
        if payload[4] > FORMAT_VERSION:
            raise FormatVersionError(
                f"index written in format {payload[4]}; upgrade stcore to read it"
            )
        (pack_count,) = struct.unpack_from("<I", payload, 5)
        position = 9
        packs = [
            payload[position + i * ID_LENGTH : position + (i + 1) * ID_LENGTH]
            for i in range(pack_count)
        ]
        position += pack_count * ID_LENGTH
        (entry_count,) = struct.unpack_from("<I", payload, position)
        position += 4
        body = payload[position:]
        if len(body) != entry_count * INDEX_ENTRY.size:
            raise CorruptObjectError("index object is truncated")
        rows = [
            (blob_id, code, packs[number], offset, stored_length, raw_length)
            for blob_id, code, number, offset, stored_length, raw_length in INDEX_ENTRY.iter_unpack(
                body
            )
        ]
    except (struct.error, IndexError) as exc:
        raise CorruptObjectError(f"index object cannot be parsed: {exc}") from exc
    unknown = {row[1] for row in rows} - set(BLOB_TYPES_BY_CODE)
    if unknown:
        raise CorruptObjectError(f"index object names unknown blob type codes {sorted(unknown)}")
    return rows


def index_entries(rows: Iterable[IndexRow]) -> list[IndexEntry]:
    """``IndexEntry`` objects for rows of :func:`decode_index_rows`."""
    return [
        IndexEntry(
            blob_id=blob_id,
            blob_type=BLOB_TYPES_BY_CODE[code],
            pack_id=pack_id,
            offset=offset,
            stored_length=stored_length,
            raw_length=raw_length,
        )
        for blob_id, code, pack_id, offset, stored_length, raw_length in rows
    ]


# --- trees -----------------------------------------------------------------------------------


def encode_tree(nodes: Iterable[TreeNode]) -> bytes:
    """Canonical JSON, so identical directories give identical bytes and dedupe."""
    document = {"nodes": [node.to_json() for node in nodes]}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def decode_tree(data: bytes) -> list[TreeNode]:
    try:
        document = json.loads(data)
        return [TreeNode.from_json(node) for node in document["nodes"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptObjectError(f"tree blob cannot be parsed: {exc}") from exc


# --- config ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RepositoryConfig:
    """The one object that says how to read everything else. Stored as plain JSON."""

    version: int = FORMAT_VERSION
    id: str
    chunker: dict[str, Any]
    compression: str = "zstd"
    compression_level: int | None = None
    encryption: str = "none"
    pack_size: int = DEFAULT_PACK_SIZE

    def to_bytes(self) -> bytes:
        return json.dumps(attrs.asdict(self), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, location: str) -> RepositoryConfig:
        try:
            document = json.loads(data)
            version = int(document["version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptObjectError(f"config of {location} cannot be parsed: {exc}") from exc
        if version > FORMAT_VERSION:
            raise FormatVersionError(
                f"repository {location} uses format version {version}; this stcore reads up to "
                f"version {FORMAT_VERSION}. Upgrade stcore (`pip install -U stcore`) to use it"
            )
        try:
            return cls(**document)
        except TypeError as exc:
            raise CorruptObjectError(f"config of {location} has unknown fields: {exc}") from exc
