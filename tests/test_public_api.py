"""The public face of the package: ``__all__`` pinned, names importable, version, py.typed."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources

import pytest

import agora_stt_async

# Sorted; a change here is a change of the public API (and a CHANGELOG line).
PUBLIC_NAMES = [
    "APIError",
    "AcquireRequest",
    "Agent",
    "AgentIterator",
    "AgentPage",
    "AgentStatus",
    "AgentsAPI",
    "AgoraSTTError",
    "ApiGeneration",
    "Area",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BodyTooLargeError",
    "BuilderToken",
    "BuilderTokenError",
    "BuilderTokenExpiredError",
    "CaptionConfig",
    "ClientStatistics",
    "Clock",
    "ConfigurationError",
    "ConflictError",
    "ConnectError",
    "ConnectionLost",
    "ExtensionParams",
    "GroupLimit",
    "JoinRequest",
    "LanguagePair",
    "LegacyAPI",
    "LegacyStartRequest",
    "LegacyTaskStatus",
    "NotFoundError",
    "NotificationError",
    "OperationStatistics",
    "PaginationError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimit",
    "RateLimitError",
    "RateLimiter",
    "RawResponse",
    "RecoveryReport",
    "RequestTimeout",
    "ResponseError",
    "ResponseInfo",
    "RetryBudgetConfig",
    "RetryPolicy",
    "RtcConfig",
    "ServerError",
    "ServiceNotEnabledError",
    "Session",
    "SessionError",
    "SessionStatistics",
    "SignatureError",
    "StopIncompleteError",
    "StorageConfig",
    "SystemClock",
    "Task",
    "TaskAlreadyStartedError",
    "TaskHandle",
    "TranslateConfig",
    "TransportError",
    "UidLanguages",
    "UpdateRequest",
    "UpdateRtcConfig",
    "UsageError",
    "ValidationError",
    "__version__",
]


def test_public_api_all_pinned():
    """``__all__`` is exactly the pinned list, without duplicates."""
    assert sorted(agora_stt_async.__all__) == PUBLIC_NAMES
    assert len(set(agora_stt_async.__all__)) == len(agora_stt_async.__all__)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_api_name_importable(name):
    """Every public name can be imported from the package itself."""
    module = importlib.import_module("agora_stt_async")
    obj = getattr(module, name)
    assert obj is not None
    exec(f"from agora_stt_async import {name}", {})


@pytest.mark.parametrize("name", [n for n in PUBLIC_NAMES if n != "__version__"])
def test_public_api_reports_public_module(name):
    """Public classes say they live in ``agora_stt_async``, not in a private module."""
    obj = getattr(agora_stt_async, name)
    assert obj.__module__ == "agora_stt_async"


@pytest.mark.parametrize("name", [n for n in PUBLIC_NAMES if n != "__version__"])
def test_public_api_documented(name):
    """Every public class carries a docstring."""
    assert (getattr(agora_stt_async, name).__doc__ or "").strip()


def test_public_api_star_import():
    """``from agora_stt_async import *`` gives exactly the public names."""
    namespace: dict[str, object] = {}
    exec("from agora_stt_async import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == PUBLIC_NAMES


def test_public_api_version_matches_metadata():
    """``__version__`` is the installed distribution's version."""
    assert agora_stt_async.__version__ == importlib.metadata.version("agora-stt-async")


def test_public_api_py_typed():
    """The package ships the PEP 561 marker."""
    marker = importlib.resources.files("agora_stt_async") / "py.typed"
    assert marker.is_file()
