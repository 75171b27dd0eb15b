"""Parsing users' JSON documents with the cyclic garbage collector paused.

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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
#: parses running now, and whether the collector was on when the first of them began
_running = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off for the duration (reference counting still frees everything
    that is not in a cycle), then as it was before the outermost pause began."""
    global _running, _was_enabled
    with _lock:
        if _running == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0 and _was_enabled:
                gc.enable()


def loads(data: bytes | str) -> Any:
    """``json.loads(data)``, with the collector paused."""
    with collector_paused():
        return json.loads(data)


def loads_lines(data: bytes | str) -> list[Any]:
    """The records of a JSON-lines body (blank lines skipped), with the collector paused."""
    with collector_paused():
        return [json.loads(line) for line in data.splitlines() if line.strip()]
