"""Users' JSON documents parse with the cyclic collector paused; it comes back as it was."""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stcore import jsondoc

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection the cyclic collector starts while the test runs."""
    started: list[int] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(record)
    try:
        yield started
    finally:
        gc.callbacks.remove(record)


def _large_document() -> bytes:
    return json.dumps(
        [{"id": i, "tags": ["a", "b"], "score": i / 7} for i in range(20_000)]
    ).encode()


@given(JSON)
def test_documents_parse_as_json_loads_parses_them(value: Any) -> None:
    text = json.dumps(value)
    assert jsondoc.loads(text) == jsondoc.loads(text.encode()) == json.loads(text)
    lines = "\n".join(json.dumps(value) for _ in range(3)) + "\n\n"
    assert jsondoc.loads_lines(lines) == [json.loads(text)] * 3


def test_no_collection_runs_during_a_parse(collections: list[int]) -> None:
    """The plain parse starts a collection every 700 containers; the paused one starts none,
    and its containers are looked at by at most one young collection, once it has resumed."""
    body = _large_document()
    json.loads(body)
    plain = list(collections)
    collections.clear()
    document = jsondoc.loads(body)
    assert len(plain) >= 20
    assert collections in ([], [0])
    assert len(document) == 20_000 and gc.isenabled()


def test_the_collector_comes_back_after_a_failed_parse() -> None:
    with pytest.raises(ValueError):
        jsondoc.loads(b'{"unterminated": ')
    with pytest.raises(ValueError):
        jsondoc.loads_lines(b'{"a": 1}\n{oops}\n')
    assert gc.isenabled()


def test_a_collector_the_application_switched_off_stays_off() -> None:
    gc.disable()
    try:
        assert jsondoc.loads(_large_document())
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_parses_on_threads_leave_the_collector_on() -> None:
    """The collector resumes when the last of several overlapping parses ends, not the first."""
    inside = threading.Barrier(2)
    release = threading.Event()
    states: list[bool] = []

    def parse_slowly(hold: bool) -> None:
        with jsondoc.collector_paused():
            inside.wait(timeout=10)
            if hold:
                release.wait(timeout=10)
            else:
                states.append(gc.isenabled())

    holder = threading.Thread(target=parse_slowly, args=(True,))
    holder.start()
    parse_slowly(False)  # ends while the holder is still inside its pause
    states.append(gc.isenabled())
    release.set()
    holder.join(timeout=10)
    assert states == [False, False]
    assert gc.isenabled()
