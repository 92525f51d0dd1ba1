"""Hostile input (issue 7.5): garbage from the server, nonsense from the caller.

Hypothesis drives whole client calls over ``httpx.MockTransport`` with garbage answers
(random bytes and invalid UTF-8, HTML, JSON of the wrong shape and types, missing and
extra fields, absurd timestamps and statuses, huge and deeply nested bodies, any HTTP
status, broken ``Retry-After``). Every call ends in a result or an ``AgoraSTTError``,
within a time bound, after exactly as many attempts as the retry rules allow. Model
constructors get out-of-range and wrongly typed values: they build or raise
``ValidationError``. The emulator answers malformed request bodies with the documented
400 bodies, never a 500.

The examples run synchronously (``anyio.run`` per example, asyncio): hypothesis drives
the inputs, the backend does not matter here, and trio runs the rest of the suite.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import attrs
import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agora_stt_async import (
    AgoraSTTError,
    APIError,
    AsyncClient,
    CaptionConfig,
    JoinRequest,
    LanguagePair,
    LegacyStartRequest,
    RateLimitError,
    ResponseError,
    RetryPolicy,
    RtcConfig,
    StorageConfig,
    TranslateConfig,
    UidLanguages,
    UpdateRequest,
    ValidationError,
)
from agora_stt_async._constants import (
    EMULATOR_APP_ID,
    EMULATOR_CUSTOMER_ID,
    EMULATOR_CUSTOMER_SECRET,
)
from agora_stt_async._errors import error_from_response
from agora_stt_async.emulator import create_app
from agora_stt_async.testing import FakeClock

POLICY: Final = RetryPolicy()  # the real one: real waits, on a FakeClock (instant)
EXAMPLES: Final = settings(
    max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None
)

# --- hostile answers ---------------------------------------------------------------------

_KEYS: Final = [
    "agent_id",
    "status",
    "create_ts",
    "start_ts",
    "message",
    "taskId",
    "createTs",
    "tokenName",
    "instanceId",
    "data",
    "list",
    "count",
    "meta",
    "cursor",
    "total",
    "code",
    "reason",
    "detail",
]
_ABSURD: Final[st.SearchStrategy[object]] = st.sampled_from(
    [
        10**30,
        -(10**30),
        -1,
        2**63,
        1e308,
        -0.0,
        math.inf,
        math.nan,
        "RUNNING ",
        "running",
        "",
        "\x00",
        "Ω" * 50,
        True,
        None,
        [],
        {},
    ]
)
_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), _ABSURD
)
_json_any = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
# Codes sent as text: signs and digits in any order, and digits int() refuses ("²", "٣"),
# which str.isdigit() accepts.
_code_text = st.text(st.sampled_from("-+0123456789²٣ "), min_size=1, max_size=6)
_shaped = st.fixed_dictionaries(
    {},
    optional={
        "agent_id": _json_leaf,
        "status": st.sampled_from(["RUNNING", "STOPPED", "IN_PROGRESS", "LOST", 7]) | _json_leaf,
        "create_ts": _json_leaf,
        "taskId": _json_leaf,
        "createTs": _json_leaf,
        "tokenName": _json_leaf,
        "instanceId": _json_leaf,
        "data": _json_any,
        "meta": _json_any,
        "code": _json_leaf | _code_text,
        "message": _json_leaf,
        "reason": _json_leaf,
        "detail": _json_leaf,
        "extra": _json_any,
    },
)


def _dump(value: object) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity included, as a sloppy server might


bodies = st.one_of(
    st.binary(max_size=200),  # random bytes, mostly invalid UTF-8
    st.sampled_from(
        [
            b"",
            b"   ",
            b"null",
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            b'{"agent_id": "\xff\xfe", "status": "RUNNING"}',
            b'{"agent_id": "a", "status": "RUNNING"',
            b"\xef\xbb\xbf{}",
            b"[" * 50_000 + b"]" * 50_000,  # deep nesting
        ]
    ),
    _json_any.map(_dump),
    _shaped.map(_dump),
)
statuses = st.one_of(
    st.just(200),
    st.sampled_from([400, 401, 404, 409, 429, 500, 502, 503, 504]),
    st.integers(100, 599),
)
retry_afters = st.one_of(
    st.none(),
    st.sampled_from(["1", "0", "-5", "1e309", "inf", "nan", "99999999999", "", "Wed, 21 Oct"]),
)


@attrs.define
class Garbage:
    """A transport that answers every request with the same hostile response."""

    status: int
    body: bytes
    retry_after: str | None
    calls: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        headers = {"Content-Type": "application/json"}
        if self.retry_after is not None:
            headers["Retry-After"] = self.retry_after
        return httpx.Response(self.status, headers=headers, content=self.body)


def _client(garbage: Garbage) -> AsyncClient:
    return AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=httpx.MockTransport(garbage.handle),
        retry=POLICY,
        clock=FakeClock(),
    )


JOIN: Final = JoinRequest(
    name="a", languages=["en-US"], rtc_config=RtcConfig(channel_name="c", pub_bot_uid="1")
)
LEGACY: Final = LegacyStartRequest(
    languages=["en-US"], rtc_config=RtcConfig(channel_name="c", pub_bot_uid="1", sub_bot_uid="2")
)
Call = Callable[[AsyncClient], Awaitable[object]]


async def _first_page(client: AsyncClient) -> object:
    async for page in client.agents.list().pages():
        return page
    return None


# name → (call, idempotent)
CALLS: Final[dict[str, tuple[Call, bool]]] = {
    "agents.get": (lambda c: c.agents.get("agent1"), True),
    "agents.list": (_first_page, True),
    "agents.leave": (lambda c: c.agents.leave("agent1"), True),
    "agents.join": (lambda c: c.agents.join(JOIN), False),
    "legacy.acquire": (lambda c: c.legacy.acquire("c"), False),
    "legacy.start": (lambda c: c.legacy.start("tok", LEGACY), False),
    "legacy.query": (lambda c: c.legacy.query("task1", "tok"), True),
    "legacy.stop": (lambda c: c.legacy.stop("task1", "tok"), True),
}


def _run(name: str, garbage: Garbage) -> BaseException | None:
    call, _ = CALLS[name]

    async def main() -> BaseException | None:
        with anyio.fail_after(10):  # nothing hangs (waits are on the FakeClock)
            async with _client(garbage) as client:
                try:
                    await call(client)
                except AgoraSTTError as error:
                    return error
        return None

    return anyio.run(main)


def _allowed_attempts(error: BaseException | None, idempotent: bool) -> int:
    """How many attempts the rules allow for this outcome (1 = never retried)."""
    if error is None or isinstance(error, ResponseError) or not isinstance(error, APIError):
        return 1
    if not error.retryable:
        return 1
    if not idempotent and not isinstance(error, RateLimitError):
        return 1
    return POLICY.attempts


@EXAMPLES
@given(
    name=st.sampled_from(sorted(CALLS)),
    status=statuses,
    body=bodies,
    retry_after=retry_afters,
)
@example(name="agents.get", status=200, body=b"x" * 2_000_000, retry_after=None)  # huge
@example(name="agents.list", status=503, body=b"<" * 2_000_000, retry_after="1")
@example(name="agents.join", status=503, body=b"", retry_after=None)
@example(name="legacy.start", status=200, body=b"[" * 50_000, retry_after=None)
# Codes as text that once raised a bare ValueError (str.isdigit() said yes, int() no).
@example(name="agents.get", status=502, body=b'{"code":"--5","message":"x"}', retry_after=None)
@example(name="agents.join", status=502, body=b'{"code":"--0"}', retry_after=None)
@example(name="legacy.query", status=400, body='{"code":"²"}'.encode(), retry_after=None)
@example(name="agents.get", status=502, body=b'{"code":"' + b"9" * 5000 + b'"}', retry_after=None)
def test_hostile_answers_give_typed_errors_and_only_allowed_retries(
    name: str, status: int, body: bytes, retry_after: str | None
) -> None:
    garbage = Garbage(status, body, retry_after)
    error = _run(name, garbage)  # anything but an AgoraSTTError propagates and fails
    _, idempotent = CALLS[name]
    if status != 200:
        assert isinstance(error, APIError)
        assert error.status_code == status
    if isinstance(error, ResponseError):
        assert garbage.calls == 1  # a broken 200 is never repeated
    allowed = _allowed_attempts(error, idempotent)
    assert 1 <= garbage.calls <= allowed
    if allowed == 1:
        assert garbage.calls == 1
    str(error)
    repr(error)


@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(100, 599).filter(lambda status: status != 200),
    body=st.one_of(
        _shaped,
        st.fixed_dictionaries({"code": _code_text}, optional={"message": _json_leaf}),
    ).map(_dump),
    operation=st.sampled_from(["", "start", "acquire", "join", "query"]),
)
@example(status=502, body=b'{"code":"--5","message":"gateway"}', operation="join")
@example(status=400, body='{"code":"²"}'.encode(), operation="")
@example(status=502, body=b'{"code":"' + b"9" * 5000 + b'"}', operation="start")
def test_hostile_error_bodies_always_give_an_api_error(
    status: int, body: bytes, operation: str
) -> None:
    """Any failure body, however its ``code`` is spelled, gives an ``APIError``: never a
    bare ``ValueError`` (a code of "--0" once killed a session's task group)."""
    error = error_from_response(status, body, request_id="r", operation=operation)
    assert isinstance(error, APIError)
    assert error.status_code == status
    assert error.code is None or isinstance(error.code, int)
    str(error)


@pytest.mark.parametrize("name", ["agents.join", "legacy.start", "legacy.acquire"])
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_hostile_5xx_on_a_creating_call_is_sent_once(name: str, status: int) -> None:
    """A join/start/acquire answered 5xx may have taken effect: exactly one attempt."""
    garbage = Garbage(status, b"<html>oops</html>", "1")
    error = _run(name, garbage)
    assert isinstance(error, APIError)
    assert error.retryable
    assert garbage.calls == 1


@pytest.mark.parametrize("name", ["agents.get", "agents.list", "legacy.query", "legacy.stop"])
def test_hostile_5xx_on_a_reading_call_is_retried_to_the_limit(name: str) -> None:
    """The same garbage on an idempotent call is retried up to ``attempts``: the
    property above is not vacuous."""
    garbage = Garbage(503, b"<html>oops</html>", None)
    assert isinstance(_run(name, garbage), APIError)
    assert garbage.calls == POLICY.attempts


# --- hostile constructor arguments -------------------------------------------------------

_hostile_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["", " ", "a" * 5000, "\x00", "en-US", "zz-ZZ", "-1", "1e9"]),
    st.binary(max_size=5),
    st.lists(st.text(max_size=6) | st.integers(), max_size=8),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.tuples(),
)
MODELS: Final = [
    RtcConfig,
    JoinRequest,
    LegacyStartRequest,
    UpdateRequest,
    StorageConfig,
    CaptionConfig,
    TranslateConfig,
    LanguagePair,
    UidLanguages,
]


@st.composite
def _kwargs(draw: st.DrawFn, cls: type) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for field in attrs.fields(cls):
        if not field.init:
            continue
        optional = field.default is not attrs.NOTHING
        if optional and draw(st.booleans()):
            continue
        kwargs[field.alias or field.name] = draw(_hostile_value)
    return kwargs


@EXAMPLES
@given(data=st.data(), cls=st.sampled_from(MODELS))
def test_hostile_constructor_values_are_validation_errors(data: st.DataObject, cls: type) -> None:
    kwargs = data.draw(_kwargs(cls))
    outcome: object
    try:
        outcome = cls(**kwargs)
    except ValidationError as error:  # anything else propagates and fails the test
        outcome = error
    assert isinstance(outcome, (cls, ValidationError))
    assert repr(outcome)


# --- the emulator refuses malformed requests with the documented 400 bodies --------------

V7: Final = f"/api/speech-to-text/v1/projects/{EMULATOR_APP_ID}"
LEGACY_PREFIX: Final = f"/v1/projects/{EMULATOR_APP_ID}/rtsc/speech-to-text"


@settings(max_examples=40, deadline=None)
@given(
    route=st.sampled_from(["join", "acquire", "start"]),
    body=st.one_of(
        st.binary(max_size=80),
        _json_any.map(_dump),
        _shaped.map(_dump),
        st.sampled_from([b"", b"{x", b"[]", b"null", b"{}"]),
    ),
)
def test_hostile_emulator_answers_malformed_requests_with_400(route: str, body: bytes) -> None:
    async def main() -> httpx.Response:
        app = create_app(seed=0)
        auth = (EMULATOR_CUSTOMER_ID, EMULATOR_CUSTOMER_SECRET)
        async with httpx.AsyncClient(
            transport=app.transport(), base_url="http://emulator", auth=auth
        ) as raw:
            headers = {"Content-Type": "application/json"}
            if route == "join":
                return await raw.post(f"{V7}/join", content=body, headers=headers)
            if route == "acquire":
                return await raw.post(
                    f"{LEGACY_PREFIX}/builderTokens", content=body, headers=headers
                )
            token = await raw.post(f"{LEGACY_PREFIX}/builderTokens", json={"instanceId": "c"})
            params = {"builderToken": token.json()["tokenName"]}
            return await raw.post(
                f"{LEGACY_PREFIX}/tasks", params=params, content=body, headers=headers
            )

    async def bounded() -> httpx.Response:
        with anyio.fail_after(10):
            return await main()

    response = anyio.run(bounded)
    assert response.status_code == 400, response.text
    answer = response.json()
    if route == "join":
        assert set(answer) >= {"detail", "reason"}  # spec: v7 400 {detail, reason}
        assert answer["reason"]
    else:
        # spec §6.1: legacy {message[, code]} or {code, reason}
        text = answer.get("message") or answer.get("reason")
        assert isinstance(text, str)
        assert text
