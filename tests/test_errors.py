"""The error tree and ``error_from_response``: one table over the documented catalogue."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora_stt_async import (
    AgoraSTTError,
    APIError,
    AuthenticationError,
    BadRequestError,
    BuilderTokenError,
    BuilderTokenExpiredError,
    ConfigurationError,
    ConflictError,
    ConnectError,
    ConnectionLost,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeout,
    ResponseError,
    ServerError,
    ServiceNotEnabledError,
    StopIncompleteError,
    TaskAlreadyStartedError,
    UsageError,
    ValidationError,
)
from agora_stt_async._errors import error_from_response

TASK_ID = "c662ce961441cd8dc22f858ab7cec4d4"
STARTED = f"The task has been started, current status is STARTED, taskId is {TASK_ID}"


def _body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


RAW = "<the raw body>"
"""``case(excerpt=RAW)``: the excerpt is the body's text, whitespace collapsed (spec §6.2:
keep the raw text, JSON bodies included)."""


def case(
    status: int,
    body: bytes,
    cls: type[APIError],
    *,
    id: str,
    retryable: bool = False,
    backoff: tuple[float, ...] = (),
    retry_after: str | None = None,
    retry_after_s: float | None = None,
    excerpt: str | None = RAW,
) -> Any:
    return pytest.param(
        status,
        body,
        cls,
        retryable,
        backoff,
        retry_after,
        retry_after_s,
        excerpt,
        id=id,
    )


CATALOGUE = [
    # spec §6.1 / §3.1: the two documented body shapes
    case(
        401,
        _body({"message": "Invalid authentication credentials"}),
        AuthenticationError,
        id="auth-401-message-only",
    ),
    case(
        400,
        _body({"code": 2, "reason": "Acquire: invalid resourceExpiredHour value!"}),
        BadRequestError,
        id="legacy-400-code-and-reason-only",
    ),
    # spec §3.2: RTC-token auth failures
    case(401, _body({"message": "Token is expired"}), AuthenticationError, id="token-expired"),
    case(401, _body({"message": "Invalid token"}), AuthenticationError, id="token-invalid"),
    # spec §6.1 HTTP statuses without a documented body
    case(201, b"", ConflictError, id="status-201-already-running", excerpt=""),
    case(206, b"", APIError, id="status-206-no-audio"),
    case(400, b"", BadRequestError, id="status-400"),
    case(401, b"", AuthenticationError, id="status-401"),
    case(404, b"", NotFoundError, id="status-404"),
    case(409, b"", ConflictError, id="status-409"),
    case(500, b"", ServerError, id="status-500", retryable=True),
    case(504, b"", ServerError, id="status-504", retryable=True),
    # spec §6.1 messages
    case(
        400,
        _body({"message": "the product name does not match with builderToken"}),
        BuilderTokenError,
        id="legacy-message-product-name",
    ),
    case(
        400,
        _body({"message": "resourceId reaches out the limited time interval!"}),
        BuilderTokenExpiredError,
        id="legacy-message-token-expired",
    ),
    case(
        400,
        _body({"code": 62, "message": "invalid_appid!"}),
        ServiceNotEnabledError,
        id="legacy-message-invalid-appid",
    ),
    case(
        504,
        _body({"message": "invalid_appid"}),
        ServiceNotEnabledError,
        id="legacy-observed-invalid-appid-504",
    ),
    case(
        400,
        _body({"code": 2, "message": "body schema check fail, languages: too many items"}),
        BadRequestError,
        id="legacy-message-schema",
    ),
    case(
        400,
        _body({"code": 53, "message": "The taskId does not match with builderToken."}),
        BuilderTokenError,
        id="legacy-message-task-token-mismatch",
    ),
    case(
        404,
        _body({"code": 404, "message": "The task is not found"}),
        NotFoundError,
        id="legacy-message-task-not-found",
    ),
    case(
        409,
        _body({"code": 49, "message": STARTED}),
        TaskAlreadyStartedError,
        id="legacy-message-task-started",
    ),
    # spec §6.1 numeric codes
    case(500, _body({"code": 1}), ServerError, id="legacy-code-1"),
    case(400, _body({"code": 2}), BadRequestError, id="legacy-code-2"),
    case(500, _body({"code": 6}), ServerError, id="legacy-code-6"),
    case(
        400,
        _body({"code": 20, "message": "processing timeout"}),
        ServerError,
        id="legacy-code-20",
        retryable=True,
        backoff=(3.0, 6.0),
    ),
    case(500, _body({"code": 23}), ServerError, id="legacy-code-23"),
    case(400, _body({"code": 49}), ConflictError, id="legacy-code-49"),
    case(400, _body({"code": 53}), BuilderTokenError, id="legacy-code-53"),
    case(400, _body({"code": 62}), ServiceNotEnabledError, id="legacy-code-62"),
    case(404, _body({"code": 404}), NotFoundError, id="legacy-code-404"),
    case(
        500,
        _body({"code": 501}),
        ServerError,
        id="legacy-code-501",
        retryable=True,
        backoff=(1.0, 3.0, 6.0),
    ),
    case(
        500,
        _body({"code": 502}),
        ServerError,
        id="legacy-code-502",
        retryable=True,
        backoff=(1.0, 3.0, 6.0),
    ),
    case(
        500,
        _body({"code": 504}),
        ServerError,
        id="legacy-code-504",
        retryable=True,
        backoff=(1.0, 3.0, 6.0),
    ),
    case(400, _body({"code": 1001}), BuilderTokenError, id="legacy-code-1001"),
    case(400, _body({"code": 1003}), BuilderTokenError, id="legacy-code-1003"),
    # spec §6.2 v7 reasons with their statuses
    case(
        400,
        _body({"detail": "body is not JSON", "reason": "InvalidRequestBody"}),
        BadRequestError,
        id="v7-400-InvalidRequestBody",
    ),
    case(
        400,
        _body({"detail": "name is required", "reason": "MissingRequiredField"}),
        BadRequestError,
        id="v7-400-MissingRequiredField",
    ),
    case(
        400,
        _body({"detail": "maxIdleTime out of range", "reason": "InvalidFieldValue"}),
        BadRequestError,
        id="v7-400-InvalidFieldValue",
    ),
    case(
        400,
        _body(
            {
                "detail": "create agent failed, code: 400, msg: properties: channel not found",
                "reason": "InvalidRequest",
            }
        ),
        BadRequestError,
        id="v7-400-InvalidRequest-analogue-example",
    ),
    case(401, _body({"detail": "bad credentials"}), AuthenticationError, id="v7-401"),
    case(
        403,
        _body({"detail": "stt off", "reason": "ServiceNotEnabled"}),
        ServiceNotEnabledError,
        id="v7-403-ServiceNotEnabled",
    ),
    case(
        403,
        _body({"detail": "suspended", "reason": "AccountSuspended"}),
        PermissionDeniedError,
        id="v7-403-AccountSuspended",
    ),
    case(
        403,
        _body({"detail": "no", "reason": "InvalidPermission"}),
        PermissionDeniedError,
        id="v7-403-InvalidPermission",
    ),
    case(
        404,
        _body({"detail": "agent not found", "reason": "TaskNotFound"}),
        NotFoundError,
        id="v7-404-TaskNotFound",
    ),
    case(
        409,
        _body({"detail": "name in use", "reason": "TaskConflict"}),
        ConflictError,
        id="v7-409-TaskConflict",
    ),
    case(
        422,
        _body({"detail": "quota", "reason": "ResourceQuotaLimitExceeded"}),
        QuotaExceededError,
        id="v7-422-ResourceQuotaLimitExceeded",
    ),
    case(
        422,
        _body({"detail": "too many", "reason": "ConcurrencyLimitExceeded"}),
        QuotaExceededError,
        id="v7-422-ConcurrencyLimitExceeded",
    ),
    case(
        429,
        _body({"detail": "slow down"}),
        RateLimitError,
        id="v7-429-retry-after",
        retryable=True,
        retry_after="7",
        retry_after_s=7.0,
    ),
    case(
        429,
        b"",
        RateLimitError,
        id="v7-429-retry-after-http-date-ignored",
        retryable=True,
        retry_after="Wed, 21 Oct 2026 07:28:00 GMT",
        retry_after_s=None,
    ),
    case(
        500,
        _body({"detail": "boom", "reason": "InternalError"}),
        ServerError,
        id="v7-500-InternalError",
        retryable=True,
    ),
    case(
        500,
        _body({"detail": "slow", "reason": "TaskOperationTimeout"}),
        ServerError,
        id="v7-500-TaskOperationTimeout",
        retryable=True,
    ),
    case(
        500,
        _body({"detail": "nope", "reason": "NotImplemented"}),
        ServerError,
        id="v7-500-NotImplemented",
        retryable=True,
    ),
    case(502, _body({"detail": "gateway"}), ServerError, id="v7-502", retryable=True),
    case(
        503,
        _body({"detail": "start failed", "reason": "ServiceUnavailable"}),
        ServerError,
        id="v7-503-ServiceUnavailable",
        retryable=True,
    ),
    case(
        503,
        _body({"detail": "no capacity", "reason": "ResourceAllocationFailed"}),
        ServerError,
        id="v7-503-ResourceAllocationFailed",
        retryable=True,
    ),
    case(504, _body({"detail": "timeout"}), ServerError, id="v7-504", retryable=True),
    # spec §4.5: the query-style failure body; §4.6: the update guide's {message}
    case(
        404,
        _body(
            {
                "message": "Details of the failed request.",
                "agent_id": "1NT29X11GQSxxxxx80BEIN56XF",
                "create_ts": None,
                "status": "FAILED",
            }
        ),
        NotFoundError,
        id="v7-query-failure-body",
    ),
    case(400, _body({"message": "string"}), BadRequestError, id="v7-update-guide-message"),
    # bodies that are not JSON objects
    case(
        502,
        b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        ServerError,
        id="html-502",
        retryable=True,
        excerpt="<html><body><h1>502 Bad Gateway</h1></body></html>",
    ),
    case(503, b"", ServerError, id="empty-503", retryable=True, excerpt=""),
    case(400, b"\xff\xfe\xfa not utf-8", BadRequestError, id="invalid-utf8", excerpt=None),
    case(400, b"[1, 2]", BadRequestError, id="json-array", excerpt="[1, 2]"),
]


@pytest.mark.parametrize(
    ("status", "body", "cls", "retryable", "backoff", "retry_after", "retry_after_s", "excerpt"),
    CATALOGUE,
)
def test_error_from_response_catalogue(
    status, body, cls, retryable, backoff, retry_after, retry_after_s, excerpt
):
    """Every documented failure maps to its class with the body's fields as attributes."""
    error = error_from_response(
        status,
        body,
        request_id="req_123",
        retry_after=retry_after,
        method="POST",
        url="https://api.agora.io/x",
    )
    assert type(error) is cls
    assert isinstance(error, APIError)
    decoded: dict[str, Any] = {}
    try:
        parsed = json.loads(body) if body.strip() else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        decoded = parsed
    assert error.status_code == status
    assert error.code == decoded.get("code")
    assert error.message == decoded.get("message")
    assert error.reason == decoded.get("reason")
    assert error.detail == decoded.get("detail")
    assert error.request_id == "req_123"
    assert error.retryable is retryable
    assert error.retry_after == retry_after_s
    assert error.backoff == backoff
    if excerpt is None:
        assert error.body_excerpt.startswith("\ufffd")
        assert "not utf-8" in error.body_excerpt
    elif excerpt is RAW:
        assert error.body_excerpt == " ".join(body.decode().split())
    else:
        assert error.body_excerpt == excerpt
    text = str(error)
    assert f"HTTP {status}" in text
    assert "[request id req_123]" in text
    what = decoded.get("message") or decoded.get("detail")
    if what:
        assert what in text


def test_error_task_already_started_carries_task_id():
    """The existing taskId is parsed from the repeated-start message."""
    error = error_from_response(409, _body({"code": 49, "message": STARTED}))
    assert isinstance(error, TaskAlreadyStartedError)
    assert isinstance(error, ConflictError)
    assert error.task_id == TASK_ID
    same = error_from_response(201, _body({"message": STARTED}))
    assert isinstance(same, TaskAlreadyStartedError)
    assert same.task_id == TASK_ID


def test_error_task_already_started_without_id():
    """A repeated-start message with no id still classifies, with task_id None."""
    error = error_from_response(
        409, _body({"message": "The task has been started, current status is STARTED"})
    )
    assert isinstance(error, TaskAlreadyStartedError)
    assert error.task_id is None


def test_error_schema_message_on_5xx_is_not_retryable():
    """A 5xx whose body names a client-side cause keeps its class and is not retried."""
    error = error_from_response(500, _body({"code": 2, "message": "body schema check fail, x"}))
    assert type(error) is BadRequestError
    assert error.retryable is False


def test_error_excerpt_is_bounded():
    """A huge non-JSON body is cut to a short, whitespace-collapsed excerpt."""
    error = error_from_response(502, b"<html>\n\n" + b"x" * 10_000)
    assert len(error.body_excerpt) <= 203
    assert error.body_excerpt.startswith("<html> xxx")
    assert error.body_excerpt.endswith("...")


def test_error_url_query_tokens_are_masked():
    """An error never keeps a builder token from the URL it names."""
    error = error_from_response(
        404, b"", url="https://api.agora.io/t/1?builderToken=SECRET&sequenceId=1"
    )
    assert "SECRET" not in error.url
    assert "SECRET" not in str(error)
    assert "sequenceId=1" in error.url


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param("20", 20, id="digits"),
        pytest.param(" 77 ", 77, id="spaces"),
        pytest.param("-1", -1, id="negative"),
        pytest.param("--5", None, id="two-signs"),
        pytest.param("--0", None, id="two-signs-zero"),
        pytest.param("²", None, id="superscript-digit"),
        pytest.param("9" * 5000, None, id="past-int-str-digits"),
        pytest.param("1e3", None, id="exponent"),
        pytest.param("", None, id="empty"),
    ],
)
def test_error_code_text_is_parsed_strictly(code, expected):
    """A code sent as text is read only when it is a plain integer; anything else is no
    code, never a bare ValueError ("²" passes str.isdigit() but not int())."""
    error = error_from_response(502, _body({"code": code, "message": "gateway"}))
    assert isinstance(error, ServerError)
    assert error.code == expected
    assert error.message == "gateway"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"error": "Internal failure XYZ"}, "Internal failure XYZ", id="string"),
        pytest.param(
            {"error": {"code": 13, "message": "Internal failure XYZ", "status": "INTERNAL"}},
            "Internal failure XYZ",
            id="nested",
        ),
        pytest.param({"message": "first", "error": "second"}, "first", id="message-wins"),
    ],
)
def test_error_json_body_falls_back_to_error_and_keeps_its_text(body, message):
    """spec §6.2: a JSON failure body keeps its raw text, and ``error`` (a string, or
    ``error.message``) is the message when ``message`` is missing."""
    raw = _body(body)
    error = error_from_response(500, raw, method="GET", url="https://h/a")
    assert type(error) is ServerError
    assert error.message == message
    assert f"HTTP 500: {message} (GET https://h/a)" in str(error)
    assert error.body_excerpt == raw.decode()


def test_error_excerpt_masks_credentials():
    """A failure body that echoes a builder token or a storage key keeps neither in the
    error: its excerpt masks them, even when the cut falls inside the value."""
    token = "BUILDERTOKENSECRET" + "x" * 300
    body = _body({"message": "bad", "tokenName": token, "secretKey": "STORAGEKEY9"})
    error = error_from_response(400, body)
    assert "BUILDERTOKENSECRET" not in repr(vars(error))
    assert "STORAGEKEY9" not in repr(vars(error))
    assert '"tokenName": "***"' in error.body_excerpt
    cut = error_from_response(400, b'{"x": "' + b"y" * 780 + b'", "builderToken": "SECRETTAIL')
    assert "SECRET" not in cut.body_excerpt


@pytest.mark.parametrize(
    ("operation", "cls", "retryable"),
    [
        pytest.param("start", ServerError, True, id="start-network-problem"),
        pytest.param("acquire", ServiceNotEnabledError, False, id="acquire-not-enabled"),
        pytest.param("", ServiceNotEnabledError, False, id="unknown-operation"),
    ],
)
def test_error_code_62_depends_on_the_operation(operation, cls, retryable):
    """spec §6.1: code 62 is "STT not enabled" on acquire, but "not started because of a
    network problem" on start: a server failure that may pass."""
    error = error_from_response(400, _body({"code": 62}), operation=operation)
    assert type(error) is cls
    assert error.retryable is retryable
    # The documented message still names a disabled App ID, whatever the operation.
    named = error_from_response(
        400, _body({"code": 62, "message": "invalid_appid!"}), operation=operation
    )
    assert type(named) is ServiceNotEnabledError


def test_error_transport_carries_the_request_id():
    """A transport failure names the X-Request-Id the SDK sent, for Agora's support."""
    error = RequestTimeout("no answer", method="POST", url="https://h/join", request_id="sdk_42")
    assert error.request_id == "sdk_42"
    assert "[request id sdk_42]" in str(error)
    assert ConnectError("x").request_id is None


@given(status=st.integers(201, 599), body=st.binary(max_size=300))
def test_error_from_response_hostile_bytes(status, body):
    """Any status and any bytes give an APIError, never another exception."""
    error = error_from_response(status, body, retry_after="x")
    assert isinstance(error, APIError)
    assert error.status_code == status
    assert error.retry_after is None


_json = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(
    status=st.integers(201, 599),
    body=st.dictionaries(
        st.sampled_from(["message", "code", "reason", "detail", "status", "x"]), _json
    ),
)
def test_error_from_response_hostile_json(status, body):
    """Any JSON object with wrongly typed fields still gives an APIError."""
    error = error_from_response(status, json.dumps(body).encode())
    assert isinstance(error, APIError)
    assert error.code is None or isinstance(error.code, int)
    for name in ("message", "reason", "detail"):
        value = getattr(error, name)
        assert value is None or isinstance(value, str)
    str(error)


# --- the tree ---------------------------------------------------------------------------


def test_error_base_cannot_be_raised():
    """AgoraSTTError is a base class only."""
    with pytest.raises(TypeError, match="base class"):
        AgoraSTTError("boom")
    with pytest.raises(TypeError):
        raise AgoraSTTError("boom")


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        pytest.param(ConfigurationError, (AgoraSTTError, ValueError), id="configuration"),
        pytest.param(ValidationError, (AgoraSTTError, ValueError), id="validation"),
        pytest.param(UsageError, (AgoraSTTError, RuntimeError), id="usage"),
        pytest.param(ConnectError, (AgoraSTTError,), id="connect"),
        pytest.param(TaskAlreadyStartedError, (ConflictError, APIError), id="task-started"),
        pytest.param(BuilderTokenExpiredError, (BuilderTokenError, APIError), id="token-expired"),
        pytest.param(PaginationError, (ResponseError, AgoraSTTError), id="pagination"),
    ],
)
def test_error_tree_bases(cls, bases):
    """The builtin co-bases and parents are those of the documented tree."""
    for base in bases:
        assert issubclass(cls, base)


def test_error_transport_maybe_processed():
    """Only a ConnectError is known not to have reached the server."""
    assert ConnectError("x").maybe_processed is False
    assert RequestTimeout("x").maybe_processed is True
    assert ConnectionLost("x").maybe_processed is True


PICKLED = [
    pytest.param(
        error_from_response(
            429,
            _body({"detail": "slow", "reason": "x"}),
            request_id="r1",
            retry_after="3",
            method="GET",
            url="https://h/p?builderToken=abc",
        ),
        id="rate-limit",
    ),
    pytest.param(error_from_response(409, _body({"code": 49, "message": STARTED})), id="started"),
    pytest.param(error_from_response(400, _body({"code": 20})), id="code-20"),
    pytest.param(error_from_response(502, b"<html>"), id="html"),
    pytest.param(ValidationError("languages", "at most 4 items", ["a"]), id="validation"),
    pytest.param(ConfigurationError("missing credential"), id="configuration"),
    pytest.param(UsageError("closed"), id="usage"),
    pytest.param(ConnectError("no", method="GET", url="https://h/p?token=abc"), id="connect"),
    pytest.param(RequestTimeout("slow", method="POST", url="https://h/p"), id="timeout"),
    pytest.param(
        RequestTimeout("slow", method="POST", url="https://h/j", request_id="sdk_1"),
        id="timeout-with-request-id",
    ),
    pytest.param(ConnectionLost("gone"), id="lost"),
    pytest.param(ResponseError("bad body", request_id="r", body_excerpt="<x>"), id="response"),
    pytest.param(PaginationError("loop", request_id="r"), id="pagination"),
    pytest.param(StopIncompleteError(("a", "b")), id="stop-incomplete"),
]


@pytest.mark.parametrize("error", PICKLED)
def test_error_pickle_round_trip(error):
    """Errors carry plain data, so they survive pickling with every attribute."""
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert str(clone) == str(error)
    assert clone.args == error.args
    assert vars(clone) == vars(error)
