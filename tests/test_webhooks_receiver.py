"""The webhook receiver's limits: body size on every path, Content-Length bounds, the
capped reader for frameworks, documented events with odd payloads, and refusal logs."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agora_stt_async import ConfigurationError
from agora_stt_async.notifications import (
    AgentLeft,
    BodyTooLargeError,
    Event,
    NotificationError,
    NotificationReceiver,
    UnparsedEvent,
    asgi_app,
    handle_request,
    read_body,
    sign,
)
from agora_stt_async.testing import FakeClock

pytestmark = pytest.mark.anyio

SECRET = "ncs-secret"
LOGGER = "agora_stt_async.notifications"


def left_body(notice_id: str = "n-1", **payload: object) -> bytes:
    fields: dict[str, object] = {"agent_id": "AGENT1", "status": "STOPPED", "message": "OK"}
    fields.update(payload)
    return json.dumps(
        {
            "noticeId": notice_id,
            "productId": 20,
            "eventType": 102,
            "sid": "AGENT1",
            "payload": {k: v for k, v in fields.items() if v is not None},
        }
    ).encode()


class Sink:
    """An async callback target that records events."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)


class Chunks(httpx.AsyncByteStream):
    """An async iterator of ``count`` chunks of ``size`` bytes that counts what was
    taken from it and whether it was closed (as Starlette's request.stream() is). A
    class, not an async generator: left unfinished by a 413, it needs no finalising."""

    def __init__(self, count: int, size: int = 10) -> None:
        self.count = count
        self.size = size
        self.taken = 0
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self.closed or self.taken == self.count:
            raise StopAsyncIteration
        self.taken += 1
        return b"x" * self.size

    async def aclose(self) -> None:
        self.closed = True


class Untouchable:
    """An async iterator that fails the test if anything is read from it."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        raise AssertionError("the body was read")


# --- size limits on every path -----------------------------------------------------------


async def test_receiver_handle_refuses_a_body_over_max_body() -> None:
    """handle() answers 413 for a body over max_body, even a validly signed one, and
    never hands it over: frameworks that read the body themselves get the same cap."""
    body = left_body()
    sink = Sink()
    app = asgi_app(sink, SECRET, max_body=len(body) - 1)
    status, answer = await app.handle(body, sign(body, SECRET))
    assert status == 413
    assert "larger than" in json.loads(answer)["error"]
    assert sink.events == []
    assert (await asgi_app(sink, SECRET, max_body=len(body)).handle(body, sign(body, SECRET)))[
        0
    ] == 200


async def test_receiver_handle_request_refuses_a_body_over_max_body() -> None:
    """handle_request caps the body at MAX_BODY by default and at max_body if given."""
    sink = Sink()
    big = b"x" * ((1 << 20) + 1)
    assert (await handle_request(sink, SECRET, big, sign(big, SECRET)))[0] == 413
    body = left_body()
    headers = sign(body, SECRET)
    assert (await handle_request(sink, SECRET, body, headers, max_body=10))[0] == 413
    assert sink.events == []
    with pytest.raises(ConfigurationError, match="max_body"):
        await handle_request(sink, SECRET, body, headers, max_body=0)


async def test_read_body_stops_reading_a_stream_past_the_cap() -> None:
    """A chunked body (no Content-Length) is read only up to the first chunk past the
    cap, and the stream is closed."""
    chunks = Chunks(count=1000)
    with anyio.fail_after(5), pytest.raises(BodyTooLargeError, match="larger than 35 bytes"):
        await read_body(chunks, max_body=35)
    assert chunks.taken == 4
    assert chunks.closed


async def test_read_body_refuses_a_large_content_length_without_reading() -> None:
    """A Content-Length over the cap is refused before a byte is read, however many
    digits it has (int() of 5000 digits would raise ValueError)."""
    for value in ("36", "9" * 5000, " 1000 ", b"0" * 4000 + b"36"):
        with pytest.raises(BodyTooLargeError):
            await read_body(Untouchable(), [(b"content-length", value)], max_body=35)
    with pytest.raises(BodyTooLargeError):
        await read_body(Untouchable(), {"Content-Length": "36"}, max_body=35)


@pytest.mark.parametrize("value", ["35", "0035", "", "abc", "-1", "²", "1e3"])
async def test_read_body_reads_within_the_cap(value: str) -> None:
    """A body within the cap is returned whole; a Content-Length that is no decimal
    number is left to the server (reading still stops at the cap)."""
    chunks = Chunks(count=7, size=5)
    assert await read_body(chunks, {"content-length": value}, max_body=35) == b"x" * 35
    assert not chunks.closed


async def test_read_body_refuses_a_bad_max_body() -> None:
    """max_body must be an int >= 1."""
    with pytest.raises(ConfigurationError, match="max_body"):
        await read_body(Chunks(1), max_body=True)


async def asgi_call(app: NotificationReceiver, headers: list[tuple[bytes, bytes]]) -> int:
    """One POST straight to the ASGI app with raw headers and an empty body: the status."""
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope: dict[str, object] = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    await app(scope, receive, send)
    status = sent[0]["status"]
    assert isinstance(status, int)
    return status


async def test_receiver_asgi_bounds_content_length_before_converting() -> None:
    """A Content-Length of thousands of digits is a 413, not a ValueError; one that is
    no decimal number (a superscript digit) is ignored and the body read as usual."""
    app = asgi_app(Sink(), SECRET, max_body=64)
    assert await asgi_call(app, [(b"content-length", b"9" * 5000)]) == 413
    assert await asgi_call(app, [(b"content-length", "²".encode())]) == 401


async def test_receiver_handle_stream_answers_413_without_reading_it_all() -> None:
    """handle_stream reads through read_body: 413 past max_body, having read no more
    than needed; a body within it is handled as by handle()."""
    sink = Sink()
    app = asgi_app(sink, SECRET, max_body=100)
    chunks = Chunks(count=10_000)
    with anyio.fail_after(5):
        assert (await app.handle_stream(chunks, {}))[0] == 413
    assert chunks.taken == 11
    body = left_body()
    app = asgi_app(sink, SECRET, max_body=len(body))

    async def one() -> AsyncIterator[bytes]:
        yield body

    assert await app.handle_stream(one(), sign(body, SECRET)) == (200, b"{}")
    assert len(sink.events) == 1


def starlette_app(receiver: NotificationReceiver) -> Starlette:
    """A Starlette app whose handler streams the body into the receiver (the README's)."""

    async def agora_ncs(request: Request) -> Response:
        status, body = await receiver.handle_stream(request.stream(), request.headers)
        return Response(body, status_code=status, media_type="application/json")

    return Starlette(routes=[Route("/agora/ncs", agora_ncs, methods=["POST"])])


async def test_receiver_starlette_stream_refuses_a_huge_chunked_post_early() -> None:
    """Through Starlette, an unsigned chunked POST of 300 chunks of 1 MiB is refused with
    413 after about 1 MiB is read, not buffered whole first."""
    sink = Sink()
    web = starlette_app(asgi_app(sink, SECRET))
    client_chunks = Chunks(count=300, size=1 << 20)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(web), base_url="http://sdk.test"
    ) as raw:
        request = httpx.Request("POST", "http://sdk.test/agora/ncs", stream=client_chunks)
        with anyio.fail_after(10):
            response = await raw.send(request)
    assert response.status_code == 413
    assert client_chunks.taken <= 3
    body = left_body()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(web), base_url="http://sdk.test"
    ) as raw:
        ok = await raw.post("/agora/ncs", content=body, headers=sign(body, SECRET))
    assert (ok.status_code, ok.json()) == (200, {})
    assert isinstance(sink.events[0], AgentLeft)


# --- documented events with an unexpected payload --------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [{"status": "STOPPING"}, {"status": None}, {"start_ts": "1750235971"}],
    ids=["unknown-status", "no-status", "string-start-ts"],
)
async def test_receiver_unparsed_event_is_200_and_handed_over(
    payload: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    """A signed 102 whose payload breaks the schema is answered 200 (a 400 would only
    make NCS resend it, then drop it), handed over as UnparsedEvent and logged at INFO."""
    sink = Sink()
    app = asgi_app(sink, SECRET)
    body = left_body("odd", **payload)
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert await app.handle(body, sign(body, SECRET)) == (200, b"{}")
    [event] = sink.events
    assert isinstance(event, UnparsedEvent)
    assert (event.event_type, event.sid, event.notice_id) == (102, "AGENT1", "odd")
    assert "payload." in event.problem
    assert isinstance(event.payload, dict)
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.INFO
    assert "odd" in record.getMessage()
    assert (await app.handle(body, sign(body, SECRET)))[0] == 200  # a resend: deduped
    assert len(sink.events) == 1


# --- refusals: logged without letting strangers flood the log ---------------------------------


async def test_receiver_refusals_warn_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """Each refusal is logged at DEBUG; a WARNING comes at once for the first and then at
    most once a minute, counting those in between; no secret is in any line."""
    clock = FakeClock()
    app = asgi_app(Sink(), SECRET, max_body=1000, clock=clock)
    body = left_body()
    bad: list[Callable[[], Any]] = [
        lambda: app.handle(body, sign(body, "wrong-secret")),  # 401
        lambda: app.handle(b"x" * 1001, {}),  # 413
        lambda: app.handle(b"{nope", sign(b"{nope", SECRET)),  # 400
        lambda: app.handle(body, {}),  # 401
    ]
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        statuses = [(await call())[0] for call in bad]
        clock.advance(59.0)
        statuses.append((await app.handle(body, {}))[0])
        clock.advance(1.0)
        statuses.append((await app.handle(body, {}))[0])
    assert statuses == [401, 413, 400, 401, 401, 401]
    records = [r for r in caplog.records if r.name == LOGGER]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "0 more refused" in warnings[0]
    assert "4 more refused" in warnings[1]  # 413, 400, 401 and the one at 59 s
    assert sum(r.levelno == logging.DEBUG for r in records) == 6
    assert not any(SECRET in r.getMessage() or "wrong-secret" in r.getMessage() for r in records)


def test_read_body_error_is_a_notification_error() -> None:
    """BodyTooLargeError is a NotificationError, so existing handlers still catch it."""
    assert issubclass(BodyTooLargeError, NotificationError)
