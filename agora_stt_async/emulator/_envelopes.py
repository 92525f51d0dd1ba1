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
FAULT_BODIES: Final[Mapping[tuple[str, Generation], dict[str, object]]] = {
    ("500", "v7"): {"detail": "internal error", "reason": "InternalError"},
    ("500", "legacy"): {"message": "Internal server error"},
    ("502", "v7"): {"message": "An invalid response was received from the upstream server"},
    ("502", "legacy"): {"message": "An invalid response was received from the upstream server"},
    ("503", "v7"): {"detail": "service unavailable", "reason": "ServiceUnavailable"},
    ("503", "legacy"): {"message": "Service unavailable"},
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
            # spec §6.1: the existing taskId is appended. SPEC-SILENT: the status word is
            # STARTED while the task runs and STOPPED once it has ended.
            word = "STOPPED" if exc.task.status.is_terminal else "STARTED"
            message = (
                f"The task has been started, current status is {word}, taskId is {exc.task.task_id}"
            )
            return json_response({"code": 49, "message": message}, repeat_status)
        case TaskTokenMismatch():
            return json_response({"code": 53, "message": _MISMATCH_MESSAGE}, 400)
        case UnknownTask():
            return json_response({"code": 404, "message": _NOT_FOUND_MESSAGE}, 404)
        case UpdateTooSoon():
            return _too_soon(exc)
    raise exc


def _too_soon(exc: UpdateTooSoon) -> Response:
    # SPEC-SILENT: a too-early update (spec §4.6 asks for 5 s) is rate limiting: 429.
    return json_response(RATE_LIMITED, 429, {"Retry-After": str(math.ceil(exc.retry_after))})
