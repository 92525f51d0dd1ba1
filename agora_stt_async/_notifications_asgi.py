"""Receiving NCS callbacks over HTTP, with no web framework (spec §8.1).

``handle_request`` is the whole protocol for one request, as a pure function of the raw
body and the headers to an HTTP status and a JSON body::

    size    → 413 on a body larger than max_body (before the HMAC is computed)
    verify  → 401 on a missing or wrong signature (the body is never decoded first)
    parse   → 400 on a body that is no notification; a documented event whose
              payload does not match is an UnparsedEvent: logged, and handled on
    dedupe  → 200 at once for a notice already handled (NCS resends, spec §8.1)
    feed    → the session (or callback) takes the event → 200
              it raised → the notice is forgotten and the answer is 500, so NCS's
              resend is handled, not dropped as a duplicate

``NotificationApp`` wraps it as a plain ASGI app (POST only, body size capped) to mount
in Starlette, FastAPI, Quart, Litestar... or to serve alone with uvicorn. Feeding a
session is a state-machine step and a store write, so it happens before the answer and
the answer is still quick; a slow callback of your own should hand its work off.

Imports: stdlib and ``notifications`` (with what it builds on) only. This module sits
above the session in the layers, yet needs nothing from it: a session is anything with
``async feed(event)``, and any ``async (event) -> ...`` callable works as well.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, MutableMapping
from typing import Final, final

from agora_stt_async._clock import Clock, SystemClock
from agora_stt_async._errors import ConfigurationError, NotificationError, SignatureError
from agora_stt_async._notifications_parse import (
    HeadersLike,
    check_max_body,
    content_length_exceeds,
    secret_key,
)
from agora_stt_async._secrets import Secret
from agora_stt_async.notifications import (
    MAX_BODY,
    BodyTooLargeError,
    Deduplicator,
    Event,
    EventTarget,
    UnparsedEvent,
    parse,
    read_body,
    verify,
)

logger: Final = logging.getLogger("agora_stt_async.notifications")

_OK: Final = b"{}"
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
REFUSAL_WARNING_INTERVAL_S: Final = 60.0
"""At most one WARNING about refused requests this often (seconds); the rest are DEBUG."""


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode("utf-8")


def _too_large(limit: int) -> tuple[int, bytes]:
    return 413, _error(f"body larger than {limit} bytes")


@final
class RefusalLog:
    """Logs refused requests: each at DEBUG, and at most one WARNING per interval.

    Anyone can send a bad request, so a WARNING for each would let a stranger flood the
    log. A wrong NCS secret refuses every genuine callback, though, and must not go
    unseen: the first refusal warns at once, and the next warning, an interval later at
    the earliest, says how many were refused in between.
    """

    __slots__ = ("_clock", "_interval_s", "_last_warning", "_suppressed")

    def __init__(self, clock: Clock, interval_s: float = REFUSAL_WARNING_INTERVAL_S) -> None:
        self._clock = clock
        self._interval_s = interval_s
        self._last_warning: float | None = None
        self._suppressed = 0

    def refused(self, status: int, reason: str) -> None:
        """Note one refused request and why (the reason never holds a secret or a value)."""
        logger.debug("notification refused with %d: %s", status, reason)
        now = self._clock.monotonic()
        if self._last_warning is not None and now - self._last_warning < self._interval_s:
            self._suppressed += 1
            return
        logger.warning(
            "notification refused with %d: %s (%d more refused since the last warning; "
            "each is logged at DEBUG)",
            status,
            reason,
            self._suppressed,
        )
        self._last_warning = now
        self._suppressed = 0


# handle_request has no object to keep its throttle in: one per process.
_SHARED_REFUSALS: Final = RefusalLog(SystemClock())


async def _deliver(target: EventTarget, event: Event) -> None:
    feed = getattr(target, "feed", None)
    if feed is not None:
        await feed(event)
    else:
        assert callable(target)
        await target(event)


async def handle_request(
    target: EventTarget,
    secret: str | Secret,
    raw_body: bytes | bytearray | memoryview,
    headers: HeadersLike,
    *,
    max_body: int = MAX_BODY,
    dedupe: Deduplicator | None = None,
    clock: Clock | None = None,
    refusals: RefusalLog | None = None,
) -> tuple[int, bytes]:
    """See ``agora_stt_async.notifications.handle_request``; ``refusals`` is the log
    throttle (default: the process-wide one)."""
    secret_key(secret)  # an empty secret is a configuration error, not a 401
    limit = check_max_body(max_body)
    refusals = refusals or _SHARED_REFUSALS
    if len(raw_body) > limit:
        refusals.refused(413, f"body larger than {limit} bytes")
        return _too_large(limit)
    try:
        verify(raw_body, headers, secret)
    except SignatureError as error:
        refusals.refused(401, str(error))
        return 401, _error("invalid signature")
    try:
        event = parse(bytes(raw_body))
    except NotificationError as error:
        # The message names the field and the JSON type found, never a value.
        refusals.refused(400, str(error))
        return 400, _error(str(error))
    if isinstance(event, UnparsedEvent):
        # Signed by Agora, so not a stranger's noise: INFO, once per notice.
        logger.info(
            "notification %s (eventType %d) handed over as UnparsedEvent: %s",
            event.notice_id,
            event.event_type,
            event.problem,
        )
    if dedupe is not None:
        now = (clock or SystemClock()).monotonic()
        if dedupe.seen_event(event, now):
            return 200, _OK
    try:
        await _deliver(target, event)
    except Exception:
        # Answer non-200 so that NCS resends it (spec §8.1), and forget the notice so
        # that the resend is handled rather than dropped as a repeat.
        if dedupe is not None:
            dedupe.forget_event(event)
        logger.exception("notification %s could not be handled", event.notice_id)
        return 500, _error("the notification could not be handled; resend it")
    except BaseException:
        # Cancelled mid-feed: not handled, so a resend must not count as a repeat.
        if dedupe is not None:
            dedupe.forget_event(event)
        raise
    return 200, _OK


Receive = Callable[[], Awaitable[Mapping[str, object]]]
Send = Callable[[dict[str, object]], Awaitable[None]]


@final
class NotificationApp:
    """See ``agora_stt_async.notifications.asgi_app``."""

    __slots__ = ("_clock", "_max_body", "_refusals", "_secret", "_target", "dedupe")

    def __init__(
        self,
        target: EventTarget,
        secret: str | Secret,
        *,
        max_body: int = MAX_BODY,
        dedupe: Deduplicator | None = None,
        clock: Clock | None = None,
    ) -> None:
        secret_key(secret)
        check_max_body(max_body)
        if getattr(target, "feed", None) is None and not callable(target):
            raise ConfigurationError(
                "the target must be a Session (anything with async feed(event)) or an "
                "async callable taking the event"
            )
        self._target = target
        self._secret = secret
        self._max_body = max_body
        self._clock = clock or SystemClock()
        self._refusals = RefusalLog(self._clock)
        self.dedupe = dedupe if dedupe is not None else Deduplicator()

    def __repr__(self) -> str:
        return f"NotificationApp(target={self._target!r}, max_body={self._max_body})"

    async def handle(
        self, raw_body: bytes | bytearray | memoryview, headers: HeadersLike
    ) -> tuple[int, bytes]:
        """``handle_request`` with this app's target, secret, ``max_body``, deduplicator
        and clock."""
        return await handle_request(
            self._target,
            self._secret,
            raw_body,
            headers,
            max_body=self._max_body,
            dedupe=self.dedupe,
            clock=self._clock,
            refusals=self._refusals,
        )

    async def handle_stream(
        self, chunks: AsyncIterable[bytes | bytearray | memoryview], headers: HeadersLike
    ) -> tuple[int, bytes]:
        """Read the body with ``read_body`` (413 past ``max_body``), then ``handle`` it."""
        try:
            body = await read_body(chunks, headers, max_body=self._max_body)
        except BodyTooLargeError as error:
            self._refusals.refused(413, str(error))
            return _too_large(self._max_body)
        return await self.handle(body, headers)

    async def __call__(
        self, scope: MutableMapping[str, object], receive: Receive, send: Send
    ) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        if scope.get("method") != "POST":
            await _respond(send, 405, _error("only POST"), [(b"allow", b"POST")])
            return
        headers = scope.get("headers")
        pairs: list[tuple[bytes, bytes]] = []
        if isinstance(headers, (list, tuple)):
            pairs = list(headers)
        try:
            if content_length_exceeds(pairs, self._max_body):
                raise BodyTooLargeError("Content-Length is larger than max_body")
            body = await _read_body(receive, self._max_body)
        except BodyTooLargeError as error:
            self._refusals.refused(413, str(error))
            await _respond(send, *_too_large(self._max_body))
            return
        if body is None:
            return  # the client went away: nobody to answer
        status, answer = await self.handle(body, pairs)
        await _respond(send, status, answer)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, ``None`` if the client left; ``BodyTooLargeError`` past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if isinstance(chunk, (bytes, bytearray)) and chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLargeError(f"the request body is larger than {limit} bytes")
            chunks.append(bytes(chunk))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(extra or ())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    # Served alone (uvicorn module:app), the app has nothing to start or stop.
    while True:
        message = await receive()
        if message.get("type") == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message.get("type") == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
