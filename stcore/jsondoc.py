"""Parsing users' JSON documents: by msgspec where it gives ``json.loads``'s result, with the
cyclic garbage collector paused.

msgspec (a maintained, compiled library) parses the seed's 1.6 MB analytics document in half the
time ``json.loads`` takes, to the same values: integers of any size stay exact, floats are
correctly rounded. What it refuses and ``json.loads`` accepts (``NaN``, ``Infinity``, ``1e400``, a
lone surrogate, a byte-order mark, nesting deeper than it goes) goes to ``json.loads``, which
then parses it or raises its own error. So the result, and every error, are ``json.loads``'s
(``tests/test_jsondoc.py`` checks that on generated and on damaged documents). orjson, tried
first, was as fast, but it reads an integer past 64 bits as a float, and finding such integers
in a document before parsing it took half as long as the parse.

``json.loads`` of a large document allocates a container for every object and array in it, and
every 700 allocations CPython's collector looks for reference cycles among the young ones; as
the parsed containers live on they are promoted, and every few documents a full collection walks
every object in the process. None of that can find anything: a parsed JSON value is a tree, it
has no cycles. Measured on the seed's 1.6 MB analytics document (36,000 objects), a third of
``json.loads``'s time went to those collections (``benchmarks/ai_access.py --cases analytics``).

So documents are parsed with the collector paused, and it resumes as it was when the last
parse in the process ends (parses on several threads overlap). The young containers are then
looked at once by the next collection, or never, if the caller drops the document first. Only
whole documents are parsed this way: a generator that yields records as it parses them would
keep the collector paused while its caller runs.

The one thing this changes for the rest of the process: a cycle made on another thread during
a parse is collected after it rather than during it. An application that switches the
collector off itself during one of these parses finds it switched back on when the parse ends.
"""

from __future__ import annotations

import gc
import json
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

_decode = msgspec.json.Decoder().decode

_lock = threading.Lock()


class _Token:
    """One pause under way; the pause's frame holds it, so it lives exactly as long as that."""

    __slots__ = ("__weakref__",)


#: the pauses under way, weakly: a pause interrupted before it could take itself off (an
#: exception raised at the very start of its ``finally``) drops out once its frame is gone
_holders: list[weakref.ref[_Token]] = []
#: whether the collector goes back on when the last pause ends: it was on when the first began,
#: or a pause turned it off and was interrupted before it could turn it on again
_restore = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off for the duration (reference counting still frees everything
    that is not in a cycle), then as it was before the outermost pause began.

    An exception at any point (Ctrl-C in a notebook lands between two bytecodes) does not leave
    the collector off for good: the bookkeeping is undone in ``finally`` and finished even if a
    second interrupt arrives there, and a pause interrupted before even that leaves
    ``_restore`` set and drops out of ``_holders`` when its frame is released, so the next pause
    to end turns the collector back on."""
    token = _Token()
    try:
        _enter(token)
        yield
    finally:
        _leave(token)


def _drop_holders(token: _Token | None = None) -> None:
    """Drop ``token``'s pause and those whose frames are gone (call with the lock held)."""
    _holders[:] = [ref for ref in _holders if ref() not in (None, token)]


def _enter(token: _Token) -> None:
    global _restore
    with _lock:
        _drop_holders()
        if not _holders:
            _restore = _restore or gc.isenabled()
        _holders.append(weakref.ref(token))
        gc.disable()


def _leave(token: _Token) -> None:
    global _restore
    interrupted: BaseException | None = None
    while True:
        try:
            with _lock:
                _drop_holders(token)
                if not _holders and _restore:
                    gc.enable()
                    _restore = False
            break
        except BaseException as exc:  # an interrupt while tidying up: finish, then raise it
            interrupted = exc
    if interrupted is not None:
        raise interrupted


def parse(data: bytes | str) -> Any:
    """``json.loads(data)``'s result, or its error, by msgspec wherever that gives the same."""
    try:
        return _decode(data)
    except (msgspec.DecodeError, UnicodeEncodeError, RecursionError):
        pass  # NaN, 1e400, a lone surrogate, a byte-order mark, deep nesting, or not JSON at all
    return json.loads(data)  # outside the handler: its error is not chained to msgspec's


def loads(data: bytes | str) -> Any:
    """``json.loads(data)``'s result (by :func:`parse`), with the collector paused."""
    with collector_paused():
        return parse(data)


def loads_lines(data: bytes | str) -> list[Any]:
    """The records of a JSON-lines body (blank lines skipped), with the collector paused."""
    with collector_paused():
        return [parse(line) for line in data.splitlines() if line.strip()]
