"""Receiving Agora's notification callbacks (NCS webhooks, spec §8).

A receiver does three things, in this order, for each ``POST`` it gets::

    verify(raw_body, request_headers, secret)   # SignatureError: answer 401, drop it
    event = parse(raw_body)                     # NotificationError: answer 400
    if not dedupe.seen_event(event, clock.monotonic()):
        ...                                     # act on the event; answer 200 quickly

Over HTTP, ``asgi_app(session, secret)`` (an ASGI app) and ``handle_request`` (for
any framework) do all three, answer with the right status, and hand each new event to
a ``Session`` (``feed``) or to a callback of yours.

``verify`` works on the raw bytes as received, before any JSON decoding (spec §8.1).
``parse`` returns one typed event per documented event type and ``UnknownEvent`` for
any other, so a new event type from Agora never breaks a receiver. Notifications may be
lost, repeated and out of order (spec §8.1): a ``Deduplicator`` drops repeats, and the
agent's state should still be confirmed with ``query`` when it matters.

Timestamps are kept exactly as sent (``start_ts``, ``sendts``...) next to a normalised
Unix-seconds property (``started_at``, ``sent_at``...): see ``to_unix_seconds`` for the
seconds-versus-milliseconds rule.

Imports: stdlib, attrs and the SDK's value layers (L0/L1) only; no I/O.
"""

from __future__ import annotations

import importlib
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, Final, Protocol, TypeAlias, final

import attrs

from agora_stt_async._clock import Clock
from agora_stt_async._enums import AgentStatus
from agora_stt_async._errors import ConfigurationError, NotificationError, SignatureError
from agora_stt_async._notifications_parse import (
    MS_THRESHOLD,
    ExitReason,
    HeadersLike,
    body_bytes,
    digest_matches,
    header_value,
    hex_digest,
    read_body,
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
    "UploadedFile",
    "asgi_app",
    "handle_request",
    "parse",
    "sign",
    "to_unix_seconds",
    "verify",
]

SIGNATURE_HEADER: Final = "Agora-Signature"
"""HMAC-SHA1 of the raw body, lower-case hex (spec §8.1)."""
SIGNATURE_V2_HEADER: Final = "Agora-Signature-V2"
"""HMAC-SHA256 of the raw body, lower-case hex (spec §8.1); preferred by ``verify``."""

_PROGRESS_DONE: Final = 10000


# Re-exported names report this module, where users find them.
ExitReason.__module__ = to_unix_seconds.__module__ = __name__


def _seconds(value: int | float | None) -> float | None:
    return None if value is None else to_unix_seconds(value)


# --- events --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Event:
    """What every notification carries: the NCS envelope (spec §8.2, §8.3).

    Attributes:
        notice_id: unique per notification; a resend keeps it (dedupe on it).
        event_type: the numeric event type.
        product_id: 20 for Real-Time STT v7; ``None`` if absent.
        notify_ms: when NCS sent this copy, Unix ms; changes on every resend.
        sid: the agent ID for v7 events; ``None`` if absent.
        raw: the whole decoded body, extra fields included (not compared, not shown).
    """

    notice_id: str
    event_type: int
    product_id: int | None = None
    notify_ms: int | float | None = None
    sid: str | None = None
    raw: Mapping[str, object] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def notified_at(self) -> float | None:
        """``notify_ms`` in Unix seconds."""
        return _seconds(self.notify_ms)


@final
@attrs.frozen(kw_only=True)
class AgentJoined(Event):
    """eventType 101: the v7 agent joined its channel.

    ``start_ts`` is kept as sent; ``started_at`` is Unix seconds.
    """

    agent_id: str
    channel: str | None = None
    start_ts: int | float | None = None

    @property
    def started_at(self) -> float | None:
        """When the agent started, Unix seconds (see ``to_unix_seconds``)."""
        return _seconds(self.start_ts)


@final
@attrs.frozen(kw_only=True)
class AgentLeft(Event):
    """eventType 102: the v7 agent left its channel, for good.

    ``status`` is ``AgentStatus.STOPPED`` (leave, idle timeout) or
    ``AgentStatus.FAILED``; ``message`` is kept as sent and ``exit_reason`` classifies it.
    """

    agent_id: str
    status: AgentStatus
    channel: str | None = None
    start_ts: int | float | None = None
    stop_ts: int | float | None = None
    message: str | None = None

    @property
    def exit_reason(self) -> ExitReason:
        """``message`` as an ``ExitReason``; ``UNKNOWN`` for an undocumented one."""
        return ExitReason.from_message(self.message)

    @property
    def started_at(self) -> float | None:
        """When the agent started, Unix seconds (see ``to_unix_seconds``)."""
        return _seconds(self.start_ts)

    @property
    def stopped_at(self) -> float | None:
        """When the agent stopped, Unix seconds (see ``to_unix_seconds``)."""
        return _seconds(self.stop_ts)


@attrs.frozen(kw_only=True)
class LegacyEvent(Event):
    """What every legacy (v5/v6) STT event's ``payload`` carries (spec §8.3).

    Attributes:
        task_id: the legacy task (required: it is how a receiver routes the event).
        cname: the channel.
        sub_bot_uid, pub_bot_uid: the bots' UIDs, as strings.
        sequence: per-task notification counter from 0, to spot loss and resends.
        service_type: 0 STT service, 1 STT module, 2 uploader module.
        service_scene: documented as ``1`` yet shown as a sentence: either is kept.
        sendts: when the event happened, as sent; ``sent_at`` is Unix seconds.
        msg_name: ``details.msgName``.
    """

    task_id: str
    cname: str | None = None
    sub_bot_uid: str | None = None
    pub_bot_uid: str | None = None
    sequence: int | None = None
    service_type: int | None = None
    service_scene: int | str | None = None
    sendts: int | float | None = None
    msg_name: str | None = None

    @property
    def sent_at(self) -> float | None:
        """``sendts`` in Unix seconds (see ``to_unix_seconds``)."""
        return _seconds(self.sendts)


@final
@attrs.frozen(kw_only=True)
class LegacyPlaylistReady(LegacyEvent):
    """eventType 4: the ``.vtt`` M3U8 playlist was uploaded for the first time.

    ``file_list`` is the playlist's file name (a string for this event).
    """

    file_list: str


@final
@attrs.frozen(kw_only=True)
class LegacyUploaderStarted(LegacyEvent):
    """eventType 30: the uploader started; ``status`` 0 means normal."""

    status: int | None = None


@final
@attrs.frozen(kw_only=True)
class UploadedFile:
    """One entry of ``fileList`` in events 31 and 32.

    ``track_type`` is ``"audio"``, ``"video"`` or ``"text"``; ``mode`` 1 is per channel,
    2 per UID; ``slice_start_time`` is kept as sent (documented as Unix ms).
    """

    file_name: str
    track_type: str | None = None
    mode: int | None = None
    slice_start_time: int | float | None = None

    @property
    def slice_started_at(self) -> float | None:
        """``slice_start_time`` in Unix seconds (see ``to_unix_seconds``)."""
        return _seconds(self.slice_start_time)


def _files(items: Iterable[UploadedFile | Mapping[str, Any]]) -> tuple[UploadedFile, ...]:
    # parse() hands over keyword dicts; code building events hands over UploadedFile.
    return tuple(i if isinstance(i, UploadedFile) else UploadedFile(**i) for i in items)


@final
@attrs.frozen(kw_only=True)
class LegacyUploaded(LegacyEvent):
    """eventType 31: every ``.vtt`` file is in your storage."""

    file_list: tuple[UploadedFile, ...] = attrs.field(converter=_files)
    status: int | None = None


@final
@attrs.frozen(kw_only=True)
class LegacyBackedUp(LegacyEvent):
    """eventType 32: every file is uploaded, at least one through Agora Cloud Backup,
    which moves it on to your storage later.
    """

    file_list: tuple[UploadedFile, ...] = attrs.field(converter=_files)
    status: int | None = None


@final
@attrs.frozen(kw_only=True)
class LegacyUploadingProgress(LegacyEvent):
    """eventType 33, once a minute: ``progress`` is uploaded/recorded x 10000."""

    progress: int

    @property
    def fraction(self) -> float:
        """``progress`` as 0.0 .. 1.0 (clamped)."""
        return min(self.progress, _PROGRESS_DONE) / _PROGRESS_DONE

    @property
    def is_done(self) -> bool:
        """``True`` at 10000: after the task exits, that means every file is uploaded."""
        return self.progress >= _PROGRESS_DONE


@final
@attrs.frozen(kw_only=True)
class UnknownEvent(Event):
    """Any other eventType (or 101/102 of another product): ``payload`` as decoded."""

    payload: object = attrs.field(default=None, eq=False)


_KINDS: Final[Mapping[str, type[Event]]] = {
    "joined": AgentJoined,
    "left": AgentLeft,
    "playlist": LegacyPlaylistReady,
    "uploader_started": LegacyUploaderStarted,
    "uploaded": LegacyUploaded,
    "backed_up": LegacyBackedUp,
    "progress": LegacyUploadingProgress,
    "unknown": UnknownEvent,
}


def parse(raw_body: bytes | str) -> Event:
    """The typed event of a notification body (UTF-8 JSON).

    Extra fields are ignored (they stay in ``raw``); an unknown ``eventType`` gives an
    ``UnknownEvent``. Fields an event cannot do without (``noticeId``, ``eventType``,
    ``payload``, the agent or task ID, 102's ``status``...) are required; other
    documented fields are ``None`` when absent. Call ``verify`` first.

    Raises:
        NotificationError: not UTF-8, not JSON, not an object, a required field
            missing, or a documented field of the wrong type (the message names it).
            Any other exception is a bug.
    """
    kind, envelope, fields = read_body(raw_body)
    return _KINDS[kind](**envelope, **fields)


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
"""The largest callback body ``asgi_app`` reads (1 MiB); NCS bodies are a few hundred bytes."""


class EventSink(Protocol):
    """What takes verified events: a ``Session`` (its ``feed``) is one."""

    async def feed(self, event: Event) -> object:
        """Act on ``event``; raising makes the receiver answer 500 (NCS resends)."""
        ...


EventTarget: TypeAlias = "EventSink | Callable[[Event], Awaitable[object]]"
"""A ``Session`` (or any ``EventSink``), or an ``async (event) -> ...`` callable."""


class NotificationReceiver(Protocol):
    """What ``asgi_app`` returns: an ASGI app, and its ``handle`` for other frameworks."""

    dedupe: Deduplicator

    async def handle(self, raw_body: bytes, headers: HeadersLike) -> tuple[int, bytes]:
        """``handle_request`` with the app's target, secret, deduplicator and clock."""
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

    For each ``POST`` (any path: mount it where you told Agora to call): verify the
    signature over the raw body (401 if wrong), parse it (400), drop a notice already
    handled (200 at once), then ``await target.feed(event)`` (or ``await target(event)``)
    and answer 200 ``{}``. If that raises, the notice is forgotten and the answer is 500,
    so NCS's resend is handled (spec §8.1). Other methods get 405, bodies larger than
    ``max_body`` 413. No web framework is needed; the app also answers ``lifespan``.

    Events are hints: a ``Session`` never moves a task backwards on a late or repeated
    event, and its reconciliation sweep still catches events that never came.

    Args:
        target: a ``Session`` (or anything with ``async feed(event)``), or an async
            callable taking the event.
        secret: the NCS secret Agora generated.
        max_body: the largest body read, in bytes.
        dedupe: remembers handled notices; default ``Deduplicator()`` (pass one with
            ``redundant=True`` if "redundant notifications" are on).
        clock: the deduplicator's time source (default: the real clock).

    Returns:
        The app; its ``handle(raw_body, headers)`` serves frameworks that are not ASGI.

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
    dedupe: Deduplicator | None = None,
    clock: Clock | None = None,
) -> tuple[int, bytes]:
    """Handle one callback request in any framework: ``(status, JSON body)`` to answer.

    The steps and answers of ``asgi_app`` (401, 400, 200, 500), for a handler that has
    the raw body and the headers. Pass one long-lived ``dedupe`` to drop NCS resends;
    without it every copy is fed (harmless for a ``Session``, which ignores repeats).

    Raises:
        ConfigurationError: ``secret`` is empty.
    """
    result: tuple[int, bytes] = await _glue().handle_request(
        target, secret, raw_body, headers, dedupe=dedupe, clock=clock
    )
    return result
