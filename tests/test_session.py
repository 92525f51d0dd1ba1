"""Session against the in-process emulator: lifecycles, faults, cancellation, recovery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest

from agora_stt_async import (
    AgentStatus,
    ApiGeneration,
    AsyncClient,
    JoinRequest,
    LegacyStartRequest,
    LegacyTaskStatus,
    RetryPolicy,
    RtcConfig,
    Session,
    SessionError,
    StopIncompleteError,
    UsageError,
    ValidationError,
)
from agora_stt_async import state as sm
from agora_stt_async._constants import (
    EMULATOR_APP_ID,
    EMULATOR_CUSTOMER_ID,
    EMULATOR_CUSTOMER_SECRET,
)
from agora_stt_async._converter import unstructure_request
from agora_stt_async.emulator import (
    EmulatorApp,
    EmulatorConfig,
    FaultConfig,
    ScheduledFault,
    create_app,
)
from agora_stt_async.stores import MemoryStore, SqliteStore
from agora_stt_async.testing import FakeClock

pytestmark = pytest.mark.anyio

FAST = EmulatorConfig(start_delay=0.05, stop_delay=0.0)
Hook = Callable[[str, httpx.Request], Awaitable[None]]


class HookTransport(httpx.AsyncBaseTransport):
    """Forwards to the emulator, calling ``hook`` before and after each request."""

    def __init__(self, inner: httpx.AsyncBaseTransport, hook: Hook) -> None:
        self._inner = inner
        self._hook = hook

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._hook("before", request)
        response = await self._inner.handle_async_request(request)
        await self._hook("after", request)
        return response


def client_for(
    app: EmulatorApp, *, hook: Hook | None = None, clock: FakeClock | None = None
) -> AsyncClient:
    transport: httpx.AsyncBaseTransport = app.transport()
    if hook is not None:
        transport = HookTransport(transport, hook)
    return AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=transport,
        retry=RetryPolicy.testing(),
        clock=clock,
    )


def join(i: int | str) -> JoinRequest:
    return JoinRequest(
        name=f"agent-{i}",
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=f"ch-{i}", pub_bot_uid="1000"),
    )


def legacy(i: int | str) -> LegacyStartRequest:
    return LegacyStartRequest(
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=f"lch-{i}", pub_bot_uid="2000", sub_bot_uid="1000"),
    )


async def emulator_state(app: EmulatorApp) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=app.transport(), base_url="http://emulator") as raw:
        response = await raw.get("/_emulator/state", params={"list": "1", "limit": "10000"})
        body: dict[str, Any] = response.json()
        return body


def running(state: dict[str, Any]) -> int:
    """Agents and tasks the emulator still runs (what a leak would cost money for)."""
    agents: dict[str, int] = state["agents"]["by_status"]
    tasks: dict[str, int] = state["tasks"]["by_status"]
    return sum(agents.get(s, 0) for s in ("IDLE", "STARTING", "RUNNING", "RECOVERING")) + sum(
        n for s, n in tasks.items() if s not in ("STOPPED", "FAILURE_STOP")
    )


@pytest.fixture
def app() -> EmulatorApp:
    return create_app(FAST, seed=7)


async def test_session_v7_lifecycle(app: EmulatorApp) -> None:
    """Start, wait until running, update twice (growing sequence ids), stop."""
    async with client_for(app) as client, Session(client) as session:
        with anyio.fail_after(20):
            handle = await session.start("ch-1", join(1))
            assert handle.agent_id is not None
            assert await handle.wait_for(AgentStatus.RUNNING, timeout=10) is AgentStatus.RUNNING
            await handle.update(languages=["en-US", "es-ES"])
            await handle.update(keywords=["Agora"])
            assert handle.record.sequence_id == 2
            agent = await client.agents.get(handle.agent_id)
            assert agent.status is AgentStatus.RUNNING
            await handle.stop()
            assert handle.record.phase is sm.Phase.STOPPED
    assert running(await emulator_state(app)) == 0


async def test_session_start_same_key_returns_live_handle(app: EmulatorApp) -> None:
    """A second start of a live key sends nothing and returns the same task."""
    async with client_for(app) as client, Session(client) as session:
        first = await session.start("k", join(1))
        second = await session.start("k", join(1))
        assert first.agent_id == second.agent_id
        assert client.statistics().by_operation["join"].calls == 1


async def test_session_rejects_config_of_other_generation(app: EmulatorApp) -> None:
    """api= must match the config's type; nothing is sent."""
    async with client_for(app) as client, Session(client) as session:
        with pytest.raises(ValidationError):
            await session.start("k", join(1), api="legacy")
        assert client.statistics().requests == 0


async def test_session_outside_context_is_usage_error(app: EmulatorApp) -> None:
    """Operations need the session to be entered."""
    async with client_for(app) as client:
        session = Session(client)
        with pytest.raises(UsageError):
            await session.start("k", join(1))


async def test_session_500_channels_nothing_left_running(app: EmulatorApp) -> None:
    """500 channels started, awaited, updated and stopped concurrently through one session."""
    async with client_for(app) as client, Session(client, max_in_flight=64) as session:

        async def lifecycle(i: int) -> None:
            handle = await session.start(f"ch-{i}", join(i))
            await handle.wait_for(AgentStatus.RUNNING, timeout=30)
            await handle.update(languages=["en-US", "fr-FR"])
            await handle.stop()

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for i in range(500):
                    tg.start_soon(lifecycle, i)
        assert session.statistics().by_phase == {"STOPPED": 500}
        # The sweep refreshes by listing pages, so far fewer than one query per agent.
        assert client.statistics().requests < 500 * 4
    state = await emulator_state(app)
    assert running(state) == 0
    assert state["agents"]["total"] == 500


async def test_session_legacy_lifecycle(app: EmulatorApp) -> None:
    """Legacy: acquire and start happen inside start(); stop uses the starting token."""
    async with client_for(app) as client, Session(client) as session:
        with anyio.fail_after(20):
            handle = await session.start("l1", legacy(1))
            assert handle.task_id is not None
            assert handle.record.api is ApiGeneration.LEGACY
            await handle.wait_for(AgentStatus.RUNNING, timeout=10)
            assert handle.status is LegacyTaskStatus.IN_PROGRESS
            await handle.update(languages=["en-US", "es-ES"])
            await handle.stop()
    assert running(await emulator_state(app)) == 0


async def test_session_legacy_token_window_reacquires() -> None:
    """A token that outlives its 5-minute window is replaced without a failed call."""
    clock = FakeClock()
    app = create_app(FAST, seed=3, clock=clock)
    starts = 0

    async def hook(when: str, request: httpx.Request) -> None:
        nonlocal starts
        if when == "before" and request.method == "POST" and request.url.path.endswith("/tasks"):
            starts += 1
            if starts == 1:
                clock.advance(301)  # the first start reaches the server too late

    async with (
        client_for(app, hook=hook, clock=clock) as client,
        Session(client, clock=clock) as session,
    ):
        with anyio.fail_after(20):
            handle = await session.start("l1", legacy(1))
        assert handle.task_id is not None
        assert client.statistics().by_operation["acquire"].calls == 2
        assert starts == 2
    state = await emulator_state(app)
    assert state["tasks"]["total"] == 1
    assert running(state) == 0


async def test_session_dropped_join_is_adopted(app: EmulatorApp) -> None:
    """The join is processed but its answer lost: the session lists the channel and adopts."""
    app.faults.configure(FaultConfig(schedule=(ScheduledFault("drop", "join"),)))
    async with client_for(app) as client, Session(client) as session:
        with anyio.fail_after(20):
            handle = await session.start("ch-1", join(1))
        state = await emulator_state(app)
        agents = state["agents"]["items"]
        assert len(agents) == 1
        assert handle.agent_id == agents[0]["agent_id"]
        assert client.statistics().by_operation["join"].calls == 1
    assert running(await emulator_state(app)) == 0


async def test_session_dropped_legacy_start_is_adopted(app: EmulatorApp) -> None:
    """A lost start answer: repeating with the same token returns the existing taskId."""
    app.faults.configure(FaultConfig(schedule=(ScheduledFault("drop", "start"),)))
    async with client_for(app) as client, Session(client) as session:
        with anyio.fail_after(20):
            handle = await session.start("l1", legacy(1))
        state = await emulator_state(app)
        assert state["tasks"]["total"] == 1
        assert handle.task_id == state["tasks"]["items"][0]["task_id"]
    assert running(await emulator_state(app)) == 0


@pytest.mark.parametrize("point", ["before", "after"])
async def test_session_cancelled_start_does_not_leak(app: EmulatorApp, point: str) -> None:
    """The caller is cancelled while its join is in flight (or just answered): the session
    finishes the start, owns the agent, and stops it on exit."""
    scope = anyio.CancelScope()

    async def hook(when: str, request: httpx.Request) -> None:
        if when == point and request.url.path.endswith("/join"):
            scope.cancel()

    async with client_for(app, hook=hook) as client, Session(client) as session:
        with anyio.fail_after(20):
            with scope:
                await session.start("ch-1", join(1))
            assert scope.cancelled_caught
            # The start went on in the session's task group.
            while session.handle("ch-1").agent_id is None:
                await anyio.sleep(0.01)
            again = await session.start("ch-1", join(1))
            assert again.agent_id == session.handle("ch-1").agent_id
        assert client.statistics().by_operation["join"].calls == 1
    assert running(await emulator_state(app)) == 0


async def test_session_cancel_during_store_write_sends_nothing(app: EmulatorApp) -> None:
    """Cancelled before the intent is stored: nothing is sent, nothing runs."""

    store = MemoryStore()
    async with client_for(app) as client, Session(client, store=store) as session:
        with anyio.move_on_after(0) as scope:
            await session.start("ch-1", join(1))
        assert scope.cancelled_caught
        assert client.statistics().requests == 0
    assert (await emulator_state(app))["agents"]["total"] == 0


async def test_session_exit_reports_what_it_could_not_stop(app: EmulatorApp) -> None:
    """When every leave fails, the bounded exit raises StopIncompleteError with the keys."""

    async def run(client: AsyncClient) -> None:
        async with Session(client, stop_timeout=1.0) as session:
            await session.start("ch-1", join(1))
            app.faults.configure(FaultConfig(routes={"leave": 1.0}, kinds={"503": 1.0}))

    async with client_for(app) as client:
        with pytest.raises(StopIncompleteError) as caught:
            await run(client)
        assert caught.value.keys == ("ch-1",)
    app.faults.configure(FaultConfig())
    assert running(await emulator_state(app)) == 1


async def test_session_wait_for_times_out(app: EmulatorApp) -> None:
    """wait_for raises TimeoutError when the status does not come."""
    async with client_for(app) as client, Session(client) as session:
        handle = await session.start("ch-1", join(1))
        with pytest.raises(TimeoutError):
            await handle.wait_for(AgentStatus.STOPPED, timeout=0.3)


async def test_session_refused_start_raises_and_fails(app: EmulatorApp) -> None:
    """A definitive refusal (400) reaches the caller; the record ends FAILED."""
    app.faults.configure(FaultConfig(routes={"join": 1.0}, kinds={"500": 1.0}))
    async with client_for(app) as client, Session(client) as session:
        with anyio.fail_after(30), pytest.raises(SessionError):
            await session.start("ch-1", join(1))
        assert session.handle("ch-1").record.phase is sm.Phase.FAILED
    assert running(await emulator_state(app)) == 0


async def test_session_recover_after_crash(app: EmulatorApp, tmp_path: Path) -> None:
    """A session abandoned without stopping, plus a start cut off mid-flight, are found by a
    new session over the same SQLite file and stopped."""
    path = tmp_path / "stt-tasks.db"
    async with client_for(app) as client:
        async with SqliteStore(path) as store:
            async with Session(client, store=store, stop_on_exit=False) as first:
                for i in range(5):
                    await first.start(f"ch-{i}", join(i))
                await first.start("l-0", legacy(0))
            # A join that reached the server but whose answer never got recorded: the
            # record says STARTING (the crash hit between send and answer).
            orphan = await client.agents.join(join("orphan"))
            record = sm.new_record(
                "ch-orphan", ApiGeneration.V7, channel="ch-orphan", name="agent-orphan", now=0
            )
            record = attrs.evolve(
                record,
                phase=sm.Phase.STARTING,
                start_sent_at=app.clock.now(),
                start_attempts=1,
                request=unstructure_request(join("orphan")),
            )
            assert await store.create(record)
        assert running(await emulator_state(app)) == 7

        async with SqliteStore(path) as store, Session(client, store=store) as second:
            with anyio.fail_after(30):
                report = await second.recover()
            assert report.loaded == 7
            assert second.handle("ch-orphan").agent_id == orphan.agent_id
        records = await _all(path)
        assert {r.phase for r in records} == {sm.Phase.STOPPED}
    assert running(await emulator_state(app)) == 0


async def _all(path: Path) -> list[sm.TaskRecord]:
    async with SqliteStore(path) as store:
        return await store.all()


async def test_session_watch_yields_statuses_until_end(app: EmulatorApp) -> None:
    """watch() yields each new status and ends when the task ends."""
    seen: list[object] = []
    async with client_for(app) as client, Session(client, refresh_interval=0.1) as session:
        handle = await session.start("ch-1", join(1))

        async def follow() -> None:
            seen.extend([status async for status in handle.watch()])

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await handle.wait_for(AgentStatus.RUNNING, timeout=10)
                await handle.stop()
    assert seen[-1] in (AgentStatus.STOPPED, AgentStatus.STOPPING)
    assert AgentStatus.RUNNING in seen
