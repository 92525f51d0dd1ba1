"""The emulator's request validation: its field tables (``_schema``) plus cross-field rules.

Returns small frozen results (``JoinSpec``, ``UpdateSpec``, ``ListQuery``) holding only
what the world needs; raises ``InvalidBody`` or ``SchemaError`` naming the field. No HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from agora_stt_async import _constants as C
from agora_stt_async._enums import AgentStatus
from agora_stt_async.emulator._languages import LANGUAGE_CODES
from agora_stt_async.emulator._schema import (
    ACQUIRE,
    JOIN,
    LEGACY_UPDATE_PATHS,
    S3_REGIONS,
    S3_VENDOR,
    TAG_VENDORS,
    UPDATE,
    V5_NESTED,
    V7_UPDATE_PATHS,
    InvalidBody,
    SchemaError,
    Spec,
    legacy_tables,
)

# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinSpec:
    """A validated join (or legacy start) body, reduced to what the world needs."""

    channel: str
    max_idle_time: int
    config: dict[str, object]
    name: str = ""
    raw: bytes = b""
    """The body as received, when it came over HTTP: kept instead of re-encoding ``config``."""


@dataclass(frozen=True)
class UpdateSpec:
    """A validated update: the masked paths and their new values."""

    sequence_id: int
    values: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ListQuery:
    """A validated ``GET /agents`` query (spec §4.7)."""

    status: AgentStatus
    from_ts: int
    to_ts: int
    limit: int
    channel: str | None
    cursor: str | None


# --- the validator -----------------------------------------------------------------------------


class Validator:
    """Checks bodies against the tables above, with the emulator's options.

    Args:
        check_languages: refuse language codes missing from spec §10.
        strict_fields: refuse fields the tables do not know (default: ignore them, spec §4.1
            [INFERRED]: public clients send undocumented fields).
        legacy_version: ``"v6"`` (default) or ``"v5"`` limits for the legacy start/update.
        list_max_limit: the largest ``limit`` the list endpoint accepts.
    """

    def __init__(
        self,
        *,
        check_languages: bool = True,
        strict_fields: bool = False,
        legacy_version: Literal["v5", "v6"] = "v6",
        list_max_limit: int = 100,
    ) -> None:
        self._check_languages = check_languages
        self._strict = strict_fields
        self._legacy_start, self._legacy_update = legacy_tables(legacy_version)
        self._list_max_limit = list_max_limit

    # -- v7 ---------------------------------------------------------------------------------

    def join(self, body: object) -> JoinSpec:
        """Validate a v7 join body; raises ``InvalidBody`` or ``SchemaError``."""
        data = _as_object(body)
        self._check(data, JOIN, "")
        name = data["name"]
        assert isinstance(name, str)
        return _cross_checked(data, legacy=False, name=name)

    def update(self, body: object, sequence_id: str | None, update_mask: str | None) -> UpdateSpec:
        """Validate a v7 update: query parameters first, then the body and the mask."""
        return self._update(body, sequence_id, update_mask, UPDATE, V7_UPDATE_PATHS)

    def list_query(self, params: Mapping[str, Sequence[str]], now: float) -> ListQuery:
        """Validate the list endpoint's query parameters and apply its defaults (spec §4.7)."""
        state = _single(params, "state")
        if state is None:
            status = AgentStatus.RUNNING
        elif re.fullmatch(r"[0-6]", state):
            status = AgentStatus.from_code(int(state))
        else:
            raise SchemaError("state", "must be one digit 0..6")
        limit = _int_param(params, "limit", C.LIST_DEFAULT_LIMIT)
        if not 1 <= limit <= self._list_max_limit:
            # SPEC-SILENT: the maximum page size is undocumented; 100 by default.
            raise SchemaError("limit", f"must be between 1 and {self._list_max_limit}")
        to_ts = _int_param(params, "to_time", int(now))
        from_ts = _int_param(params, "from_time", int(now) - C.LIST_DEFAULT_WINDOW_S)
        # SPEC-SILENT: an empty channel or cursor means "not given".
        channel = _single(params, "channel") or None
        cursor = _single(params, "cursor") or None
        return ListQuery(status, from_ts, to_ts, limit, channel, cursor)

    # -- legacy ------------------------------------------------------------------------------

    def acquire(self, body: object) -> str:
        """Validate an acquire body and return its ``instanceId``."""
        data = _as_object(body)
        self._check(data, ACQUIRE, "")
        instance_id = data["instanceId"]
        assert isinstance(instance_id, str)
        return instance_id

    def legacy_start(self, body: object, *, accept_v5_nested: bool = True) -> JoinSpec:
        """Validate a legacy start body (v6 flat shape, or the nested 2023 v5 shape)."""
        data = _as_object(body)
        if accept_v5_nested and "audio" in data and "rtcConfig" not in data:
            # spec §5.2 [INFERRED]: old clients send the nested v5 body; its checks stay light.
            self._check(data, V5_NESTED, "")
            channel = _get(data, "audio.agoraRtcConfig.channelName")
            idle = _get(data, "audio.agoraRtcConfig.maxIdleTime")
            return JoinSpec(
                channel=str(channel),
                max_idle_time=idle if isinstance(idle, int) else C.MAX_IDLE_TIME_DEFAULT_S,
                config=data,
            )
        self._check(data, self._legacy_start, "")
        return _cross_checked(data, legacy=True)

    def legacy_update(
        self, body: object, sequence_id: str | None, update_mask: str | None
    ) -> UpdateSpec:
        """Validate a legacy PATCH: ``sequenceId``, ``updateMask`` and the body."""
        return self._update(
            body, sequence_id, update_mask, self._legacy_update, LEGACY_UPDATE_PATHS
        )

    # -- shared ------------------------------------------------------------------------------

    def check_translation(self, config: Mapping[str, object], *, legacy: bool) -> None:
        """Re-check the translation rule on a whole config after an update changed it."""
        languages = config.get("languages")
        if isinstance(languages, list):
            _check_pairs(_get(config, "translateConfig.languages"), languages, legacy=legacy)

    def _update(
        self,
        body: object,
        sequence_id: str | None,
        update_mask: str | None,
        table: Spec,
        paths: tuple[str, ...],
    ) -> UpdateSpec:
        if sequence_id is None:
            raise SchemaError("sequenceId", "is required", missing=True)
        if not re.fullmatch(r"\d{1,19}", sequence_id) or int(sequence_id) > 2**63 - 1:
            raise SchemaError("sequenceId", "must be an integer >= 0 (int64)")
        if update_mask is None:
            raise SchemaError("updateMask", "is required", missing=True)
        mask = [part.strip() for part in update_mask.split(",")]
        for part in mask:
            if part not in paths:
                # SPEC-SILENT: only the documented paths may be masked; others are refused.
                raise SchemaError("updateMask", f"unknown field path {part!r}")
        data = _as_object(body)
        self._check(data, table, "")
        values: dict[str, object] = {}
        for path in mask:
            value = _get(data, path)
            if value is None:
                # SPEC-SILENT: a masked field must be in the body ([] clears a list).
                raise SchemaError(path, "is in updateMask but missing from the body", missing=True)
            values[path] = value
        _check_uid_languages(values.get("uidLanguagesConfig"))
        return UpdateSpec(sequence_id=int(sequence_id), values=values)

    def _check(self, value: object, spec: Spec, path: str) -> None:
        kind = spec.kind
        if kind == "any":
            return
        if kind == "string":
            if not isinstance(value, str):
                raise SchemaError(path, "must be a string")
            if spec.low is not None and len(value) < spec.low:
                raise SchemaError(path, "must not be empty" if spec.low == 1 else "is too short")
            if spec.high is not None and len(value) > spec.high:
                raise SchemaError(path, f"must be at most {spec.high} characters")
            if spec.pattern is not None and not spec.pattern.fullmatch(value):
                raise SchemaError(path, f"must match {spec.pattern.pattern}")
            if spec.language and self._check_languages and value not in LANGUAGE_CODES:
                raise SchemaError(path, f"unsupported language code {value!r}")
        elif kind == "integer":
            # SPEC-SILENT: 30.0 is not an integer here (nor true), as in a strict schema check.
            if isinstance(value, bool) or not isinstance(value, int):
                raise SchemaError(path, "must be an integer")
            if (spec.low is not None and value < spec.low) or (
                spec.high is not None and value > spec.high
            ):
                raise SchemaError(path, f"must be between {spec.low} and {spec.high}")
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise SchemaError(path, "must be a boolean")
        elif kind == "array":
            self._check_array(value, spec, path)
            return
        else:
            self._check_object(value, spec, path)
            return
        if spec.enum is not None and value not in spec.enum:
            allowed = ", ".join(sorted(map(str, spec.enum)))
            raise SchemaError(path, f"must be one of {allowed}")

    def _check_array(self, value: object, spec: Spec, path: str) -> None:
        if spec.also_object and isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise SchemaError(path, "must be an array")
        if spec.low is not None and len(value) < spec.low:
            raise SchemaError(path, f"must have at least {spec.low} item(s)")
        if spec.high is not None and len(value) > spec.high:
            raise SchemaError(path, f"must have at most {spec.high} items")
        assert spec.items is not None
        for i, item in enumerate(value):
            self._check(item, spec.items, f"{path}[{i}]")

    def _check_object(self, value: object, spec: Spec, path: str) -> None:
        if not isinstance(value, dict):
            raise SchemaError(path, "must be an object")
        prefix = f"{path}." if path else ""
        known = set()
        for name, child in spec.fields:
            known.add(name)
            if name not in value or value[name] is None:
                # SPEC-SILENT: JSON null counts as absent, as most JSON backends treat it.
                if child.required:
                    raise SchemaError(prefix + name, "is required", missing=True)
                continue
            self._check(value[name], child, prefix + name)
        if self._strict:
            for name in value:
                if name not in known:
                    raise SchemaError(prefix + name, "is not a known field")


# --- cross-field rules -------------------------------------------------------------------------


def _cross_checked(data: dict[str, object], *, legacy: bool, name: str = "") -> JoinSpec:
    """The cross-field rules of a join or legacy start body its table has passed."""
    rtc = data["rtcConfig"]
    assert isinstance(rtc, dict)
    _check_rtc(rtc, "rtcConfig")
    languages = data["languages"]
    assert isinstance(languages, list)
    _check_pairs(_get(data, "translateConfig.languages"), languages, legacy=legacy)
    _check_uid_languages(_get(data, "uidLanguagesConfig"))
    _check_caption(data, legacy=legacy)
    idle = data.get("maxIdleTime")
    if idle is None:  # absent, or null (which the tables treat as absent)
        idle = C.MAX_IDLE_TIME_DEFAULT_S
    assert isinstance(idle, int)
    return JoinSpec(channel=str(rtc["channelName"]), max_idle_time=idle, config=data, name=name)


def _check_rtc(rtc: Mapping[str, object], path: str) -> None:
    if rtc.get("subscribeAudioUids") is not None and rtc.get("unSubscribeAudioUids") is not None:
        raise SchemaError(
            f"{path}.unSubscribeAudioUids", "cannot be combined with subscribeAudioUids"
        )
    mode = rtc.get("cryptionMode") or 0
    if mode != 0 and not rtc.get("secret"):
        raise SchemaError(f"{path}.secret", "is required when cryptionMode is not 0", missing=True)
    if mode in C.CRYPTION_MODES_WITH_SALT:
        salt = rtc.get("salt")
        if not salt:
            raise SchemaError(
                f"{path}.salt", "is required when cryptionMode is 7 or 8", missing=True
            )
        try:
            raw = base64.b64decode(str(salt), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise SchemaError(f"{path}.salt", "must be the Base64 encoding of 32 bytes")


def _check_pairs(pairs: object, languages: Sequence[object], *, legacy: bool) -> None:
    if not isinstance(pairs, list):
        return
    for i, pair in enumerate(pairs):
        assert isinstance(pair, dict)
        source, targets = pair.get("source"), pair.get("target")
        assert isinstance(targets, list)
        # spec §4.1 (v7.2.2): a target equal to the source is an error when one language is
        # transcribed; with mixed-language input it may equal a source. Legacy: never.
        if (legacy or len(languages) <= 1) and source in targets:
            raise SchemaError(
                f"translateConfig.languages[{i}].target",
                "must not contain the source language",
            )


def _check_uid_languages(items: object) -> None:
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        return
    seen: set[object] = set()
    for i, item in enumerate(items):
        uid = item.get("uid") if isinstance(item, dict) else None
        if uid in seen:
            # spec §4.1 "at most 5 distinct UIDs"; SPEC-SILENT: a repeated uid is refused.
            raise SchemaError(f"uidLanguagesConfig[{i}].uid", f"duplicate uid {uid!r}")
        seen.add(uid)


def _check_caption(data: Mapping[str, object], *, legacy: bool) -> None:
    storage = _get(data, "captionConfig.storage")
    if not isinstance(storage, dict):
        return
    path = "captionConfig.storage"
    for camel, lower in (("accessKey", "accesskey"), ("secretKey", "secretkey")):
        if not storage.get(camel) and not storage.get(lower):
            raise SchemaError(f"{path}.{camel}", "is required", missing=True)
    vendor = storage["vendor"]
    region = storage["region"]
    if vendor == S3_VENDOR and region not in S3_REGIONS:
        raise SchemaError(f"{path}.region", "is not an Amazon S3 region code (spec §9)")
    prefix = storage.get("fileNamePrefix")
    if isinstance(prefix, list):
        for i, part in enumerate(prefix):
            if not re.fullmatch(r"[A-Za-z0-9]+", str(part)):
                raise SchemaError(f"{path}.fileNamePrefix[{i}]", "may hold only a-z, A-Z, 0-9")
        if len("/".join(map(str, prefix))) > C.FILE_NAME_PREFIX_MAX_LEN:
            raise SchemaError(
                f"{path}.fileNamePrefix", f"must be at most {C.FILE_NAME_PREFIX_MAX_LEN} characters"
            )
    if legacy:
        return
    # spec §4.1 [CONFLICT]: top level (English reference) or inside captionConfig (guide,
    # zh-CN); whichever the body uses, top level when it uses neither.
    ext_path = "extensionParams"
    ext = data.get("extensionParams")
    if ext is None and _get(data, "captionConfig.extensionParams") is not None:
        ext_path = "captionConfig.extensionParams"
        ext = _get(data, ext_path)
    ext = ext if isinstance(ext, dict) else {}
    if vendor == C.STORAGE_VENDOR_S3_COMPATIBLE and not ext.get("endpoint"):
        raise SchemaError(f"{ext_path}.endpoint", "is required when vendor is 11", missing=True)
    if vendor not in TAG_VENDORS and ("tag" in ext or "tagByRule" in ext):
        raise SchemaError(f"{ext_path}.tag", "is supported only for vendors 1, 2 and 3")
    if vendor != S3_VENDOR and "sse" in ext:
        raise SchemaError(f"{ext_path}.sse", "is supported only for Amazon S3 (vendor 1)")


# --- helpers -------------------------------------------------------------------------------------


def parse_json(raw: bytes) -> object:
    """Decode a request body; ``InvalidBody`` if it is not JSON (or is nested too deeply).

    ``json.loads`` raises ``RecursionError``, not ``ValueError``, for arrays or objects
    nested deeper than the interpreter's recursion limit (``b"[" * 100_000``): that is
    a malformed body like any other, never a crash.
    """
    try:
        return json.loads(raw)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise InvalidBody("the request body is not valid JSON") from exc
    except RecursionError as exc:
        raise InvalidBody("the request body is nested too deeply") from exc


def _as_object(body: object) -> dict[str, object]:
    if not isinstance(body, dict):
        raise InvalidBody("the request body must be a JSON object")
    return body


def _get(data: Mapping[str, object], path: str) -> object:
    """The value at a dotted path, or ``None``."""
    node: object = data
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _single(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        # SPEC-SILENT: "only one state per request" (spec §4.7); any repeated parameter is 400.
        raise SchemaError(name, "may be given only once")
    return values[0]


def _int_param(params: Mapping[str, Sequence[str]], name: str, default: int) -> int:
    raw = _single(params, name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?\d{1,19}", raw):
        raise SchemaError(name, "must be an integer")
    return int(raw)
