"""Fixtures for the emulator's conformance tests: raw httpx against the emulator, never the SDK.

Every v7 response these clients receive is checked against Agora's OpenAPI schema
(``tests/openapi.py``), errors also against its strict overlay, by a response hook, so no
test can forget to. Each validated (operation, status) pair is recorded in ``VALIDATED``
for the coverage assertion in ``test_openapi_coverage.py``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from agora_stt_async.emulator import EmulatorApp, EmulatorClock, EmulatorConfig, create_app
from tests.openapi import validate_response

APP_ID = "emulatorapp0000000000000000000000"
OTHER_APP_ID = "otherapp000000000000000000000000"
V7 = f"/api/speech-to-text/v1/projects/{APP_ID}"
LEGACY = f"/v1/projects/{APP_ID}/rtsc/speech-to-text"
AUTH = ("emulator", "emulator-secret")
START = 1_750_000_000.0
"""The frozen clock's start: a large arbitrary Unix time."""

REQUEST_TIMEOUT_S = 5.0

VALIDATED: set[tuple[str, int]] = set()
"""Every (v7 operationId, HTTP status) a ConformanceClient validated in this process."""

_V7_OPERATIONS = [
    ("POST", re.compile(r"/api/speech-to-text/v1/projects/[^/]+/join"), "join"),
    ("GET", re.compile(r"/api/speech-to-text/v1/projects/[^/]+/agents"), "list"),
    ("GET", re.compile(r"/api/speech-to-text/v1/projects/[^/]+/agents/[^/]+"), "query"),
    ("POST", re.compile(r"/api/speech-to-text/v1/projects/[^/]+/agents/[^/]+/leave"), "leave"),
    ("POST", re.compile(r"/api/speech-to-text/v1/projects/[^/]+/agents/[^/]+/update"), "update"),
]


def v7_operation(method: str, path: str) -> str | None:
    """The OpenAPI operationId of a v7 request, or ``None`` for other paths."""
    for op_method, pattern, name in _V7_OPERATIONS:
        if method == op_method and pattern.fullmatch(path):
            return name
    return None


class ConformanceClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose every request is bounded by ``anyio.fail_after``
    and whose every v7 response is validated against the OpenAPI schema."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.validated = 0
        self.seen: set[tuple[str, int]] = set()
        """The (operationId, status) pairs this client validated."""

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        with anyio.fail_after(REQUEST_TIMEOUT_S):
            response = await super().send(request, **kwargs)
            await response.aread()
        operation = v7_operation(request.method, request.url.path)
        if operation is not None:
            body = response.json() if response.content else None
            validate_response(operation, response.status_code, body, strict=True)
            self.validated += 1
            self.seen.add((operation, response.status_code))
            VALIDATED.add((operation, response.status_code))
        return response


def make_client(
    app: EmulatorApp | None = None, base_url: str | None = None, **kwargs: Any
) -> ConformanceClient:
    """A conformance client, in process (``app``) or over the network (``base_url``)."""
    kwargs.setdefault("auth", AUTH)
    if base_url is not None:
        return ConformanceClient(base_url=base_url, **kwargs)
    assert app is not None
    return ConformanceClient(base_url="http://emulator", transport=app.transport(), **kwargs)


def basic(customer_id: str, secret: str, scheme: str = "Basic") -> dict[str, str]:
    """An Authorization header, spelled by hand."""
    token = base64.b64encode(f"{customer_id}:{secret}".encode()).decode()
    return {"Authorization": f"{scheme} {token}"}


def join_body(name: str = "agent-1", channel: str = "channel-1", **extra: Any) -> dict[str, Any]:
    """A minimal valid v7 join body."""
    return {
        "name": name,
        "languages": ["en-US"],
        "rtcConfig": {"channelName": channel, "pubBotUid": "1000"},
        **extra,
    }


def start_body(channel: str = "channel-1", **extra: Any) -> dict[str, Any]:
    """A minimal valid legacy v6 start body."""
    return {
        "languages": ["en-US"],
        "rtcConfig": {"channelName": channel, "subBotUid": "1000", "pubBotUid": "2000"},
        **extra,
    }


LAST_TEST = "test_no_conformance_test_saw_an_unlisted_status"
"""The coverage assertion over ``VALIDATED``: it must see every other test's requests."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the OpenAPI coverage assertion after every other test of the session."""
    last = [item for item in items if item.name == LAST_TEST]
    if last:
        items[:] = [item for item in items if item.name != LAST_TEST] + last


@pytest.fixture
def clock() -> EmulatorClock:
    """A frozen clock: only ``advance`` moves it."""
    return EmulatorClock(start=START)


@pytest.fixture
def config() -> EmulatorConfig:
    """Default behaviour; tests override it by parametrizing or replacing this fixture."""
    return EmulatorConfig()


@pytest.fixture
def app(clock: EmulatorClock, config: EmulatorConfig) -> EmulatorApp:
    """A fresh emulator on the frozen clock, seed 1."""
    return create_app(config, clock=clock, seed=1, app_ids=[APP_ID, OTHER_APP_ID])


@pytest.fixture
async def client(app: EmulatorApp) -> AsyncIterator[ConformanceClient]:
    """Raw httpx against ``app`` in process, with the emulator's credentials."""
    async with make_client(app) as c:
        yield c
