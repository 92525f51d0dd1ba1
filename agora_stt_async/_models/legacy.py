"""Legacy v5/v6 builder-token API: request and response models (spec §5).

The legacy API is past end-of-life (June 2026); these models follow the v6 reference
(flat body). Update bodies reuse ``UpdateRequest`` from the v7 models: the documented
legacy update fields are a subset of it.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from agora_stt_async import _constants as C
from agora_stt_async._enums import LegacyTaskStatus
from agora_stt_async._errors import ValidationError
from agora_stt_async._models import _validate as v
from agora_stt_async._models.agents import (
    CaptionConfig,
    RtcConfig,
    TranslateConfig,
    UidLanguages,
    _check_uid_languages,
)
from agora_stt_async._models.common import ResponseInfo
from agora_stt_async._secrets import mask


@attrs.frozen
class AcquireRequest:
    """Body of ``POST /builderTokens``. Agora recommends the channel name as ``instance_id``."""

    instance_id: str = attrs.field(
        validator=[
            v.text("instance_id", max_len=C.INSTANCE_ID_MAX_LEN),
            v.pattern("instance_id", C.INSTANCE_ID_PATTERN, "only a-z A-Z 0-9 - _"),
        ]
    )


@attrs.frozen
class BuilderToken:
    """A builder token from acquire.

    ``token_name`` is the value the docs also call ``tokenName``, ``builderToken`` and
    ``resourceId``. It must start a task within 5 minutes of ``create_ts`` (server
    time, Unix seconds), and the task it starts needs it again for query, update and
    stop: keep it with the task id.
    """

    token_name: str = attrs.field(repr=mask)
    create_ts: int
    instance_id: str
    raw: Mapping[str, object] | None = attrs.field(default=None, eq=False, repr=False)
    response: ResponseInfo | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def expires_at(self) -> float:
        """Unix seconds after which the server refuses to start a task with this token."""
        return self.create_ts + C.TOKEN_TTL_S


@attrs.frozen
class LegacyStartRequest:
    """Body of ``POST /tasks`` (v6 flat shape, spec §5.2).

    ``rtc_config.sub_bot_uid`` is required here (unlike v7); translation allows at most
    5 targets per source, and a target may never equal its source.
    """

    languages: tuple[str, ...] = attrs.field(
        converter=v.to_tuple,
        validator=v.strings("languages", max_items=C.LANGUAGES_MAX, min_items=1, optional=False),
    )
    rtc_config: RtcConfig = attrs.field(
        validator=v.instance("rtc_config", RtcConfig, optional=False)
    )
    max_idle_time: int | None = attrs.field(
        default=None,
        validator=v.integer(
            "max_idle_time", C.MAX_IDLE_TIME_DOCUMENTED_MIN_S, C.MAX_IDLE_TIME_MAX_S
        ),
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

    def __attrs_post_init__(self) -> None:
        if not self.rtc_config.sub_bot_uid:
            raise ValidationError("rtc_config.sub_bot_uid", "required by the legacy API")
        check_legacy_translation(self.translate_config)


def check_legacy_translation(translate: TranslateConfig | None) -> None:
    """The legacy translation rules (start and update, spec §5.2, §5.4): at most 5
    targets per source, and a target never equal to its source."""
    for pair in (translate.languages or ()) if translate else ():
        if len(pair.target) > C.LEGACY_TRANSLATE_TARGETS_MAX:
            raise ValidationError(
                "translate_config.languages.target",
                f"at most {C.LEGACY_TRANSLATE_TARGETS_MAX} items in the legacy API",
            )
        if pair.source in pair.target:
            raise ValidationError(
                "translate_config.languages.target", "a target may not equal its source"
            )


@attrs.frozen
class Task:
    """A legacy task as the server reported it, with the token that started it.

    ``token_name`` is filled in by the client from the call that produced this result,
    so the tokenName→taskId mapping travels with the task.
    """

    task_id: str
    status: LegacyTaskStatus
    create_ts: int | None = None
    token_name: str | None = attrs.field(default=None, repr=mask)
    raw: Mapping[str, object] | None = attrs.field(default=None, eq=False, repr=False)
    response: ResponseInfo | None = attrs.field(default=None, eq=False, repr=False)
