"""The background sweep: how many requests refreshing the tracked v7 agents costs."""

from __future__ import annotations

import anyio
import pytest

from agora_stt_async import AgentStatus, Session
from agora_stt_async.emulator import create_app
from tests.test_session import FAST, client_for, join

pytestmark = pytest.mark.anyio


async def test_session_sweep_stops_listing_once_every_agent_is_found() -> None:
    """A list sweep stops paging as soon as every tracked agent was seen: the App ID's
    other agents (created later, so listed after ours) cost no further pages."""
    app = create_app(FAST, seed=5)
    async with (
        client_for(app) as client,
        Session(client, list_page_size=5, refresh_interval=3600.0) as session,
    ):
        with anyio.fail_after(20):
            handles = [await session.start(f"k{i}", join(i)) for i in range(4)]
            for i in range(20):  # another system's agents: four more pages of RUNNING
                await client.agents.join(join(f"other-{i}"))
            for handle in handles:
                await handle.wait_for(AgentStatus.RUNNING, timeout=10)
            await anyio.sleep(0.3)  # the other agents run too; no sweep is in flight
            lists = client.statistics().by_operation["list"].calls
            await session._sweep()
        assert client.statistics().by_operation["list"].calls - lists == 1
