"""Trees decode the same whichever parser reads them: msgspec's one-pass parse and check gives
exactly what ``json.loads`` and ``TreeNode.from_json`` give, and refuses what they refuse."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stcore.errors import CorruptObjectError
from stcore.models import TreeNode
from stcore.repo.format import _TREE_JSON, _decode_tree_checked, decode_tree, encode_tree
from tests.trees import tree_nodes

_ids = st.binary(min_size=32, max_size=32)
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
_names = st.one_of(_text, st.text(st.sampled_from(["a", "\udc80", "\udcff"]), min_size=1))

_nodes = st.one_of(
    tree_nodes(
        "file",
        names=_names,
        max_mode=0o177777,
        size=st.integers(0, 2**63 - 1),
        content=st.lists(_ids, max_size=3).map(tuple),
    ),
    tree_nodes("dir", names=_names, max_mode=0o177777, subtree=_ids),
    tree_nodes("symlink", names=_names, max_mode=0o177777, target=_names),
)

#: any JSON value, of the kinds a hostile tree puts where a field belongs
_junk: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)
    | st.floats(allow_nan=False)
    | _text
    | st.sampled_from(["file", "dir", "symlink", "0" * 64, "zz" * 32, "00 " * 21 + "0"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(_text, inner, max_size=2),
    max_leaves=4,
)
_FIELDS = ("type", "name", "mode", "mtime_ns", "size", "content", "subtree", "target")


def outcome(decode: Any, data: bytes) -> tuple[str, object]:
    try:
        return ("nodes", decode(data))
    except CorruptObjectError as exc:
        # where Python's recursion limit stops a parse depends on how deep the caller's stack is
        return ("refused", "too deep" if "recursion depth" in str(exc) else str(exc))


def same_as_checked(data: bytes) -> None:
    assert outcome(decode_tree, data) == outcome(_decode_tree_checked, data)


@settings(max_examples=300, deadline=None)
@given(st.lists(_nodes, max_size=6))
def test_a_written_tree_reads_back_as_written(nodes: list[TreeNode]) -> None:
    data = encode_tree(nodes)
    assert decode_tree(data) == nodes == _decode_tree_checked(data)
    plain = all(
        "\udc80" not in n.name + (n.target or "") and "\udcff" not in n.name + (n.target or "")
        for n in nodes
    )
    # the fast path reads every tree but those holding a name that is not UTF-8
    assert (TreeNode.list_from_tree(data) is not None) == plain


@settings(max_examples=500, deadline=None)
@given(_nodes, st.data())
def test_an_entry_with_any_field_changed_is_read_or_refused_as_before(
    node: TreeNode, data: st.DataObject
) -> None:
    entry: dict[str, Any] = node.to_json()
    for _ in range(data.draw(st.integers(1, 3))):
        field = data.draw(st.sampled_from(_FIELDS))
        if data.draw(st.booleans()) and field in entry:
            del entry[field]
        else:
            entry[field] = data.draw(_junk)
    for document in ({"nodes": [entry]}, {"nodes": [entry, entry], "extra": 1}):
        same_as_checked(json.dumps(document).encode())


@settings(max_examples=300, deadline=None)
@given(st.lists(_nodes, min_size=1, max_size=3), st.data())
def test_a_tree_damaged_anywhere_is_read_or_refused_as_before(
    nodes: list[TreeNode], data: st.DataObject
) -> None:
    text = bytearray(encode_tree(nodes))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text) - 1))
        text[at] = data.draw(st.sampled_from(list(b'{}[]",:0123456789.eE+-\\/ntfrua \x00\xff')))
    same_as_checked(bytes(text))


@pytest.mark.parametrize(
    "document",
    [
        b'{"nodes": {}}',
        b'{"nodes": [1]}',
        b"[]",
        b'{"nodes": [{"type": "dir", "name": "d", "mode": 493, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "dir", "name": "d", "mode": 493, "mtime_ns": 0, "subtree": null}]}',
        b'{"nodes": [{"type": "symlink", "name": "l", "mode": 511, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "file", "name": "f", "mode": 420, "mtime_ns": 0, "size": true}]}',
        b'{"nodes": [{"type": "file", "name": "f", "mode": 420.0, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "file", "name": "f", "mode": 1e2, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "file", "name": "f", "mode": 65536, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "file", "name": "f", "mode": 0, "mtime_ns": 9223372036854775808}]}',
        b'{"nodes": [{"type": "file", "name": "f", "mode": 0, "mtime_ns": 0, "content": null}]}',
        b'{"nodes": [{"type": "file", "name": "f", "mode": 0, "mtime_ns": 0, "content": ["0"]}]}',
        b'{"nodes": [{"type": "file", "name": 7, "mode": 0, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "file", "name": "\\ud800", "mode": 0, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "file", "type": "fifo", "name": "f", "mode": 0, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "fifo", "type": "file", "name": "f", "mode": 0, "mtime_ns": 0}]}',
        b'{"nodes": [{"type": "file", "name": "f", "mode": 0, "mtime_ns": NaN}]}',
        b'{"nodes": []} trailing',
        # keys stcore does not write: msgspec would skip them unread
        b'{"nodes": [], "x": "\xff"}',
        b'{"nodes": [], "x": ' + b"1" * 4301 + b"}",
        b'{"nodes": [{"type": "file", "name": "f", "mode": 0, "mtime_ns": 0, "siz\xffe": 10}]}',
        b'{"nodes": [{"type": "file", "name": "f", "mode": 0, "mtime_ns": 0, "\xffcontent": []}]}',
        b'{"nodes": [{"type": "file", "name": "f", "mode": 0, "mtime_ns": 0, "target": 5}]}',
        b'{"nodes": [{"type": "file", "name": "f", "mode": 0, "mtime_ns": 0, "target": '
        + b"1" * 4301
        + b"}]}",
        b'{"nodes": [{"type": "dir", "name": "d", "mode": 0, "mtime_ns": 0, "subtree": '
        + b"1" * 4301
        + b"}]}",
        b'{"nodes": [' * 3000,
        b"",
    ],
    ids=lambda d: d[:60].decode("latin-1"),
)
def test_hostile_trees_are_read_or_refused_as_before(document: bytes) -> None:
    same_as_checked(document)


def test_a_plugin_s_str_subclass_is_written_as_before() -> None:
    """msgspec refuses ``str`` subclasses (numpy's ``str_``, say): such a tree is written by
    ``json``, to the same bytes, not refused."""

    class Name(str):
        pass

    nodes = [TreeNode(name=Name("a"), kind="symlink", mode=0o777, mtime_ns=1, target=Name("b"))]
    document = {"nodes": [node.to_json() for node in nodes]}
    assert encode_tree(nodes) == _TREE_JSON.encode(document).encode()
