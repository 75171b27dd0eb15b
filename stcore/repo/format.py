"""Byte layouts of the repository format: blob frames, packs, index objects, trees, config.

``docs/format.md`` is the prose version of this module; change both together.

Every stored frame is ``encrypt(code || compressed, associated_data)`` where ``code`` is the
compressor's one-byte frame code. The associated data names what the frame is (``blob:<id>``,
``tree-list``, ``snapshot:<id>``...), so an encrypting plugin can refuse a frame moved elsewhere.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import blake3
import msgspec

from stcore.errors import CorruptObjectError, FormatVersionError
from stcore.interfaces import Compressor, Encryptor
from stcore.models import BLOB_TYPE_CODES, BLOB_TYPES_BY_CODE, BlobType, IndexEntry, TreeNode
from stcore.repo.index import BlobIndex, IndexRow, entry_row

#: the repository format (``config``'s ``version``). 2 added checksums on every object that is
#: not named by its hash (config, manifests, keys, locks) and binds an encrypted repository's
#: config to its master key; packs and index objects are laid out as in version 1.
FORMAT_VERSION = 2
#: the version byte of pack footers and index objects (their layout has not changed)
LAYOUT_VERSION = 1
DEFAULT_PACK_SIZE = 16 * 1024 * 1024
ID_LENGTH = 32

#: hard caps on what a reader decodes, whatever an object declares: a hostile object cannot make
#: a reader allocate more than this
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_SMALL_OBJECT_BYTES = 1024 * 1024
#: a blob's declared plaintext length is trusted up to this (chunks are at most a few MiB)
MAX_BLOB_BYTES = 256 * 1024 * 1024

#: checked objects (format 2): magic || BLAKE3(name || payload) || payload
CHECKED_MAGIC = b"STCK"

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


def seal_checked(name: str, payload: bytes) -> bytes:
    """``payload`` with a checksum bound to the object's key (format 2's config-less objects:
    manifests, keys, locks), so any changed bit, or the object moved to another key, is seen."""
    return CHECKED_MAGIC + blake3.blake3(name.encode() + b"\0" + payload).digest() + payload


def open_checked(name: str, stored: bytes) -> bytes:
    """The payload of a :func:`seal_checked` object; CorruptObjectError naming ``name`` if its
    checksum does not match."""
    header = len(CHECKED_MAGIC) + ID_LENGTH
    if len(stored) < header or stored[: len(CHECKED_MAGIC)] != CHECKED_MAGIC:
        raise CorruptObjectError(f"{name} has no valid checksum header")
    payload = stored[header:]
    expected = blake3.blake3(name.encode() + b"\0" + payload).digest()
    if stored[len(CHECKED_MAGIC) : header] != expected:
        raise CorruptObjectError(f"{name} does not match its checksum (it was changed)")
    return payload


def is_checked(stored: bytes) -> bool:
    return stored[: len(CHECKED_MAGIC)] == CHECKED_MAGIC


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
    #: what compresses a paged file's page runs (:class:`~stcore.interfaces.PagedCompressor`);
    #: None: ``compressor``. Its frames carry the same code, so readers need nothing else.
    page_compressor: Compressor | None = None

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """BLAKE3 of the plaintext; keyed when encrypted, so that ids leak nothing."""
        if self.id_key is None:
            return blake3.blake3(data, max_threads=1).digest()
        return blake3.blake3(data, key=self.id_key, max_threads=1).digest()

    def seal(self, data: bytes | memoryview, associated_data: bytes) -> bytes:
        """Compress (unless that does not shrink it), frame, encrypt."""
        raw = bytes(data)
        compressor = self.compressor
        return self.encryptor.encrypt(
            _frame(compressor.code, raw, compressor.compress(raw)), associated_data
        )

    def unseal(
        self,
        stored: bytes,
        associated_data: bytes,
        raw_length: int | None = None,
        *,
        limit: int = MAX_MANIFEST_BYTES,
    ) -> bytes:
        """Decrypt and decompress a frame: at most ``raw_length`` bytes (a blob's declared
        length) or, when there is none, ``limit``."""
        frame = self.encryptor.decrypt(stored, associated_data)
        if not frame:
            raise CorruptObjectError("empty frame")
        code = frame[0]
        compressor = self.compressors.get(code)
        if compressor is None:
            raise CorruptObjectError(
                f"frame uses compressor code {code}, which no installed plugin provides"
            )
        bound = min(raw_length, MAX_BLOB_BYTES) if raw_length is not None else limit
        data = compressor.decompress(frame[1:], bound)
        if len(data) > bound:  # a plugin that ignored the bound: refuse what it produced
            raise CorruptObjectError(f"frame decodes to more than its declared {bound} bytes")
        return data

    def seal_blob(self, blob_id: bytes, data: bytes | memoryview) -> bytes:
        return self.seal(data, b"blob:" + blob_id)

    def seal_blobs(
        self, blobs: Sequence[tuple[bytes, bytes]], *, paged: bool = False
    ) -> list[bytes]:
        """``[seal_blob(id, data) for id, data in blobs]``, compressed in one call when the
        compressor can (:class:`~stcore.interfaces.BatchCompressor`). ``paged``: the blobs are
        a paged file's page runs, compressed by :attr:`page_compressor` when there is one."""
        compressor = (paged and self.page_compressor) or self.compressor
        many = getattr(compressor, "compress_many", None)
        raws = [bytes(data) for _, data in blobs]
        compressed = many(raws) if many is not None else [compressor.compress(r) for r in raws]
        encrypt, code = self.encryptor.encrypt, compressor.code
        return [
            encrypt(_frame(code, raw, packed), b"blob:" + blob_id)
            for (blob_id, _), raw, packed in zip(blobs, raws, compressed, strict=True)
        ]

    def unseal_blob(self, blob_id: bytes, stored: bytes, raw_length: int) -> bytes:
        """Decode a blob and verify it hashes to its id."""
        data = self.unseal(stored, b"blob:" + blob_id, raw_length)
        if len(data) != raw_length or self.blob_id(data) != blob_id:
            raise CorruptObjectError(f"blob {blob_id.hex()} does not match its hash")
        return data


def _frame(code: int, raw: bytes, compressed: bytes) -> bytes:
    """The compressed frame, or the raw one (code 0) when compressing did not shrink it."""
    if len(compressed) < len(raw):
        return bytes((code,)) + compressed
    return b"\x00" + raw


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
    return sealed + PACK_FOOTER.pack(len(sealed), PACK_MAGIC, LAYOUT_VERSION)


def decode_pack_footer(footer: bytes, pack_size: int) -> int:
    """Trailer length from the last bytes of a pack."""
    if len(footer) != PACK_FOOTER.size:
        raise CorruptObjectError("pack is too short to hold a footer")
    trailer_length, magic, version = PACK_FOOTER.unpack(footer)
    if magic != PACK_MAGIC:
        raise CorruptObjectError("pack footer has the wrong magic bytes")
    if version != LAYOUT_VERSION:  # the config's version governs: any other byte is damage
        raise CorruptObjectError(f"pack footer names layout {version}, not {LAYOUT_VERSION}")
    if trailer_length + PACK_FOOTER.size > pack_size:
        raise CorruptObjectError("pack trailer length exceeds the pack size")
    return int(trailer_length)


def decode_pack_trailer(codec: Codec, sealed: bytes) -> list[PackedBlob]:
    payload = codec.unseal(sealed, b"pack-trailer", limit=max(MAX_MANIFEST_BYTES, 4 * len(sealed)))
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


def encode_index(codec: Codec, entries: Iterable[IndexEntry] | BlobIndex) -> bytes:
    """An index object of ``entries``: index entries, or every location a :class:`BlobIndex`
    knows (read twice, as plain fields, rather than copied into objects)."""
    rows: Callable[[], Iterable[IndexRow]]
    if isinstance(entries, BlobIndex):
        rows = entries.fields
    else:
        items = list(entries)

        def rows() -> Iterator[IndexRow]:
            return map(entry_row, items)

    count, pack_ids = 0, set()
    for row in rows():
        count += 1
        pack_ids.add(row[2])
    packs = sorted(pack_ids)
    numbers = {pack_id: n for n, pack_id in enumerate(packs)}
    pack_row = INDEX_ENTRY.pack
    payload = b"".join(
        [
            INDEX_MAGIC,
            bytes((LAYOUT_VERSION,)),
            struct.pack("<I", len(packs)),
            *packs,
            struct.pack("<I", count),
            *(
                pack_row(blob_id, kind, numbers[pack_id], offset, stored, raw)
                for blob_id, kind, pack_id, offset, stored, raw in rows()
            ),
        ]
    )
    return codec.seal(payload, b"index")


@attrs.frozen
class IndexObject:
    """A decoded, checked index object, its rows still packed: :meth:`rows` makes them one at a
    time (a list of row tuples costs about 250 bytes per blob while it is held)."""

    packs: list[bytes]
    body: bytes
    count: int

    def packed_rows(self) -> Iterator[tuple[bytes, int, int, int, int, int]]:
        """The rows with each pack as its number in :attr:`packs`."""
        return INDEX_ENTRY.iter_unpack(self.body)

    def rows(self) -> Iterator[IndexRow]:
        packs = self.packs
        for blob_id, code, number, offset, stored, raw in INDEX_ENTRY.iter_unpack(self.body):
            yield blob_id, code, packs[number], offset, stored, raw


#: an index object with no rows (one skipped as damaged)
EMPTY_INDEX = IndexObject(packs=[], body=b"", count=0)


def decode_index(codec: Codec, stored: bytes) -> IndexObject:
    """An index object, checked whole (magic, layout, lengths, type codes, pack numbers)."""
    # An index's entries (random ids) barely compress: four times its stored size is ample.
    payload = codec.unseal(stored, b"index", limit=max(MAX_MANIFEST_BYTES, 4 * len(stored)))
    try:
        if payload[:4] != INDEX_MAGIC:
            raise CorruptObjectError("index object has the wrong magic bytes")
        if payload[4] != LAYOUT_VERSION:
            raise CorruptObjectError(
                f"index object names layout version {payload[4]}, not {LAYOUT_VERSION}"
            )
        (pack_count,) = struct.unpack_from("<I", payload, 5)
        position = 9
        if position + pack_count * ID_LENGTH > len(payload):
            raise CorruptObjectError("index object lists more packs than it holds")
        packs = [
            payload[position + i * ID_LENGTH : position + (i + 1) * ID_LENGTH]
            for i in range(pack_count)
        ]
        position += pack_count * ID_LENGTH
        (entry_count,) = struct.unpack_from("<I", payload, position)
        position += 4
        body = payload[position:]
    except struct.error as exc:
        raise CorruptObjectError(f"index object cannot be parsed: {exc}") from exc
    if len(body) != entry_count * INDEX_ENTRY.size:
        raise CorruptObjectError("index object is truncated")
    codes: set[int] = set()
    top = -1
    for _, code, number, _, _, _ in INDEX_ENTRY.iter_unpack(body):
        codes.add(code)
        top = max(top, number)
    unknown = codes - set(BLOB_TYPES_BY_CODE)
    if unknown:
        raise CorruptObjectError(f"index object names unknown blob type codes {sorted(unknown)}")
    if top >= pack_count:
        raise CorruptObjectError(
            f"index object cannot be parsed: pack number {top} of {pack_count} packs"
        )
    return IndexObject(packs=packs, body=body, count=entry_count)


def decode_index_rows(codec: Codec, stored: bytes) -> list[IndexRow]:
    """The rows of an index object, checked; cheaper than ``IndexEntry`` objects in bulk."""
    return list(decode_index(codec, stored).rows())


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


#: writes trees: compact, ASCII, keys in the order given (``TreeNode.to_json`` gives them
#: sorted, which is the canonical form; sorting them again cost a tenth of encoding a tree)
_TREE_JSON = json.JSONEncoder(separators=(",", ":"))


#: the same bytes, in a third of the time, wherever msgspec writes them as ``json`` does: it
#: writes every character past ASCII as UTF-8 rather than ``\\u`` escapes, refuses a lone
#: surrogate (a name that is not UTF-8) and a subclass of ``str`` (a plugin's name type), and
#: leaves DEL unescaped; its output is checked for those, and such a tree is written by
#: ``_TREE_JSON``. (A float where an integer belongs, which no reader accepts back, is the one
#: thing written differently: ``1e16`` where ``json`` writes ``1e+16``.)
_TREE_MSGSPEC = msgspec.json.Encoder().encode


def encode_tree(nodes: Iterable[TreeNode]) -> bytes:
    """Canonical JSON (keys sorted, no spaces, ASCII), so identical directories give identical
    bytes and dedupe."""
    document = {"nodes": [node.to_json() for node in nodes]}
    try:
        data = _TREE_MSGSPEC(document)
    except (UnicodeEncodeError, TypeError):
        pass
    else:
        if data.isascii() and b"\x7f" not in data:
            return data
    return _TREE_JSON.encode(document).encode()


def decode_tree(data: bytes) -> list[TreeNode]:
    """A tree blob's entries; a tree that is not sound raises :class:`CorruptObjectError`.

    msgspec parses and checks it in one pass; what it cannot take is parsed again by
    ``json.loads`` and checked entry by entry, which also says what is wrong."""
    nodes = TreeNode.list_from_tree(data)
    if nodes is not None:
        return nodes
    return _decode_tree_checked(data)


def _decode_tree_checked(data: bytes) -> list[TreeNode]:
    try:
        document = json.loads(data)
        nodes = document["nodes"] if isinstance(document, dict) else None
        if not isinstance(nodes, list):
            raise ValueError("a tree must be an object with a list of nodes")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CorruptObjectError(f"tree blob cannot be parsed: {str(exc)[:200]}") from exc
    return [TreeNode.from_json(node) for node in nodes]


# --- config ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RepositoryConfig:
    """The one object that says how to read everything else. Stored as plain JSON.

    From format 2 on it carries ``checksum``, BLAKE3 of its other fields, checked on every read
    before anything else (so a flipped bit is not mistaken for a newer version), and, when the
    repository is encrypted, ``mac``: a MAC of its fields under a key derived from the master
    key, checked once the master key is open, so nobody without a password can switch
    encryption off or change how data is cut.
    """

    version: int = FORMAT_VERSION
    id: str
    chunker: dict[str, Any]
    compression: str = "zstd"
    compression_level: int | None = None
    encryption: str = "none"
    pack_size: int = DEFAULT_PACK_SIZE
    mac: str | None = None

    def _fields(self, *, with_mac: bool) -> dict[str, Any]:
        fields = attrs.asdict(self)
        if not with_mac or self.mac is None:
            del fields["mac"]
        return fields

    @staticmethod
    def _canonical(fields: Mapping[str, Any]) -> bytes:
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def to_bytes(self) -> bytes:
        fields = self._fields(with_mac=True)
        if self.version >= 2:
            fields["checksum"] = blake3.blake3(self._canonical(fields)).hexdigest()
        return json.dumps(fields, indent=2, sort_keys=True).encode() + b"\n"

    def compute_mac(self, master_raw: bytes) -> str:
        """The MAC that binds this config to a master key (format 2, encrypted repositories)."""
        key = blake3.blake3(master_raw, derive_key_context=CONFIG_MAC_CONTEXT).digest()
        return blake3.blake3(self._canonical(self._fields(with_mac=False)), key=key).hexdigest()

    def verify_mac(self, master_raw: bytes, location: str) -> None:
        if self.version < 2:
            return  # format 1 had no MAC
        if self.mac is None or self.mac != self.compute_mac(master_raw):
            raise CorruptObjectError(
                f"config of {location} failed authentication under the repository key: it was "
                "changed by someone without the password; refusing to use it"
            )

    @classmethod
    def from_bytes(cls, data: bytes, location: str) -> RepositoryConfig:
        if len(data) > MAX_SMALL_OBJECT_BYTES:
            raise CorruptObjectError(f"config of {location} is {len(data)} bytes: not a config")
        try:
            document = json.loads(data)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            checksum = document.pop("checksum", None)
            if checksum is not None:
                expected = blake3.blake3(cls._canonical(document)).hexdigest()
                if checksum != expected:
                    raise CorruptObjectError(
                        f"config of {location} does not match its checksum (it was changed)"
                    )
            version = document["version"]
            if not isinstance(version, int) or isinstance(version, bool):
                raise ValueError("version must be an integer")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise CorruptObjectError(
                f"config of {location} cannot be parsed: {str(exc)[:200]}"
            ) from exc
        if version > FORMAT_VERSION:
            raise FormatVersionError(
                f"repository {location} uses format version {version}; this stcore reads up to "
                f"version {FORMAT_VERSION}. Upgrade stcore (`pip install -U stcore`) to use it"
            )
        if version >= 2 and checksum is None:
            raise CorruptObjectError(f"config of {location} has lost its checksum")
        try:
            config = cls(**document)
        except TypeError as exc:
            raise CorruptObjectError(f"config of {location} has unknown fields: {exc}") from exc
        _check_config_types(config, location)
        return config


#: BLAKE3 key-derivation context of the config MAC key (never change it)
CONFIG_MAC_CONTEXT = "stcore 2026-12-02 repository config MAC"


def _check_config_types(config: RepositoryConfig, location: str) -> None:
    problems = []
    if not isinstance(config.id, str) or not config.id:
        problems.append("id")
    if not isinstance(config.chunker, dict):
        problems.append("chunker")
    if not isinstance(config.compression, str) or not isinstance(config.encryption, str):
        problems.append("compression/encryption")
    level = config.compression_level
    if level is not None and (not isinstance(level, int) or isinstance(level, bool)):
        problems.append("compression_level")
    size = config.pack_size
    if not isinstance(size, int) or isinstance(size, bool) or not 1024 <= size <= 1 << 30:
        problems.append("pack_size")
    if config.mac is not None and not isinstance(config.mac, str):
        problems.append("mac")
    if problems:
        raise CorruptObjectError(f"config of {location} has invalid {', '.join(problems)}")
