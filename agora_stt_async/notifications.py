"""Receiving Agora's notification callbacks (NCS webhooks, spec §8).

A receiver does three things, in this order, for each ``POST`` it gets::

    verify(raw_body, request_headers, secret)   # SignatureError: answer 401, drop it
    event = parse(raw_body)                     # NotificationError: answer 400
    if not dedupe.seen_event(event, clock.monotonic()):
        ...                                     # act on the event; answer 200 quickly

Over HTTP, ``asgi_app(session, secret)`` (an ASGI app) and ``handle_request`` (for
any framework) do all three, answer with the right status, and hand each new event to
a ``Session`` (``feed``) or to a callback of yours. ``read_body`` reads a framework's
body stream without letting an oversized one fill memory first.

``verify`` works on the raw bytes as received, before any JSON decoding (spec §8.1).
``parse`` returns one typed event per documented event type, ``UnparsedEvent`` for a
documented one whose payload does not match, and ``UnknownEvent`` for any other, so a
new event type from Agora never breaks a receiver. Notifications may be lost, repeated
and out of order (spec §8.1): a ``Deduplicator`` drops repeats, and the agent's state
should still be confirmed with ``query`` when it matters.

Timestamps are kept exactly as sent (``start_ts``, ``sendts``...) next to a normalised
Unix-seconds property (``started_at``, ``sent_at``...): see ``to_unix_seconds`` for the
seconds-versus-milliseconds rule.

The event classes live in ``_notifications_events`` and the wire in
``_notifications_parse``; this module is where users import them from.

Imports: stdlib, attrs, the SDK's value layers (L0/L1) and the two private modules
named above only; no I/O.
"""

from __future__ import annotations

import importlib
import math
from collections import OrderedDict
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final, Protocol, TypeAlias, final

import attrs

from agora_stt_async._clock import Clock
from agora_stt_async._errors import (
    BodyTooLargeError,
    ConfigurationError,
    NotificationError,
    SignatureError,
)
from agora_stt_async._notifications_events import (
    KINDS,
    AgentJoined,
    AgentLeft,
    Event,
    LegacyBackedUp,
    LegacyEvent,
    LegacyPlaylistReady,
    LegacyUploaded,
    LegacyUploaderStarted,
    LegacyUploadingProgress,
    UnknownEvent,
    UnparsedEvent,
    UploadedFile,
)
from agora_stt_async._notifications_parse import (
    MS_THRESHOLD,
    ExitReason,
    HeadersLike,
    body_bytes,
    check_max_body,
    content_length_exceeds,
    digest_matches,
    header_value,
    hex_digest,
    read_event,
    redundancy_key,
    secret_key,
    to_unix_seconds,
)
from agora_stt_async._secrets import Secret

__all__ = [
    "MAX_BODY",
    "MS_THRESHOLD",
    "SIGNATURE_HEADER",
    "SIGNATURE_V2_HEADER",
    "AgentJoined",
    "AgentLeft",
    "BodyTooLargeError",
    "Deduplicator",
    "Event",
    "EventSink",
    "EventTarget",
    "ExitReason",
    "LegacyBackedUp",
    "LegacyEvent",
    "LegacyPlaylistReady",
    "LegacyUploaded",
    "LegacyUploaderStarted",
    "LegacyUploadingProgress",
    "NotificationError",
    "NotificationReceiver",
    "SignatureError",
    "UnknownEvent",
    "UnparsedEvent",
    "UploadedFile",
    "asgi_app",
    "handle_request",
    "parse",
    "read_body",
    "sign",
    "to_unix_seconds",
    "verify",
]

SIGNATURE_HEADER: Final = "Agora-Signature"
"""HMAC-SHA1 of the raw body, lower-case hex (spec §8.1)."""
SIGNATURE_V2_HEADER: Final = "Agora-Signature-V2"
"""HMAC-SHA256 of the raw body, lower-case hex (spec §8.1); preferred by ``verify``."""


# Re-exported names report this module, where users find them (and pickle finds them).
def _claim_reexports() -> None:
    for name in __all__:
        public = globals().get(name)  # None for what this module defines below
        if getattr(public, "__module__", "").startswith("agora_stt_async._notifications"):
            public.__module__ = __name__


_claim_reexports()


def parse(raw_body: bytes | str, *, strict: bool = False) -> Event:
    """The typed event of a notification body (UTF-8 JSON).

    Extra fields are ignored (they stay in ``raw``). An unknown ``eventType``, or a
    documented one sent by another product (``productId`` neither absent nor 20),
    gives an ``UnknownEvent``. A documented STT event whose payload lacks a field it
    cannot do without (the agent or task ID, 102's ``status``...) or has a documented
    field of the wrong type gives an ``UnparsedEvent`` naming the field, or, with
    ``strict``, raises. Other documented fields are ``None`` when absent. Call
    ``verify`` first.

    Raises:
        NotificationError: not UTF-8, not JSON, not an object, or an envelope field
            (``noticeId``, ``eventType``, ``productId``, ``notifyMs``, ``sid``) missing
            or of the wrong type; with ``strict``, also a payload that does not match.
            The message names the field, never its value. Any other exception is a bug.
    """
    kind, envelope, fields = read_event(raw_body, strict=strict)
    return KINDS[kind](**envelope, **fields)


# --- signatures ----------------------------------------------------------------------


def sign(raw_body: bytes | bytearray | memoryview, secret: str | Secret) -> dict[str, str]:
    """Both signature headers for ``raw_body``, as Agora sends them (lower-case hex).

    Raises:
        ConfigurationError: ``secret`` is empty.
    """
    key, body = secret_key(secret), body_bytes(raw_body)
    return {
        SIGNATURE_HEADER: hex_digest(key, body, "sha1"),
        SIGNATURE_V2_HEADER: hex_digest(key, body, "sha256"),
    }


def verify(
    raw_body: bytes | bytearray | memoryview, headers: HeadersLike, secret: str | Secret
) -> None:
    """Check a notification's signature over the raw body; return if it is Agora's.

    ``Agora-Signature-V2`` (HMAC-SHA256) is checked when present and then decides
    alone: a wrong V2 fails even if ``Agora-Signature`` (HMAC-SHA1) would match, since
    a wrong V2 beside a right V1 is a sign of tampering. Without V2, V1 is checked.
    Header names are case-insensitive, hex digits of either case are accepted, the
    comparison is constant-time, and a header with an empty value counts as absent.

    Args:
        raw_body: the request body exactly as received.
        headers: a mapping (``dict``, Starlette ``Headers``, ``httpx.Headers``) or
            ``(name, value)`` pairs, ``str`` or ``bytes`` (ASGI ``scope["headers"]``).
        secret: the NCS secret Agora generated.

    Raises:
        SignatureError: no signature header, or the one checked does not match; the
            message names the header, never the secret or the expected digest.
        ConfigurationError: ``secret`` is empty.
        TypeError: ``raw_body`` is a ``str``: it was decoded already, and signatures
            cover the exact bytes.
    """
    key, body = secret_key(secret), body_bytes(raw_body)
    v2 = header_value(headers, SIGNATURE_V2_HEADER)
    if v2 is not None:
        if not digest_matches(v2, key, body, "sha256"):
            raise SignatureError(
                f"{SIGNATURE_V2_HEADER} does not match the body (HMAC-SHA256); check the "
                "NCS secret and that the body is verified as received, before decoding"
            )
        return
    v1 = header_value(headers, SIGNATURE_HEADER)
    if v1 is None:
        raise SignatureError(
            f"no {SIGNATURE_V2_HEADER} or {SIGNATURE_HEADER} header; is this request "
            "from Agora NCS?"
        )
    if not digest_matches(v1, key, body, "sha1"):
        raise SignatureError(
            f"{SIGNATURE_HEADER} does not match the body (HMAC-SHA1); check the NCS "
            "secret and that the body is verified as received, before decoding"
        )


# --- deduplication -------------------------------------------------------------------


_NOT_PAYLOAD: Final = frozenset({"notice_id", "notify_ms", "raw"})


def _redundancy_key(event: Event) -> str:
    # With "redundant notifications" on, each event is sent twice (spec §8.1) and Agora
    # says to dedupe on sid. For v7, sid is the agent ID, shared by its 101 and its 102,
    # so sid alone would drop the 102: the key is sid + eventType + the payload, which
    # both copies share and two different events do not.
    payload = event.raw.get("payload")
    if not event.raw:  # built in code, not parsed: the typed fields stand in
        payload = attrs.asdict(event, filter=lambda a, _: a.name not in _NOT_PAYLOAD)
    return redundancy_key(event.sid, event.event_type, payload)


@final
class Deduplicator:
    """Remembers recent notifications so that repeats are handled once.

    NCS may resend a notification (same ``noticeId``, spec §8.1). With Agora's
    "redundant notifications" option, every event also arrives as two notifications;
    pass ``redundant=True`` and use ``seen_event``: it then also drops an event whose
    ``sid``, ``eventType`` and payload match one already seen.

    Memory is bounded: at most ``max_entries`` keys (two per event in redundant mode),
    least recently seen dropped first, and a key is forgotten ``ttl_s`` seconds after
    it was last seen. Every call is O(1) amortised. Time is passed in: use a monotonic
    clock (``Clock.monotonic()``). Not thread-safe; one event loop needs no lock.

    Raises:
        ConfigurationError: ``max_entries`` < 1 or ``ttl_s`` not a positive number.
    """

    __slots__ = ("_entries", "_max_entries", "_redundant", "_ttl_s")

    def __init__(
        self, max_entries: int = 100_000, ttl_s: float = 3600.0, *, redundant: bool = False
    ) -> None:
        count: object = max_entries
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigurationError(f"max_entries must be an int >= 1, got {max_entries!r}")
        ttl: object = ttl_s
        if not (isinstance(ttl, (int, float)) and math.isfinite(ttl) and ttl > 0):
            raise ConfigurationError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")
        self._max_entries = max_entries
        self._ttl_s = float(ttl_s)
        self._redundant = redundant
        self._entries: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"Deduplicator(max_entries={self._max_entries}, ttl_s={self._ttl_s}, "
            f"redundant={self._redundant}, entries={len(self._entries)})"
        )

    def _keys(self, event: Event) -> tuple[str, ...]:
        notice = "n:" + event.notice_id
        return (notice, "r:" + _redundancy_key(event)) if self._redundant else (notice,)

    def _check(self, keys: tuple[str, ...], now: float) -> bool:
        entries = self._entries
        horizon = now - self._ttl_s
        # Oldest first: stop at the first live entry, so each expiry is paid once.
        while entries:
            oldest = next(iter(entries))
            if entries[oldest] > horizon:
                break
            del entries[oldest]
        hit = False
        for key in keys:
            if key in entries:
                hit = True
                entries.move_to_end(key)
            entries[key] = now
        while len(entries) > self._max_entries:
            entries.popitem(last=False)
        return hit

    def seen(self, notice_id: str, now: float) -> bool:
        """``True`` if ``notice_id`` was seen within ``ttl_s``; else remember it, ``False``."""
        return self._check(("n:" + notice_id,), now)

    def seen_event(self, event: Event, now: float) -> bool:
        """Like ``seen`` for ``event.notice_id``; in redundant mode also ``True`` for a
        redundant copy of an event already seen. Remembers the event either way.
        """
        return self._check(self._keys(event), now)

    def forget_event(self, event: Event) -> None:
        """Forget ``event`` so that its resend is handled: call it when handling failed
        and the receiver answers non-200 to get the notification again.
        """
        for key in self._keys(event):
            self._entries.pop(key, None)


# --- receiving over HTTP -------------------------------------------------------------

MAX_BODY: Final = 1 << 20
"""The largest callback body the receivers read (1 MiB); NCS bodies are a few hundred bytes."""


async def read_body(
    chunks: AsyncIterable[bytes | bytearray | memoryview],
    headers: HeadersLike = (),
    *,
    max_body: int = MAX_BODY,
) -> bytes:
    """The whole request body from a stream of chunks, refusing more than ``max_body``.

    For frameworks that hand over the body as a stream (Starlette and FastAPI
    ``request.stream()``, aiohttp ``request.content.iter_chunked(65536)``...). Reading
    the body whole first (``await request.body()``) lets anyone, signed or not, fill
    memory with one large request, since the signature can only be checked once the
    body is in. Here a ``Content-Length`` over the limit is refused before anything is
    read, and reading stops at the first chunk that goes past it (the stream is then
    closed, if it has ``aclose()``). ``NotificationReceiver.handle_stream`` does this
    and answers 413 for you.

    Args:
        chunks: the body, as an async iterable of bytes.
        headers: the request's headers, for ``Content-Length`` (optional).
        max_body: the most bytes accepted.

    Raises:
        BodyTooLargeError: more than ``max_body`` bytes announced or sent; answer 413.
        ConfigurationError: ``max_body`` is not an int >= 1.
    """
    limit = check_max_body(max_body)
    too_large = BodyTooLargeError(f"the request body is larger than {limit} bytes")
    if content_length_exceeds(headers, limit):
        raise too_large
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in chunks:
            part = bytes(chunk)  # len() of a memoryview counts items, not bytes
            size += len(part)
            if size > limit:
                raise too_large
            parts.append(part)
    except BodyTooLargeError:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()  # stop the producer now, not when it is garbage-collected
        raise
    return b"".join(parts)


class EventSink(Protocol):
    """What takes verified events: a ``Session`` (its ``feed``) is one."""

    async def feed(self, event: Event) -> object:
        """Act on ``event``; raising makes the receiver answer 500 (NCS resends)."""
        ...


EventTarget: TypeAlias = "EventSink | Callable[[Event], Awaitable[object]]"
"""A ``Session`` (or any ``EventSink``), or an ``async (event) -> ...`` callable."""


class NotificationReceiver(Protocol):
    """What ``asgi_app`` returns: an ASGI app, and ``handle_stream`` and ``handle`` for
    other frameworks."""

    dedupe: Deduplicator

    async def handle_stream(
        self, chunks: AsyncIterable[bytes | bytearray | memoryview], headers: HeadersLike
    ) -> tuple[int, bytes]:
        """Read the body with ``read_body`` (413 past ``max_body``), then ``handle`` it."""
        ...

    async def handle(
        self, raw_body: bytes | bytearray | memoryview, headers: HeadersLike
    ) -> tuple[int, bytes]:
        """``handle_request`` with the app's target, secret, ``max_body`` (413 past it),
        deduplicator and clock."""
        ...

    async def __call__(
        self,
        scope: MutableMapping[str, object],
        receive: Callable[[], Awaitable[Mapping[str, object]]],
        send: Callable[[dict[str, object]], Awaitable[None]],
    ) -> None:
        """Serve one ASGI connection (``http``; ``lifespan`` is answered)."""
        ...


def _glue() -> Any:
    # The HTTP glue (_notifications_asgi) sits in a higher layer than this module, which
    # the session imports (tests/test_layers.py): it is loaded on first use instead.
    return importlib.import_module("agora_stt_async._notifications_asgi")


def asgi_app(
    target: EventTarget,
    secret: str | Secret,
    *,
    max_body: int = MAX_BODY,
    dedupe: Deduplicator | None = None,
    clock: Clock | None = None,
) -> NotificationReceiver:
    """An ASGI app that receives Agora's callbacks and hands each event to ``target``.

    For each ``POST`` (any path: mount it where you told Agora to call): refuse a body
    larger than ``max_body`` (413, before reading it all), verify the signature over
    the raw body (401 if wrong), parse it (400 if it is no notification; a documented
    event with an unexpected payload is an ``UnparsedEvent``, answered 200 and logged
    at INFO), drop a notice already handled (200 at once), then
    ``await target.feed(event)`` (or ``await target(event)``) and answer 200 ``{}``.
    If that raises, the notice is forgotten and the answer is 500, so NCS's resend is
    handled (spec §8.1). Other methods get 405. No web framework is needed; the app
    also answers ``lifespan``.

    Refused requests (401, 400, 413) are logged at DEBUG, and at WARNING at most once a
    minute with the number refused since: unauthenticated clients cannot flood the log,
    and a wrong secret still shows.

    Events are hints: a ``Session`` never moves a task backwards on a late or repeated
    event, and its reconciliation sweep still catches events that never came.

    Args:
        target: a ``Session`` (or anything with ``async feed(event)``), or an async
            callable taking the event.
        secret: the NCS secret Agora generated.
        max_body: the largest body accepted, in bytes.
        dedupe: remembers handled notices; default ``Deduplicator()`` (pass one with
            ``redundant=True`` if "redundant notifications" are on).
        clock: the deduplicator's and the log throttle's time source (default: the
            real clock).

    Returns:
        The app; its ``handle_stream(chunks, headers)`` and ``handle(raw_body,
        headers)`` serve frameworks that are not ASGI.

    Raises:
        ConfigurationError: empty ``secret``, ``max_body`` < 1, or a ``target`` that is
            neither.
    """
    app: NotificationReceiver = _glue().NotificationApp(
        target, secret, max_body=max_body, dedupe=dedupe, clock=clock
    )
    return app


async def handle_request(
    target: EventTarget,
    secret: str | Secret,
    raw_body: bytes | bytearray | memoryview,
    headers: HeadersLike,
    *,
    max_body: int = MAX_BODY,
    dedupe: Deduplicator | None = None,
    clock: Clock | None = None,
) -> tuple[int, bytes]:
    """Handle one callback request in any framework: ``(status, JSON body)`` to answer.

    The steps and answers of ``asgi_app`` (413, 401, 400, 200, 500), for a handler that
    has the raw body and the headers; read the body with ``read_body`` so that a large
    one is refused before it is all in memory. Pass one long-lived ``dedupe`` to drop
    NCS resends; without it every copy is fed (harmless for a ``Session``, which
    ignores repeats). Refusals share one log throttle per process.

    Raises:
        ConfigurationError: ``secret`` is empty, or ``max_body`` is not an int >= 1.
    """
    result: tuple[int, bytes] = await _glue().handle_request(
        target, secret, raw_body, headers, max_body=max_body, dedupe=dedupe, clock=clock
    )
    return result
