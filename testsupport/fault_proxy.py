"""A reverse proxy on loopback that forwards HTTP faithfully, except when told to misbehave.

Put it between a client and an emulator (``AWS_ENDPOINT_URL`` = :attr:`FaultProxy.endpoint_url`)
to see what the client does when the network or the service fails::

    with FaultProxy(moto.endpoint_url, rate=0.3, seed=7) as proxy:
        ...  # about 30% of requests fail in one of FAULTS; proxy.injected counts them

Everything that is not failed is forwarded as it came: method, path and query, every header
(``Host``, ``Content-MD5``, ``Range``, signatures...) except hop-by-hop ones, the body byte for
byte (chunked bodies too); the answer is streamed back with its status and headers. Faults:

``drop``
    close the connection without answering; the request never reaches the server;
``lost``
    forward the request, then close without answering: the server did it, the client cannot know;
``500`` / ``503`` / ``403``
    answer that status with an S3-style XML error (``InternalError``, ``SlowDown``,
    ``AccessDenied``) without forwarding;
``stall``
    say nothing for :attr:`FaultProxy.stall_seconds` (bounded), then close; a client whose read
    timeout is shorter gives up first;
``hold``
    say nothing until :meth:`FaultProxy.release_held` (or the hold timeout), then close without
    forwarding: a request frozen in flight, e.g. while the client is being killed.

Which requests fail: a ``decide(request)`` callback may name a fault (or ``"forward"``) for any
request; otherwise a seeded RNG fails ``rate`` of the requests ``eligible(request)`` accepts,
with a fault drawn from ``faults``. Decisions are made one at a time under a lock, so a seed gives
the same sequence of decisions.

Bounded: it listens on 127.0.0.1 only and refuses other peers, every wait has a limit, and it
stops itself after ``lifetime`` seconds even if nobody calls :meth:`FaultProxy.stop`.

:class:`CountingProxy` injects nothing and records what crosses it: every request forwarded and
the response body bytes, for tests and benchmarks that count requests and bytes.
"""

from __future__ import annotations

import http.client
import ipaddress
import random
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["FAULTS", "CountingProxy", "Event", "FaultProxy", "ProxyRequest"]

LOOPBACK = "127.0.0.1"
#: What a random fault is drawn from by default.
FAULTS = ("drop", "lost", "500", "503", "stall")
_ALL_FAULTS = frozenset({*FAULTS, "403", "hold"})
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
_ERRORS = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "SlowDown", "Please reduce your request rate."),
    "403": (403, "AccessDenied", "Access Denied"),
}
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ProxyRequest:
    """One request as the proxy received it (the body fully read)."""

    method: str
    path: str  # unquoted, without the query
    query: str
    headers: tuple[tuple[str, str], ...]
    body_length: int

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass(frozen=True)
class Event:
    """What happened to a request: ``forwarded`` (sent to the server), ``answered`` (the server
    answered ``status``), ``sent`` (the answer reached the client), or the fault's name."""

    seq: int
    time: float
    what: str
    method: str
    path: str
    status: int | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    proxy: FaultProxy

    def verify_request(self, request: Any, client_address: Any) -> bool:
        try:
            return ipaddress.ip_address(client_address[0]).is_loopback
        except ValueError:
            return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60  # an idle keep-alive connection is closed after this
    # Headers and body go out in separate writes; with Nagle's algorithm the body waits for the
    # client's delayed ACK, adding 40 ms to every response on loopback.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        self.server.proxy._serve(self)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _handle


class FaultProxy:
    """A threaded reverse proxy to ``upstream`` (``http://host:port``) on a free loopback port."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        rate: float = 0.0,
        faults: Iterable[str] = FAULTS,
        eligible: Callable[[ProxyRequest], bool] | None = None,
        decide: Callable[[ProxyRequest], str | None] | None = None,
        stall_seconds: float = 2.0,
        hold_timeout: float = 30.0,
        upstream_timeout: float = 30.0,
        lifetime: float = 300.0,
    ) -> None:
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the proxy forwards to http://host:port, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.faults = tuple(faults)
        unknown = set(self.faults) - _ALL_FAULTS
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {sorted(_ALL_FAULTS)}")
        self.rate = rate
        self.eligible = eligible
        self.decide = decide
        self.stall_seconds = stall_seconds
        self.hold_timeout = hold_timeout
        self.upstream_timeout = upstream_timeout
        self.lifetime = lifetime
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0
        self._seq = 0
        self._stopped = threading.Event()
        self._release = threading.Event()
        self._held = 0
        self.events: list[Event] = []
        #: faults injected, by name
        self.injected: Counter[str] = Counter()
        #: requests sent to the server, by (method, path)
        self.forwarded: Counter[tuple[str, str]] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self.endpoint_url = ""

    # --- life cycle -----------------------------------------------------------------------------

    def start(self) -> str:
        server = _Server((LOOPBACK, 0), _Handler)
        server.proxy = self
        self._server = server
        self.endpoint_url = f"http://{LOOPBACK}:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self.endpoint_url

    def stop(self) -> None:
        """Stop listening and end every stall and hold now; idempotent."""
        self._stopped.set()
        self._release.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- what tests look at ---------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Requests being held right now."""
        with self._lock:
            return self._held

    def release_held(self) -> None:
        """Let every held request go: each is closed without being forwarded."""
        self._release.set()

    def hold_again(self) -> None:
        """Re-arm holding after :meth:`release_held`."""
        self._release.clear()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being handled (raises TimeoutError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._inflight} requests still in flight at the proxy")
                self._idle.wait(left)

    def count(self, what: str, method: str | None = None, prefix: str = "") -> int:
        """How many ``what`` events, optionally only for ``method`` and paths under ``prefix``."""
        with self._lock:
            return sum(
                1
                for e in self.events
                if e.what == what
                and (method is None or e.method == method)
                and e.path.startswith(prefix)
            )

    # --- serving --------------------------------------------------------------------------------

    def _event(self, what: str, request: ProxyRequest, status: int | None = None) -> None:
        with self._lock:
            self._seq += 1
            self.events.append(
                Event(self._seq, time.monotonic(), what, request.method, request.path, status)
            )
            if what == "forwarded":
                self.forwarded[(request.method, request.path)] += 1
            elif what in _ALL_FAULTS:
                self.injected[what] += 1

    def _choose(self, request: ProxyRequest) -> str:
        with self._lock:
            choice = self.decide(request) if self.decide else None
            if choice is None:
                eligible = self.eligible is None or self.eligible(request)
                if eligible and self.faults and self._random.random() < self.rate:
                    choice = self._random.choice(self.faults)
            choice = choice or "forward"
            if choice != "forward" and choice not in _ALL_FAULTS:
                raise ValueError(f"decide() returned an unknown fault {choice!r}")
            return choice

    def _serve(self, handler: _Handler) -> None:
        with self._lock:
            self._inflight += 1
        try:
            self._serve_one(handler)
        except (ConnectionError, TimeoutError, OSError):
            handler.close_connection = True  # the client went away; nothing to tell it
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def _serve_one(self, handler: _Handler) -> None:
        body = _read_body(handler)
        if body is None:  # the client went away mid-body
            handler.close_connection = True
            return
        split = urllib.parse.urlsplit(handler.path)
        request = ProxyRequest(
            method=handler.command,
            path=urllib.parse.unquote(split.path),
            query=split.query,
            headers=tuple(handler.headers.items()),
            body_length=len(body),
        )
        choice = self._choose(request)
        if choice == "forward":
            self._forward(handler, request, body)
            return
        self._event(choice, request)
        if choice in _ERRORS:
            _answer_error(handler, request, *_ERRORS[choice])
            return
        if choice == "lost":
            self._forward(handler, request, body, answer=False)
        elif choice == "stall":
            self._stopped.wait(self.stall_seconds)
        elif choice == "hold":
            with self._lock:
                self._held += 1
            try:
                self._release.wait(self.hold_timeout)
            finally:
                with self._lock:
                    self._held -= 1
        _drop(handler)

    def _forward(
        self, handler: _Handler, request: ProxyRequest, body: bytes, *, answer: bool = True
    ) -> None:
        connection = http.client.HTTPConnection(
            self.upstream_host, self.upstream_port, timeout=self.upstream_timeout
        )
        try:
            connection.putrequest(
                handler.command, handler.path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in handler.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    connection.putheader(name, value)
            connection.endheaders()
            if body:
                connection.send(body)
            self._event("forwarded", request)
            try:
                response = connection.getresponse()
            except (OSError, http.client.HTTPException):
                _answer_error(handler, request, 502, "BadGateway", "the upstream did not answer")
                return
            self._event("answered", request, response.status)
            if not answer:
                response.read()
                return
            self._relay(handler, request, response)
        finally:
            connection.close()

    def _relay(
        self, handler: _Handler, request: ProxyRequest, response: http.client.HTTPResponse
    ) -> None:
        handler.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        no_body = request.method == "HEAD" or response.status in (204, 304) or response.status < 200
        chunked = not no_body and length is None
        for name, value in response.getheaders():
            if name.lower() in _HOP_BY_HOP or name.lower() == "transfer-encoding":
                continue
            handler.send_header(name, value)
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        if not no_body:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                if chunked:
                    handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                else:
                    handler.wfile.write(chunk)
            if chunked:
                handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
        self._event("sent", request, response.status)


class CountingProxy(FaultProxy):
    """A fault-free :class:`FaultProxy` that records every request it forwards, as
    ``(method, path, query)``, and counts the response body bytes sent to the client."""

    def __init__(self, upstream: str, **options: Any) -> None:
        super().__init__(upstream, rate=0.0, **options)
        self.response_bytes = 0
        self.requests: list[tuple[str, str, str]] = []
        self._count_lock = threading.Lock()

    def _forward(
        self, handler: _Handler, request: ProxyRequest, body: bytes, *, answer: bool = True
    ) -> None:
        with self._count_lock:
            self.requests.append((request.method, request.path, request.query))
        super()._forward(handler, request, body, answer=answer)

    def _relay(
        self, handler: _Handler, request: ProxyRequest, response: http.client.HTTPResponse
    ) -> None:
        read = response.read

        def counted(amount: int | None = None) -> bytes:
            chunk: bytes = read(amount)
            with self._count_lock:
                self.response_bytes += len(chunk)
            return chunk

        response.read = counted  # type: ignore[method-assign,assignment]
        super()._relay(handler, request, response)

    def counted(self, timeout: float = 10.0) -> tuple[list[tuple[str, str, str]], int]:
        """The requests forwarded and the response bytes so far, once none is in flight."""
        self.wait_idle(timeout)
        with self._count_lock:
            return list(self.requests), self.response_bytes

    def reset(self) -> None:
        """Forget what was counted, once no request is in flight."""
        self.wait_idle()
        with self._count_lock:
            self.response_bytes = 0
            self.requests.clear()


def _read_body(handler: _Handler) -> bytes | None:
    """The request body exactly as sent (a chunked body stays chunked); None if cut short."""
    rfile = handler.rfile
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        raw = bytearray()
        while True:
            line = rfile.readline(1024)
            if not line.endswith(b"\n"):
                return None
            raw += line
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    trailer = rfile.readline(8192)
                    if not trailer.endswith(b"\n"):
                        return None
                    raw += trailer
                    if trailer in (b"\r\n", b"\n"):
                        return bytes(raw)
            data = rfile.read(size + 2)
            if len(data) != size + 2:
                return None
            raw += data
    length = int(handler.headers.get("Content-Length") or 0)
    body = rfile.read(length) if length else b""
    return body if len(body) == length else None


def _answer_error(
    handler: _Handler, request: ProxyRequest, status: int, code: str, message: str
) -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{request.path}</Resource><RequestId>fault-proxy</RequestId></Error>"
    ).encode()
    handler.send_response_only(status)
    handler.send_header("Content-Type", "application/xml")
    handler.send_header("Content-Length", str(len(body) if request.method != "HEAD" else 0))
    handler.end_headers()
    if request.method != "HEAD":
        handler.wfile.write(body)
    handler.wfile.flush()


def _drop(handler: _Handler) -> None:
    """Close the client's connection without a word."""
    handler.close_connection = True
    try:
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
