"""The API's HTTP/1.1 server (api/http.py), spoken to over a raw loopback socket: keep-alive,
pipelining, HEAD, HTTP/1.0, malformed requests, request bodies and their limit, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

import api.http
from api.http import HttpError, HttpRequest, HttpResponse, HttpServer

LIMIT = 1000
"""Body limit of the test handler."""


async def _handler(request: HttpRequest) -> HttpResponse:
    """Echoes what it was asked; ``/slow`` answers after a moment; ``/body`` reads the body."""
    if request.path == "/slow":
        await asyncio.sleep(0.05)
    body = b""
    if request.path == "/body":
        try:
            body = await request.body(LIMIT)
        except HttpError as exc:
            return HttpResponse(exc.status, b"{}")
    answer = {
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "body": body.decode(),
    }
    return HttpResponse(200, orjson.dumps(answer), headers=(("X-Test", "yes"),))


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    served = HttpServer(_handler, keepalive_timeout=0.3)
    await served.start("127.0.0.1", 0)
    yield served
    await served.close(grace=1.0)


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of the next response."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {}
    for line in lines:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    length = int(headers.get("content-length", "0"))
    return int(status_line.split()[1]), headers, await reader.readexactly(length)


async def _open(server: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def test_requests_on_one_connection_are_answered_in_order(server: HttpServer) -> None:
    """Keep-alive and pipelining: a slow request answered before the quick one sent after it."""
    reader, writer = await _open(server)
    writer.write(b"GET /slow?a=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await _response(reader)
    second = await _response(reader)
    assert first[0] == second[0] == 200
    assert orjson.loads(first[2]) == {"method": "GET", "path": "/slow", "query": "a=1", "body": ""}
    assert orjson.loads(second[2])["path"] == "/quick"
    assert first[1]["content-type"] == "application/json; charset=utf-8"
    assert first[1]["x-test"] == "yes" and "date" in first[1] and "connection" not in first[1]
    writer.write(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
    assert orjson.loads((await _response(reader))[2])["path"] == "/again"
    writer.close()


async def test_a_long_pipeline_is_read_in_steps_and_answered_whole(
    server: HttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More pipelined requests than a connection queues: reading pauses, then resumes; every
    request is answered, in order."""
    monkeypatch.setattr(api.http, "PIPELINE_LIMIT", 2)
    count = 12
    reader, writer = await _open(server)
    writer.write(b"".join(b"GET /slow?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(count)))
    await asyncio.sleep(0.02)
    assert any(connection._reading_paused for connection in server.connections)
    queries = [orjson.loads((await _response(reader))[2])["query"] for _ in range(count)]
    assert queries == [f"n={n}" for n in range(count)]
    assert not any(connection._reading_paused for connection in server.connections)
    writer.write(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
    assert orjson.loads((await _response(reader))[2])["path"] == "/after"
    writer.close()


async def test_head_answers_headers_only(server: HttpServer) -> None:
    """The length of the body a GET would get, and no body."""
    reader, writer = await _open(server)
    writer.write(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    get = await _response(reader)  # would fail to parse if HEAD had sent a body
    answer = orjson.dumps({"method": "HEAD", "path": "/x", "query": "", "body": ""})
    assert b"Content-Length: %d\r\n" % len(answer) in head
    assert orjson.loads(get[2])["method"] == "GET"
    writer.close()


@pytest.mark.parametrize(
    ("connection", "closes"),
    [
        (b"", True),  # HTTP/1.0 closes unless asked otherwise
        (b"Connection: keep-alive\r\n", False),
    ],
)
async def test_http_1_0_keeps_the_connection_only_when_asked(
    server: HttpServer, connection: bytes, closes: bool
) -> None:
    """Connection: close (and the connection closed), or Connection: keep-alive."""
    reader, writer = await _open(server)
    writer.write(b"GET /x HTTP/1.0\r\n%b\r\n" % connection)
    status, headers, _ = await _response(reader)
    assert status == 200
    assert headers["connection"] == ("close" if closes else "keep-alive")
    if closes:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_a_malformed_request_is_400_and_closes_the_connection(server: HttpServer) -> None:
    """The reason in the API's error shape; nothing after it is read."""
    reader, writer = await _open(server)
    writer.write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await _response(reader))[0] == 200
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    status, headers, body = await _response(reader)
    assert status == 400 and headers["connection"] == "close"
    assert orjson.loads(body)["error"]["code"] == "BAD_REQUEST"
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_bodies_are_read_whole_with_expect_continue_and_chunks(server: HttpServer) -> None:
    """Content-Length after a 100 Continue, then a chunked body on the same connection."""
    reader, writer = await _open(server)
    writer.write(
        b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == (
        b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    writer.write(b"hello")
    assert orjson.loads((await _response(reader))[2])["body"] == "hello"
    writer.write(
        b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert orjson.loads((await _response(reader))[2])["body"] == "abcde"
    writer.close()


async def test_a_body_over_the_limit_is_413_and_the_rest_is_dropped(server: HttpServer) -> None:
    """The client, still sending, reads the 413; then the connection is closed."""
    reader, writer = await _open(server)
    writer.write(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    writer.write(b"x" * 50_000)
    status, headers, _ = await _response(reader)
    assert status == 413 and headers["connection"] == "close"
    writer.write(b"x" * 50_000)  # the rest is read and dropped, not answered with a reset
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_idle_connections_are_closed_after_the_keepalive_timeout(
    server: HttpServer,
) -> None:
    """The fixture's timeout is 0.3 s."""
    reader, writer = await _open(server)
    writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await _response(reader))[0] == 200
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_close_finishes_the_request_in_progress() -> None:
    """Shutdown: the slow request is answered (Connection: close), then the socket closes."""
    served = HttpServer(_handler)
    await served.start("127.0.0.1", 0)
    reader, writer = await _open(served)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(served.close(grace=5.0))
    status, headers, _ = await _response(reader)
    assert status == 200 and headers["connection"] == "close"
    await asyncio.wait_for(closing, 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert not served.connections
    writer.close()
