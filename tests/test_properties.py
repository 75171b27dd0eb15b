"""Property-based tests: chunking, pack encoding and trees round trip for any input."""

from __future__ import annotations

import io
import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from stcore.builtins.compressors import GzipCompressor, LzmaCompressor, NoCompressor, ZstdCompressor
from stcore.builtins.encryptors import NoEncryptor
from stcore.models import TreeNode
from stcore.repo.chunker import Chunker, ChunkerParams
from stcore.repo.format import (
    PACK_FOOTER,
    Codec,
    PackedBlob,
    decode_pack_footer,
    decode_pack_trailer,
    encode_pack_trailer,
    encode_tree,
)
from tests.trees import tree_nodes

SMALL = ChunkerParams(min_size=256, avg_size=1024, max_size=4096)
COMPRESSORS = [ZstdCompressor(), GzipCompressor(), LzmaCompressor(), NoCompressor()]


def _codec(compressor_index: int) -> Codec:
    return Codec(
        compressors={c.code: c for c in COMPRESSORS},
        compressor=COMPRESSORS[compressor_index],
        encryptor=NoEncryptor(),
    )


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=40_000))
def test_chunks_concatenate_to_the_input_and_respect_bounds(data: bytes) -> None:
    chunker = Chunker(SMALL)
    chunks = list(chunker.chunks(io.BytesIO(data), len(data)))
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= SMALL.max_size for c in chunks)
    assert all(len(c) >= SMALL.min_size for c in chunks[:-1])


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**32),
    st.integers(min_value=5000, max_value=60_000),
    st.floats(min_value=0.1, max_value=0.9),
    st.binary(min_size=1, max_size=200),
)
def test_chunking_is_deterministic_and_an_edit_keeps_earlier_chunks(
    seed: int, size: int, where: float, edit: bytes
) -> None:
    data = random.Random(seed).randbytes(size)
    chunker = Chunker(SMALL)
    chunks = list(chunker.chunks(io.BytesIO(data)))
    assert chunks == list(chunker.chunk_bytes(data))
    # A cut point depends only on the (at most max_size) bytes after the chunk's start, so every
    # chunk starting at least max_size before an edit comes out the same: an edit costs only the
    # chunks near and after it.
    at = int(size * where)
    edited = list(chunker.chunk_bytes(data[:at] + edit + data[at:]))
    start = 0
    for index, chunk in enumerate(chunks):
        if start + SMALL.max_size > at:
            break
        assert edited[index] == chunk
        start += len(chunk)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=3000), st.sampled_from(["data", "tree"])), max_size=12),
    st.integers(min_value=0, max_value=len(COMPRESSORS) - 1),
)
def test_pack_round_trip(blobs: list[tuple[bytes, str]], compressor_index: int) -> None:
    codec = _codec(compressor_index)
    body, packed, offset = b"", [], 0
    for data, kind in blobs:
        blob_id = codec.blob_id(data)
        sealed = codec.seal_blob(blob_id, data)
        packed.append(
            PackedBlob(
                blob_id=blob_id,
                blob_type=kind,
                offset=offset,  # type: ignore[arg-type]
                stored_length=len(sealed),
                raw_length=len(data),
            )
        )
        body += sealed
        offset += len(sealed)
    pack = body + encode_pack_trailer(codec, packed)
    trailer_length = decode_pack_footer(pack[-PACK_FOOTER.size :], len(pack))
    start = len(pack) - PACK_FOOTER.size - trailer_length
    decoded = decode_pack_trailer(codec, pack[start : len(pack) - PACK_FOOTER.size])
    assert decoded == packed
    for (data, _), blob in zip(blobs, decoded, strict=True):
        stored = pack[blob.offset : blob.offset + blob.stored_length]
        assert codec.unseal_blob(blob.blob_id, stored, blob.raw_length) == data


#: names as the files source makes them: any text, and bytes that are not UTF-8 as lone
#: surrogates (``surrogateescape``)
_names = st.text(st.one_of(st.characters(), st.sampled_from(["\udc80", "\udcff", "\ud800"])))
_ids = st.binary(min_size=32, max_size=32)


def _nodes_of(kind: str, **fields: st.SearchStrategy[object]) -> st.SearchStrategy[TreeNode]:
    """Tree entries of one ``kind``, with any name, mode and time and the given ``fields``."""
    return tree_nodes(kind, names=_names, max_mode=0o7777, **fields)


_nodes = st.one_of(
    _nodes_of(
        "file", size=st.integers(0, 2**63 - 1), content=st.lists(_ids, max_size=4).map(tuple)
    ),
    _nodes_of("dir", subtree=st.one_of(st.none(), _ids)),
    _nodes_of("symlink", target=_names),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_nodes, max_size=8))
def test_a_tree_is_written_in_its_canonical_form(nodes: list[TreeNode]) -> None:
    """Trees are written with their keys in sorted order as built, not sorted per write: the
    bytes must stay those of sorting (the form every earlier version wrote), or an unchanged
    directory would get a new id and be stored again."""
    document = {"nodes": [node.to_json() for node in nodes]}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    assert encode_tree(nodes) == canonical


#: names of ASCII only, control characters and DEL included: the trees msgspec writes, unless a
#: DEL is in them (which ``json`` escapes and msgspec does not)
_ascii_names = st.text(st.characters(max_codepoint=0x7F))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        tree_nodes("symlink", names=_ascii_names, max_mode=0o7777, target=_ascii_names),
        max_size=6,
    )
)
def test_a_tree_of_ascii_names_is_written_as_json_writes_it(nodes: list[TreeNode]) -> None:
    document = {"nodes": [node.to_json() for node in nodes]}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    assert encode_tree(nodes) == canonical


#: trees as every version before this one wrote them (encoded by commit 45713fa): a tree's id
#: is the hash of these bytes, so an unchanged directory must keep them
_GOLDEN_NODES = [
    TreeNode(
        name="a.txt",
        kind="file",
        mode=0o644,
        mtime_ns=1_700_000_000_123_456_789,
        size=5,
        content=(bytes(range(32)),),
    ),
    TreeNode(name="d\u00e9j\u00e0 \udcff", kind="dir", mode=0o755, mtime_ns=-1, subtree=bytes(32)),
    TreeNode(name="empty dir", kind="dir", mode=0o700, mtime_ns=0, subtree=None),
    TreeNode(name="link", kind="symlink", mode=0o777, mtime_ns=2**62, target='../a "q"\n'),
    TreeNode(name="two", kind="file", mode=0, mtime_ns=1, size=0, content=()),
]
_GOLDEN_TREE = (
    b'{"nodes":[{"content":["000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"],'
    b'"mode":420,"mtime_ns":1700000000123456789,"name":"a.txt","size":5,"type":"file"},'
    b'{"mode":493,"mtime_ns":-1,"name":"d\\u00e9j\\u00e0 \\udcff","subtree":'
    b'"0000000000000000000000000000000000000000000000000000000000000000","type":"dir"},'
    b'{"mode":448,"mtime_ns":0,"name":"empty dir","subtree":null,"type":"dir"},'
    b'{"mode":511,"mtime_ns":4611686018427387904,"name":"link","target":"../a \\"q\\"\\n",'
    b'"type":"symlink"},{"content":[],"mode":0,"mtime_ns":1,"name":"two","size":0,"type":"file"}]}'
)


def test_trees_keep_the_bytes_earlier_versions_wrote() -> None:
    assert encode_tree(_GOLDEN_NODES) == _GOLDEN_TREE
