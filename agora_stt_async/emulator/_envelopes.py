"""What the emulator puts on the wire when it says no: each generation's error envelope.

v7 answers ``{detail, reason}`` (spec §6.2), legacy ``{code, message}`` or ``{message}``
(spec §6.1), and gateway-level answers use the gateway's ``{message}`` bodies. One table
per generation, so a reader can check every documented message against the spec here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final, Literal

from starlette.responses import JSONResponse, Response

from agora_stt_async.emulator._records import (
    NameInUse,
    StaleSequence,
    TaskAlreadyStarted,
    TaskAlreadyStopped,
    TaskTokenMismatch,
    TokenExpired,
    TokenOfOtherApp,
    TokenUnparsable,
    UnknownAgent,
    UnknownCursor,
    UnknownTask,
    UpdateTooSoon,
)
from agora_stt_async.emulator._schema import InvalidBody, SchemaError

Generation = Literal["v7", "legacy"]

# spec §3.1, §6.1: the documented 401 body (it is also the Kong gateway's basic-auth text).
AUTH_FAILED: Final = {"message": "Invalid authentication credentials"}
# SPEC-SILENT: gateway-level answers (unknown route, 429, 502, 504) use the Kong gateway's
# bodies, since the documented 401 body is Kong's; service-level ones use the envelopes.
NO_ROUTE: Final = {"message": "no Route matched with those values"}
RATE_LIMITED: Final = {"message": "API rate limit exceeded"}
# Kong's answer when something fails outside any route (the emulator's own bugs included).
UNEXPECTED: Final = {"message": "An unexpected error occurred"}
# SPEC-SILENT: which status goes with which code is undocumented (spec §6.1). Service-level
# legacy 5xx carry code 501, the documented internal-error code whose current advice is
# "retry with back-off" (so a client that reads ``code`` sees a documented one and may
# retry); the 502 and 504 kinds are the gateway's, which knows no Agora codes.
FAULT_BODIES: Final[Mapping[tuple[str, Generation], dict[str, object]]] = {
    ("500", "v7"): {"detail": "internal error", "reason": "InternalError"},
    ("500", "legacy"): {"code": 501, "message": "Internal server error"},
    ("502", "v7"): {"message": "An invalid response was received from the upstream server"},
    ("502", "legacy"): {"message": "An invalid response was received from the upstream server"},
    ("503", "v7"): {"detail": "service unavailable", "reason": "ServiceUnavailable"},
    ("503", "legacy"): {"code": 501, "message": "Service unavailable"},
    ("504", "v7"): {"message": "The upstream server is timed out"},
    ("504", "legacy"): {"message": "The upstream server is timed out"},
    # spec §6.1: code 20 = processing timeout; v7 [INFERRED] reason TaskOperationTimeout.
    ("code20", "v7"): {"detail": "task operation timed out", "reason": "TaskOperationTimeout"},
    ("code20", "legacy"): {"code": 20, "message": "Processing timeout, please retry"},
}
_TOKEN_MESSAGE: Final = "the product name does not match with builderToken"  # spec §6.1
_MISMATCH_MESSAGE: Final = "The taskId does not match with builderToken."
_EXPIRED_MESSAGE: Final = "resourceId reaches out the limited time interval!"
_NOT_FOUND_MESSAGE: Final = "The task is not found"
_NETWORK_MESSAGE: Final = "The task was not started because of a network problem"


def fault_response(
    fault: str, generation: Generation, *, retry_after: int, code20_status: int, internal_code: int
) -> Response:
    """The answer of an injected pre-processing fault (``_faults.PRE_PROCESSING``)."""
    if fault == "429":
        return json_response(RATE_LIMITED, 429, {"Retry-After": str(retry_after)})
    if fault == "internal":
        return _internal_fault(internal_code, generation)
    # SPEC-SILENT: no HTTP status is documented for code 20; 504 by default.
    status = code20_status if fault == "code20" else int(fault)
    return json_response(FAULT_BODIES[(fault, generation)], status)


def _internal_fault(code: int, generation: Generation) -> Response:
    """An injected internal error with Agora ``code`` (spec §6.1; ``_faults.INTERNAL_CODES``).

    v7 has no codes: there it is the v7 500 ``InternalError``. SPEC-SILENT: the status of
    each legacy code is undocumented; 504 ("internal communication error", spec §6.1) for
    code 504 and for code 62 (a network problem), 500 ("internal server error") for the
    rest. Only the code-62 message is the spec's meaning; the others say "internal error".
    """
    if generation == "v7":
        return json_response(FAULT_BODIES[("500", "v7")], 500)
    if code == 62:
        return json_response({"code": 62, "message": _NETWORK_MESSAGE}, 504)
    return json_response(
        {"code": code, "message": "Internal server error"}, 504 if code == 504 else 500
    )


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A compact JSON response."""
    return JSONResponse(body, status_code=status, headers=headers)


def render(exc: Exception, generation: Generation, route: str, repeat_status: int) -> Response:
    """A refusal in the generation's envelope (v7 spec §6.2, legacy spec §6.1)."""
    if generation == "v7":
        return _render_v7(exc)
    return _render_legacy(exc, route, repeat_status)


def _render_v7(exc: Exception) -> Response:
    match exc:
        case InvalidBody():
            return json_response({"detail": str(exc), "reason": "InvalidRequestBody"}, 400)
        case SchemaError(missing=True):
            return json_response({"detail": str(exc), "reason": "MissingRequiredField"}, 400)
        case SchemaError():
            return json_response({"detail": str(exc), "reason": "InvalidFieldValue"}, 400)
        case UnknownCursor():
            detail = f"cursor: no agent {exc.args[0]!r} in this project"
            return json_response({"detail": detail, "reason": "InvalidFieldValue"}, 400)
        case StaleSequence():
            detail = f"sequenceId: must be greater than the last accepted one ({exc.last})"
            return json_response({"detail": detail, "reason": "InvalidFieldValue"}, 400)
        case UnknownAgent():
            detail = f"agent {exc.args[0]} not found or already stopped"
            return json_response({"detail": detail, "reason": "TaskNotFound"}, 404)
        case NameInUse():
            # SPEC-SILENT (spec §4.8 [INFERRED]): 409 TaskConflict, as Conversational AI.
            detail = f"an agent named {exc.agent.name!r} is already active in this project"
            return json_response({"detail": detail, "reason": "TaskConflict"}, 409)
        case UpdateTooSoon():
            return _too_soon(exc)
    raise exc


def _render_legacy(exc: Exception, route: str, repeat_status: int) -> Response:
    if route == "acquire" and isinstance(exc, InvalidBody | SchemaError):
        return _acquire_refusal(exc)
    match exc:
        case InvalidBody():
            return json_response(
                {"code": 2, "message": "body schema check fail, body: not a JSON object"}, 400
            )
        case SchemaError():
            return json_response({"code": 2, "message": f"body schema check fail, {exc}"}, 400)
        case StaleSequence():
            why = f"sequenceId: must be greater than the last accepted one ({exc.last})"
            return json_response({"code": 2, "message": f"body schema check fail, {why}"}, 400)
        case TokenUnparsable():
            # SPEC-SILENT: code 1001 ("tokenName can't be parsed") carries the documented
            # "bad builder token" message.
            return json_response({"code": 1001, "message": _TOKEN_MESSAGE}, 400)
        case TokenOfOtherApp():
            # spec §6.1: 1003 = the App ID or taskId does not match the token. SPEC-SILENT:
            # no message is documented for a start with another app's token.
            message = (
                _MISMATCH_MESSAGE
                if route != "start"
                else "The appId does not match with builderToken."
            )
            return json_response({"code": 1003, "message": message}, 400)
        case TokenExpired():
            return json_response({"message": _EXPIRED_MESSAGE}, 400)
        case TaskAlreadyStarted():
            # spec §6.1 gives this literal and says clients string-match it: "STARTED"
            # even once the task has ended; the existing taskId is appended.
            message = (
                f"The task has been started, current status is STARTED, taskId is {exc.task_id}"
            )
            return json_response({"code": 49, "message": message}, repeat_status)
        case TaskAlreadyStopped():
            # spec §5.5: code 49 for a repeated stop. SPEC-SILENT: its message; it must not
            # read "The task has been started", which clients match for a repeated start.
            message = (
                f"The task has been stopped, current status is STOPPED, taskId is {exc.task_id}"
            )
            return json_response({"code": 49, "message": message}, 409)
        case TaskTokenMismatch():
            return json_response({"code": 53, "message": _MISMATCH_MESSAGE}, 400)
        case UnknownTask():
            return json_response({"code": 404, "message": _NOT_FOUND_MESSAGE}, 404)
        case UpdateTooSoon():
            return _too_soon(exc)
    raise exc


def _acquire_refusal(exc: InvalidBody | SchemaError) -> Response:
    # spec §6.1 documents one acquire refusal: 400 {"code": 2, "reason": "Acquire: invalid
    # resourceExpiredHour value!"}, with §12.13's "400 code 2". SPEC-SILENT: the emulator
    # answers every acquire body error in that shape, naming the field, then saying why.
    if isinstance(exc, SchemaError):
        reason = f"Acquire: invalid {exc.field} value! {exc.why}"
    else:
        reason = f"Acquire: invalid request body! {exc}"
    return json_response({"code": 2, "reason": reason}, 400)


def _too_soon(exc: UpdateTooSoon) -> Response:
    # SPEC-SILENT: a too-early update (spec §4.6 asks for 5 s) is rate limiting: 429.
    return json_response(RATE_LIMITED, 429, {"Retry-After": str(math.ceil(exc.retry_after))})
