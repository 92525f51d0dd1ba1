"""The emulator's own reading of the request schemas: field tables, in the spec's order.

This module owns every wire name the emulator accepts, independently of the SDK's
converter (house style §4.2): one misreading of the spec must not be able to hide in both.
It imports nothing of the SDK but ``_constants`` (documented numbers). No HTTP here either:
``_validate`` walks these tables, adds the cross-field rules, and raises ``SchemaError``
naming the field; ``_envelopes`` turns that into the generation's error body.

Tables are small JSON-schema-like trees (``Spec``), in the order of the spec's tables, so
the first problem reported is the first a reader of the docs would find.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from agora_stt_async import _constants as C

Kind = Literal["string", "integer", "boolean", "array", "object", "any"]


class SchemaError(Exception):
    """A request field broke a documented rule.

    ``field`` is the dotted path (``rtcConfig.channelName``, ``translateConfig.languages[0]``);
    ``missing`` tells a missing required field from a bad value.
    """

    def __init__(self, field: str, why: str, *, missing: bool = False) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why
        self.missing = missing


class InvalidBody(Exception):
    """The body is not a JSON object at all."""


@dataclass(frozen=True)
class Spec:
    """One node of a field table."""

    kind: Kind
    required: bool = False
    low: int | None = None
    """Integer minimum, string minimum length or array minimum items."""
    high: int | None = None
    """Integer maximum, string maximum length or array maximum items."""
    enum: frozenset[object] | None = None
    items: Spec | None = None
    fields: tuple[tuple[str, Spec], ...] = ()
    language: bool = False
    pattern: re.Pattern[str] | None = None
    also_object: bool = False
    """An array that the docs also show as a single object (legacy uidLanguagesConfig)."""


def _string(
    *,
    required: bool = False,
    low: int | None = None,
    high: int | None = None,
    language: bool = False,
    pattern: str | None = None,
    enum: frozenset[object] | None = None,
) -> Spec:
    compiled = re.compile(pattern) if pattern is not None else None
    return Spec("string", required, low, high, enum, language=language, pattern=compiled)


def _integer(
    *,
    required: bool = False,
    low: int | None = None,
    high: int | None = None,
    enum: frozenset[object] | None = None,
) -> Spec:
    return Spec("integer", required, low, high, enum)


def _boolean(*, required: bool = False) -> Spec:
    return Spec("boolean", required)


def _array(
    items: Spec,
    *,
    required: bool = False,
    low: int | None = None,
    high: int | None = None,
    also_object: bool = False,
) -> Spec:
    return Spec("array", required, low, high, items=items, also_object=also_object)


def _object(*, required: bool = False, **fields: Spec) -> Spec:
    return _object_of(fields, required=required)


def _object_of(fields: Mapping[str, Spec], *, required: bool = False) -> Spec:
    return Spec("object", required, fields=tuple(fields.items()))


_ANY: Final = Spec("any")
_LANG: Final = _string(language=True)
_UID: Final = _string()

# --- v7 tables (spec §4.1, §4.6) ----------------------------------------------------------

_V7_LANGUAGE_PAIR: Final = _object(
    source=_string(required=True, language=True),
    # SPEC-SILENT: an empty target list translates nothing; the emulator refuses it.
    target=_array(_LANG, required=True, low=1, high=C.TRANSLATE_TARGETS_MAX),
)
_UID_LANGUAGES: Final = _object(
    uid=_string(required=True),
    languages=_array(_LANG, required=True, low=1, high=C.LANGUAGES_MAX),
)
_STORAGE_FIELDS: Final = {
    # spec §4.1 [CONFLICT]: the OpenAPI `required` list spells accesskey/secretkey, every
    # example sends accessKey/secretKey. Both spellings are accepted (see _check_storage).
    "accessKey": _string(),
    "secretKey": _string(),
    "accesskey": _string(),
    "secretkey": _string(),
    "bucket": _string(required=True),
    "vendor": _integer(required=True, enum=frozenset(C.STORAGE_VENDORS)),
    "region": _integer(required=True, low=0),
    "fileNamePrefix": _array(_string()),
}
_EXTENSION_PARAMS: Final = _object(
    endpoint=_string(),
    type=_string(),
    provider=_string(),
    region=_string(),
    tag=_string(),
    tagByRule=_array(_ANY),
    sse=_string(enum=frozenset(C.SSE_VALUES)),
    # spec §4.1 [CONFLICT]: an object (English) or an array of objects (guide, zh-CN).
    overwritekeys=_ANY,
)
_RTC_V7: Final = _object(
    required=True,
    channelName=_string(required=True, low=1),
    pubBotUid=_string(required=True, low=1),
    pubBotToken=_string(),
    # spec §4.1 [CONFLICT]: required in older/zh-CN pages, optional and deprecated now.
    subBotUid=_string(),
    subBotToken=_string(),
    subscribeAudioUids=_array(_UID, high=C.SUBSCRIBE_AUDIO_UIDS_MAX),
    unSubscribeAudioUids=_array(_UID, high=C.UNSUBSCRIBE_AUDIO_UIDS_MAX),
    cryptionMode=_integer(enum=frozenset(C.CRYPTION_MODES)),
    secret=_string(),
    salt=_string(),
    enableJsonProtocol=_boolean(),
)
JOIN: Final = _object(
    name=_string(required=True, low=1, high=C.NAME_MAX_LEN),
    languages=_array(_LANG, required=True, low=1, high=C.LANGUAGES_MAX),
    rtcConfig=_RTC_V7,
    # SPEC-SILENT: spec §4.1 [CONFLICT] 5..2592000 vs 0..259200 (0 = never idle-stop); the
    # emulator accepts the union 0..2592000 so that neither reading is refused.
    maxIdleTime=_integer(low=C.MAX_IDLE_TIME_MIN_S, high=C.MAX_IDLE_TIME_MAX_S),
    uidLanguagesConfig=_array(_UID_LANGUAGES, high=C.UID_LANGUAGES_CONFIG_MAX),
    translateConfig=_object(
        languages=_array(_V7_LANGUAGE_PAIR, high=C.TRANSLATE_SOURCES_MAX),
        # spec §4.1 [INFERRED]: documented for update only, sent on join by public demos.
        enable=_boolean(),
        forceTranslateInterval=_integer(low=2, high=5),
    ),
    captionConfig=_object(
        sliceDuration=_integer(low=C.SLICE_DURATION_MIN_S, high=C.SLICE_DURATION_MAX_S),
        storage=_object_of(_STORAGE_FIELDS),
        # spec §4.1 [CONFLICT]: extensionParams at top level or inside captionConfig.
        extensionParams=_EXTENSION_PARAMS,
    ),
    extensionParams=_EXTENSION_PARAMS,
    keywords=_array(_string(), high=C.KEYWORDS_MAX),
)
UPDATE: Final = _object(
    languages=_array(_LANG, low=1, high=C.LANGUAGES_MAX),
    keywords=_array(_string(), high=C.KEYWORDS_MAX),
    # spec §4.6: send [] to clear the per-user languages set at join.
    uidLanguagesConfig=_array(_UID_LANGUAGES, high=C.UID_LANGUAGES_CONFIG_MAX),
    rtcConfig=_object(subscribeAudioUids=_array(_UID, high=C.SUBSCRIBE_AUDIO_UIDS_MAX)),
    translateConfig=_object(
        enable=_boolean(),
        languages=_array(_V7_LANGUAGE_PAIR, high=C.TRANSLATE_SOURCES_MAX),
    ),
)
# spec §4.6: documented updateMask paths; zh-CN adds uidLanguagesConfig; keywords is
# [INFERRED] from its presence in the update body.
V7_UPDATE_PATHS: Final = (
    "languages",
    "keywords",
    "uidLanguagesConfig",
    "rtcConfig.subscribeAudioUids",
    "translateConfig.enable",
    "translateConfig.languages",
)

# --- legacy tables (spec §5.1, §5.2, §5.4, §5.6) -------------------------------------------

ACQUIRE: Final = _object(
    instanceId=_string(
        required=True, low=1, high=C.INSTANCE_ID_MAX_LEN, pattern=C.INSTANCE_ID_PATTERN
    ),
)
S3_REGIONS: Final = frozenset({*range(26), 28} - {18, 19})  # spec §9
S3_VENDOR: Final = 1
TAG_VENDORS: Final = frozenset({1, 2, 3})  # Amazon S3, Alibaba, Tencent (spec §4.1)


@dataclass(frozen=True)
class _LegacyLimits:
    languages: int
    subscribe: int
    sources: int


_LEGACY_LIMITS: Final = {
    # spec §5.6; subscribeAudioUids is [CONFLICT] 3 vs 32 in v6: the larger is accepted.
    "v6": _LegacyLimits(languages=C.LANGUAGES_MAX, subscribe=C.SUBSCRIBE_AUDIO_UIDS_MAX, sources=4),
    "v5": _LegacyLimits(languages=C.LEGACY_V5_LANGUAGES_MAX, subscribe=3, sources=2),
}


def legacy_tables(version: Literal["v5", "v6"]) -> tuple[Spec, Spec]:
    """The legacy start and update tables with the limits of ``version``."""
    limits = _LEGACY_LIMITS[version]
    pair = _object(
        source=_string(required=True, language=True),
        target=_array(_LANG, required=True, low=1, high=C.LEGACY_TRANSLATE_TARGETS_MAX),
    )
    languages = _array(_LANG, required=True, low=1, high=limits.languages)
    uid_languages = _array(_UID_LANGUAGES, high=C.UID_LANGUAGES_CONFIG_MAX, also_object=True)
    subscribe = _array(_UID, high=limits.subscribe)
    storage = dict(_STORAGE_FIELDS)
    start = _object(
        languages=languages,
        uidLanguagesConfig=uid_languages,
        maxIdleTime=_integer(low=C.MAX_IDLE_TIME_DOCUMENTED_MIN_S, high=C.MAX_IDLE_TIME_MAX_S),
        rtcConfig=_object(
            required=True,
            channelName=_string(required=True, low=1),
            subBotUid=_string(required=True, low=1),
            subBotToken=_string(),
            pubBotUid=_string(required=True, low=1),
            pubBotToken=_string(),
            subscribeAudioUids=subscribe,
            unSubscribeAudioUids=_array(_UID, high=C.UNSUBSCRIBE_AUDIO_UIDS_MAX),
            cryptionMode=_integer(enum=frozenset(C.CRYPTION_MODES)),
            secret=_string(),
            salt=_string(),
            enableJsonProtocol=_boolean(),
            transferMode=_array(_string(enum=frozenset({"RTM", "RTC"}))),
        ),
        translateConfig=_object(
            languages=_array(pair, required=True, high=limits.sources),
            forceTranslateInterval=_integer(low=2, high=5),
            enable=_boolean(),
        ),
        captionConfig=_object(
            sliceDuration=_integer(low=C.SLICE_DURATION_MIN_S, high=C.SLICE_DURATION_MAX_S),
            storage=_object_of(storage, required=True),
        ),
    )
    update = _object(
        languages=_array(_LANG, low=1, high=limits.languages),
        uidLanguagesConfig=uid_languages,
        rtcConfig=_object(subscribeAudioUids=subscribe),
        translateConfig=_object(
            enable=_boolean(),
            languages=_array(pair, high=limits.sources),
        ),
    )
    return start, update


LEGACY_UPDATE_PATHS: Final = (
    "languages",
    "uidLanguagesConfig",
    "rtcConfig.subscribeAudioUids",
    "translateConfig.enable",
    "translateConfig.languages",
)

V5_NESTED: Final = _object(
    audio=_object(
        required=True,
        agoraRtcConfig=_object(
            required=True,
            channelName=_string(required=True, low=1),
            maxIdleTime=_integer(low=C.MAX_IDLE_TIME_DOCUMENTED_MIN_S, high=C.MAX_IDLE_TIME_MAX_S),
        ),
    ),
    config=_object(
        required=True,
        recognizeConfig=_object(required=True, language=_string(required=True, low=1)),
    ),
)
