"""Notification callbacks: signatures, typed events, timestamps, deduplication."""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora_stt_async import AgentStatus, AgoraSTTError, ConfigurationError
from agora_stt_async._secrets import Secret
from agora_stt_async.notifications import (
    MS_THRESHOLD,
    AgentJoined,
    AgentLeft,
    Deduplicator,
    Event,
    ExitReason,
    LegacyBackedUp,
    LegacyEvent,
    LegacyPlaylistReady,
    LegacyUploaded,
    LegacyUploaderStarted,
    LegacyUploadingProgress,
    NotificationError,
    SignatureError,
    UnknownEvent,
    UnparsedEvent,
    UploadedFile,
    parse,
    sign,
    to_unix_seconds,
    verify,
)

# --- the spec's test vector (spec §8.1) -------------------------------------------------

VECTOR_SECRET = "secret"
VECTOR_BODY = (
    b'{"eventMs":1560408533119,"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-'
    b'53f411c2761f","notifyMs":1560408533119,"payload":{"a":"1","b":2},"productId":1}'
)
VECTOR_SHA1 = "033c62f40f687675f17f0f41f91a40c71c0f134c"
VECTOR_SHA256 = "6d3320c60b11101395b7fc8f9068748808a0aa1bfa064438e39d1bc2c7d74d99"

V1 = "Agora-Signature"
V2 = "Agora-Signature-V2"
NO_HEADER = "no Agora-Signature-V2 or Agora-Signature header"
V2_MISMATCH = "Agora-Signature-V2 does not match the body (HMAC-SHA256)"
V1_MISMATCH = "Agora-Signature does not match the body (HMAC-SHA1)"


DISTINCT_SECRET = "ncs-Secret-Value-9f3a"
DISTINCT_HEADERS = sign(VECTOR_BODY, DISTINCT_SECRET)


def _signature_error(body: bytes, headers: object, secret: str = VECTOR_SECRET) -> str:
    """The SignatureError message; it never shows the secret or an expected digest."""
    with pytest.raises(SignatureError) as info:
        verify(body, headers, secret)  # type: ignore[arg-type]
    message = str(info.value)
    if secret != VECTOR_SECRET:  # "secret" is also an English word in the hint
        assert secret not in message
    for digest in (*sign(body, secret).values(), VECTOR_SHA1, VECTOR_SHA256):
        assert digest not in message
    return message


def test_sign_reproduces_the_spec_test_vector() -> None:
    """sign() gives Agora's documented HMAC-SHA1 and HMAC-SHA256 of the vector body."""
    assert sign(VECTOR_BODY, VECTOR_SECRET) == {V1: VECTOR_SHA1, V2: VECTOR_SHA256}


@pytest.mark.parametrize(
    "headers",
    [
        {V1: VECTOR_SHA1},
        {V2: VECTOR_SHA256},
        {V1: VECTOR_SHA1, V2: VECTOR_SHA256},
        {"agora-signature-v2": VECTOR_SHA256.upper()},
        {"AGORA-SIGNATURE": VECTOR_SHA1.upper(), "Content-Type": "application/json"},
        [(b"agora-signature-v2", VECTOR_SHA256.encode()), (b"host", b"example.com")],
        [("Agora-Signature", f" {VECTOR_SHA1} ")],
        {V2: VECTOR_SHA256, V1: ""},
        {V2: "", V1: VECTOR_SHA1},
    ],
    ids=["v1", "v2", "both", "v2-upper", "v1-upper", "asgi-bytes", "spaces", "v1-empty", "v2-e"],
)
def test_verify_accepts_the_spec_test_vector(headers: Any) -> None:
    """Each header alone, both, any case of name or hex, and ASGI byte pairs verify."""
    verify(VECTOR_BODY, headers, VECTOR_SECRET)


def test_verify_accepts_bytearray_and_secret_object() -> None:
    """A bytearray body and a Secret-wrapped key verify like bytes and str."""
    verify(bytearray(VECTOR_BODY), {V2: VECTOR_SHA256}, Secret(VECTOR_SECRET))


@pytest.mark.parametrize("position", [0, 1, 57, len(VECTOR_BODY) // 2, len(VECTOR_BODY) - 1])
@pytest.mark.parametrize(
    ("headers", "expected"),
    [({V2: VECTOR_SHA256}, V2_MISMATCH), ({V1: VECTOR_SHA1}, V1_MISMATCH)],
    ids=["v2", "v1"],
)
def test_verify_rejects_a_body_changed_by_one_byte(
    position: int, headers: dict[str, str], expected: str
) -> None:
    """Flipping any single byte of the body fails the signature that was checked."""
    body = bytearray(VECTOR_BODY)
    body[position] ^= 0x01
    assert expected in _signature_error(bytes(body), headers)


@pytest.mark.parametrize("name", [V1, V2])
def test_verify_messages_never_show_the_secret(name: str) -> None:
    """With a distinctive secret, failures name the header but never the secret."""
    headers = {name: DISTINCT_HEADERS[name]}
    verify(VECTOR_BODY, headers, DISTINCT_SECRET)
    message = _signature_error(VECTOR_BODY + b" ", headers, DISTINCT_SECRET)
    assert message.startswith(name + " does not match the body")
    assert NO_HEADER in _signature_error(VECTOR_BODY, {}, DISTINCT_SECRET)


def test_verify_rejects_extra_or_missing_bytes() -> None:
    """Trailing whitespace or a truncated body (re-encoding mistakes) fail."""
    headers = {V2: VECTOR_SHA256}
    assert V2_MISMATCH in _signature_error(VECTOR_BODY + b"\n", headers)
    assert V2_MISMATCH in _signature_error(VECTOR_BODY[:-1], headers)


def test_verify_rejects_a_wrong_secret_without_showing_it() -> None:
    """The right signatures under another secret fail, and the message hides both secrets."""
    secret = "wrong-secret-value-7d1f"
    message = _signature_error(VECTOR_BODY, {V1: VECTOR_SHA1, V2: VECTOR_SHA256}, secret)
    assert V2_MISMATCH in message
    expected = sign(VECTOR_BODY, secret)
    assert expected[V1] not in message
    assert expected[V2] not in message


@pytest.mark.parametrize(
    "headers",
    [{}, [], {"Content-Type": "application/json"}, {V1: "  ", V2: ""}, {"Agora-Sig": "x"}],
)
def test_verify_rejects_missing_headers(headers: Any) -> None:
    """No signature header at all (or only empty ones) names both headers."""
    assert NO_HEADER in _signature_error(VECTOR_BODY, headers)


def test_verify_prefers_v2_even_when_v1_matches() -> None:
    """A wrong V2 beside a right V1 fails: V2 decides alone when present."""
    bad = "0" * 64
    assert V2_MISMATCH in _signature_error(VECTOR_BODY, {V1: VECTOR_SHA1, V2: bad})


def test_verify_does_not_fall_back_from_v2_to_v1() -> None:
    """A right V2 passes even beside a wrong V1 (V1 is not checked then)."""
    verify(VECTOR_BODY, {V1: "0" * 40, V2: VECTOR_SHA256}, VECTOR_SECRET)


@pytest.mark.parametrize(
    "value",
    ["zz", VECTOR_SHA256[:-1], VECTOR_SHA256 + "0", "é" * 64, "sha256=" + VECTOR_SHA256],
)
def test_verify_rejects_malformed_v2_values(value: str) -> None:
    """Short, long, non-hex and non-ASCII values fail as a mismatch, never TypeError."""
    assert V2_MISMATCH in _signature_error(VECTOR_BODY, [(V2, value)])


def test_verify_rejects_conflicting_duplicate_headers() -> None:
    """Two different V2 values are refused instead of trusting either one."""
    headers = [(V2, VECTOR_SHA256), (V2, "0" * 64)]
    assert "several different Agora-Signature-V2" in _signature_error(VECTOR_BODY, headers)
    verify(VECTOR_BODY, [(V2, VECTOR_SHA256), (V2, VECTOR_SHA256.upper())], VECTOR_SECRET)


@pytest.mark.parametrize("secret", ["", Secret("")])
def test_verify_and_sign_refuse_an_empty_secret(secret: str | Secret) -> None:
    """An empty secret is a configuration mistake, not a signature failure."""
    with pytest.raises(ConfigurationError):
        verify(VECTOR_BODY, {V2: VECTOR_SHA256}, secret)
    with pytest.raises(ConfigurationError):
        sign(VECTOR_BODY, secret)


def test_verify_refuses_a_decoded_body() -> None:
    """A str body is refused with a hint: signatures cover the bytes as received."""
    with pytest.raises(TypeError, match="as received"):
        verify(VECTOR_BODY.decode(), {V2: VECTOR_SHA256}, VECTOR_SECRET)  # type: ignore[arg-type]


def test_signature_error_is_a_notification_error() -> None:
    """SignatureError sits under NotificationError, ValueError and AgoraSTTError, and pickles."""
    error = SignatureError("x")
    assert isinstance(error, NotificationError)
    assert isinstance(error, ValueError)
    assert isinstance(error, AgoraSTTError)
    assert str(pickle.loads(pickle.dumps(error))) == "x"


@given(st.binary(max_size=256), st.text(min_size=1, max_size=20))
@settings(max_examples=200, deadline=None)
def test_sign_then_verify_round_trips(body: bytes, secret: str) -> None:
    """Whatever the body and secret, verify() accepts what sign() produced."""
    verify(body, sign(body, secret), secret)


# --- parse: v7 events (spec §8.2) ---------------------------------------------------------


def _body(event_type: int, payload: object, **envelope: object) -> bytes:
    body: dict[str, object] = {
        "sid": "agent_id",
        "noticeId": "e94f5b6fd69446ea9d75da90a59ca8a2",
        "productId": 20,
        "eventType": event_type,
        "notifyMs": 1750235972193,
        "payload": payload,
    }
    body.update(envelope)
    return json.dumps(body).encode()


JOINED = {"agent_id": "agent_id", "channel": "stt_ncs93369", "start_ts": 1750235971}


def _left(message: str, status: str) -> dict[str, object]:
    return {**JOINED, "message": message, "status": status, "stop_ts": 1750235984}


def test_parse_agent_joined_from_the_spec_example() -> None:
    """Event 101 of the documentation becomes AgentJoined with the envelope and raw body."""
    event = parse(_body(101, JOINED))
    assert isinstance(event, AgentJoined)
    assert event.notice_id == "e94f5b6fd69446ea9d75da90a59ca8a2"
    assert event.product_id == 20
    assert event.event_type == 101
    assert event.sid == "agent_id"
    assert event.notify_ms == 1750235972193
    assert event.notified_at == pytest.approx(1750235972.193)
    assert event.agent_id == "agent_id"
    assert event.channel == "stt_ncs93369"
    assert event.start_ts == 1750235971
    assert event.started_at == 1750235971.0
    assert event.raw["payload"] == JOINED


@pytest.mark.parametrize(
    ("message", "status", "reason"),
    [
        ("OK", AgentStatus.STOPPED, ExitReason.OK),
        ("Idle for too long", AgentStatus.STOPPED, ExitReason.IDLE_TIMEOUT),
        ("RTC connection error", AgentStatus.FAILED, ExitReason.RTC_CONNECTION_ERROR),
        ("Fatal ASR error", AgentStatus.FAILED, ExitReason.FATAL_ASR_ERROR),
        ("Fatal Translation error", AgentStatus.FAILED, ExitReason.FATAL_TRANSLATION_ERROR),
        ("Something new", AgentStatus.FAILED, ExitReason.UNKNOWN),
    ],
)
def test_parse_agent_left_with_each_exit_message(
    message: str, status: AgentStatus, reason: ExitReason
) -> None:
    """Event 102 keeps status and message and classifies every documented message."""
    event = parse(_body(102, _left(message, status.value)))
    assert isinstance(event, AgentLeft)
    assert event.status is status
    assert event.message == message
    assert event.exit_reason is reason
    assert (event.start_ts, event.stop_ts) == (1750235971, 1750235984)
    assert (event.started_at, event.stopped_at) == (1750235971.0, 1750235984.0)


def test_parse_agent_left_with_millisecond_timestamps() -> None:
    """The documented unit (ms) and the examples' unit (s) give the same seconds."""
    payload = {**_left("OK", "STOPPED"), "start_ts": 1750235971000, "stop_ts": 1750235984500}
    event = parse(_body(102, payload))
    assert isinstance(event, AgentLeft)
    assert event.start_ts == 1750235971000
    assert event.started_at == 1750235971.0
    assert event.stopped_at == 1750235984.5


def test_exit_reason_ignores_case_and_spaces() -> None:
    """A message differing only in case or padding still maps to its reason."""
    assert ExitReason.from_message(" idle FOR too long ") is ExitReason.IDLE_TIMEOUT
    assert ExitReason.from_message(None) is ExitReason.UNKNOWN
    assert str(ExitReason.OK) == "OK"


def test_parse_agent_id_falls_back_to_sid() -> None:
    """Without payload.agent_id, the envelope's sid (the agent ID) routes the event."""
    event = parse(_body(101, {"channel": "c"}, sid="AGENT1"))
    assert isinstance(event, AgentJoined)
    assert event.agent_id == "AGENT1"
    assert event.start_ts is None
    assert event.started_at is None


def test_parse_v7_event_numbers_of_other_products_are_unknown() -> None:
    """101 from Conversational AI (productId 17) is not an STT agent: UnknownEvent."""
    event = parse(_body(101, {"agent_id": 1}, productId=17))
    assert isinstance(event, UnknownEvent)
    assert event.payload == {"agent_id": 1}


def test_parse_without_product_id_still_reads_v7_events() -> None:
    """A body that omits productId is read by eventType alone."""
    raw = json.loads(_body(101, JOINED))
    del raw["productId"]
    event = parse(json.dumps(raw))
    assert isinstance(event, AgentJoined)
    assert event.product_id is None


# --- parse: legacy events (spec §8.3) -----------------------------------------------------

LEGACY_COMMON: dict[str, object] = {
    "cname": "test",
    "subBotUid": "91",
    "pubBotUid": "22",
    "taskId": "c662ce961441cd8dc22f858ab7cec4d4",
    "sequence": 0,
    "serviceScene": "Real-Time STT + Real-Time Translation",
    "sendts": 1715331647,
    "serviceType": 2,
}
FILES = [
    {
        "fileName": "en-US_c662ce961441cd8dc22f858ab7cec4d4_test.m3u8",
        "trackType": "audio",
        "mode": 2,
        "sliceStartTime": 1715331647844,
    },
    {
        "fileName": "c662ce961441cd8dc22f858ab7cec4d4_test.m3u8",
        "trackType": "text",
        "mode": 1,
        "sliceStartTime": 1715331647844,
    },
]


def _legacy(event_type: int, details: Mapping[str, object], **payload: object) -> bytes:
    body = {
        "noticeId": f"legacy-{event_type}",
        "productId": 20,
        "eventType": event_type,
        "notifyMs": 1715331648000,
        "payload": {**LEGACY_COMMON, **payload, "details": details},
    }
    return json.dumps(body).encode()


def _check_common(event: Event) -> None:
    assert isinstance(event, LegacyEvent)
    assert event.cname == "test"
    assert event.task_id == "c662ce961441cd8dc22f858ab7cec4d4"
    assert (event.sub_bot_uid, event.pub_bot_uid) == ("91", "22")
    assert event.sequence == 0
    assert event.service_type == 2
    assert event.sid is None


def test_parse_legacy_playlist_ready() -> None:
    """Event 4 keeps the playlist name (a string) and a string serviceScene."""
    details = {"fileList": "ec4b91009a47366703b821bb12345678_test.m3u8", "msgName": "x"}
    event = parse(_legacy(4, details, sendts=1715670681))
    _check_common(event)
    assert isinstance(event, LegacyPlaylistReady)
    assert event.file_list == "ec4b91009a47366703b821bb12345678_test.m3u8"
    assert event.msg_name == "x"
    assert event.service_scene == "Real-Time STT + Real-Time Translation"
    assert event.sent_at == 1715670681.0


def test_parse_legacy_uploader_started_with_numeric_service_scene() -> None:
    """Event 30 reads details.status; serviceScene 1 (the table's reading) stays an int."""
    event = parse(_legacy(30, {"msgName": "uploader_started", "status": 0}, serviceScene=1))
    _check_common(event)
    assert isinstance(event, LegacyUploaderStarted)
    assert event.status == 0
    assert event.service_scene == 1


@pytest.mark.parametrize(("event_type", "cls"), [(31, LegacyUploaded), (32, LegacyBackedUp)])
def test_parse_legacy_uploaded_and_backed_up(event_type: int, cls: type[Event]) -> None:
    """Events 31 and 32 give typed UploadedFile entries with ms slice start times."""
    details = {"status": 0, "fileList": FILES, "msgName": "uploaded"}
    event = parse(_legacy(event_type, details, sendts=1715331732000))
    _check_common(event)
    assert isinstance(event, (LegacyUploaded, LegacyBackedUp))
    assert type(event) is cls
    assert event.status == 0
    assert event.sent_at == 1715331732.0
    first = event.file_list[0]
    assert first == UploadedFile(
        file_name="en-US_c662ce961441cd8dc22f858ab7cec4d4_test.m3u8",
        track_type="audio",
        mode=2,
        slice_start_time=1715331647844,
    )
    assert first.slice_started_at == pytest.approx(1715331647.844)
    assert [f.track_type for f in event.file_list] == ["audio", "text"]


@pytest.mark.parametrize(
    ("progress", "fraction", "done"), [(0, 0.0, False), (2500, 0.25, False), (10000, 1.0, True)]
)
def test_parse_legacy_uploading_progress(progress: int, fraction: float, done: bool) -> None:
    """Event 33's progress is read as given; fraction scales it to 0..1."""
    event = parse(_legacy(33, {"msgName": "uploading_progress", "progress": progress}))
    _check_common(event)
    assert isinstance(event, LegacyUploadingProgress)
    assert event.progress == progress
    assert event.fraction == fraction
    assert event.is_done is done


def test_progress_fraction_is_clamped() -> None:
    """A progress above 10000 (never documented) still gives a fraction of at most 1."""
    event = LegacyUploadingProgress(notice_id="n", event_type=33, task_id="t", progress=12000)
    assert event.fraction == 1.0


def test_parse_legacy_numeric_uids_become_strings() -> None:
    """UIDs sent as numbers (another documented typing) are normalised to strings."""
    event = parse(_legacy(30, {"status": 0}, subBotUid=91, pubBotUid=22))
    assert isinstance(event, LegacyUploaderStarted)
    assert (event.sub_bot_uid, event.pub_bot_uid) == ("91", "22")


def test_legacy_uploaded_accepts_uploaded_file_objects() -> None:
    """Events built in code take UploadedFile objects or keyword dicts alike."""
    one = UploadedFile(file_name="a.m3u8")
    event = LegacyUploaded(
        notice_id="n", event_type=31, task_id="t", file_list=[one, {"file_name": "b.m3u8"}]
    )
    assert event.file_list == (one, UploadedFile(file_name="b.m3u8"))


# --- parse: tolerance -------------------------------------------------------------------


@pytest.mark.parametrize("product_id", [3, 17, 1])
def test_parse_legacy_numbers_of_other_products_are_unknown(product_id: int) -> None:
    """Cloud Recording reuses 4 and 30-33: another product's gives UnknownEvent, even
    with a payload that would not pass as STT's (no taskId)."""
    raw = json.loads(_legacy(31, {"status": 0, "fileList": FILES}))
    raw["productId"] = product_id
    del raw["payload"]["taskId"]
    event = parse(json.dumps(raw), strict=True)
    assert isinstance(event, UnknownEvent)
    assert event.payload == raw["payload"]


def test_parse_legacy_numbers_without_product_id_are_stt() -> None:
    """Without productId (or with 20), a legacy number is read as an STT event."""
    raw = json.loads(_legacy(31, {"status": 0, "fileList": FILES}))
    assert isinstance(parse(json.dumps(raw)), LegacyUploaded)
    del raw["productId"]
    assert isinstance(parse(json.dumps(raw)), LegacyUploaded)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (_body(102, {"agent_id": "a", "status": "STOPPING"}), "payload.status"),
        (_body(102, {"agent_id": "a"}), "payload.status: expected a string, missing"),
        (_body(101, {"agent_id": "a", "start_ts": "1750235971"}), "payload.start_ts"),
        (_body(101, None), "payload: expected an object, missing"),
        (_body(101, [1]), "payload: expected an object, got an array"),
        (_legacy(30, {}, taskId=None), "payload.taskId"),
        (_legacy(31, {"fileList": "a"}), "payload.details.fileList: expected an array"),
        (_legacy(33, {}), "payload.details.progress: expected an integer, missing"),
    ],
    ids=["102-status", "102-no-status", "101-ts-string", "101-null", "101-array", "30-no-task",
         "31-files", "33-no-progress"],
)  # fmt: skip
def test_parse_documented_event_with_odd_payload_is_unparsed(body: bytes, needle: str) -> None:
    """A documented STT event whose payload breaks the schema gives UnparsedEvent, with
    the envelope, the payload as decoded and the problem naming the field; strict
    parsing raises that problem instead."""
    event = parse(body)
    assert isinstance(event, UnparsedEvent)
    raw = json.loads(body)
    assert (event.notice_id, event.event_type, event.sid) == (
        raw["noticeId"],
        raw["eventType"],
        raw.get("sid"),
    )
    assert event.payload == raw["payload"]
    assert needle in event.problem
    with pytest.raises(NotificationError) as info:
        parse(body, strict=True)
    assert str(info.value) == event.problem


@pytest.mark.parametrize(
    "body",
    [
        b'{"eventType": 102, "payload": {}}',
        b'{"noticeId": "n", "eventType": "102", "payload": {}}',
        b'{"noticeId": "n", "eventType": 102, "sid": 5, "payload": {}}',
        b"[]",
    ],
    ids=["no-notice-id", "event-type-string", "sid-number", "array"],
)
def test_parse_broken_envelope_raises_even_when_lenient(body: bytes) -> None:
    """Without a readable envelope the body is no notification: NotificationError."""
    with pytest.raises(NotificationError):
        parse(body)


def test_parse_unknown_event_type_keeps_the_payload() -> None:
    """An undocumented eventType gives UnknownEvent with the payload as decoded."""
    event = parse(_body(999, [1, {"x": None}], extra="yes"))
    assert isinstance(event, UnknownEvent)
    assert event.event_type == 999
    assert event.payload == [1, {"x": None}]
    assert event.raw["extra"] == "yes"


def test_parse_the_spec_test_vector_is_an_unknown_event() -> None:
    """The signature vector (eventType 10, productId 1) parses as UnknownEvent."""
    event = parse(VECTOR_BODY)
    assert isinstance(event, UnknownEvent)
    assert (event.event_type, event.product_id) == (10, 1)
    assert event.payload == {"a": "1", "b": 2}


def test_parse_ignores_extra_fields_everywhere() -> None:
    """New fields in the envelope, payload, details and file entries change nothing."""
    files = [{**FILES[0], "size": 12, "checksum": {"md5": "x"}}]
    details = {"status": 0, "fileList": files, "msgName": "uploaded", "new": [1]}
    raw = json.loads(_legacy(31, details, region="eu", nested={"a": 1}))
    raw["eventMs"] = 1
    event = parse(json.dumps(raw))
    assert isinstance(event, LegacyUploaded)
    assert event.file_list[0].file_name == FILES[0]["fileName"]
    joined = parse(_body(101, {**JOINED, "uid": 7, "future": {"x": 1}}, version=2))
    assert joined == parse(_body(101, JOINED))


def test_parse_accepts_str_and_a_byte_order_mark() -> None:
    """A str body and a UTF-8 BOM are accepted."""
    assert isinstance(parse(_body(101, JOINED).decode()), AgentJoined)
    assert isinstance(parse(b"\xef\xbb\xbf" + _body(101, JOINED)), AgentJoined)


def test_events_compare_without_raw_and_hash() -> None:
    """Equality ignores the raw body (so resends differing only in raw compare equal)."""
    a = parse(_body(101, JOINED))
    b = attrs.evolve(a, raw={})
    assert a == b
    assert hash(a) == hash(b)
    assert "raw" not in repr(a)


# --- parse: hostile and malformed bodies --------------------------------------------------

HUGE_INT = "9" * 5000


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "not valid JSON"),
        (b"not json", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"noticeId": "\xc3\x28"}', "not UTF-8"),
        (b"[]", "got an array"),
        (b"null", "got null"),
        (b"42", "got an integer"),
        (b'"text"', "got a string"),
        (b'{"eventType": NaN, "noticeId": "n"}', "NaN is not a number"),
        (b'{"eventType": Infinity}', "Infinity is not a number"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'{"noticeId": "n", "eventType": ' + HUGE_INT.encode() + b"}", "not valid JSON"),
        (b'{"eventType": 101}', "noticeId"),
        (b'{"noticeId": "", "eventType": 101}', "noticeId"),
        (b'{"noticeId": 5, "eventType": 101}', "noticeId: expected a string, got an integer"),
        (b'{"noticeId": "n"}', "eventType: expected an integer, missing"),
        (b'{"noticeId": "n", "eventType": "101"}', "eventType: expected an integer, got a str"),
        (b'{"noticeId": "n", "eventType": true}', "eventType: expected an integer, got a bool"),
        (b'{"noticeId": "n", "eventType": 101.0}', "eventType: expected an integer, got a num"),
        (b'{"noticeId": "n", "eventType": 1, "productId": "20"}', "productId"),
        (b'{"noticeId": "n", "eventType": 1, "notifyMs": "x"}', "notifyMs"),
        (b'{"noticeId": "n", "eventType": 1, "notifyMs": -1}', "notifyMs: timestamp out of"),
        (b'{"noticeId": "n", "eventType": 1, "sid": 7}', "sid"),
        (b'{"noticeId": "n", "eventType": 101}', "payload: expected an object, missing"),
        (
            b'{"noticeId": "n", "eventType": 101, "payload": {"agent_id": "a", "start_ts": 1e999}}',
            "payload.start_ts: timestamp out of range",
        ),
        (b'{"noticeId": "n", "eventType": 101, "payload": []}', "payload: expected an object"),
    ],
)
def test_parse_rejects_malformed_bodies(body: bytes, needle: str) -> None:
    """Every malformed body raises NotificationError naming what is wrong (strict)."""
    with pytest.raises(NotificationError) as info:
        parse(body, strict=True)
    assert needle in str(info.value)
    assert type(info.value) is NotificationError


@pytest.mark.parametrize(
    ("event_type", "payload", "needle"),
    [
        (101, {"channel": "c"}, "payload.agent_id: expected a string, missing"),
        (101, {"agent_id": 12}, "payload.agent_id: expected a string, got an integer"),
        (101, {"agent_id": "a", "channel": 1}, "payload.channel"),
        (101, {"agent_id": "a", "start_ts": "1750235971"}, "payload.start_ts: expected a n"),
        (101, {"agent_id": "a", "start_ts": 10**30}, "payload.start_ts: timestamp out of range"),
        (101, {"agent_id": "a", "start_ts": True}, "payload.start_ts: expected a number"),
        (102, {"agent_id": "a"}, "payload.status: expected a string, missing"),
        (102, {"agent_id": "a", "status": "RUNNING"}, "expected 'STOPPED' or 'FAILED'"),
        (102, {"agent_id": "a", "status": "stopped"}, "got 'stopped'"),
        (102, {"agent_id": "a", "status": "FAILED", "message": 1}, "payload.message"),
        (102, {"agent_id": "a", "status": "FAILED", "stop_ts": []}, "payload.stop_ts"),
    ],
)
def test_parse_rejects_wrong_v7_payload_fields(
    event_type: int, payload: dict[str, object], needle: str
) -> None:
    """A documented v7 field of the wrong type or value is named in the error (strict)."""
    raw = json.loads(_body(event_type, payload))
    del raw["sid"]
    with pytest.raises(NotificationError, match="notification field") as info:
        parse(json.dumps(raw), strict=True)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("event_type", "payload", "details", "needle"),
    [
        (30, {"taskId": None}, {}, "payload.taskId: expected a string, missing"),
        (30, {"cname": 5}, {}, "payload.cname"),
        (30, {"subBotUid": 1.5}, {}, "payload.subBotUid"),
        (30, {"sequence": "0"}, {}, "payload.sequence"),
        (30, {"serviceScene": 1.5}, {}, "payload.serviceScene: expected a string or an int"),
        (30, {"serviceType": "2"}, {}, "payload.serviceType"),
        (30, {"sendts": "now"}, {}, "payload.sendts"),
        (30, {}, {"status": "0"}, "payload.details.status"),
        (30, {}, {"msgName": 3}, "payload.details.msgName"),
        (4, {}, {"fileList": ["a"]}, "payload.details.fileList: expected a string"),
        (31, {}, {"fileList": "a"}, "payload.details.fileList: expected an array"),
        (31, {}, {"fileList": [1]}, "payload.details.fileList[0]: expected an object"),
        (31, {}, {"fileList": [{"mode": 1}]}, "payload.details.fileList[0].fileName"),
        (32, {}, {"fileList": [{"fileName": "a", "mode": "2"}]}, "fileList[0].mode"),
        (32, {}, {"fileList": [{"fileName": "a", "sliceStartTime": -5}]}, "sliceStartTime"),
        (33, {}, {"progress": "50%"}, "payload.details.progress: expected an integer"),
        (33, {}, {}, "payload.details.progress: expected an integer, missing"),
        (33, {}, {"progress": -1}, "payload.details.progress: expected 0 .. 10000"),
    ],
)
def test_parse_rejects_wrong_legacy_fields(
    event_type: int, payload: dict[str, object], details: dict[str, object], needle: str
) -> None:
    """A documented legacy field of the wrong type is named by its dotted path (strict)."""
    with pytest.raises(NotificationError) as info:
        parse(_legacy(event_type, details, **payload), strict=True)
    assert needle in str(info.value)


def test_parse_rejects_legacy_without_details() -> None:
    """A legacy event without its details object is refused (strict)."""
    raw = json.loads(_legacy(30, {}))
    del raw["payload"]["details"]
    with pytest.raises(NotificationError, match=r"payload\.details: expected an object"):
        parse(json.dumps(raw), strict=True)


def test_parse_refuses_non_text_arguments() -> None:
    """Passing something that is not a body at all is a programming error: TypeError."""
    with pytest.raises(TypeError):
        parse(42)  # type: ignore[arg-type]


def test_parse_error_messages_do_not_echo_values() -> None:
    """Errors name the field and JSON type, never a (possibly huge) value."""
    with pytest.raises(NotificationError) as info:
        parse(_body(101, {"agent_id": ["x" * 10_000]}), strict=True)
    assert len(str(info.value)) < 200
    unparsed = parse(_body(101, {"agent_id": ["x" * 10_000]}))
    assert isinstance(unparsed, UnparsedEvent)
    assert len(unparsed.problem) < 200
    assert "xxx" not in repr(unparsed)


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON_VALUES = (
    JSON_SCALARS
    | st.lists(JSON_SCALARS, max_size=3)
    | st.dictionaries(st.text(max_size=8), JSON_SCALARS, max_size=3)
)
KEYS = st.sampled_from(
    ["noticeId", "eventType", "productId", "notifyMs", "sid", "payload", "agent_id",
     "channel", "start_ts", "stop_ts", "status", "message", "taskId", "cname", "details",
     "fileList", "fileName", "progress", "sequence", "serviceScene", "sendts", "mode",
     "subBotUid", "trackType", "sliceStartTime", "msgName"]
)  # fmt: skip
VALID_PAYLOADS: dict[int, dict[str, Any]] = {
    101: JOINED,
    102: _left("OK", "STOPPED"),
    4: {**LEGACY_COMMON, "details": {"fileList": "a.m3u8"}},
    30: {**LEGACY_COMMON, "details": {"status": 0}},
    31: {**LEGACY_COMMON, "details": {"status": 0, "fileList": FILES}},
    32: {**LEGACY_COMMON, "details": {"status": 0, "fileList": FILES}},
    33: {**LEGACY_COMMON, "details": {"progress": 100}},
    7: {"anything": 1},
}


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> bytes:
    """A valid body of some event type with a few documented keys given arbitrary values."""
    event_type = draw(st.sampled_from(sorted(VALID_PAYLOADS)))
    payload = json.loads(json.dumps(VALID_PAYLOADS[event_type]))  # a deep copy
    payload.update(draw(st.dictionaries(KEYS, JSON_VALUES, max_size=2)))
    details = payload.get("details")
    if isinstance(details, dict):
        details.update(draw(st.dictionaries(KEYS, JSON_VALUES, max_size=2)))
        files = details.get("fileList")
        if isinstance(files, list) and files and isinstance(files[0], dict):
            files[0].update(draw(st.dictionaries(KEYS, JSON_VALUES, max_size=2)))
    body: dict[str, object] = {
        "noticeId": draw(st.text(min_size=1, max_size=8)),
        "eventType": event_type,
        "productId": draw(st.sampled_from([20, 17, 1])),
        "payload": payload,
    }
    if draw(st.integers(0, 3)) == 0:
        body.update(draw(st.dictionaries(KEYS, JSON_VALUES, max_size=2)))
    return json.dumps(body).encode()


@given(st.binary(max_size=512))
@settings(max_examples=300, deadline=None)
def test_parse_raises_only_notification_error(body: bytes) -> None:
    """parse() of any bytes returns an Event or raises NotificationError, nothing else."""
    try:
        assert isinstance(parse(body), Event)
    except NotificationError:
        pass


@given(near_valid_bodies())
@settings(max_examples=200, deadline=None)
def test_parse_of_near_valid_bodies_raises_only_notification_error(body: bytes) -> None:
    """Documented keys holding arbitrary JSON give an Event or NotificationError only."""
    try:
        event = parse(body)
    except NotificationError:
        return
    assert isinstance(event, Event)
    repr(event)
    hash(event)
    assert Deduplicator(redundant=True).seen_event(event, now=0.0) is False


# --- timestamps -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (1750235971, 1750235971.0),
        (1750235971.5, 1750235971.5),
        (1750235971000, 1750235971.0),
        (1715331647844, 1715331647.844),
        (MS_THRESHOLD, float(MS_THRESHOLD)),
        (MS_THRESHOLD + 1, (MS_THRESHOLD + 1) / 1000),
        (2**63 - 1, (2**63 - 1) / 1000),
    ],
)
def test_to_unix_seconds_reads_seconds_and_milliseconds(value: float, seconds: float) -> None:
    """Values above 10**11 are milliseconds; the rest are seconds already."""
    assert to_unix_seconds(value) == pytest.approx(seconds)
    assert isinstance(to_unix_seconds(value), float)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (2**63, ValueError),
        (True, TypeError),
        ("1", TypeError),
    ],
)
def test_to_unix_seconds_rejects_non_timestamps(value: Any, error: type[Exception]) -> None:
    """Negative, non-finite, out-of-range and non-numeric values are refused."""
    with pytest.raises(error):
        to_unix_seconds(value)


# --- deduplication ----------------------------------------------------------------------


def test_deduplicator_remembers_notice_ids() -> None:
    """The first sighting is new; later ones within the TTL are repeats."""
    dedupe = Deduplicator()
    assert dedupe.seen("a", now=0.0) is False
    assert dedupe.seen("a", now=1.0) is True
    assert dedupe.seen("b", now=1.0) is False
    assert len(dedupe) == 2


def test_deduplicator_forgets_after_the_ttl() -> None:
    """A notice ID is forgotten ttl_s after it was last seen, and expiry frees memory."""
    dedupe = Deduplicator(ttl_s=10.0)
    assert dedupe.seen("a", now=0.0) is False
    assert dedupe.seen("a", now=9.0) is True  # refreshes the entry
    assert dedupe.seen("a", now=18.0) is True
    assert dedupe.seen("b", now=28.5) is False
    assert len(dedupe) == 1
    assert dedupe.seen("a", now=28.5) is False


def test_deduplicator_is_bounded_and_drops_the_least_recent() -> None:
    """Memory never exceeds max_entries; the least recently seen key goes first."""
    dedupe = Deduplicator(max_entries=3)
    for index, key in enumerate("abc"):
        dedupe.seen(key, now=float(index))
    assert dedupe.seen("a", now=3.0) is True  # now the most recent
    assert dedupe.seen("d", now=4.0) is False  # evicts b
    assert len(dedupe) == 3
    assert dedupe.seen("b", now=5.0) is False
    for index in range(10_000):
        dedupe.seen(str(index), now=6.0)
    assert len(dedupe) == 3


def test_deduplicator_seen_event_uses_notice_id() -> None:
    """A resend (same noticeId, new notifyMs) of an event is a repeat."""
    dedupe = Deduplicator()
    first = parse(_body(101, JOINED))
    resend = parse(_body(101, JOINED, notifyMs=1750235999999))
    assert dedupe.seen_event(first, now=0.0) is False
    assert dedupe.seen_event(resend, now=1.0) is True


def test_deduplicator_redundant_mode_drops_the_second_copy() -> None:
    """With redundant=True, a copy with a new noticeId but the same event is dropped."""
    plain, redundant = Deduplicator(), Deduplicator(redundant=True)
    copy_one = parse(_body(102, _left("OK", "STOPPED"), noticeId="n1"))
    copy_two = parse(_body(102, _left("OK", "STOPPED"), noticeId="n2", notifyMs=1))
    assert plain.seen_event(copy_one, now=0.0) is False
    assert plain.seen_event(copy_two, now=0.0) is False
    assert redundant.seen_event(copy_one, now=0.0) is False
    assert redundant.seen_event(copy_two, now=0.0) is True
    assert len(redundant) == 3  # two notice IDs, one event key


def test_deduplicator_redundant_mode_keeps_distinct_events_of_one_agent() -> None:
    """101 and 102 share the sid (the agent ID) and are both handled."""
    dedupe = Deduplicator(redundant=True)
    joined = parse(_body(101, JOINED, noticeId="n1"))
    left = parse(_body(102, _left("OK", "STOPPED"), noticeId="n2"))
    progress = [parse(_legacy(33, {"progress": p}, sequence=i)) for i, p in enumerate((10, 10))]
    assert dedupe.seen_event(joined, now=0.0) is False
    assert dedupe.seen_event(left, now=0.0) is False
    assert dedupe.seen_event(attrs.evolve(progress[0], notice_id="p0"), now=0.0) is False
    assert dedupe.seen_event(attrs.evolve(progress[1], notice_id="p1"), now=0.0) is False


def test_deduplicator_redundant_mode_works_for_events_built_in_code() -> None:
    """Events without a raw body are keyed on their typed fields."""
    dedupe = Deduplicator(redundant=True)
    one = AgentJoined(notice_id="a", event_type=101, sid="s", agent_id="s", start_ts=1)
    two = attrs.evolve(one, notice_id="b")
    other = attrs.evolve(one, notice_id="c", start_ts=2)
    assert dedupe.seen_event(one, now=0.0) is False
    assert dedupe.seen_event(two, now=0.0) is True
    assert dedupe.seen_event(other, now=0.0) is False


def test_deduplicator_forget_event_lets_a_resend_through() -> None:
    """After a failed handling, forget_event() makes the resend count as new."""
    dedupe = Deduplicator(redundant=True)
    event = parse(_body(101, JOINED))
    assert dedupe.seen_event(event, now=0.0) is False
    dedupe.forget_event(event)
    assert len(dedupe) == 0
    assert dedupe.seen_event(event, now=1.0) is False
    dedupe.forget_event(parse(_body(999, None)))  # unknown keys are ignored


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_entries": 0},
        {"max_entries": True},
        {"max_entries": 1.5},
        {"ttl_s": 0},
        {"ttl_s": -1.0},
        {"ttl_s": float("inf")},
        {"ttl_s": float("nan")},
        {"ttl_s": "60"},
    ],
)
def test_deduplicator_refuses_bad_settings(kwargs: dict[str, Any]) -> None:
    """Settings that cannot bound memory or time are configuration errors."""
    with pytest.raises(ConfigurationError):
        Deduplicator(**kwargs)


def test_deduplicator_repr_shows_settings() -> None:
    """The repr shows the settings and the current size."""
    dedupe = Deduplicator(max_entries=5, ttl_s=2.0)
    dedupe.seen("a", now=0.0)
    assert repr(dedupe) == "Deduplicator(max_entries=5, ttl_s=2.0, redundant=False, entries=1)"


def test_public_names_report_the_public_module() -> None:
    """Names defined in the private helper modules point users at notifications, and
    events pickle through it."""
    assert ExitReason.__module__ == "agora_stt_async.notifications"
    assert to_unix_seconds.__module__ == "agora_stt_async.notifications"
    assert pickle.loads(pickle.dumps(ExitReason.IDLE_TIMEOUT)) is ExitReason.IDLE_TIMEOUT
    for cls in (Event, AgentJoined, AgentLeft, LegacyUploaded, UnknownEvent, UnparsedEvent):
        assert cls.__module__ == "agora_stt_async.notifications", cls
    for event in (parse(_body(102, _left("OK", "STOPPED"))), parse(_body(102, {"x": 1}))):
        assert pickle.loads(pickle.dumps(event)) == event
