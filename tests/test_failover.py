"""Regional failover against two real emulator servers on loopback (issue 7.2).

``AsyncClient(base_urls=[A, B])``: on a connect error or a 5xx from A the request moves
to B, A is set aside for its cooldown, and requests stay on B while B works, even after
A recovers. Time is a ``FakeClock`` (the cooldown is judged on it); the network is real.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from agora_stt_async import (
    AsyncClient,
    JoinRequest,
    RetryPolicy,
    RtcConfig,
    ServerError,
)
from agora_stt_async._constants import (
    EMULATOR_APP_ID,
    EMULATOR_CUSTOMER_ID,
    EMULATOR_CUSTOMER_SECRET,
)
from agora_stt_async.emulator import EmulatorConfig, FaultConfig, create_app, serve
from agora_stt_async.testing import FakeClock

pytestmark = pytest.mark.anyio

COOLDOWN_S = 30.0  # HostPool's default


@pytest.fixture
def dead_url() -> str:
    """A loopback URL nobody listens on: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def server_b() -> Iterator[str]:
    with serve(create_app(EmulatorConfig(start_delay=0.0), seed=2)) as url:
        yield url


@pytest.fixture
def server_a() -> Iterator[str]:
    """An emulator answering 503 to every API request (the control API still works)."""
    faults = FaultConfig(rate=1.0, kinds={"503": 1.0})
    with serve(create_app(EmulatorConfig(start_delay=0.0), seed=1, faults=faults)) as url:
        yield url


def client(*urls: str, clock: FakeClock) -> AsyncClient:
    return AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        base_urls=list(urls),
        retry=RetryPolicy.testing(),
        clock=clock,
    )


def join(i: int) -> JoinRequest:
    return JoinRequest(
        name=f"agent-{i}",
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=f"fo-{i}", pub_bot_uid="1000"),
    )


async def api_requests(url: str) -> int:
    """API requests the emulator at ``url`` received (control requests not counted)."""
    async with httpx.AsyncClient(base_url=url) as control:
        state: dict[str, Any] = (await control.get("/_emulator/state")).json()
    return sum(state["requests"].values())


async def set_faults(url: str, rate: float) -> None:
    async with httpx.AsyncClient(base_url=url) as control:
        body = {"rate": rate, "kinds": {"503": 1.0}}
        response = await control.post("/_emulator/faults", json=body)
        response.raise_for_status()


async def test_failover_stopped_host_join_moves_on_and_stays(dead_url: str, server_b: str) -> None:
    """A refused connection is safe to retry even for join: it goes to B, and A is set
    aside, so the following calls go straight to B."""
    clock = FakeClock()
    with anyio.fail_after(20):
        async with client(dead_url, server_b, clock=clock) as sdk:
            agent = await sdk.agents.join(join(1))  # A refused, B created it
            assert sdk.statistics().retries == 1
            for _ in range(5):
                assert (await sdk.agents.get(agent.agent_id)).agent_id == agent.agent_id
            assert sdk.statistics().retries == 1  # never went back to A
            assert await api_requests(server_b) == 6
            # Past the cooldown B still works, so requests stay on it.
            clock.advance(COOLDOWN_S + 1)
            await sdk.agents.get(agent.agent_id)
            await sdk.agents.leave(agent.agent_id)
            assert sdk.statistics().retries == 1
            assert await api_requests(server_b) == 8


async def test_failover_faulty_host_set_aside_and_back(server_a: str, server_b: str) -> None:
    """A 5xx host is left for B; nothing returns to A while B works; when B fails in
    turn (after A's cooldown), requests go back to A."""
    clock = FakeClock()
    with anyio.fail_after(20):
        async with client(server_a, server_b, clock=clock) as sdk:
            listed = [agent async for agent in sdk.agents.list()]  # A: 503, then B
            assert listed == []
            assert await api_requests(server_a) == 1
            agent = await sdk.agents.join(join(2))  # straight to B: A is set aside
            for _ in range(3):
                await sdk.agents.get(agent.agent_id)
            assert await api_requests(server_a) == 1
            assert sdk.statistics().retries == 1

            await set_faults(server_a, 0.0)  # A recovers: requests still stay on B
            clock.advance(COOLDOWN_S + 1)
            await sdk.agents.get(agent.agent_id)
            assert await api_requests(server_a) == 1

            await set_faults(server_b, 1.0)  # now B fails: the list moves back to A
            assert [a async for a in sdk.agents.list()] == []
            assert await api_requests(server_a) == 2
            assert sdk.statistics().retries == 2


async def test_failover_join_5xx_is_not_repeated_elsewhere(server_a: str, server_b: str) -> None:
    """A join answered 503 may have created an agent: it is neither retried nor sent to
    the other host (the session reconciles instead), but the host is set aside."""
    clock = FakeClock()
    with anyio.fail_after(20):
        async with client(server_a, server_b, clock=clock) as sdk:
            with pytest.raises(ServerError):
                await sdk.agents.join(join(3))
            assert await api_requests(server_a) == 1
            assert await api_requests(server_b) == 0
            assert sdk.statistics().retries == 0
            # The next call starts on B.
            assert [a async for a in sdk.agents.list()] == []
            assert await api_requests(server_b) == 1
            assert await api_requests(server_a) == 1
