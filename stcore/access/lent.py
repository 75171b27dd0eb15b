"""Memory lent to native readers, and an interpreter exit that waits for it to come back.

pyarrow reads a Python file through ``PythonFile``: every buffer a read returns is wrapped in a
native ``PyBuffer`` that holds the Python object, and releasing it takes the GIL. Arrow's
parquet reader (``pre_buffer``, the default) keeps those buffers in a read cache whose last
reference is often dropped by one of Arrow's own pool threads *after* ``read_table`` has
returned. When that is the script's last statement, the interpreter is already finalizing by
then: the pool thread asks for the GIL, CPython 3.11 ends the thread with ``pthread_exit``, and
the C++ runtime aborts the process (``terminate called without an active exception``, exit
134). It happens with any Python file object handed to Arrow, not only ours (apache/arrow
#34314), and ``use_threads=False`` avoids it only because no pool thread holds the cache.

Nothing in Arrow's Python API waits for its pools to go idle, so this module makes the handover
observable instead: the files we give out, and the buffers their reads return (a
:class:`LentBuffer` is a bytearray, filled in place: no extra copy), are counted until they are
garbage, and an ``atexit`` hook, which runs before finalization starts, waits (with the GIL
released) while they are still coming back. It stops as soon as none is out, or when none has
come back for :data:`QUIET_SECONDS`: what is still out then is held by live Python objects (an
open file, a table that kept a zero-copy slice), and those are released on the main thread
during finalization, which is safe.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any, TypeVar

#: the exit hook gives up once nothing lent has come back for this long
QUIET_SECONDS = 0.05

T = TypeVar("T")

_returned = threading.Condition(threading.Lock())
#: a weak reference per lent object still alive, by the reference's id (a bytearray is not
#: hashable, so neither is a reference to one)
_out: dict[int, weakref.ref[Any]] = {}


def _came_back(ref: weakref.ref[Any]) -> None:
    with _returned:
        _out.pop(id(ref), None)
        _returned.notify_all()


def lend(obj: T) -> T:
    """Count ``obj`` as lent until it is garbage: the last reference may be native code's."""
    ref = weakref.ref(obj, _came_back)
    with _returned:
        _out[id(ref)] = ref
    return obj


class LentBuffer(bytearray):
    """A read's bytes, filled in place and counted until the last reference is dropped."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        lend(self)


def outstanding() -> int:
    """How many lent objects are alive."""
    with _returned:
        return len(_out)


def wait_for_returns(quiet: float = QUIET_SECONDS) -> int:
    """Wait while lent objects keep coming back; return how many are still out."""
    with _returned:
        while _out:
            before = len(_out)
            _returned.wait(quiet)  # releases the lock, and the GIL while it sleeps
            if len(_out) >= before:
                break  # nothing came back in a quiet period: what is out is held, not dropped
        return len(_out)


atexit.register(wait_for_returns)
