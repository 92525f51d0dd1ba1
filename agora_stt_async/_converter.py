"""The one cattrs Converter: Python models to wire JSON and back.

This module is the only place in the SDK that spells the API's wire names. Requests of
both generations are camelCase (with the documented exception ``unSubscribeAudioUids``);
v7 responses are snake_case (``agent_id``, ``create_ts``) and legacy responses camelCase
(``taskId``, ``createTs``). Fields left ``None`` are not sent.

Parsing is tolerant of extra fields and strict about types: a ``str`` field refuses a
number, an ``int`` field refuses text and booleans. Any parsing failure becomes a
``ResponseError`` (with the cattrs error as ``__cause__``) in ``structure_response``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from agora_stt_async._enums import AgentStatus, LegacyTaskStatus
from agora_stt_async._errors import ResponseError
from agora_stt_async._models import (
    AcquireRequest,
    Agent,
    AgentPage,
    BuilderToken,
    CaptionConfig,
    ExtensionParams,
    JoinRequest,
    LanguagePair,
    LegacyStartRequest,
    ResponseInfo,
    RtcConfig,
    StorageConfig,
    Task,
    TranslateConfig,
    UidLanguages,
    UpdateRequest,
    UpdateRtcConfig,
)
from agora_stt_async._secrets import redact_text

T = TypeVar("T")
E = TypeVar("E", AgentStatus, LegacyTaskStatus)

# Wire names that camelCase of the Python name does not produce (spec §4.1).
_SPECIAL_WIRE_NAMES: Final[Mapping[str, str]] = {
    "unsubscribe_audio_uids": "unSubscribeAudioUids",
}

_REQUEST_CLASSES: Final = (
    AcquireRequest,
    CaptionConfig,
    ExtensionParams,
    JoinRequest,
    LanguagePair,
    LegacyStartRequest,
    RtcConfig,
    StorageConfig,
    TranslateConfig,
    UidLanguages,
    UpdateRequest,
    UpdateRtcConfig,
)


def camel(name: str) -> str:
    """The wire name of a request field: ``rtc_config`` → ``rtcConfig``."""
    if name in _SPECIAL_WIRE_NAMES:
        return _SPECIAL_WIRE_NAMES[name]
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def wire_update_mask(request: UpdateRequest) -> str:
    """The ``updateMask`` query value for ``request``: its set fields' wire paths."""
    return ",".join(
        ".".join(camel(part) for part in path.split(".")) for path in request.update_mask()
    )


def _strict_str(value: object, _type: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_int(value: object, _type: object) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _strict_bool(value: object, _type: object) -> bool:
    # Registered explicitly: ``bool`` subclasses ``int``, so without it the int hook
    # (which refuses booleans) would be dispatched for ``bool`` fields.
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value


def _strict_enum(value: object, enum_cls: type[E]) -> E:
    # An unknown status in a 200 stays a ResponseError (the enum refuses it): guessing
    # what an undocumented state means could make the session stop watching, or leave
    # running, a task whose real state it cannot tell.
    if not isinstance(value, str):
        raise TypeError(f"expected a status string, got {type(value).__name__}")
    return enum_cls(value)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(bool, _strict_bool)
    # Free-form JSON (extensionParams.tagByRule / overwritekeys) passes through as is.
    conv.register_structure_hook_func(lambda t: t is object, lambda value, _type: value)
    # Tuples go out as JSON arrays (lists), as the schema's ``type: array`` expects.
    conv.register_unstructure_hook_func(
        lambda t: t is tuple or getattr(t, "__origin__", None) is tuple,
        lambda value: [conv.unstructure(item) for item in value],
    )
    for enum_cls in (AgentStatus, LegacyTaskStatus):
        conv.register_structure_hook(enum_cls, _strict_enum)

    def request_hook(cls: type) -> Callable[[Any], dict[str, Any]]:
        # Generated lazily (a hook factory), so nested models already have their hooks.
        renames = {field.name: override(rename=camel(field.name)) for field in attrs.fields(cls)}
        return make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **renames)  # type: ignore[arg-type]

    def request_structure_hook(cls: type) -> Callable[[Any, Any], Any]:
        # The reverse, so request models round-trip (tests, and stores that keep configs).
        renames = {field.name: override(rename=camel(field.name)) for field in attrs.fields(cls)}
        return make_dict_structure_fn(cls, conv, **renames)  # type: ignore[arg-type]

    conv.register_unstructure_hook_factory(lambda t: t in _REQUEST_CLASSES, request_hook)
    conv.register_structure_hook_factory(lambda t: t in _REQUEST_CLASSES, request_structure_hook)
    conv.register_structure_hook(
        Agent,
        make_dict_structure_fn(Agent, conv, raw=override(omit=True), response=override(omit=True)),
    )
    conv.register_structure_hook(
        BuilderToken,
        make_dict_structure_fn(
            BuilderToken,
            conv,
            token_name=override(rename="tokenName"),
            create_ts=override(rename="createTs"),
            instance_id=override(rename="instanceId"),
            raw=override(omit=True),
            response=override(omit=True),
        ),
    )
    conv.register_structure_hook(
        Task,
        make_dict_structure_fn(
            Task,
            conv,
            task_id=override(rename="taskId"),
            create_ts=override(rename="createTs"),
            token_name=override(omit=True),
            raw=override(omit=True),
            response=override(omit=True),
        ),
    )
    return conv


converter: Final = _make_converter()

_structure_list_item: Final[Callable[[Mapping[str, Any], Any], Agent]] = make_dict_structure_fn(
    Agent,
    converter,
    create_ts=override(rename="start_ts"),
    message=override(omit=True),
    raw=override(omit=True),
    response=override(omit=True),
)


@attrs.frozen
class _ListData:
    count: int
    list: tuple[dict[str, Any], ...]


@attrs.frozen
class _ListMeta:
    cursor: str = ""
    total: int | None = None


@attrs.frozen
class _ListBody:
    data: _ListData
    meta: _ListMeta = _ListMeta()


def unstructure_request(request: object) -> dict[str, Any]:
    """The JSON body for a request model."""
    body: dict[str, Any] = converter.unstructure(request)
    return body


def structure_request(body: Mapping[str, Any], cls: type[T]) -> T:
    """A request model from its wire JSON (the inverse of ``unstructure_request``).

    Raises the model's ``ValidationError`` for out-of-range values, or a cattrs error
    for a body of the wrong shape.
    """
    return converter.structure(body, cls)


def _excerpt(body: object) -> str:
    """The start of a parsed body for an error, credential-like values (``tokenName``,
    ...) masked: the error's attributes are printed, logged and pickled."""
    try:
        text = repr(body)[:800]
    except (ValueError, RecursionError):  # nested too deep, or an int past 4300 digits
        return f"<{type(body).__name__}>"
    return redact_text(text)[:200]


def _require_mapping(body: object, what: str, info: ResponseInfo | None) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ResponseError(
            f"{what}: expected a JSON object, got {type(body).__name__}",
            request_id=info.request_id if info else None,
            body_excerpt=_excerpt(body),
        )
    return body


def _with_exchange(result: T, raw: Mapping[str, Any], info: ResponseInfo | None) -> T:
    """``result`` (just structured, not yet seen by anyone) with its raw body and exchange.

    Set in place rather than through ``attrs.evolve``, which would build a second instance
    (a few microseconds per result, on every call and every listed agent): the frozen
    instance is this function's own until it returns, as in an attrs ``__init__``.
    """
    object.__setattr__(result, "raw", raw)
    object.__setattr__(result, "response", info)
    return result


def structure_response(body: object, cls: type[T], *, info: ResponseInfo | None = None) -> T:
    """Parse a success body into ``cls`` (Agent, BuilderToken or Task).

    Raises:
        ResponseError: the body is not an object or lacks or mistypes a documented field.
    """
    mapping = _require_mapping(body, cls.__name__, info)
    try:
        result = converter.structure(mapping, cls)
    except Exception as exc:  # cattrs raises several exception types; all mean "bad body"
        raise _response_error(cls.__name__, exc, mapping, info) from exc
    return _with_exchange(result, mapping, info)


def structure_page(body: object, *, info: ResponseInfo | None = None) -> AgentPage:
    """Parse a ``GET /agents`` body (``data.count``, ``data.list``, ``meta``) into a page.

    Every item carries the page's ``response`` (one shared object, as every other result
    carries its exchange).
    """
    mapping = _require_mapping(body, "AgentPage", info)
    try:
        wire = converter.structure(mapping, _ListBody)
        items = tuple(
            _with_exchange(_structure_list_item(item, Agent), item, info) for item in wire.data.list
        )
    except Exception as exc:  # see structure_response
        raise _response_error("AgentPage", exc, mapping, info) from exc
    total = wire.meta.total if wire.meta.total is not None else len(items)
    return AgentPage(
        items=items, total=total, cursor=wire.meta.cursor, count=wire.data.count, response=info
    )


def _response_error(
    what: str, exc: Exception, body: Mapping[str, Any], info: ResponseInfo | None
) -> ResponseError:
    if isinstance(exc, cattrs.BaseValidationError):
        why = "; ".join(cattrs.transform_error(exc))
    else:
        why = f"{type(exc).__name__}: {exc}"
    return ResponseError(
        f"{what}: the response body does not match the documented shape ({why})",
        request_id=info.request_id if info else None,
        body_excerpt=_excerpt(body),
    )
