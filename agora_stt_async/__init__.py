"""agora-stt-async: an asyncio SDK for Agora Real-Time STT.

Start with ``AsyncClient`` (one method per endpoint of both API generations) and
``Session`` (many tasks, safely). The ``emulator`` and ``testing`` modules serve a local
stand-in for the service; ``state`` holds the pure task-state machine; ``stores`` the
places task records live.
"""

import attrs

from agora_stt_async._client import AgentsAPI, AsyncClient, LegacyAPI, RawResponse
from agora_stt_async._clock import Clock, SystemClock
from agora_stt_async._enums import AgentStatus, ApiGeneration, LegacyTaskStatus
from agora_stt_async._errors import (
    AgoraSTTError,
    APIError,
    AuthenticationError,
    BadRequestError,
    BodyTooLargeError,
    BuilderTokenError,
    BuilderTokenExpiredError,
    ConfigurationError,
    ConflictError,
    ConnectError,
    ConnectionLost,
    NotFoundError,
    NotificationError,
    PaginationError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeout,
    ResponseError,
    ServerError,
    ServiceNotEnabledError,
    SessionError,
    SignatureError,
    StopIncompleteError,
    TaskAlreadyStartedError,
    TransportError,
    UsageError,
    ValidationError,
)
from agora_stt_async._handle import TaskHandle
from agora_stt_async._hosts import Area
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
from agora_stt_async._pagination import AgentIterator
from agora_stt_async._ratelimit import GroupLimit, RateLimit, RateLimiter
from agora_stt_async._retry import RetryBudgetConfig, RetryPolicy
from agora_stt_async._session import RecoveryReport, Session, SessionStatistics
from agora_stt_async._stats import ClientStatistics, OperationStatistics
from agora_stt_async._version import __version__

__all__ = [
    # client
    "AsyncClient",
    "AgentsAPI",
    "LegacyAPI",
    "AgentIterator",
    "Area",
    "RetryPolicy",
    "RetryBudgetConfig",
    "RateLimit",
    "GroupLimit",
    "RateLimiter",
    "RawResponse",
    "ClientStatistics",
    "OperationStatistics",
    "Clock",
    "SystemClock",
    # session
    "Session",
    "TaskHandle",
    "SessionStatistics",
    "RecoveryReport",
    # models
    "AcquireRequest",
    "Agent",
    "AgentPage",
    "AgentStatus",
    "ApiGeneration",
    "BuilderToken",
    "CaptionConfig",
    "ExtensionParams",
    "JoinRequest",
    "LanguagePair",
    "LegacyStartRequest",
    "LegacyTaskStatus",
    "ResponseInfo",
    "RtcConfig",
    "StorageConfig",
    "Task",
    "TranslateConfig",
    "UidLanguages",
    "UpdateRequest",
    "UpdateRtcConfig",
    # errors
    "AgoraSTTError",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BodyTooLargeError",
    "BuilderTokenError",
    "BuilderTokenExpiredError",
    "ConfigurationError",
    "ConflictError",
    "ConnectError",
    "ConnectionLost",
    "NotFoundError",
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
    "__version__",
]


def _rewrite_modules() -> None:
    # Public names report the public module, as httpx does, so reprs and docs don't
    # point users at private modules.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("agora_stt_async._"):
            if attrs.has(obj):
                # String annotations resolve in the defining module: do it before the
                # module name changes (cattrs resolves them lazily).
                attrs.resolve_types(obj)
            try:
                obj.__module__ = "agora_stt_async"
            except (AttributeError, TypeError):  # pragma: no cover - builtins
                pass


_rewrite_modules()
