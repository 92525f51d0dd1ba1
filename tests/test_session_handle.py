"""TaskHandle: the status it reports and what waiting on it ends with, once a task ended."""

from __future__ import annotations

import anyio
import pytest

from agora_stt_async import (
    AgentStatus,
    LegacyTaskStatus,
    Session,
    SessionError,
    TaskHandle,
)
from agora_stt_async import state as sm
from agora_stt_async.emulator import EmulatorApp, create_app
from tests.test_session import FAST, client_for, emulator_state, join, legacy, running

pytestmark = pytest.mark.anyio

_STOPPED: dict[str, AgentStatus | LegacyTaskStatus] = {
    "v7": AgentStatus.STOPPED,
    "legacy": LegacyTaskStatus.STOPPED,
}


@pytest.fixture
def app() -> EmulatorApp:
    return create_app(FAST, seed=7)


async def _start_running(session: Session, api: str) -> TaskHandle:
    handle = await session.start("k", join(1) if api == "v7" else legacy(1))
    await handle.wait_for(AgentStatus.RUNNING, timeout=10)
    return handle


@pytest.mark.parametrize("api", ["v7", "legacy"])
async def test_handle_wait_for_stopped_ends_with_a_confirmed_stop(
    app: EmulatorApp, api: str
) -> None:
    """A stop the server answered with 200 ends the task: waiting for STOPPED (started
    before the stop, or after it) returns STOPPED instead of raising SessionError."""
    stopped = _STOPPED[api]
    async with client_for(app) as client, Session(client) as session:
        with anyio.fail_after(20):
            handle = await _start_running(session, api)
            results: list[object] = []

            async def waiter() -> None:
                results.append(await handle.wait_for(stopped, timeout=10))

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.05)
                await handle.stop()
            assert results == [stopped]
            assert await handle.wait_for(stopped, timeout=1) is stopped
            assert handle.record.phase is sm.Phase.STOPPED
    assert running(await emulator_state(app)) == 0


@pytest.mark.parametrize("api", ["v7", "legacy"])
async def test_handle_status_is_final_after_a_confirmed_stop(app: EmulatorApp, api: str) -> None:
    """After a confirmed stop, ``status`` says STOPPED (as ``watch()`` ends), while the
    record keeps the last status the server actually reported."""
    async with client_for(app) as client, Session(client) as session:
        with anyio.fail_after(20):
            handle = await _start_running(session, api)
            last_reported = handle.record.server_status
            await handle.stop()
            assert handle.status is _STOPPED[api]
            assert handle.record.server_status == last_reported
            assert last_reported is not None
            assert not last_reported.is_terminal
            assert [status async for status in handle.watch()][-1] is _STOPPED[api]


async def test_handle_wait_for_another_status_after_the_end_still_raises(
    app: EmulatorApp,
) -> None:
    """Waiting for RUNNING (or FAILED) on a task that was stopped raises SessionError."""
    async with client_for(app) as client, Session(client) as session:
        with anyio.fail_after(20):
            handle = await _start_running(session, "v7")
            await handle.stop()
            for status in (AgentStatus.RUNNING, AgentStatus.FAILED):
                with pytest.raises(SessionError, match="before reaching"):
                    await handle.wait_for(status, timeout=1)
