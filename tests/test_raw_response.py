"""Raw responses (``client.with_raw_response``, ``result.response``) and resumable
listing (a crashed sweep restarts from ``iterator.cursor``)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from agora_stt_async import (
    AsyncClient,
    JoinRequest,
    LegacyStartRequest,
    NotFoundError,
    RawResponse,
    RetryPolicy,
    RtcConfig,
    UsageError,
)
from agora_stt_async._constants import (
    EMULATOR_APP_ID,
    EMULATOR_CUSTOMER_ID,
    EMULATOR_CUSTOMER_SECRET,
)
from agora_stt_async.emulator import (
    EmulatorApp,
    EmulatorConfig,
    FaultConfig,
    ScheduledFault,
    create_app,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def app() -> EmulatorApp:
    return create_app(EmulatorConfig(start_delay=0.0, stop_delay=0.0), seed=5)


def client_for(app: EmulatorApp) -> AsyncClient:
    return AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=app.transport(),
        retry=RetryPolicy.testing(),
    )


def join(i: int) -> JoinRequest:
    return JoinRequest(
        name=f"agent-{i}",
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=f"ch-{i}", pub_bot_uid="1000"),
    )


async def test_raw_response_alongside_parsed(app: EmulatorApp):
    """``with_raw_response`` returns the model with status, headers and request id."""
    async with client_for(app) as client:
        agent = await client.agents.join(join(1))
        raw = await client.with_raw_response(client.agents.get, agent.agent_id, request_id="r-1")
    assert isinstance(raw, RawResponse)
    assert raw.parsed.agent_id == agent.agent_id
    assert raw.status_code == 200
    assert raw.request_id == "r-1"  # the emulator echoes X-Request-Id
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.elapsed_s >= 0
    assert "authorization" not in {k.lower() for k in raw.headers}
    # The model keeps the same exchange.
    assert raw.parsed.response is not None
    assert raw.parsed.response.request_id == "r-1"


async def test_raw_response_for_calls_without_body(app: EmulatorApp):
    """leave and stop return nothing; their raw response still has the exchange."""
    async with client_for(app) as client:
        agent = await client.agents.join(join(2))
        left = await client.with_raw_response(client.agents.leave, agent.agent_id)
        token = await client.legacy.acquire("room")
        start = LegacyStartRequest(
            languages=["en-US"],
            rtc_config=RtcConfig(channel_name="room", pub_bot_uid="2", sub_bot_uid="1"),
        )
        task = await client.legacy.start(token, start)
        stopped = await client.with_raw_response(client.legacy.stop, task.task_id, token)
    assert left.parsed is None
    assert left.status_code == 200
    assert left.request_id
    assert stopped.parsed is None
    assert stopped.status_code == 200
    # Every result model keeps the exchange it came from.
    for result in (agent, token, task):
        assert result.response is not None
        assert result.response.status_code == 200
        assert result.response.request_id


async def test_raw_response_after_retry_is_the_final_attempt(app: EmulatorApp):
    """A retried call reports the exchange that succeeded."""
    app.faults.configure(FaultConfig(schedule=(ScheduledFault("503", "query"),)))
    async with client_for(app) as client:
        agent = await client.agents.join(join(3))
        raw = await client.with_raw_response(client.agents.get, agent.agent_id)
    assert raw.status_code == 200
    assert app.requests["query"] == 2


async def test_raw_response_errors_and_misuse(app: EmulatorApp):
    """Failures raise as usual (with their status and request id); a method that sends
    nothing is a UsageError."""
    async with client_for(app) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.with_raw_response(client.agents.get, "missing", request_id="r-404")
        assert caught.value.status_code == 404
        assert caught.value.request_id == "r-404"

        async def nothing() -> int:
            return 1

        with pytest.raises(UsageError):
            await client.with_raw_response(nothing)
        with pytest.raises(UsageError, match="not awaitable"):  # was a bare TypeError
            await client.with_raw_response(client.agents.list)  # type: ignore[arg-type]


async def test_raw_response_pages_carry_their_exchange(app: EmulatorApp):
    """Listing is not awaitable: each page has its own ``response``."""
    async with client_for(app) as client:
        for i in range(3):
            await client.agents.join(join(i))
        pages = [page async for page in client.agents.list(page_size=2).pages()]
    assert len(pages) == 2
    ids = [page.response.request_id for page in pages if page.response is not None]
    assert len(ids) == 2
    assert ids[0] != ids[1]


# --- resumable listing ------------------------------------------------------------------


class Crash(Exception):
    pass


async def test_resume_listing_after_crash(app: EmulatorApp):
    """A sweep that crashes mid-page restarts from ``cursor``: nothing twice, nothing
    missed, and the finished sweep's cursor (``""``) yields nothing more."""
    total = 25
    async with client_for(app) as client:
        for i in range(total):
            await client.agents.join(join(i))
        seen: list[str] = []
        iterator = client.agents.list(page_size=10)
        initial = iterator.cursor
        assert initial is None

        async def sweep() -> None:
            async for agent in iterator:
                seen.append(agent.agent_id)
                if len(seen) == 13:
                    raise Crash

        with pytest.raises(Crash):
            await sweep()
        saved = iterator.cursor  # what a crashed worker would have persisted
        assert saved == seen[-1]
        with anyio.fail_after(5):
            resumed = client.agents.list(page_size=10, cursor=saved)
            rest = [agent.agent_id async for agent in resumed]
        assert resumed.cursor == ""
        finished = [a async for a in client.agents.list(page_size=10, cursor=resumed.cursor)]
    assert len(rest) == total - 13
    assert len(set(seen) | set(rest)) == total
    assert not set(seen) & set(rest)
    assert finished == []


async def test_resume_listing_by_pages(app: EmulatorApp):
    """Resuming works at page granularity too: ``cursor`` after a whole page."""
    async with client_for(app) as client:
        for i in range(7):
            await client.agents.join(join(i))
        first = client.agents.list(page_size=3)
        page_iter = first.pages()
        page = await page_iter.__anext__()
        saved: Any = first.cursor
        assert saved == page.cursor
        rest = [a.agent_id async for a in client.agents.list(page_size=3, cursor=saved)]
    assert len(rest) == 4
    assert not {a.agent_id for a in page.items} & set(rest)


async def test_raw_response_with_real_http_transport_headers():
    """Headers are the response's, as the server sent them (MockTransport)."""

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={"agent_id": "a1", "create_ts": 1, "status": "RUNNING"},
            headers={"X-Request-Id": "srv-9", "X-Custom": "yes"},
        )

    async with AsyncClient(
        app_id="app0",
        customer_id="cid",
        customer_secret="secret",
        transport=httpx.MockTransport(handle),
    ) as client:
        raw = await client.with_raw_response(client.agents.get, "a1")
    assert raw.request_id == "srv-9"
    assert raw.headers["x-custom"] == "yes"
