"""``python testsupport/moto_atomic.py -H HOST -p PORT``: moto's S3 server, with its conditional
writes made atomic as S3's are.

S3 documents that of several writes to one key with ``If-None-Match: *``, exactly one succeeds.
moto checks the condition and then stores the object in two steps, on a thread per request, so
two concurrent writers can both pass the check: the backend contract's "exactly one wins" then
failed now and then on moto's race, not on ours (12 writers to each of 100 keys, the server's
switch interval at 10 us: two winners for 4 keys; with this module, one for every key). Here
every object write (a PUT, and the POST that completes a multipart upload, which checks the same
header) runs under one lock; reads, listings and everything else stay concurrent.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.s3.responses import S3Response
from moto.server import main

_WRITES = threading.Lock()


def _atomic(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _WRITES:
            return method(*args, **kwargs)

    return locked


S3Response.put_object = _atomic(S3Response.put_object)  # type: ignore[method-assign]
S3Response._key_response_post = _atomic(S3Response._key_response_post)  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
