"""Request and response models of both API generations (attrs, validated, no I/O)."""

from agora_stt_async._models.agents import (
    Agent,
    AgentPage,
    CaptionConfig,
    ExtensionParams,
    JoinRequest,
    LanguagePair,
    RtcConfig,
    StorageConfig,
    TranslateConfig,
    UidLanguages,
    UpdateRequest,
    UpdateRtcConfig,
)
from agora_stt_async._models.common import ResponseInfo
from agora_stt_async._models.legacy import AcquireRequest, BuilderToken, LegacyStartRequest, Task

__all__ = [
    "AcquireRequest",
    "Agent",
    "AgentPage",
    "BuilderToken",
    "CaptionConfig",
    "ExtensionParams",
    "JoinRequest",
    "LanguagePair",
    "LegacyStartRequest",
    "ResponseInfo",
    "RtcConfig",
    "StorageConfig",
    "Task",
    "TranslateConfig",
    "UidLanguages",
    "UpdateRequest",
    "UpdateRtcConfig",
]
