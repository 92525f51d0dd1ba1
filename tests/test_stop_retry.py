"""A stop repeated in the background and refused there is not silently dropped (issue 7).

Found by ``benchmarks/soak.py``: the first leave times out through all the client's
retries (it may have arrived, so the session repeats it a moment later), and the repeat
is refused with 429 through all of them. The record falls back to ACTIVE with no stop
pending. Before the fix,
``handle.stop(wait=True)`` waited out its timeout and the session's exit gave up on the
task; now both send a new stop.
"""

from __future__ import annotations

from typing import Final

import anyio
import httpx
import pytest

from agora_stt_async import (
    AgentStatus,
    AsyncClient,
    JoinRequest,
    RetryPolicy,
    RtcConfig,
    Session,
)
from agora_stt_async import state as sm
from agora_stt_async._constants import (
    EMULATOR_APP_ID,
    EMULATOR_CUSTOMER_ID,
    EMULATOR_CUSTOMER_SECRET,
)
from agora_stt_async.emulator import EmulatorApp, EmulatorConfig, create_app

pytestmark = pytest.mark.anyio

POLICY: Final = RetryPolicy.testing()
MACHINE: Final = sm.MachinePolicy(retry_interval_s=0.05)


class RefusingLeaves(httpx.AsyncBaseTransport):
    """Forwards to the emulator, except leaves: the first call's attempts all time out
    (unsent), the next call's attempts all answer 429 (unsent), the rest go through."""

    def __init__(self, app: EmulatorApp) -> None:
        self._inner = app.transport()
        self.leaves = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/leave"):
            self.leaves += 1
            if self.leaves <= POLICY.attempts:
                raise httpx.ReadTimeout("no answer", request=request)
            if self.leaves <= 2 * POLICY.attempts:
                return httpx.Response(
                    429, json={"detail": "slow down", "reason": "TooManyRequests"}
                )
        return await self._inner.handle_async_request(request)


def join(i: int) -> JoinRequest:
    return JoinRequest(
        name=f"agent-{i}",
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=f"sr-{i}", pub_bot_uid="1000"),
    )


async def running_agents(app: EmulatorApp) -> int:
    async with httpx.AsyncClient(transport=app.transport(), base_url="http://emulator") as raw:
        by_status: dict[str, int] = (await raw.get("/_emulator/state")).json()["agents"][
            "by_status"
        ]
    return sum(n for status, n in by_status.items() if status not in ("STOPPED", "FAILED"))


def client_for(transport: httpx.AsyncBaseTransport) -> AsyncClient:
    return AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=transport,
        retry=POLICY,
    )


@pytest.fixture
def app() -> EmulatorApp:
    return create_app(EmulatorConfig(start_delay=0.0, stop_delay=0.0), seed=3)


async def test_stop_wait_resends_after_a_background_refusal(app: EmulatorApp) -> None:
    transport = RefusingLeaves(app)
    async with client_for(transport) as client, Session(client, policy=MACHINE) as session:
        handle = await session.start("k", join(1))
        await handle.wait_for(AgentStatus.RUNNING, timeout=10)
        with anyio.fail_after(10):
            await handle.stop(wait=True, timeout=10)
        assert handle.record.phase is sm.Phase.STOPPED
        assert transport.leaves == 2 * POLICY.attempts + 1  # timeouts, refusals, new stop
        assert await running_agents(app) == 0


async def test_session_exit_resends_after_a_background_refusal(app: EmulatorApp) -> None:
    transport = RefusingLeaves(app)
    async with client_for(transport) as client:
        with anyio.fail_after(20):
            async with Session(client, policy=MACHINE, stop_timeout=10) as session:
                handle = await session.start("k", join(2))
                await handle.wait_for(AgentStatus.RUNNING, timeout=10)
            # leaving raised nothing: the exit sent a new stop after the refusal
        assert handle.record.phase is sm.Phase.STOPPED
        assert transport.leaves == 2 * POLICY.attempts + 1
        assert await running_agents(app) == 0
