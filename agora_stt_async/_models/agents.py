"""v7 agents API: request and response models (spec §4).

Python names are snake_case; the wire names live only in ``_converter.py``. Every
documented limit is checked on construction, so a bad request fails with a
``ValidationError`` naming the field before anything is sent. Fields holding tokens,
encryption keys or storage keys are masked in ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from agora_stt_async import _constants as C
from agora_stt_async._enums import AgentStatus
from agora_stt_async._errors import ValidationError
from agora_stt_async._models import _validate as v
from agora_stt_async._models.common import ResponseInfo
from agora_stt_async._secrets import mask

_ALNUM: Final = r"[A-Za-z0-9]+"


@attrs.frozen
class UidLanguages:
    """Languages for one user (``uidLanguagesConfig`` item)."""

    uid: str = attrs.field(validator=v.text("uid_languages_config.uid"))
    languages: tuple[str, ...] = attrs.field(
        converter=v.to_tuple,
        validator=v.strings(
            "uid_languages_config.languages", max_items=C.LANGUAGES_MAX, optional=False
        ),
    )


def _check_uid_languages(_inst: object, _attr: object, value: Any) -> None:
    v.items("uid_languages_config", UidLanguages, max_items=C.UID_LANGUAGES_CONFIG_MAX)(
        _inst, _attr, value
    )
    if value:
        uids = [item.uid for item in value if isinstance(item, UidLanguages)]
        if len(set(uids)) != len(uids):
            raise ValidationError("uid_languages_config", "each uid may appear once")


@attrs.frozen
class LanguagePair:
    """A translation rule: one source language and up to 10 target languages."""

    source: str = attrs.field(validator=v.text("translate_config.languages.source"))
    target: tuple[str, ...] = attrs.field(
        converter=v.to_tuple,
        validator=v.strings(
            "translate_config.languages.target",
            max_items=C.TRANSLATE_TARGETS_MAX,
            min_items=1,
            optional=False,
        ),
    )


@attrs.frozen
class TranslateConfig:
    """Real-time translation (``translateConfig``).

    ``enable`` is documented for update only (``False`` switches translation off);
    Agora's own demos also send it on join, so it is accepted in both.
    """

    languages: tuple[LanguagePair, ...] | None = attrs.field(
        default=None,
        converter=v.to_tuple,
        validator=v.items(
            "translate_config.languages", LanguagePair, max_items=C.TRANSLATE_SOURCES_MAX
        ),
    )
    enable: bool | None = attrs.field(
        default=None, validator=v.instance("translate_config.enable", bool)
    )


@attrs.frozen
class RtcConfig:
    """The channel and the bot identities (``rtcConfig``).

    ``sub_bot_uid`` is deprecated in v7 ("always identical to pubBotUid") but still
    required by the legacy API; ``cryption_mode``/``secret``/``salt`` must match the
    channel's encryption.
    """

    channel_name: str = attrs.field(validator=v.text("rtc_config.channel_name"))
    pub_bot_uid: str = attrs.field(validator=v.text("rtc_config.pub_bot_uid"))
    pub_bot_token: str | None = attrs.field(
        default=None, repr=mask, validator=v.text("rtc_config.pub_bot_token", optional=True)
    )
    sub_bot_uid: str | None = attrs.field(
        default=None, validator=v.text("rtc_config.sub_bot_uid", optional=True)
    )
    sub_bot_token: str | None = attrs.field(
        default=None, repr=mask, validator=v.text("rtc_config.sub_bot_token", optional=True)
    )
    subscribe_audio_uids: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=v.to_tuple,
        validator=v.strings(
            "rtc_config.subscribe_audio_uids", max_items=C.SUBSCRIBE_AUDIO_UIDS_MAX
        ),
    )
    unsubscribe_audio_uids: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=v.to_tuple,
        validator=v.strings(
            "rtc_config.unsubscribe_audio_uids", max_items=C.UNSUBSCRIBE_AUDIO_UIDS_MAX
        ),
    )
    cryption_mode: int | None = attrs.field(
        default=None, validator=v.one_of("rtc_config.cryption_mode", C.CRYPTION_MODES)
    )
    secret: str | None = attrs.field(
        default=None, repr=mask, validator=v.text("rtc_config.secret", optional=True)
    )
    salt: str | None = attrs.field(
        default=None, repr=mask, validator=v.text("rtc_config.salt", optional=True)
    )
    enable_json_protocol: bool | None = attrs.field(
        default=None, validator=v.instance("rtc_config.enable_json_protocol", bool)
    )

    def __attrs_post_init__(self) -> None:
        if self.subscribe_audio_uids is not None and self.unsubscribe_audio_uids is not None:
            raise ValidationError(
                "rtc_config.subscribe_audio_uids",
                "only one of subscribe_audio_uids and unsubscribe_audio_uids may be set",
            )
        mode = self.cryption_mode or 0
        if mode and not self.secret:
            raise ValidationError("rtc_config.secret", "required when cryption_mode is not 0")
        if mode in C.CRYPTION_MODES_WITH_SALT:
            if not self.salt:
                raise ValidationError("rtc_config.salt", "required when cryption_mode is 7 or 8")
            if not v.is_base64_of(32, self.salt):
                raise ValidationError("rtc_config.salt", "must be Base64 of 32 bytes")


@attrs.frozen
class StorageConfig:
    """Your cloud storage for recorded captions (``captionConfig.storage``)."""

    access_key: str = attrs.field(repr=mask, validator=v.text("caption_config.storage.access_key"))
    secret_key: str = attrs.field(repr=mask, validator=v.text("caption_config.storage.secret_key"))
    bucket: str = attrs.field(validator=v.text("caption_config.storage.bucket"))
    vendor: int = attrs.field(
        validator=v.one_of("caption_config.storage.vendor", C.STORAGE_VENDORS)
    )
    region: int = attrs.field(validator=v.integer("caption_config.storage.region", 0))
    """The vendor's region code. Checked against the documented table for Amazon S3
    (vendor 1, spec §9); for the other vendors any integer >= 0 is sent as is: the STT
    docs give no table for them (they point to Cloud Recording's, which Agora may
    change), Azure and Google ignore it, and vendor 11 reads ``extension_params.region``."""
    file_name_prefix: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=v.to_tuple,
        validator=v.strings("caption_config.storage.file_name_prefix"),
    )

    def __attrs_post_init__(self) -> None:
        if self.vendor == C.STORAGE_VENDOR_AMAZON_S3 and self.region not in C.AMAZON_S3_REGIONS:
            raise ValidationError(
                "caption_config.storage.region",
                f"an Amazon S3 region code (vendor 1): 0..17, 20..25 or 28 (got {self.region})",
                self.region,
            )
        for part in self.file_name_prefix or ():
            v.pattern(
                "caption_config.storage.file_name_prefix", _ALNUM, "each element only a-z A-Z 0-9"
            )(self, None, part)
        if self.file_name_prefix and len("/".join(self.file_name_prefix)) > (
            C.FILE_NAME_PREFIX_MAX_LEN
        ):
            raise ValidationError(
                "caption_config.storage.file_name_prefix",
                f"the whole prefix is at most {C.FILE_NAME_PREFIX_MAX_LEN} characters",
            )


@attrs.frozen
class CaptionConfig:
    """Record captions to your storage (``captionConfig``)."""

    storage: StorageConfig | None = attrs.field(
        default=None, validator=v.instance("caption_config.storage", StorageConfig)
    )
    slice_duration: int | None = attrs.field(
        default=None,
        validator=v.integer(
            "caption_config.slice_duration", C.SLICE_DURATION_MIN_S, C.SLICE_DURATION_MAX_S
        ),
    )


@attrs.frozen
class ExtensionParams:
    """S3-compatible and extra storage options (``extensionParams``, top level as in the
    English reference; spec §4.1 records the placement conflict)."""

    endpoint: str | None = attrs.field(
        default=None, validator=v.text("extension_params.endpoint", optional=True)
    )
    type: str | None = attrs.field(
        default=None, validator=v.text("extension_params.type", optional=True)
    )
    provider: str | None = attrs.field(
        default=None, validator=v.text("extension_params.provider", optional=True)
    )
    region: str | None = attrs.field(
        default=None, validator=v.text("extension_params.region", optional=True)
    )
    tag: str | None = attrs.field(
        default=None, validator=v.text("extension_params.tag", optional=True)
    )
    tag_by_rule: tuple[Mapping[str, object], ...] | None = attrs.field(
        default=None,
        converter=v.to_tuple,
        validator=[
            v.items("extension_params.tag_by_rule", Mapping),
            v.json_value("extension_params.tag_by_rule"),
        ],
    )
    sse: str | None = attrs.field(
        default=None, validator=v.one_of("extension_params.sse", C.SSE_VALUES)
    )
    # spec §4.1 [CONFLICT]: an object (English reference) or an array of objects (guide,
    # zh-CN). The English OpenAPI's object is what the SDK models (and sends).
    overwritekeys: Mapping[str, object] | None = attrs.field(
        default=None,
        validator=[
            v.instance("extension_params.overwritekeys", Mapping),
            v.json_value("extension_params.overwritekeys"),
        ],
    )


def _check_languages(path: str) -> v.Validator:
    return v.strings(path, max_items=C.LANGUAGES_MAX, min_items=1, optional=False)


@attrs.frozen
class JoinRequest:
    """Body of ``POST /join``: start an agent (spec §4.1).

    ``name`` is the dedupe key: only one agent per name runs at a time, so reusing the
    same name makes a retried join safe.
    """

    name: str = attrs.field(validator=v.text("name", max_len=C.NAME_MAX_LEN))
    languages: tuple[str, ...] = attrs.field(
        converter=v.to_tuple, validator=_check_languages("languages")
    )
    rtc_config: RtcConfig = attrs.field(
        validator=v.instance("rtc_config", RtcConfig, optional=False)
    )
    max_idle_time: int | None = attrs.field(
        default=None,
        validator=v.integer("max_idle_time", C.MAX_IDLE_TIME_MIN_S, C.MAX_IDLE_TIME_MAX_S),
    )
    uid_languages_config: tuple[UidLanguages, ...] | None = attrs.field(
        default=None, converter=v.to_tuple, validator=_check_uid_languages
    )
    translate_config: TranslateConfig | None = attrs.field(
        default=None, validator=v.instance("translate_config", TranslateConfig)
    )
    caption_config: CaptionConfig | None = attrs.field(
        default=None, validator=v.instance("caption_config", CaptionConfig)
    )
    extension_params: ExtensionParams | None = attrs.field(
        default=None, validator=v.instance("extension_params", ExtensionParams)
    )
    keywords: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=v.to_tuple,
        validator=v.strings("keywords", max_items=C.KEYWORDS_MAX),
    )

    def __attrs_post_init__(self) -> None:
        _check_translation_rule(self.languages, self.translate_config)
        storage = self.caption_config.storage if self.caption_config else None
        if (
            storage is not None
            and storage.vendor == C.STORAGE_VENDOR_S3_COMPATIBLE
            and not (self.extension_params and self.extension_params.endpoint)
        ):
            raise ValidationError(
                "extension_params.endpoint", "required when caption storage vendor is 11"
            )


def _check_translation_rule(
    languages: tuple[str, ...] | None, translate: TranslateConfig | None
) -> None:
    """v7.2.2: with one transcription language, a target equal to its source is an error;
    with several (mixed-language input) it is allowed."""
    if not translate or not translate.languages or languages is None or len(languages) != 1:
        return
    for pair in translate.languages:
        if pair.source in pair.target:
            raise ValidationError(
                "translate_config.languages.target",
                "a target may not equal its source when the task transcribes one language",
                pair.source,
            )


@attrs.frozen
class UpdateRtcConfig:
    """The one ``rtcConfig`` field an update may change."""

    subscribe_audio_uids: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=v.to_tuple,
        validator=v.strings(
            "rtc_config.subscribe_audio_uids", max_items=C.SUBSCRIBE_AUDIO_UIDS_MAX
        ),
    )


@attrs.frozen
class UpdateRequest:
    """Body of an update (v7 ``POST .../update`` and legacy ``PATCH /tasks``).

    A field left ``None`` is not sent and keeps its value on the server; a field given is
    replaced as a whole (spec §4.6). ``update_mask()`` lists the given fields' paths.
    """

    languages: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=v.to_tuple,
        validator=v.strings("languages", max_items=C.LANGUAGES_MAX, min_items=1),
    )
    keywords: tuple[str, ...] | None = attrs.field(
        default=None,
        converter=v.to_tuple,
        validator=v.strings("keywords", max_items=C.KEYWORDS_MAX),
    )
    uid_languages_config: tuple[UidLanguages, ...] | None = attrs.field(
        default=None, converter=v.to_tuple, validator=_check_uid_languages
    )
    rtc_config: UpdateRtcConfig | None = attrs.field(
        default=None, validator=v.instance("rtc_config", UpdateRtcConfig)
    )
    translate_config: TranslateConfig | None = attrs.field(
        default=None, validator=v.instance("translate_config", TranslateConfig)
    )

    def __attrs_post_init__(self) -> None:
        if not self.update_mask():
            raise ValidationError("update", "give at least one field to change")
        _check_translation_rule(self.languages, self.translate_config)

    def update_mask(self) -> tuple[str, ...]:
        """Dotted Python paths of the fields this update sets (wire names: ``_converter``)."""
        paths = [
            name
            for name in ("languages", "keywords", "uid_languages_config")
            if getattr(self, name) is not None
        ]
        if self.rtc_config is not None and self.rtc_config.subscribe_audio_uids is not None:
            paths.append("rtc_config.subscribe_audio_uids")
        if self.translate_config is not None:
            if self.translate_config.enable is not None:
                paths.append("translate_config.enable")
            if self.translate_config.languages is not None:
                paths.append("translate_config.languages")
        return tuple(paths)


@attrs.frozen
class Agent:
    """A v7 agent as the server reported it.

    ``create_ts`` is Unix seconds (``start_ts`` in list items; ``None`` where the
    server sent null, as English examples do). ``message`` comes from query only.
    ``raw`` is the JSON object it was parsed from; ``response`` the exchange.
    """

    agent_id: str
    status: AgentStatus
    create_ts: int | None = None
    message: str | None = None
    raw: Mapping[str, object] | None = attrs.field(default=None, eq=False, repr=False)
    response: ResponseInfo | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class AgentPage:
    """One page of ``GET /agents``: its items, the total over all pages and the cursor.

    ``cursor`` is ``""`` on the last page.
    """

    items: tuple[Agent, ...]
    total: int
    cursor: str
    count: int
    response: ResponseInfo | None = attrs.field(default=None, eq=False, repr=False)
