"""Users' JSON documents parse with the cyclic collector paused; it comes back as it was."""

from __future__ import annotations

import gc
import json
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stcore import jsondoc

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
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


#: a JSON number as anyone may write it: long mantissas, huge and tiny exponents, -0
NUMBER = st.from_regex(
    r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
#: the characters that change what a JSON text means, and a few that make it invalid
MUTATION = st.sampled_from(list('{}[]",:0123456789.eE+-\\/ntfrub \t\n\x00\x7f\ud800\ufeffé'))


def outcome(parse: Callable[[Any], Any], data: bytes | str) -> tuple[str, str]:
    """What a parse gives, types and all (``repr`` tells 1 from 1.0 and 0.0 from -0.0), or the
    error it raises, message and all."""
    try:
        return ("value", repr(parse(data)))
    except (ValueError, RecursionError) as exc:
        return (type(exc).__name__, str(exc))


def same_as_json_loads(data: bytes | str) -> None:
    assert outcome(jsondoc.parse, data) == outcome(json.loads, data)


@given(JSON)
def test_documents_parse_as_json_loads_parses_them(value: Any) -> None:
    text = json.dumps(value)
    assert repr(jsondoc.loads(text)) == repr(jsondoc.loads(text.encode())) == repr(json.loads(text))
    lines = "\n".join(json.dumps(value) for _ in range(3)) + "\n\n"
    assert repr(jsondoc.loads_lines(lines)) == repr([json.loads(text)] * 3)
    same_as_json_loads(json.dumps(value, ensure_ascii=False))


@given(st.lists(NUMBER, min_size=1, max_size=4))
def test_numbers_parse_to_the_same_type_and_value(numbers: list[str]) -> None:
    """Integers past 64 bits stay exact, floats are rounded as json.loads rounds them."""
    same_as_json_loads(f"[{','.join(numbers)}]")
    same_as_json_loads(f"[{','.join(numbers)}]".encode())


@given(JSON, st.data())
def test_a_damaged_document_gives_json_loads_result_or_its_error(value: Any, data: Any) -> None:
    text = json.dumps(value, ensure_ascii=data.draw(st.booleans()))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 1))
        text = text[:at] + data.draw(MUTATION) + text[at + cut :]
    same_as_json_loads(text)
    same_as_json_loads(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "data",
    [
        b"NaN",
        b"[Infinity, -Infinity]",
        b"[1e400, -1e400, 1e-400]",
        b'"\\ud800"',
        '"\ud800"',
        b"\xef\xbb\xbf{}",
        "\ufeff{}",
        b"[18446744073709551615, 18446744073709551616, -9223372036854775809]",
        b"[9223372036854775807, -9223372036854775808, 1234567890123456789012]",
        b'{"a": 1, "b": 2, "a": 3}',
        '{"é": [1, 2]}'.encode("utf-16"),
        '{"é": [1, 2]}'.encode("utf-32-le"),
        b'"\xff"',
        b"[" * 5000 + b"]" * 5000,
        b"",
        b" ",
        b"[1,]",
        b'{"a" 1}',
    ],
    ids=repr,
)
def test_what_msgspec_refuses_gets_json_loads_answer(data: bytes | str) -> None:
    same_as_json_loads(data)


def test_msgspec_parses_a_plain_document(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is taken: json.loads is not called for a plain document, and is for one
    with a NaN in it."""
    calls: list[object] = []
    real = json.loads

    def counted(data: Any) -> Any:
        calls.append(data)
        return real(data)

    monkeypatch.setattr(jsondoc.json, "loads", counted)
    assert jsondoc.loads(_large_document())[-1]["id"] == 19_999
    assert calls == []
    assert jsondoc.loads(b"[12345678901234567890]") == [12345678901234567890]
    assert calls == []
    assert repr(jsondoc.loads(b"[NaN]")) == "[nan]"
    assert len(calls) == 1


def test_no_collection_runs_during_a_parse(collections: list[int]) -> None:
    """The plain parse starts a collection every 700 containers; the paused one starts none,
    and its containers are looked at by at most one collection, once it has resumed (of
    whichever generation the counts call for: a middle one every tenth time)."""
    body = _large_document()
    json.loads(body)
    plain = list(collections)
    collections.clear()
    document = jsondoc.loads(body)
    assert len(plain) >= 20
    assert len(collections) <= 1, collections
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


def _parse_traced(at_line: Callable[[tuple[int, int]], None]) -> None:
    """One parse, calling ``at_line((line, occurrence))`` at every line event inside
    stcore/jsondoc.py; an exception it raises is raised in the parse, on that line (as Ctrl-C
    is, between two bytecodes), and tracing stops there."""
    counts: dict[int, int] = {}

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            counts[frame.f_lineno] = counts.get(frame.f_lineno, 0) + 1
            try:
                at_line((frame.f_lineno, counts[frame.f_lineno]))
            except BaseException:
                sys.settrace(None)
                raise
        return local

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == jsondoc.__file__ else None

    sys.settrace(tracer)
    try:
        jsondoc.loads(b"[1]")
    finally:
        sys.settrace(None)


def _interrupt_at(place: tuple[int, int]) -> None:
    """One parse, with KeyboardInterrupt raised at ``place`` (line, occurrence) only."""

    def interrupt(here: tuple[int, int]) -> None:
        if here == place:
            raise KeyboardInterrupt

    try:
        _parse_traced(interrupt)
    except KeyboardInterrupt:
        pass


@pytest.mark.parametrize("enabled", [True, False], ids=["collector-on", "collector-off"])
def test_an_interrupt_anywhere_in_a_parse_never_leaves_the_collector_changed(
    enabled: bool,
) -> None:
    """Every line the pause runs, interrupted in turn: after the next parse that completes,
    the collector is as the application left it and no pause is counted as running.

    Not the ``with _lock:`` lines themselves: an exception raised exactly as a ``with`` block
    is entered or left can leave its lock held, in any Python code (CPython issue 29988), so
    that is not something this module could guard against."""
    source = Path(jsondoc.__file__).read_text().splitlines()
    run: list[tuple[int, int]] = []
    _parse_traced(run.append)
    places = [(line, n) for line, n in run if not source[line - 1].strip().startswith("with ")]
    assert len(places) > 10
    (gc.enable if enabled else gc.disable)()
    try:
        for place in places:
            _interrupt_at(place)
            jsondoc.loads(b"[2]")
            assert gc.isenabled() is enabled, place
            assert jsondoc._holders == [], place
    finally:
        gc.enable()
