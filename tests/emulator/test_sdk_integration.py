"""The SDK against the emulator, in process and over real loopback sockets (issue 3).

Every endpoint of both generations is called through ``AsyncClient`` on every path the
SDK sends by: a caller-owned ``httpx`` client (in process and on loopback), and the
clients the SDK makes itself on loopback, aiohttp directly (``fast=True``, asyncio; the
default there) and httpx's own transport (``fast=False``). Every v7 request body the SDK
sends and every v7 response the emulator gives is checked against Agora's OpenAPI file
(``tests/openapi.py``): by event hooks on a caller-owned client, and by a hook on the
SDK's own client (``AutoClient.request``) when the SDK owns it. So the SDK and the
emulator are each held to the published schema, not to each other.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx
import pytest

from agora_stt_async import (
    AgentStatus,
    AsyncClient,
    BuilderTokenError,
    BuilderTokenExpiredError,
    CaptionConfig,
    ConflictError,
    JoinRequest,
    LanguagePair,
    LegacyStartRequest,
    LegacyTaskStatus,
    NotFoundError,
    RetryPolicy,
    RtcConfig,
    StorageConfig,
    TaskAlreadyStartedError,
    TranslateConfig,
    UidLanguages,
)
from agora_stt_async._constants import (
    EMULATOR_APP_ID,
    EMULATOR_CUSTOMER_ID,
    EMULATOR_CUSTOMER_SECRET,
)
from agora_stt_async._transports import AutoClient, ReadResponse
from agora_stt_async.emulator import EmulatorApp, EmulatorClock, EmulatorConfig, create_app, serve
from tests.emulator.conftest import START, v7_operation
from tests.openapi import validate_request, validate_response

_ASYNCIO: tuple[str, dict[str, object]] = ("asyncio", {"debug": True})
_TRIO: tuple[str, dict[str, object]] = ("trio", {})
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize(
        ("anyio_backend", "path"),
        [
            pytest.param(_ASYNCIO, "in-process", id="asyncio-in-process"),
            pytest.param(_TRIO, "in-process", id="trio-in-process"),
            pytest.param(_ASYNCIO, "loopback", id="asyncio-loopback"),
            pytest.param(_TRIO, "loopback", id="trio-loopback"),
            # The SDK's own clients: aiohttp directly exists on asyncio only.
            pytest.param(_ASYNCIO, "loopback-aiohttp", id="asyncio-loopback-aiohttp"),
            pytest.param(_ASYNCIO, "loopback-sdk-httpx", id="asyncio-loopback-sdk-httpx"),
            pytest.param(_TRIO, "loopback-sdk-httpx", id="trio-loopback-sdk-httpx"),
        ],
    ),
]
"""``path``: ``in-process`` and ``loopback`` send through a caller-owned httpx client;
``loopback-aiohttp`` (``fast=True``) and ``loopback-sdk-httpx`` (``fast=False``) through
the client the SDK makes."""

_REQUEST_SCHEMAS = {"join": "JoinRequest", "update": "UpdateRequest"}


class Referee:
    """Holds every v7 exchange to the OpenAPI file: as httpx event hooks on a
    caller-owned client, or through ``check`` from a hook on the SDK's own client."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.responses: list[tuple[str, int]] = []

    def check_request(self, method: str, path: str, content: bytes | None) -> None:
        operation = v7_operation(method, path)
        if operation is None:
            return
        if operation in _REQUEST_SCHEMAS:
            validate_request(_REQUEST_SCHEMAS[operation], json.loads(content or b""))
        else:
            assert not content, (operation, content)
        self.requests.append(operation)

    def check_response(self, method: str, path: str, status: int, content: bytes) -> None:
        operation = v7_operation(method, path)
        if operation is None:
            return
        body = json.loads(content) if content else None
        validate_response(operation, status, body)
        self.responses.append((operation, status))

    async def on_request(self, request: httpx.Request) -> None:
        self.check_request(request.method, request.url.path, request.content)

    async def on_response(self, response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        self.check_response(
            request.method, request.url.path, response.status_code, response.content
        )

    def watch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Check every exchange of the clients the SDK makes (``AutoClient``, either path)."""
        send = AutoClient.request
        referee = self

        async def request(self: AutoClient, method: str, url: str, **kwargs: Any) -> ReadResponse:
            path = httpx.URL(url).path
            content = kwargs.get("content")
            referee.check_request(method, path, content)
            response = await send(self, method, url, **kwargs)
            referee.check_response(method, path, response.status_code, response.content)
            return response

        monkeypatch.setattr(AutoClient, "request", request)


@pytest.fixture
def clock() -> EmulatorClock:
    return EmulatorClock(start=START)


@pytest.fixture
def app(clock: EmulatorClock) -> EmulatorApp:
    return create_app(EmulatorConfig(start_delay=1.0, stop_delay=0.5), clock=clock, seed=3)


@pytest.fixture
def base_url(path: str, app: EmulatorApp) -> Iterator[str | None]:
    """``None`` in process (the ASGI transport), else a uvicorn server on a free port."""
    if path == "in-process":
        yield None
    else:
        with serve(app) as url:
            assert url.startswith("http://127.0.0.1:")
            yield url


@pytest.fixture
def referee() -> Referee:
    return Referee()


_CREDENTIALS: Mapping[str, Any] = {
    "app_id": EMULATOR_APP_ID,
    "customer_id": EMULATOR_CUSTOMER_ID,
    "customer_secret": EMULATOR_CUSTOMER_SECRET,
    "retry": RetryPolicy.none(),
}


@pytest.fixture
async def sdk(
    app: EmulatorApp,
    path: str,
    base_url: str | None,
    referee: Referee,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[AsyncClient]:
    if path in ("loopback-aiohttp", "loopback-sdk-httpx"):
        assert base_url is not None
        referee.watch(monkeypatch)
        fast = path == "loopback-aiohttp"
        async with AsyncClient(base_url=base_url, fast=fast, **_CREDENTIALS) as client:
            yield client
            chosen = client._http._client
            assert isinstance(chosen, AutoClient)
            kind = "DirectClient" if fast else "AsyncClient"
            assert type(chosen.chosen).__name__ == kind, chosen.chosen
        return
    hooks: dict[str, list[Any]] = {
        "request": [referee.on_request],
        "response": [referee.on_response],
    }
    transport = app.transport() if base_url is None else None
    async with httpx.AsyncClient(transport=transport, event_hooks=hooks, timeout=10) as http:
        kwargs: dict[str, Any] = {} if base_url is None else {"base_url": base_url}
        async with AsyncClient(http_client=http, **_CREDENTIALS, **kwargs) as client:
            yield client
        assert not http.is_closed, "the SDK closed a client it was given"


def full_join(name: str, channel: str) -> JoinRequest:
    """A join using every nested config the SDK models (storage keys included)."""
    return JoinRequest(
        name=name,
        languages=["en-US", "zh-CN"],
        rtc_config=RtcConfig(channel_name=channel, pub_bot_uid="88222", sub_bot_uid="88221"),
        max_idle_time=120,
        uid_languages_config=[UidLanguages(uid="7", languages=["en-US"])],
        translate_config=TranslateConfig(
            enable=True, languages=[LanguagePair(source="en-US", target=["fr-FR"])]
        ),
        caption_config=CaptionConfig(
            storage=StorageConfig(
                access_key="storage-ak",
                secret_key="storage-sk",
                bucket="captions",
                vendor=1,
                region=0,
            )
        ),
    )


async def test_sdk_v7_every_endpoint(
    sdk: AsyncClient, clock: EmulatorClock, referee: Referee
) -> None:
    """join → get → list (pages) → update → leave → get, every body valid by the schema."""
    agent = await sdk.agents.join(full_join("agent-a", "room-a"))
    assert agent.status is AgentStatus.STARTING
    assert agent.response is not None
    assert (agent.response.request_id or "").startswith("sdk_")
    for i in range(4):
        await sdk.agents.join(full_join(f"other-{i}", f"room-{i}"))
    clock.advance(2)
    got = await sdk.agents.get(agent.agent_id)
    assert (got.agent_id, got.status) == (agent.agent_id, AgentStatus.RUNNING)

    listed = [a.agent_id async for a in sdk.agents.list(page_size=2)]
    assert len(listed) == len(set(listed)) == 5
    assert agent.agent_id in listed
    assert referee.requests.count("list") == 3  # 2 + 2 + 1, the cursor followed
    by_channel = [a.agent_id async for a in sdk.agents.list(channel="room-a")]
    assert by_channel == [agent.agent_id]

    await sdk.agents.update(agent.agent_id, languages=["en-US", "es-ES"], sequence_id=1)
    await sdk.agents.update(agent.agent_id, translate_enable=False, sequence_id=2)
    with pytest.raises(ConflictError):
        await sdk.agents.join(full_join("agent-a", "room-a"))  # same name while running

    await sdk.agents.leave(agent.agent_id)
    clock.advance(1)
    gone = await sdk.agents.get(agent.agent_id)
    assert gone.status is AgentStatus.STOPPED
    stopped = [a.agent_id async for a in sdk.agents.list(state=AgentStatus.STOPPED)]
    assert stopped == [agent.agent_id]
    with pytest.raises(NotFoundError):
        await sdk.agents.get("NOSUCHAGENT00000000000000")

    assert set(referee.requests) == {"join", "query", "list", "update", "leave"}
    assert len(referee.responses) == len(referee.requests)


async def test_sdk_legacy_every_endpoint(sdk: AsyncClient, clock: EmulatorClock) -> None:
    """acquire → start → repeat start → query → update → stop → query, with the token."""
    token = await sdk.legacy.acquire("instance-1")
    assert token.instance_id == "instance-1"
    assert token.token_name
    start = LegacyStartRequest(
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name="lroom", pub_bot_uid="2000", sub_bot_uid="1000"),
    )
    task = await sdk.legacy.start(token, start)
    assert task.task_id
    with pytest.raises(TaskAlreadyStartedError) as repeat:
        await sdk.legacy.start(token, start)
    assert repeat.value.task_id == task.task_id

    queried = await sdk.legacy.query(task.task_id, token)
    assert queried.task_id == task.task_id
    assert queried.status in (LegacyTaskStatus.STARTED, LegacyTaskStatus.IN_PROGRESS)
    await sdk.legacy.update(task.task_id, token, languages=["en-US", "ja-JP"], sequence_id=1)

    other = await sdk.legacy.acquire("instance-1")  # many tokens per instance id
    with pytest.raises(BuilderTokenError) as mismatch:
        await sdk.legacy.query(task.task_id, other)  # not the token that started it
    assert mismatch.value.code == 53

    await sdk.legacy.stop(task.task_id, token)
    with pytest.raises(NotFoundError):
        await sdk.legacy.query(task.task_id, token)

    clock.advance(301)  # the 5-minute window, on the emulator's clock
    with pytest.raises(BuilderTokenExpiredError):
        await sdk.legacy.start(other, start)
