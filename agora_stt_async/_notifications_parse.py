"""Reading NCS callbacks: the wire names and types of spec §8, and signature plumbing.

``read_event()`` turns raw bytes into ``(kind, envelope, fields)``: ``kind`` says which
event class of ``agora_stt_async.notifications`` to build, ``envelope`` and ``fields``
are its keyword arguments, already type-checked. The public module owns the types;
this one owns the wire, so the camelCase and snake_case spellings of the callbacks
live in one place.

Every failure is a ``NotificationError`` whose message names the dotted field path
(``payload.details.fileList[1].mode``) and the JSON type found, never the value itself:
the body may be hostile and huge. Any other exception escaping from here is a bug.

The header lookup and constant-time digest check behind ``verify()``, and the
``Content-Length`` check of the receivers, live here too.

Imports: stdlib and the L0/L1 modules (``_constants``, ``_enums``, ``_errors``,
``_secrets``) only.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeAlias

from agora_stt_async._constants import (
    NCS_EVENT_AGENT_JOINED,
    NCS_EVENT_AGENT_LEFT,
    NCS_PRODUCT_ID_STT,
)
from agora_stt_async._enums import AgentStatus
from agora_stt_async._errors import ConfigurationError, NotificationError, SignatureError
from agora_stt_async._secrets import Secret

MS_THRESHOLD: Final = 10**11
"""Timestamps above this are milliseconds (see ``to_unix_seconds``)."""
TS_MAX: Final = 2**63 - 1
"""The largest timestamp accepted: a signed 64-bit integer, as Agora's Java samples use."""

# spec §8.3: the legacy (v5/v6) event types. Cloud Recording sends the same numbers
# (4, 30-33) with payloads of its own, so they are read as STT events only when the
# productId allows it (see read_event).
LEGACY_PLAYLIST: Final = 4
LEGACY_UPLOADER_STARTED: Final = 30
LEGACY_UPLOADED: Final = 31
LEGACY_BACKED_UP: Final = 32
LEGACY_PROGRESS: Final = 33

_JSON_TYPES: Final[Mapping[type, str]] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def to_unix_seconds(value: int | float) -> float:
    """Unix seconds from a callback timestamp that may be in seconds or milliseconds.

    The rule: a value above ``10**11`` is milliseconds and is divided by 1000; any
    other value is seconds already.

    Why: spec §8.2 and §8.3 document ``start_ts``, ``stop_ts`` and ``sendts`` as Unix
    milliseconds, yet every example shows seconds (``"start_ts": 1750235971``)
    [CONFLICT]. The two ranges do not overlap in practice: ``10**11`` seconds is the
    year 5138, and ``10**11`` milliseconds is 3 March 1973, before any Agora service.
    So a seconds value from any plausible date stays below the threshold and a
    milliseconds value from any plausible date lies above it, whichever unit Agora
    actually sends, and a fix on their side needs no change on ours.

    Args:
        value: a non-negative, finite timestamp no larger than ``2**63 - 1``.

    Returns:
        Unix time in seconds, as a float.

    Raises:
        TypeError: ``value`` is not an int or a float (``bool`` is refused).
        ValueError: ``value`` is negative, not finite or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a timestamp must be an int or a float, got {type(value).__name__}")
    if not (math.isfinite(value) and 0 <= value <= TS_MAX):
        raise ValueError("a timestamp must be a finite number in 0 .. 2**63 - 1")
    return value / 1000 if value > MS_THRESHOLD else float(value)


class ExitReason(str, enum.Enum):
    """Why a v7 agent left, from the ``message`` of event 102 (spec §8.2).

    Members are spelled as on the wire; ``UNKNOWN`` stands for any other message.
    """

    OK = "OK"
    IDLE_TIMEOUT = "Idle for too long"
    RTC_CONNECTION_ERROR = "RTC connection error"
    FATAL_ASR_ERROR = "Fatal ASR error"
    FATAL_TRANSLATION_ERROR = "Fatal Translation error"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def from_message(cls, message: str | None) -> ExitReason:
        """The reason for a ``message``; case and surrounding spaces are ignored."""
        wanted = (message or "").strip().casefold()
        for reason in cls:
            if reason is not cls.UNKNOWN and reason.value.casefold() == wanted:
                return reason
        return cls.UNKNOWN

    def __str__(self) -> str:
        return self.value


def _reject_constant(name: str) -> object:
    # json.loads accepts NaN and Infinity by default; JSON does not.
    raise NotificationError(f"notification body is not valid JSON: {name} is not a number")


def load_object(raw_body: bytes | str) -> dict[str, Any]:
    """The decoded JSON object of a callback body (UTF-8, an optional BOM tolerated)."""
    if isinstance(raw_body, (bytes, bytearray, memoryview)):
        try:
            text = bytes(raw_body).decode("utf-8")
        except UnicodeDecodeError:
            raise NotificationError("notification body is not UTF-8") from None
    elif isinstance(raw_body, str):
        text = raw_body
    else:
        raise TypeError(f"raw_body must be bytes or str, got {type(raw_body).__name__}")
    try:
        body = json.loads(text.removeprefix("\ufeff"), parse_constant=_reject_constant)
    except NotificationError:
        raise
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers past the digit limit.
        raise NotificationError("notification body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise NotificationError(f"notification body must be a JSON object, got {_kind(body)}")
    return body


def _kind(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


class Fields:
    """Typed reads from one JSON object; errors name the dotted path of the field."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: Mapping[str, Any], path: str = "") -> None:
        self._data = data
        self._path = path

    def _name(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _fail(self, key: str, expected: str, value: object) -> NotificationError:
        found = "missing or null" if value is None else f"got {_kind(value)}"
        return NotificationError(
            f"notification field {self._name(key)}: expected {expected}, {found}"
        )

    def get(self, key: str) -> object:
        """The raw value, ``None`` when absent or ``null``."""
        return self._data.get(key)

    def text(self, key: str, *, required: bool = True) -> str | None:
        """A string; ``None`` when absent and not ``required``."""
        value = self._data.get(key)
        if isinstance(value, str) or (value is None and not required):
            return value
        raise self._fail(key, "a string", value)

    def uid(self, key: str) -> str | None:
        """An optional RTC user ID: documented as a string, accepted as an integer too."""
        value = self._data.get(key)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise self._fail(key, "a string", value)

    def integer(self, key: str, *, required: bool = True) -> int | None:
        """An integer (not a boolean, not a float)."""
        value = self._data.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if value is None and not required:
            return None
        raise self._fail(key, "an integer", value)

    def timestamp(self, key: str, *, required: bool = True) -> int | float | None:
        """A non-negative, finite number no larger than ``TS_MAX``, unit as sent."""
        value = self._data.get(key)
        if value is None and not required:
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value) and 0 <= value <= TS_MAX:
                return value
            raise NotificationError(f"notification field {self._name(key)}: timestamp out of range")
        raise self._fail(key, "a number", value)

    def int_or_text(self, key: str) -> int | str | None:
        """An optional value documented both as a number and as a string."""
        value = self._data.get(key)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._fail(key, "a string or an integer", value)

    def obj(self, key: str) -> Fields:
        """A nested object, required."""
        value = self._data.get(key)
        if isinstance(value, dict):
            return Fields(value, self._name(key))
        raise self._fail(key, "an object", value)

    def array(self, key: str) -> list[Fields]:
        """A required array of objects."""
        value = self._data.get(key)
        if not isinstance(value, list):
            raise self._fail(key, "an array", value)
        items: list[Fields] = []
        for index, item in enumerate(value):
            name = f"{key}[{index}]"
            if not isinstance(item, dict):
                raise self._fail(name, "an object", item)
            items.append(Fields(item, self._name(name)))
        return items


def _envelope(body: Fields) -> dict[str, Any]:
    notice_id = body.text("noticeId")
    if not notice_id:
        raise NotificationError("notification field noticeId: expected a non-empty string")
    return {
        "notice_id": notice_id,
        "event_type": body.integer("eventType"),
        "product_id": body.integer("productId", required=False),
        "notify_ms": body.timestamp("notifyMs", required=False),
        "sid": body.text("sid", required=False),
    }


def _agent_id(payload: Fields, sid: str | None) -> str:
    # spec §8.2: the envelope's sid is the agent ID too, so it stands in when the
    # payload lacks agent_id; one of the two is needed to route the event.
    agent_id = payload.text("agent_id", required=sid is None)
    return agent_id if agent_id is not None else str(sid)


_EXIT_STATUSES: Final = {"STOPPED": AgentStatus.STOPPED, "FAILED": AgentStatus.FAILED}


def _agent_joined(payload: Fields, sid: str | None) -> dict[str, Any]:
    return {
        "agent_id": _agent_id(payload, sid),
        "channel": payload.text("channel", required=False),
        "start_ts": payload.timestamp("start_ts", required=False),
    }


def _agent_left(payload: Fields, sid: str | None) -> dict[str, Any]:
    status = payload.text("status") or ""
    if status not in _EXIT_STATUSES:
        raise NotificationError(
            "notification field payload.status: expected 'STOPPED' or 'FAILED', "
            f"got {status[:32]!r}"
        )
    return {
        **_agent_joined(payload, sid),
        "stop_ts": payload.timestamp("stop_ts", required=False),
        "status": _EXIT_STATUSES[status],
        "message": payload.text("message", required=False),
    }


def _legacy_common(payload: Fields) -> dict[str, Any]:
    # spec §8.3: serviceScene is described as 1 but shown as a sentence [CONFLICT];
    # sendts is said to be ms but shown in seconds [CONFLICT]: kept as sent.
    return {
        "task_id": payload.text("taskId"),
        "cname": payload.text("cname", required=False),
        "sub_bot_uid": payload.uid("subBotUid"),
        "pub_bot_uid": payload.uid("pubBotUid"),
        "sequence": payload.integer("sequence", required=False),
        "service_type": payload.integer("serviceType", required=False),
        "service_scene": payload.int_or_text("serviceScene"),
        "sendts": payload.timestamp("sendts", required=False),
    }


def _uploaded_files(details: Fields) -> list[dict[str, Any]]:
    return [
        {
            "file_name": item.text("fileName"),
            "track_type": item.text("trackType", required=False),
            "mode": item.integer("mode", required=False),
            "slice_start_time": item.timestamp("sliceStartTime", required=False),
        }
        for item in details.array("fileList")
    ]


def _legacy(event_type: int, payload: Fields) -> tuple[str, dict[str, Any]]:
    fields = _legacy_common(payload)
    details = payload.obj("details")
    fields["msg_name"] = details.text("msgName", required=False)
    if event_type == LEGACY_PLAYLIST:
        # Here fileList is the playlist's file name, a string (unlike 31 and 32).
        fields["file_list"] = details.text("fileList")
        return "playlist", fields
    if event_type == LEGACY_PROGRESS:
        progress = details.integer("progress")
        if progress is not None and progress < 0:
            raise NotificationError(
                "notification field payload.details.progress: expected 0 .. 10000, got < 0"
            )
        fields["progress"] = progress
        return "progress", fields
    fields["status"] = details.integer("status", required=False)
    if event_type == LEGACY_UPLOADER_STARTED:
        return "uploader_started", fields
    fields["file_list"] = _uploaded_files(details)
    return ("uploaded" if event_type == LEGACY_UPLOADED else "backed_up"), fields


_STT_TYPES: Final = frozenset(
    {
        NCS_EVENT_AGENT_JOINED,
        NCS_EVENT_AGENT_LEFT,
        LEGACY_PLAYLIST,
        LEGACY_UPLOADER_STARTED,
        LEGACY_UPLOADED,
        LEGACY_BACKED_UP,
        LEGACY_PROGRESS,
    }
)


def _payload_fields(body: Fields, event_type: int, sid: str | None) -> tuple[str, dict[str, Any]]:
    """``(kind, fields)`` of a documented STT event type, by its payload."""
    if event_type == NCS_EVENT_AGENT_JOINED:
        return "joined", _agent_joined(body.obj("payload"), sid)
    if event_type == NCS_EVENT_AGENT_LEFT:
        return "left", _agent_left(body.obj("payload"), sid)
    return _legacy(event_type, body.obj("payload"))


def read_event(
    raw_body: bytes | str, *, strict: bool = False
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(kind, envelope, fields)`` for a callback body.

    ``kind`` is ``"joined"``, ``"left"``, ``"playlist"``, ``"uploader_started"``,
    ``"uploaded"``, ``"backed_up"``, ``"progress"``, ``"unknown"`` (then ``fields``
    holds only ``payload``, whatever it is) or ``"unparsed"``: a documented STT event
    type whose payload does not match (then ``fields`` holds ``payload`` and
    ``problem``, the message naming the field). With ``strict``, that last case raises
    ``NotificationError`` instead. A broken envelope (``noticeId``, ``eventType``...)
    always raises: without it the body is no notification at all.
    """
    data = load_object(raw_body)
    body = Fields(data)
    envelope = _envelope(body)
    envelope["raw"] = data
    event_type: int = envelope["event_type"]
    # spec §8.2: 101/102 belong to productId 20; other Agora products (Conversational
    # AI, productId 17) use the same numbers with other payloads.
    # SPEC-SILENT (§8.3): the legacy events' productId is not documented, and Cloud
    # Recording sends 4 and 30-33 too. We read them as STT events when productId is
    # absent or 20, the STT product ID of §8.2; any other product's gives "unknown".
    is_stt = envelope["product_id"] in (None, NCS_PRODUCT_ID_STT)
    if not is_stt or event_type not in _STT_TYPES:
        return "unknown", envelope, {"payload": body.get("payload")}
    try:
        kind, fields = _payload_fields(body, event_type, envelope["sid"])
    except NotificationError as error:
        # SPEC-SILENT: a documented event whose payload breaks the schema is kept, not
        # refused: a 400 makes NCS resend the very same body three times and then drop
        # it, while a receiver can still log it, and a 102 still says the agent left.
        if strict:
            raise
        return "unparsed", envelope, {"payload": body.get("payload"), "problem": str(error)}
    return kind, envelope, fields


# --- signature plumbing (spec §8.1) --------------------------------------------------

HeadersLike: TypeAlias = "Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]"


def secret_key(secret: str | Secret) -> bytes:
    """The HMAC key: the NCS secret as UTF-8; an empty one is a configuration error."""
    value: object = secret.reveal() if isinstance(secret, Secret) else secret
    if not isinstance(value, str) or not value:
        raise ConfigurationError(
            "the notification secret is empty; use the secret Agora generated for NCS"
        )
    return value.encode("utf-8")


def body_bytes(raw_body: object) -> bytes:
    """The raw body as ``bytes``; a ``str`` is refused (it was decoded already)."""
    if isinstance(raw_body, (bytes, bytearray, memoryview)):
        return bytes(raw_body)
    raise TypeError(
        f"the raw request body must be bytes as received, got {type(raw_body).__name__}: "
        "signatures cover the exact bytes, so verify before decoding"
    )


def header_value(headers: HeadersLike, name: str) -> str | None:
    """The value of header ``name`` (any case), stripped and lower-cased.

    ``None`` when absent or empty. Several different values raise ``SignatureError``:
    picking one would let a forged copy ride along with a genuine one.
    """
    pairs: Iterable[tuple[object, object]]
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    wanted = name.lower()
    found: set[str] = set()
    for key, value in pairs:
        key_text = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if key_text.strip().lower() == wanted:
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            if text.strip():
                found.add(text.strip().lower())
    if len(found) > 1:
        raise SignatureError(f"several different {name} headers; refusing to pick one")
    return found.pop() if found else None


def check_max_body(value: int) -> int:
    """``value`` if it is a valid ``max_body``; else ``ConfigurationError``."""
    size: object = value
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigurationError(f"max_body must be an int >= 1, got {value!r}")
    return value


def content_length_exceeds(headers: HeadersLike, limit: int) -> bool:
    """``True`` if a ``Content-Length`` header announces more than ``limit`` bytes.

    Checked before reading the body, and bounded before converting: ``int()`` of a
    value of thousands of digits raises ``ValueError`` (and costs quadratic time).
    A value that is not a decimal number is ignored: the HTTP server refuses those,
    and reading stops at ``limit`` anyway.
    """
    pairs: Iterable[tuple[object, object]]
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    most = len(str(limit))
    for key, value in pairs:
        key_text = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if key_text.strip().lower() != "content-length":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        digits = text.strip().lstrip("0") or "0"
        # isascii: str.isdigit() is also true of "²" and other digits int() refuses.
        if digits.isascii() and digits.isdigit() and (len(digits) > most or int(digits) > limit):
            return True
    return False


def hex_digest(key: bytes, body: bytes, algorithm: str) -> str:
    """The lower-case hex HMAC of ``body``, as Agora sends it."""
    return hmac.new(key, body, algorithm).hexdigest()


def digest_matches(provided: str, key: bytes, body: bytes, algorithm: str) -> bool:
    """Constant-time check of a hex HMAC (``provided`` is lower-cased already)."""
    expected = hex_digest(key, body, algorithm)
    # Bytes on both sides: compare_digest refuses non-ASCII str, and a hostile header
    # must fail the comparison, not raise TypeError.
    return hmac.compare_digest(provided.encode("utf-8", "replace"), expected.encode("ascii"))


# --- deduplication -------------------------------------------------------------------


def redundancy_key(sid: str | None, event_type: int, payload: object) -> str:
    """A digest of what two redundant copies of one event share and two events do not."""
    text = json.dumps([sid, event_type, payload], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
