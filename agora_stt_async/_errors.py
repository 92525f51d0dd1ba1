"""Every error the SDK raises, and the one place that reads error bodies.

The tree::

    AgoraSTTError                         base; never raised itself
    ├── ConfigurationError (ValueError)   missing credential, insecure base URL, bad options
    ├── ValidationError (ValueError)      a request breaks a documented limit: .field .limit
    ├── UsageError (RuntimeError)         local misuse: closed client, stopped handle, ...
    ├── TransportError                    no complete answer; .maybe_processed .request_id
    │   ├── ConnectError                    never reached the server: safe to retry anything
    │   ├── RequestTimeout                  sent, no answer in time (or within the call's
    │   │                                   deadline): may have been processed
    │   └── ConnectionLost                  sent, connection dropped: may have been processed
    ├── APIError                          the server answered with a failure:
    │   │                                   .status_code .code .message .reason .detail
    │   │                                   .request_id .body_excerpt .retryable .retry_after
    │   ├── BadRequestError                 400, code 2, "body schema check fail, ..."
    │   ├── ServiceNotEnabledError          "invalid_appid!", code 62, 403 ServiceNotEnabled
    │   ├── AuthenticationError             401
    │   ├── PermissionDeniedError           403
    │   ├── NotFoundError                   404, code 404, "The task is not found", TaskNotFound
    │   ├── ConflictError                   409, 201, code 49, TaskConflict
    │   │   └── TaskAlreadyStartedError       "... taskId is <id>": carries .task_id
    │   ├── BuilderTokenError               codes 1001 / 53 / 1003, token mismatch messages
    │   │   └── BuilderTokenExpiredError      "resourceId reaches out the limited time interval!"
    │   ├── QuotaExceededError              422
    │   ├── RateLimitError                  429; .retry_after
    │   └── ServerError                     5xx, codes 1, 6, 20, 23, 501, 502, 504; 62 on start
    ├── NotificationError (ValueError)    an NCS callback body that is not a documented event
    │   ├── SignatureError                  its signature headers are missing or do not match
    │   └── BodyTooLargeError               larger than the receiver's max_body: answer 413
    ├── ResponseError                     a success status with a body the spec does not allow
    │   └── PaginationError                 the server repeated a cursor or a page of items
    └── SessionError                      the session could not keep a promise
        └── StopIncompleteError             exit could not confirm every stop: .keys

Errors carry plain data (no httpx objects), so they pickle and hold no credential: the
URL in them has token-like query values masked, body excerpts have credential-like
values masked (``tokenName``, ``secretKey``, ...), and no header is kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import ClassVar, Final

from agora_stt_async._constants import CODE_5XX_BACKOFF_S, CODE_20_BACKOFF_S
from agora_stt_async._secrets import redact_text, redact_url

__all__ = [
    "APIError",
    "AgoraSTTError",
    "AuthenticationError",
    "BadRequestError",
    "BuilderTokenError",
    "BuilderTokenExpiredError",
    "ConfigurationError",
    "ConflictError",
    "ConnectError",
    "ConnectionLost",
    "NotFoundError",
    "BodyTooLargeError",
    "NotificationError",
    "PaginationError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "RequestTimeout",
    "ResponseError",
    "ServerError",
    "ServiceNotEnabledError",
    "SessionError",
    "SignatureError",
    "StopIncompleteError",
    "TaskAlreadyStartedError",
    "TransportError",
    "UsageError",
    "ValidationError",
    "error_from_response",
]

EXCERPT_CHARS: Final = 200


class AgoraSTTError(Exception):
    """Base class of every error this SDK raises."""

    def __init__(self, message: str) -> None:
        if type(self) is AgoraSTTError:
            raise TypeError("AgoraSTTError is a base class; raise a subclass")
        super().__init__(message)


class ConfigurationError(AgoraSTTError, ValueError):
    """The client or session was configured in a way that cannot work."""


class ValidationError(AgoraSTTError, ValueError):
    """A request breaks a documented limit; nothing was sent.

    ``field`` is the Python name of the offending field (dotted for nested ones) and
    ``limit`` says what the documentation allows.
    """

    def __init__(self, field: str, limit: str, value: object = None) -> None:
        self.field = field
        self.limit = limit
        self.value = value
        super().__init__(f"{field}: {limit}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.field, self.limit, self.value))


class UsageError(AgoraSTTError, RuntimeError):
    """The SDK was used in a way it does not allow (a closed client, a stopped handle)."""


class TransportError(AgoraSTTError):
    """No complete answer came back.

    ``maybe_processed`` is ``True`` when the request may have reached the server and
    taken effect: a non-idempotent call (join, start, acquire) must then be reconciled,
    not blindly repeated. ``request_id`` is the ``X-Request-Id`` the SDK sent (no answer
    carried the server's): quote it to Agora support to learn whether, say, a join that
    timed out happened.
    """

    maybe_processed: ClassVar[bool] = True

    def __init__(
        self, message: str, *, method: str = "", url: str = "", request_id: str | None = None
    ) -> None:
        self.method = method
        self.url = redact_url(url)
        self.request_id = request_id
        text = f"{message} ({method} {self.url})" if method else message
        if request_id:
            text += f" [request id {request_id}]"
        super().__init__(text)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_transport,
            (type(self), self.args[0], self.method, self.url, self.request_id),
        )


def _rebuild_transport(
    cls: type[TransportError], text: str, method: str, url: str, request_id: str | None = None
) -> TransportError:
    error = cls.__new__(cls)
    Exception.__init__(error, text)
    error.method, error.url, error.request_id = method, url, request_id
    return error


class ConnectError(TransportError):
    """The request never reached the server: the connection could not be opened, or
    the call's total deadline (``RetryPolicy.timeout``) passed before it was sent."""

    maybe_processed: ClassVar[bool] = False


class RequestTimeout(TransportError):
    """The request was sent but no answer came in time: within the per-request
    ``timeout``, or within what was left of the call's total deadline."""


class ConnectionLost(TransportError):
    """The connection dropped after the request was sent."""


class APIError(AgoraSTTError):
    """The server answered with a failure.

    Attributes:
        status_code: the HTTP status.
        code: Agora's numeric ``code`` from the body, when there is one.
        message: the body's ``message`` (legacy and auth errors); else its ``error``
            (a string, or ``error.message``), as public clients fall back to (spec §6.2).
        reason: the body's ``reason`` (v7 and some legacy errors).
        detail: the body's ``detail`` (v7).
        request_id: the ``X-Request-Id`` of the exchange; quote it to Agora support.
        body_excerpt: the first characters of the raw body (whitespace collapsed,
            credential-like values masked), whatever its format.
        retryable: whether the same request may succeed later.
        retry_after: seconds the server asked to wait (``Retry-After``), if any.
        backoff: the documented wait schedule for this error, if the docs give one.
    """

    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        *,
        status_code: int,
        code: int | None = None,
        message: str | None = None,
        reason: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
        body_excerpt: str = "",
        retry_after: float | None = None,
        method: str = "",
        url: str = "",
        retryable: bool | None = None,
        backoff: tuple[float, ...] = (),
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.reason = reason
        self.detail = detail
        self.request_id = request_id
        self.body_excerpt = body_excerpt
        self.retry_after = retry_after
        self.method = method
        self.url = redact_url(url)
        self.retryable = self.default_retryable if retryable is None else retryable
        self.backoff = backoff
        super().__init__(self._describe())

    def _describe(self) -> str:
        what = self.message or self.detail or self.reason or self.body_excerpt or ""
        parts = [f"HTTP {self.status_code}"]
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.reason and self.reason != what:
            parts.append(self.reason)
        text = ", ".join(parts)
        if what:
            text += f": {what}"
        if self.method:
            text += f" ({self.method} {self.url})"
        if self.request_id:
            text += f" [request id {self.request_id}]"
        return text

    def _fields(self) -> dict[str, object]:
        return {
            "status_code": self.status_code,
            "code": self.code,
            "message": self.message,
            "reason": self.reason,
            "detail": self.detail,
            "request_id": self.request_id,
            "body_excerpt": self.body_excerpt,
            "retry_after": self.retry_after,
            "method": self.method,
            "url": self.url,
            "retryable": self.retryable,
            "backoff": self.backoff,
        }

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_api_error, (type(self), self._fields()))


def _rebuild_api_error(cls: type[APIError], fields: dict[str, object]) -> APIError:
    return cls(**fields)  # type: ignore[arg-type]


class BadRequestError(APIError):
    """The request was malformed or broke a limit the SDK does not check (400, code 2)."""


class ServiceNotEnabledError(APIError):
    """Real-Time STT is not enabled for this App ID: enable it in Agora Console."""


class AuthenticationError(APIError):
    """The Customer ID / Customer Secret were refused (401)."""


class PermissionDeniedError(APIError):
    """The account may not do this (403)."""


class NotFoundError(APIError):
    """The agent or task does not exist, or has already ended."""


class ConflictError(APIError):
    """The task or agent already exists (409, 201, code 49, TaskConflict)."""


class TaskAlreadyStartedError(ConflictError):
    """A repeated legacy start: the server named the task that token already started.

    ``task_id`` is parsed from "The task has been started, ..., taskId is <id>" (or
    ``None`` when the server did not name it). Record it: it is the only way to stop
    that task.
    """

    def __init__(self, *, task_id: str | None = None, **fields: object) -> None:
        self.task_id = task_id
        super().__init__(**fields)  # type: ignore[arg-type]

    def _fields(self) -> dict[str, object]:
        return {**super()._fields(), "task_id": self.task_id}


class BuilderTokenError(APIError):
    """The builder token cannot be used for this call: acquire a new one."""


class BuilderTokenExpiredError(BuilderTokenError):
    """The builder token is past its 5-minute start window: acquire a new one."""


class QuotaExceededError(APIError):
    """A quota or concurrency limit was reached (422)."""


class RateLimitError(APIError):
    """Too many requests (429); wait ``retry_after`` seconds when given."""

    default_retryable: ClassVar[bool] = True


class ServerError(APIError):
    """The service failed internally (5xx and the internal-error codes)."""

    default_retryable: ClassVar[bool] = True


class NotificationError(AgoraSTTError, ValueError):
    """A notification (NCS callback) body is not JSON, not an object, or breaks the
    documented schema of its event; the message names the field.
    """


class SignatureError(NotificationError):
    """A notification's ``Agora-Signature-V2`` / ``Agora-Signature`` header is missing
    or does not match the raw body; the message names which one, never the secret.
    """


class BodyTooLargeError(NotificationError):
    """A request body is larger than the receiver accepts (``max_body``): answer 413."""


class ResponseError(AgoraSTTError):
    """A success status with a body the documented API does not allow.

    ``request_id`` and ``body_excerpt`` say which exchange; ``__cause__`` holds the
    parsing error.
    """

    def __init__(
        self, message: str, *, request_id: str | None = None, body_excerpt: str = ""
    ) -> None:
        self.request_id = request_id
        self.body_excerpt = body_excerpt
        text = message
        if request_id:
            text += f" [request id {request_id}]"
        super().__init__(text)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_response_error,
            (type(self), self.args[0], self.request_id, self.body_excerpt),
        )


def _rebuild_response_error(
    cls: type[ResponseError], text: str, request_id: str | None, excerpt: str
) -> ResponseError:
    error = cls.__new__(cls)
    Exception.__init__(error, text)
    error.request_id, error.body_excerpt = request_id, excerpt
    return error


class PaginationError(ResponseError):
    """The list endpoint repeated a cursor or a page: following it would never end."""


class SessionError(AgoraSTTError):
    """The session could not keep one of its promises."""


class StopIncompleteError(SessionError):
    """Leaving the session could not confirm that every task stopped.

    ``keys`` are the task keys still possibly running: stop them with
    ``agora-stt tasks stop`` or another session over the same store.
    """

    def __init__(self, keys: tuple[str, ...], message: str = "") -> None:
        self.keys = keys
        super().__init__(
            message
            or f"{len(keys)} task(s) could not be confirmed stopped: "
            + ", ".join(keys[:10])
            + (" ..." if len(keys) > 10 else "")
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.keys, self.args[0]))


# --- classification tables (spec §6) ---------------------------------------------------
# The only place in the SDK that looks at message strings. Most specific first:
# message prefix, then Agora code, then v7 reason, then HTTP status.

_MESSAGE_PREFIXES: Final[tuple[tuple[str, type[APIError]], ...]] = (
    ("The task has been started", TaskAlreadyStartedError),
    ("resourceId reaches out the limited time interval", BuilderTokenExpiredError),
    ("the product name does not match with builderToken", BuilderTokenError),
    ("The taskId does not match with builderToken", BuilderTokenError),
    ("invalid_appid", ServiceNotEnabledError),
    ("body schema check fail", BadRequestError),
    ("The task is not found", NotFoundError),
    ("Invalid authentication credentials", AuthenticationError),
    ("Token is expired", AuthenticationError),
    ("Invalid token", AuthenticationError),
)

_CODES: Final[Mapping[int, type[APIError]]] = {
    1: ServerError,
    2: BadRequestError,
    6: ServerError,
    20: ServerError,
    23: ServerError,
    49: ConflictError,
    53: BuilderTokenError,
    62: ServiceNotEnabledError,
    404: NotFoundError,
    501: ServerError,
    502: ServerError,
    504: ServerError,
    1001: BuilderTokenError,
    1003: BuilderTokenError,
}

# spec §6.1: code 62 means "STT not enabled" on acquire but "not started because of a
# network problem" on start, which may succeed later. start is not idempotent, so the
# client still sends it once; the session repeats it with the same builder token, which
# cannot start a second task (a repeat answers 409 with the existing taskId).
_CODES_BY_OPERATION: Final[Mapping[tuple[str, int], type[APIError]]] = {
    ("start", 62): ServerError,
}

# spec §6.1: codes 1, 6 and 23 say "contact support": retrying will not help.
_CODES_NOT_RETRYABLE: Final = frozenset({1, 6, 23})
_CODE_BACKOFF: Final[Mapping[int, tuple[float, ...]]] = {
    20: CODE_20_BACKOFF_S,
    501: CODE_5XX_BACKOFF_S,
    502: CODE_5XX_BACKOFF_S,
    504: CODE_5XX_BACKOFF_S,
}

# spec §6.2 (inferred from the Conversational AI analogue).
_REASONS: Final[Mapping[str, type[APIError]]] = {
    "InvalidRequestBody": BadRequestError,
    "MissingRequiredField": BadRequestError,
    "InvalidFieldValue": BadRequestError,
    "InvalidRequest": BadRequestError,
    "ServiceNotEnabled": ServiceNotEnabledError,
    "AccountSuspended": PermissionDeniedError,
    "InvalidPermission": PermissionDeniedError,
    "TaskNotFound": NotFoundError,
    "TaskConflict": ConflictError,
    "ResourceQuotaLimitExceeded": QuotaExceededError,
    "ConcurrencyLimitExceeded": QuotaExceededError,
    "InternalError": ServerError,
    "TaskOperationTimeout": ServerError,
    "NotImplemented": ServerError,
    "ServiceUnavailable": ServerError,
    "ResourceAllocationFailed": ServerError,
}

_STATUSES: Final[Mapping[int, type[APIError]]] = {
    201: ConflictError,  # spec §6.1: "the service is already running"
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: QuotaExceededError,
    429: RateLimitError,
}

_TASK_ID = re.compile(r"taskId is\s*([A-Za-z0-9_-]+)")


def _text(body: Mapping[str, object], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except (ValueError, RecursionError):  # a very deep list, an int past 4300 digits
        return None


# A code sent as text: ASCII digits only (str.isdigit() also accepts "²", which int()
# refuses), one sign, and short enough for int() (which refuses more than 4300 digits).
# Agora's codes have at most 4 digits; anything else is not a code.
_CODE_TEXT: Final = re.compile(r"-?[0-9]{1,18}")


def _int(body: Mapping[str, object], key: str) -> int | None:
    value = body.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if _CODE_TEXT.fullmatch(text):
            return int(text)
    return None


def _error_text(body: Mapping[str, object]) -> str | None:
    """The body's ``error``: a string, or the ``message`` of an ``error`` object."""
    error = body.get("error")
    if isinstance(error, Mapping):
        error = error.get("message")
    return error if isinstance(error, str) and error else None


def _excerpt(raw: bytes) -> str:
    text = raw[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    # Masked before it is cut, so a credential cut in half is masked too.
    text = redact_text(" ".join(text.split()))
    return text[:EXCERPT_CHARS] + ("..." if len(text) > EXCERPT_CHARS else "")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; ``None`` otherwise.

    HTTP dates are not honoured: reading them would need the wall clock here, and
    Agora's gateways send seconds.
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds


def _classify(
    status: int, code: int | None, message: str | None, reason: str | None, operation: str
) -> type[APIError]:
    if message:
        for prefix, cls in _MESSAGE_PREFIXES:
            if message.startswith(prefix):
                return cls
    if code is not None and (operation, code) in _CODES_BY_OPERATION:
        return _CODES_BY_OPERATION[operation, code]
    if code is not None and code in _CODES:
        return _CODES[code]
    if reason and reason in _REASONS:
        return _REASONS[reason]
    if status in _STATUSES:
        return _STATUSES[status]
    if status >= 500:
        return ServerError
    return APIError


def error_from_response(
    status_code: int,
    raw_body: bytes,
    *,
    request_id: str | None = None,
    retry_after: str | None = None,
    method: str = "",
    url: str = "",
    operation: str = "",
) -> APIError:
    """The typed error for a failed response (any status but 200).

    Accepts every documented body shape: ``{detail, reason}``, ``{message}``,
    ``{message, code}``, ``{code, reason}``, the v7 query failure body, ``{error}``
    gateway bodies, and bodies that are not JSON at all (an HTML gateway page, an empty
    body). ``operation`` is the endpoint's name (``"start"``, ``"acquire"``, ...): a few
    codes mean different things per operation (spec §6.1, code 62). Any body gives an
    ``APIError``; nothing else is raised.
    """
    body: Mapping[str, object] = {}
    try:
        decoded = json.loads(raw_body) if raw_body.strip() else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        decoded = None
    if isinstance(decoded, dict):
        body = decoded
    message = _text(body, "message") or _error_text(body)
    reason = _text(body, "reason")
    detail = _text(body, "detail")
    code = _int(body, "code")
    cls = _classify(status_code, code, message, reason, operation)
    fields: dict[str, object] = {
        "status_code": status_code,
        "code": code,
        "message": message,
        "reason": reason,
        "detail": detail,
        "request_id": request_id,
        "body_excerpt": _excerpt(raw_body),  # spec §6.2: keep the raw text
        "retry_after": parse_retry_after(retry_after),
        "method": method,
        "url": url,
    }
    if code in _CODES_NOT_RETRYABLE:
        fields["retryable"] = False
    elif code is not None and code in _CODE_BACKOFF:
        fields["retryable"] = True
        fields["backoff"] = _CODE_BACKOFF[code]
    elif status_code in (500, 502, 503, 504) and cls is not ServerError:
        # A 5xx whose body names a client-side cause (e.g. a schema message) is still
        # a server failure for retry purposes only when the docs say so; keep the class.
        fields["retryable"] = False
    if cls is TaskAlreadyStartedError:
        match = _TASK_ID.search(message or "")
        return TaskAlreadyStartedError(task_id=match.group(1) if match else None, **fields)
    return cls(**fields)  # type: ignore[arg-type]
