"""A lean HTTP/1.1 server for the query API.

Why not aiohttp's web server: on the benchmark machine it spends about 45 µs of CPU per request
before the handler does anything (a task, a request object, a stream writer and a response object
per request, headers built in multidicts), close to half of what a lookup may cost at 10,000
requests/s (BENCHMARKS.md, notes on the Lookup API). This server keeps aiohttp's C request
parser (llhttp: request line, headers, limits, chunked and compressed bodies) and does the rest
itself, in about 15 µs: a request is two slotted objects, a connection runs one task while it has
requests (not one per request), and an answer is formatted into one ``bytes`` and written with
one ``transport.write``.

What it does:

- keep-alive (HTTP/1.1 by default, HTTP/1.0 with ``Connection: keep-alive``); an idle connection
  is closed after ``keepalive_timeout``;
- pipelined requests, answered in order, one at a time per connection;
- ``Expect: 100-continue``; request bodies read by the handler with a size limit
  (:meth:`HttpRequest.body`); a body left unread (an early 401, a 413) is read and dropped for
  up to ``LINGER_SECONDS`` after the answer, then the connection is closed;
- ``HEAD``: the handler answers it as ``GET`` (or refuses it); the body is left out;
- a request the parser refuses is answered 400 (or the parser's status) and the connection closed;
- flow control: answers wait while the client does not read them (the transport's high-water
  mark), and reading stops while a body is read slower than it arrives;
- :meth:`HttpServer.close`: stop listening, finish the requests in progress, close.

It logs nothing about requests: paths hold ID numbers.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import orjson
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpProcessingError, HttpRequestParser, HttpVersion10, RawRequestMessage
from aiohttp.streams import StreamReader
from multidict import CIMultiDictProxy

__all__ = ["Handler", "HttpError", "HttpRequest", "HttpResponse", "HttpServer"]

log = logging.getLogger(__name__)

JSON = "application/json; charset=utf-8"
KEEPALIVE_TIMEOUT = 75.0
"""Seconds an idle connection is kept open (aiohttp's default)."""
LINGER_SECONDS = 10.0
"""Seconds an unread request body is read and dropped after the answer (aiohttp's default)."""
READ_LIMIT = 2**16
"""Bytes of a request body buffered before reading from the socket pauses."""
PIPELINE_LIMIT = 64
"""Requests waiting on one connection before reading from its socket pauses."""


class HttpError(Exception):
    """A request the server or :meth:`HttpRequest.body` refuses, with its status."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.reason = http.HTTPStatus(status).phrase
        super().__init__(self.reason)


class HttpRequest:
    """What a handler sees of a request."""

    __slots__ = ("headers", "method", "path", "payload", "query_string")

    def __init__(
        self, method: str, target: str, headers: CIMultiDictProxy[str], payload: StreamReader
    ) -> None:
        """:param target: the request target as sent: path and query, percent-encoded."""
        self.method = method
        """``GET``, ``POST``, ..."""
        path, _, query_string = target.partition("?")
        self.path = path.partition("#")[0]
        """The path, percent-encoded as sent."""
        self.query_string = query_string.partition("#")[0]
        """The query string, percent-encoded as sent ("" without one)."""
        self.headers = headers
        """The headers (case-insensitive)."""
        self.payload = payload
        """The body, as it arrives."""

    async def body(self, limit: int) -> bytes:
        """The whole body.

        :raises HttpError: 413 when it is longer than ``limit`` bytes, 400 when it is malformed
            (chunked encoding, compression) or the client went away.
        """
        chunks = []
        size = 0
        try:
            while chunk := await self.payload.readany():
                size += len(chunk)
                if size > limit:
                    raise HttpError(413)
                chunks.append(chunk)
        except HttpError:
            raise
        except Exception:  # noqa: BLE001 (the parser's and the connection's errors alike)
            raise HttpError(400) from None
        return b"".join(chunks)


class HttpResponse(NamedTuple):
    """An answer."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    """More headers; names and values ASCII, without line breaks."""


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
"""Answers a request; must not raise (errors are answers too)."""


_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %b\r\n" % (status.value, status.phrase.encode())
    for status in http.HTTPStatus
}


class _Date:
    """The ``Date`` header's value, formatted once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = email.utils.formatdate(second, usegmt=True).encode()
        return self._value


_date = _Date()


def _error(status: int) -> HttpResponse:
    """An answer for a request the server refuses itself (the API's error shape)."""
    reason = http.HTTPStatus(status).phrase
    code = reason.upper().replace(" ", "_").replace("-", "_")
    return HttpResponse(status, orjson.dumps({"error": {"code": code, "message": reason}}))


def _serialise(response: HttpResponse, *, keep_alive: bool, http10: bool, head: bool) -> bytes:
    status = _STATUS_LINES.get(response.status) or b"HTTP/1.1 %d Unknown\r\n" % response.status
    extra = b""
    for name, value in response.headers:
        line = f"{name}: {value}\r\n"
        if line.count("\n") != 1 or "\r" in line[:-2]:
            raise ValueError(f"header {name!r} holds a line break")
        extra += line.encode("latin-1")
    if not keep_alive:
        extra += b"Connection: close\r\n"
    elif http10:
        extra += b"Connection: keep-alive\r\n"
    head_bytes = b"%bContent-Type: %b\r\nContent-Length: %d\r\nDate: %b\r\n%b\r\n" % (
        status,
        response.content_type.encode("latin-1"),
        len(response.body),
        _date(),
        extra,
    )
    return head_bytes if head else head_bytes + response.body


_Queued = tuple[RawRequestMessage, StreamReader] | HttpProcessingError


class _Connection(BaseProtocol):
    """One client connection: parses requests as they arrive and answers them in order."""

    def __init__(self, server: HttpServer, loop: asyncio.AbstractEventLoop) -> None:
        parser = HttpRequestParser(self, loop, READ_LIMIT, max_line_size=8190, max_field_size=8190)
        super().__init__(loop, parser)
        self._request_parser = parser
        self._server = server
        self._queue: deque[_Queued] = deque()
        self._task: asyncio.Task[None] | None = None
        self._current: StreamReader | None = None
        self._broken = False
        self._reading_paused = False
        self.idle_since = loop.time()
        """When it last had nothing to do (for the keep-alive timeout)."""

    @property
    def idle(self) -> bool:
        """No request in progress or waiting."""
        return self._task is None and not self._queue

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._server.connections.add(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self._server.connections.discard(self)
        self._queue.clear()
        if self._current is not None:  # a handler reading the body must not wait forever
            self._current.set_exception(ConnectionResetError("the client went away"))

    def data_received(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            messages, upgraded, _ = self._request_parser.feed_data(data)
        except HttpProcessingError as exc:
            # Answered after the requests before it; then the connection is closed.
            self._broken = True
            self._queue.append(exc)
        else:
            self._queue.extend(messages)
            if upgraded:  # no protocol switch here: answer what came before, then close
                self._broken = True
        if len(self._queue) > PIPELINE_LIMIT and self.transport is not None:
            # A client that pipelines faster than it is answered must not fill the memory.
            self.transport.pause_reading()
            self._reading_paused = True
        if self._queue and self._task is None:
            self._task = self._loop.create_task(self._answer_queued())

    async def _answer_queued(self) -> None:
        try:
            while self._queue and self.transport is not None:
                if not await self._answer(self._queue.popleft()):
                    self.close()
                    return
                if self._reading_paused and len(self._queue) <= PIPELINE_LIMIT // 2:
                    self._reading_paused = False
                    if self.transport is not None and not self.transport.is_closing():
                        self.transport.resume_reading()
            if self._broken:
                self.close()
        finally:
            self._task = None
            self.idle_since = self._loop.time()

    async def _answer(self, queued: _Queued) -> bool:
        """Answer one request; whether the connection may serve another."""
        if isinstance(queued, HttpProcessingError):
            status = queued.code if 400 <= queued.code < 600 else 400
            self._write(_serialise(_error(status), keep_alive=False, http10=False, head=False))
            return False
        message, payload = queued
        http10 = message.version <= HttpVersion10
        if (
            not http10
            and not payload.is_eof()
            and message.headers.get("Expect", "").lower() == "100-continue"
        ):
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._current = payload
        try:
            request = HttpRequest(message.method, message.path, message.headers, payload)
            response = await self._server.handler(request)
        except Exception as exc:  # noqa: BLE001 (a handler must answer: a bug, answered 500)
            # Without its message: an exception's message may quote an identifier.
            log.error("the request handler raised %s", type(exc).__name__)
            response = _error(500)
        finally:
            self._current = None
        body_unread = not payload.is_eof()
        keep_alive = not (
            message.should_close or body_unread or self._broken or self._server.closing
        )
        head = message.method == "HEAD"
        self._write(_serialise(response, keep_alive=keep_alive, http10=http10, head=head))
        if self._paused:  # the client does not read: wait before answering more
            try:
                await self._drain_helper()
            except ConnectionError:
                return False
        if body_unread:
            # A body left unread: read and drop it, so that the client, still sending, is not
            # reset before it reads the answer; then close (as aiohttp's lingering close).
            await self._drop(payload)
            return False
        return keep_alive

    async def _drop(self, payload: StreamReader) -> None:
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                while await payload.readany():
                    pass
        except Exception:  # noqa: BLE001, S110 (the connection is closed next, whatever happened)
            pass

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        """Close once what is written has been sent."""
        self._broken = True
        if self.transport is not None:
            self.transport.close()


class HttpServer:
    """Serves ``handler`` over HTTP/1.1 (see the module docstring)."""

    def __init__(self, handler: Handler, *, keepalive_timeout: float = KEEPALIVE_TIMEOUT) -> None:
        """
        :param handler: answers every request.
        :param keepalive_timeout: seconds an idle connection is kept open.
        """
        self.handler = handler
        self.connections: set[_Connection] = set()
        self.closing = False
        """Connections close after the request in progress."""
        self._keepalive_timeout = keepalive_timeout
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int, *, backlog: int = 1024) -> None:
        """Listen on ``host:port`` (port 0: any free one)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self, loop),
            host,
            port,
            backlog=backlog,
            reuse_address=True,
        )
        self._sweep_later()

    def _sweep_later(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(min(5.0, self._keepalive_timeout / 2), self._sweep)

    def _sweep(self) -> None:
        """Close connections idle for longer than the keep-alive timeout."""
        too_old = asyncio.get_running_loop().time() - self._keepalive_timeout
        for connection in list(self.connections):
            if connection.idle and connection.idle_since < too_old:
                connection.close()
        self._sweep_later()

    async def close(self, grace: float = 10.0) -> None:
        """Stop listening, let the requests in progress finish (for at most ``grace`` seconds),
        close every connection."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + grace
        while self.connections:
            for connection in list(self.connections):
                if connection.idle:
                    connection.close()
            if time.monotonic() > deadline:
                for connection in list(self.connections):
                    if connection.transport is not None:
                        connection.transport.abort()
                break
            await asyncio.sleep(0.02)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
