"""Session.feed: what a webhook event may change, and when events slow the sweeps down."""

from __future__ import annotations

import anyio
import httpx
import pytest

from agora_stt_async import AgentStatus, Session
from agora_stt_async.emulator import EmulatorApp, EmulatorConfig, create_app
from agora_stt_async.notifications import AgentJoined, AgentLeft
from agora_stt_async.stores import LeasingMemoryStore
from tests.test_session import client_for, emulator_state, join, running

pytestmark = pytest.mark.anyio


async def control(app: EmulatorApp, path: str, body: dict[str, object]) -> None:
    async with httpx.AsyncClient(transport=app.transport(), base_url="http://emulator") as raw:
        response = await raw.post(f"/_emulator/{path}", json=body)
        assert response.status_code == 200, response.text


def joined(agent_id: str, notice_id: str = "n-101") -> AgentJoined:
    return AgentJoined(notice_id=notice_id, event_type=101, agent_id=agent_id)


async def test_session_feed_late_101_does_not_undo_recovering() -> None:
    """A 101 arriving after the server reported RECOVERING leaves the task RECOVERING: a
    101 only says the agent was RUNNING once."""
    app = create_app(EmulatorConfig(start_delay=0.0, stop_delay=0.0), seed=2)
    async with (
        client_for(app) as client,
        Session(client, refresh_interval=0.2, event_sweep_interval=0.2) as session,
    ):
        with anyio.fail_after(20):
            handle = await session.start("k", join(1))
            await handle.wait_for(AgentStatus.RUNNING)
            assert handle.agent_id is not None
            await control(app, f"agents/{handle.agent_id}", {"status": "RECOVERING"})
            await handle.wait_for(AgentStatus.RECOVERING)
            assert await session.feed(joined(handle.agent_id))  # matched, and ignored
            assert handle.status is AgentStatus.RECOVERING
            assert session.statistics().reports == 0
    assert running(await emulator_state(app)) == 0


async def test_session_feed_101_moves_a_starting_task_to_running() -> None:
    """A 101 for a task not yet RUNNING (the server still says STARTING) moves it to
    RUNNING."""
    app = create_app(EmulatorConfig(start_delay=3600.0), seed=3)
    async with (
        client_for(app) as client,
        Session(client, refresh_interval=3600.0, event_sweep_interval=3600.0) as session,
    ):
        with anyio.fail_after(20):
            handle = await session.start("k", join(1))
            assert handle.status in (None, AgentStatus.IDLE, AgentStatus.STARTING)
            assert handle.agent_id is not None
            assert await session.feed(joined(handle.agent_id))
            await handle.wait_for(AgentStatus.RUNNING, timeout=5)


async def test_session_feed_unmatched_event_keeps_waiters_polling() -> None:
    """An event for an agent this session does not know (another worker's) is recorded
    only: it does not move the session to the slow event sweep, so a waiting caller
    still gets its sweeps."""
    app = create_app(EmulatorConfig(start_delay=3600.0), seed=8)
    async with (
        client_for(app) as client,
        Session(client, refresh_interval=3600.0, event_sweep_interval=3600.0) as session,
    ):
        with anyio.fail_after(10):
            handle = await session.start("k", join(1))
            stranger = joined("ELSEWHERE")
            assert not await session.feed(stranger)
        assert list(session.unmatched_events) == [stranger]
        before = session.statistics().sweeps
        with anyio.move_on_after(2.5):
            await handle.wait_for(AgentStatus.RUNNING)
        assert session.statistics().sweeps >= before + 2  # still polling for the waiter


async def test_session_feed_with_leasing_store_keeps_the_sweep_pace() -> None:
    """Two workers share a store with leases; webhooks reach either. The driver got an
    event of its own (webhooks flow), yet when its agent's 102 goes to the other worker
    (which only records it), the driver's sweeps, still at the polling pace, see the
    agent fail within seconds, not after the slow event sweep."""
    app = create_app(EmulatorConfig(start_delay=0.0, stop_delay=0.0), seed=4)
    store = LeasingMemoryStore()
    async with (
        client_for(app) as client,
        Session(client, store=store, refresh_interval=0.2, event_sweep_interval=3600.0) as driver,
        Session(client, store=store, refresh_interval=0.2, event_sweep_interval=3600.0) as other,
    ):
        with anyio.fail_after(20):
            handle = await driver.start("k", join(1))
            await handle.wait_for(AgentStatus.RUNNING)
            assert handle.agent_id is not None
            sweeps = driver.statistics().sweeps
            assert await driver.feed(joined(handle.agent_id))  # events reach the driver
            while driver.statistics().sweeps <= sweeps:  # the sweep the first event asks
                await anyio.sleep(0.01)
            await anyio.sleep(0.3)  # past MIN_REFRESH_GAP_S: the loop waits for its pace
            await control(app, f"agents/{handle.agent_id}", {"status": "FAILED"})
            left = AgentLeft(
                notice_id="n-102",
                event_type=102,
                agent_id=handle.agent_id,
                status=AgentStatus.FAILED,
            )
            assert not await other.feed(left)  # the load balancer chose the other worker
        with anyio.fail_after(5):
            statuses = [status async for status in handle.watch()]
        assert statuses[-1] is AgentStatus.FAILED


async def test_session_feed_matched_event_stops_polling_for_waiters() -> None:
    """Before any event, a waiting caller makes the session sweep; after a 101 for one of
    its own tasks, it waits for events and the slow sweep only."""
    app = create_app(EmulatorConfig(start_delay=3600.0), seed=8)
    async with (
        client_for(app) as client,
        Session(client, refresh_interval=3600.0, event_sweep_interval=3600.0) as session,
    ):
        with anyio.fail_after(10):
            handle = await session.start("k", join(1))
        assert handle.agent_id is not None
        before = session.statistics().sweeps
        with anyio.move_on_after(0.5):
            await handle.wait_for(AgentStatus.STOPPED)
        polled = session.statistics().sweeps
        assert polled > before  # polling: the waiter asked for sweeps
        with anyio.fail_after(10):
            assert await session.feed(joined(handle.agent_id))  # ours: webhooks flow
        with anyio.fail_after(5):  # one sweep as the session moves to the slow sweep
            while session.statistics().sweeps == polled:
                await anyio.sleep(0.01)
        with anyio.move_on_after(1.0):
            await handle.wait_for(AgentStatus.STOPPED)
        assert session.statistics().sweeps == polled + 1  # the waiter asked for none
