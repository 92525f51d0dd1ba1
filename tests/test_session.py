"""Session against the in-process emulator: lifecycles, faults, cancellation, recovery."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs
import httpx
import pytest

from agora_stt_async import (
    AgentStatus,
    ApiGeneration,
    AsyncClient,
    ConfigurationError,
    JoinRequest,
    LegacyStartRequest,
    LegacyTaskStatus,
    RetryPolicy,
    RtcConfig,
    Session,
    SessionError,
    StopIncompleteError,
    TaskHandle,
    UsageError,
    ValidationError,
)
from agora_stt_async import _session as _session_module
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
from agora_stt_async.stores import LeasingMemoryStore, MemoryStore, SqliteStore, StoreError
from agora_stt_async.testing import FakeClock
from tests.emulator.conftest import v7_operation
from tests.openapi import validate_request

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


_SCHEMAS = {"join": "JoinRequest", "update": "UpdateRequest"}


async def check_v7_body(when: str, request: httpx.Request) -> None:
    """Every v7 join and update body the session sends is valid by Agora's OpenAPI file."""
    operation = v7_operation(request.method, request.url.path)
    if when == "before" and operation in _SCHEMAS:
        validate_request(_SCHEMAS[operation], json.loads(request.content))


def client_for(
    app: EmulatorApp, *, hook: Hook | None = None, clock: FakeClock | None = None
) -> AsyncClient:
    transport: httpx.AsyncBaseTransport = HookTransport(app.transport(), check_v7_body)
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


class Tripwire:
    """Counts the start's I/O steps (store calls and requests, before and after each) and
    cancels ``scope`` at step ``at``."""

    def __init__(self, at: int, scope: anyio.CancelScope) -> None:
        self.at = at
        self.scope = scope
        self.steps: list[str] = []

    def tick(self, name: str) -> None:
        self.steps.append(name)
        if len(self.steps) == self.at:
            self.scope.cancel()

    async def hook(self, when: str, request: httpx.Request) -> None:
        self.tick(f"{request.method} {request.url.path.rsplit('/', 1)[-1]} {when}")


class TripwireStore:
    """A MemoryStore whose every write is a step of ``tripwire``."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.tripwire: Tripwire | None = None

    def _tick(self, name: str) -> None:
        if self.tripwire is not None:
            self.tripwire.tick(name)

    async def get(self, key: str) -> sm.TaskRecord | None:
        return await self.inner.get(key)

    async def create(self, record: sm.TaskRecord) -> bool:
        self._tick("create before")
        created = await self.inner.create(record)
        self._tick("create after")
        return created

    async def put(self, record: sm.TaskRecord, *, expected_version: int | None) -> None:
        self._tick(f"put {record.phase.name} before")
        await self.inner.put(record, expected_version=expected_version)
        self._tick(f"put {record.phase.name} after")

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        await self.inner.delete(key, expected_version=expected_version)

    async def all(self) -> list[sm.TaskRecord]:
        return await self.inner.all()

    async def aclose(self) -> None:
        await self.inner.aclose()


# Enough steps to pass the end of either start (the last values cancel nothing).
_STEPS = 16


@pytest.mark.parametrize("api", ["v7", "legacy"])
@pytest.mark.parametrize("at", range(1, _STEPS + 1))
async def test_session_cancel_at_every_step_of_start(app: EmulatorApp, api: str, at: int) -> None:
    """Cancel the caller at each await point of start (every store write and every request,
    before and after): at most one task is ever created, and none is left running."""
    scope = anyio.CancelScope()
    tripwire = Tripwire(at, scope)
    store = TripwireStore()
    config: JoinRequest | LegacyStartRequest = join(1) if api == "v7" else legacy(1)
    async with (
        client_for(app, hook=tripwire.hook) as client,
        Session(client, store=store) as session,
    ):
        store.tripwire = tripwire
        with anyio.fail_after(20):
            with scope:
                await session.start("k", config, api=api)
            stored = await store.get("k")
            if stored is None:  # cancelled before the intent was written: nothing sent
                assert client.statistics().requests == 0, tripwire.steps
            else:  # the start goes on in the session; it reaches an id or an end
                handle = session.handle("k")
                while not (handle.record.phase.is_terminal or handle.record.server_id):
                    await anyio.sleep(0.01)
        store.tripwire = None
    if at > len(tripwire.steps):  # past the end: a plain, complete start
        assert not scope.cancel_called
    state = await emulator_state(app)
    assert state["agents"]["total"] + state["tasks"]["total"] <= 1, tripwire.steps
    assert running(state) == 0, tripwire.steps
    records = await store.all()
    assert all(r.phase.is_terminal for r in records), records


async def test_session_sqlite_intent_is_on_disk_before_each_request(
    app: EmulatorApp, tmp_path: Path
) -> None:
    """Before every start-side request goes out, an independent reader of the SQLite file
    already sees the record that guards it (the intent, then the token it uses)."""
    path = tmp_path / "intent.db"
    seen: list[tuple[str, str, str | None]] = []

    async def hook(when: str, request: httpx.Request) -> None:
        if when != "before" or request.method not in ("POST", "DELETE"):
            return
        with sqlite3.connect(path) as raw:
            row = raw.execute("SELECT record FROM tasks WHERE key = 'l1'").fetchone()
        assert row is not None, request.url.path
        stored = sm.record_from_dict(json.loads(row[0]))
        seen.append((request.url.path.rsplit("/", 1)[-1], stored.phase.name, stored.token_name))

    async with (
        client_for(app, hook=hook) as client,
        SqliteStore(path) as store,
        Session(client, store=store) as session,
    ):
        with anyio.fail_after(20):
            handle = await session.start("l1", legacy(1))
            token = handle.record.token_name
            await handle.stop()
    assert token is not None
    assert seen[0] == ("builderTokens", "ACQUIRING", None)
    assert seen[1] == ("tasks", "STARTING", token)
    assert seen[2][1:] == ("STOPPING", token)


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


async def test_session_recover_marks_gone_and_sequence_ids_survive(tmp_path: Path) -> None:
    """After a restart: a task stopped behind the session's back is marked ended; a live
    one is resumed and its next update continues the stored sequence id (the emulator
    refuses ids that do not grow)."""
    app = create_app(dataclasses.replace(FAST, strict_sequence=True), seed=5)
    path = tmp_path / "restart.db"
    async with client_for(app) as client:
        async with (
            SqliteStore(path) as store,
            Session(client, store=store, stop_on_exit=False) as s,
        ):
            with anyio.fail_after(20):
                live = await s.start("live", join("live"))
                gone = await s.start("gone", join("gone"))
                await live.wait_for(AgentStatus.RUNNING, timeout=10)
                await live.update(languages=["en-US", "fr-FR"])
            assert live.record.sequence_id == 1
            assert gone.agent_id is not None
        await client.agents.leave(gone.agent_id)  # stopped elsewhere while we were down

        async with (
            SqliteStore(path) as store,
            Session(client, store=store, refresh_interval=0.1) as again,
        ):
            with anyio.fail_after(20):
                report = await again.recover()
                assert report.loaded == 2
                assert set(report.live) <= {"live"}
                assert "gone" not in report.unresolved
                handle = again.handle("live")
                await handle.wait_for(AgentStatus.RUNNING, timeout=10)
                await handle.update(languages=["en-US", "ja-JP"])
                assert handle.record.sequence_id == 2
                gone_again = again.handle("gone")
                while not gone_again.record.phase.is_terminal:
                    await anyio.sleep(0.01)
                assert gone_again.record.phase is sm.Phase.STOPPED
        agent = await client.agents.get(handle.agent_id or "")
        assert agent.status is AgentStatus.STOPPED
    assert running(await emulator_state(app)) == 0


async def test_session_wait_for_polls_while_waiting(app: EmulatorApp) -> None:
    """A caller blocked in wait_for() is not left to the idle sweep (here 1 h): the
    session looks again about every second while someone waits."""
    async with client_for(app) as client, Session(client, refresh_interval=3600) as session:
        handle = await session.start("ch-1", join(1))
        with anyio.fail_after(15):
            assert await handle.wait_for(AgentStatus.RUNNING) is AgentStatus.RUNNING
            await handle.stop(wait=True)
        assert handle.record.phase is sm.Phase.STOPPED
    assert running(await emulator_state(app)) == 0


async def test_session_max_in_flight_bounds_concurrent_work(app: EmulatorApp) -> None:
    """Thirty concurrent starts through Session(max_in_flight=3): the emulator never sees
    more than three joins at once, and all thirty start."""
    active = 0
    peak = 0

    async def hook(when: str, request: httpx.Request) -> None:
        nonlocal active, peak
        if not request.url.path.endswith("/join"):
            return
        if when == "before":
            active += 1
            peak = max(peak, active)
            await anyio.sleep(0.01)  # hold the request open so overlaps would show
        else:
            active -= 1

    async with client_for(app, hook=hook) as client, Session(client, max_in_flight=3) as session:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(30):
                    tg.start_soon(session.start, f"ch-{i}", join(i))
        assert client.statistics().by_operation["join"].calls == 30
    assert 1 < peak <= 3
    assert running(await emulator_state(app)) == 0


async def test_session_exit_stops_everything_even_when_cancelled(app: EmulatorApp) -> None:
    """The body of ``async with Session`` is cancelled: the exit still stops every task it
    owns (shielded), and the cancellation then propagates as usual."""
    async with client_for(app) as client:
        with anyio.fail_after(30):
            with anyio.CancelScope() as scope:
                async with Session(client) as session:
                    await session.start("ch-1", join(1))
                    await session.start("l-1", legacy(1))
                    scope.cancel()
                    await anyio.sleep(30)  # cancelled here
            assert scope.cancelled_caught
    state = await emulator_state(app)
    assert state["agents"]["total"] + state["tasks"]["total"] == 2
    assert running(state) == 0


async def test_session_refresh_lists_pages_and_falls_back_to_query(app: EmulatorApp) -> None:
    """Many agents are refreshed by list pages, not one query each; when the list cannot
    answer (here every list request fails), the sweep falls back to queries."""
    async with client_for(app) as client, Session(client, list_page_size=5) as session:
        with anyio.fail_after(20):
            handles = [await session.start(f"ch-{i}", join(i)) for i in range(12)]
            for handle in handles:
                await handle.wait_for(AgentStatus.RUNNING, timeout=10)
        by_op = client.statistics().by_operation
        assert by_op["list"].calls >= 1
        queries_before = by_op["query"].calls if "query" in by_op else 0
        assert queries_before < 12

        app.faults.configure(FaultConfig(routes={"list": 1.0}, kinds={"503": 1.0}))
        async with httpx.AsyncClient(transport=app.transport(), base_url="http://e") as raw:
            forced = await raw.post(
                f"/_emulator/agents/{handles[0].agent_id}", json={"status": "RECOVERING"}
            )
            assert forced.status_code == 200, forced.text
        with anyio.fail_after(20):
            await handles[0].wait_for(AgentStatus.RECOVERING, timeout=10)
        assert client.statistics().by_operation["query"].calls > queries_before
        assert client.statistics().by_operation["list"].errors >= 1
        app.faults.configure(FaultConfig())
    assert running(await emulator_state(app)) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"max_in_flight": 0}, "max_in_flight", id="in-flight-0"),
        pytest.param({"max_in_flight": 1.5}, "max_in_flight", id="in-flight-float"),
        pytest.param({"list_page_size": 0}, "list_page_size", id="page-0"),
        pytest.param({"stop_timeout": float("nan")}, "stop_timeout", id="stop-nan"),
        pytest.param({"stop_timeout": -1}, "stop_timeout", id="stop-negative"),
        pytest.param({"refresh_interval": float("inf")}, "refresh_interval", id="refresh-inf"),
        pytest.param({"refresh_interval": "5"}, "refresh_interval", id="refresh-str"),
        pytest.param({"store": "stt-tasks.db"}, "store must be a TaskStore", id="store-path"),
        pytest.param({"policy": {"token_safety_margin_s": 10}}, "MachinePolicy", id="policy"),
    ],
)
def test_session_rejects_bad_arguments(
    app: EmulatorApp, kwargs: dict[str, Any], match: str
) -> None:
    """Bad Session arguments are a ConfigurationError naming the argument, at once."""
    with pytest.raises(ConfigurationError, match=match):
        Session(client_for(app), **kwargs)


async def test_session_wait_on_task_driven_elsewhere_raises(app: EmulatorApp) -> None:
    """A task dropped because its lease was lost ends wait_for() and watch() with
    SessionError instead of hanging (nothing here will change it again)."""
    lease_clock = FakeClock()
    store = LeasingMemoryStore(lease_ttl=15.0, clock=lease_clock)
    async with client_for(app) as client, Session(client, store=store) as session:
        with anyio.fail_after(20):
            handle = await session.start("k", join(1))
            await handle.wait_for(AgentStatus.RUNNING, timeout=10)
            lease_clock.advance(16.0)  # the lease expires; another worker takes it
            assert await store.acquire_lease("k", "other-worker", 15.0)
            assert session._leases is not None
            await session._leases.renew()
            with pytest.raises(SessionError, match="another worker"):
                await handle.wait_for(AgentStatus.STOPPED, timeout=5)
            watcher = handle.watch()
            assert await watcher.__anext__() is AgentStatus.RUNNING
            with pytest.raises(SessionError, match="another worker"):
                await watcher.__anext__()
        # The other worker drives it: stop it from there, so nothing is left running.
        async with Session(client, store=store) as other:
            await store.release_lease("k", "other-worker")
            with anyio.fail_after(20):
                await other.stop("k")
    assert running(await emulator_state(app)) == 0


async def test_session_operations_after_exit_are_usage_errors(app: EmulatorApp) -> None:
    """After the session closed, update() is a UsageError (not anyio's bare
    RuntimeError) and stop() of an ended task stays idempotent."""
    async with client_for(app) as client:
        async with Session(client) as session:
            with anyio.fail_after(20):
                live = await session.start("live", join(1))
                await live.wait_for(AgentStatus.RUNNING, timeout=10)
                ended = await session.start("ended", join(2))
                await ended.stop()
        # stop_on_exit stopped "live"; both are ended now.
        await ended.stop()
        await live.stop()
        with pytest.raises(UsageError):
            await live.update(languages=["en-US"])
        with pytest.raises(UsageError):
            await session.start("again", join(3))
    assert running(await emulator_state(app)) == 0


async def test_session_start_cancelled_by_exit_is_not_a_silent_success(
    app: EmulatorApp,
) -> None:
    """A start still in flight when the session's exit cancels it raises SessionError
    in its caller instead of returning a handle as if it had started."""
    joined = anyio.Event()

    async def block_join(when: str, request: httpx.Request) -> None:
        if when == "before" and request.method == "POST" and request.url.path.endswith("/join"):
            joined.set()
            await anyio.sleep_forever()

    outcome: dict[str, object] = {}

    async def starter(session: Session) -> None:
        try:
            outcome["handle"] = await session.start("k", join(1))
        except SessionError as error:
            outcome["error"] = error

    async def run(client: AsyncClient, tg: anyio.abc.TaskGroup) -> None:
        async with Session(client, stop_timeout=0.2) as session:
            tg.start_soon(starter, session)  # a caller outside the session's block
            await joined.wait()

    async with client_for(app, hook=block_join) as client:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                with pytest.raises(StopIncompleteError):
                    await run(client, tg)
    assert "handle" not in outcome
    assert isinstance(outcome.get("error"), SessionError)


async def test_session_forgets_oldest_ended_tasks(
    app: EmulatorApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the last ENDED_TASKS_KEPT ended tasks stay in memory (entries and agent
    ids), so churning channels does not grow a session; held handles keep working."""
    monkeypatch.setattr(_session_module, "ENDED_TASKS_KEPT", 2)
    async with client_for(app) as client, Session(client) as session:
        with anyio.fail_after(20):
            handles = []
            for i in range(5):
                handle = await session.start(f"k{i}", join(i))
                await handle.stop()
                handles.append(handle)
            live = await session.start("live", join("live"))
        assert set(session._entries) == {"k3", "k4", "live"}
        assert len(session._by_server_id) == 3
        with pytest.raises(UsageError):
            session.handle("k0")
        assert handles[0].record.phase is sm.Phase.STOPPED
        assert session.statistics().by_phase == {"STOPPED": 2, "ACTIVE": 1}
        assert live.agent_id in session._by_server_id
    assert running(await emulator_state(app)) == 0


async def test_session_channel_locks_are_dropped_after_use(app: EmulatorApp) -> None:
    """The per-channel reconcile lock is kept only while in use (no growth per channel),
    and still serialises two users of one channel."""
    async with client_for(app) as client, Session(client) as session:
        inside: list[str] = []

        async def user(name: str) -> None:
            async with session._channel_lock("ch"):
                inside.append(f"{name}-in")
                await anyio.sleep(0.01)
                inside.append(f"{name}-out")

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(user, "a")
                tg.start_soon(user, "b")
        assert inside in (["a-in", "a-out", "b-in", "b-out"], ["b-in", "b-out", "a-in", "a-out"])
        assert session._channel_locks == {}


async def test_session_start_takes_over_a_pending_record(app: EmulatorApp) -> None:
    """A stored PENDING record (a start cancelled right after its create: nothing was
    sent) does not block the key; the next start() takes it over."""
    store = MemoryStore()
    clock = FakeClock()
    stale = sm.new_record("k", ApiGeneration.V7, channel="ch-1", name="agent-1", now=clock.now())
    assert await store.create(stale)
    async with client_for(app) as client, Session(client, store=store) as session:
        with anyio.fail_after(20):
            handle = await session.start("k", join(1))
            assert handle.agent_id is not None
            await handle.stop()
        assert client.statistics().by_operation["join"].calls == 1
    assert running(await emulator_state(app)) == 0


async def test_session_concurrent_starts_of_one_key_send_one_join(app: EmulatorApp) -> None:
    """Three start() calls of one new key at once: one join, and every call gets a
    handle of that one task (never a second agent, never a refusal)."""
    async with client_for(app) as client, Session(client) as session:
        handles: list[TaskHandle] = []

        async def start() -> None:
            handles.append(await session.start("k", join(1)))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(start)
        assert len(handles) == 3
        assert len({handle.agent_id for handle in handles}) == 1
        assert handles[0].agent_id is not None
        assert client.statistics().by_operation["join"].calls == 1
    assert running(await emulator_state(app)) == 0


class FlakyStore:
    """A MemoryStore whose writes fail with StoreError while ``failing`` is set."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.failing = False
        self.refused = 0

    async def get(self, key: str) -> sm.TaskRecord | None:
        return await self.inner.get(key)

    async def create(self, record: sm.TaskRecord) -> bool:
        return await self.inner.create(record)

    async def put(self, record: sm.TaskRecord, *, expected_version: int | None) -> None:
        if self.failing:
            self.refused += 1
            raise StoreError("the store is down")
        await self.inner.put(record, expected_version=expected_version)

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        await self.inner.delete(key, expected_version=expected_version)

    async def all(self) -> list[sm.TaskRecord]:
        return await self.inner.all()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_session_survives_store_error_in_sweep(app: EmulatorApp) -> None:
    """A store write that fails while a sweep applies a new status is logged and tried
    again by the next sweep; it does not crash the session's task group."""
    store = FlakyStore()
    async with client_for(app) as client, Session(client, store=store) as session:
        with anyio.fail_after(20):
            handle = await session.start("k", join(1))
            assert handle.status is not AgentStatus.RUNNING
            store.failing = True
            while not store.refused:  # a sweep saw RUNNING and could not store it
                session._kick_refresh()
                await anyio.sleep(0.05)
            store.failing = False
            assert await handle.wait_for(AgentStatus.RUNNING, timeout=10) is AgentStatus.RUNNING
    assert running(await emulator_state(app)) == 0


class GarbledJoinTransport(httpx.AsyncBaseTransport):
    """Forwards to the emulator, but answers each join with a 200 whose body is not
    JSON (a proxy's error page): the agent exists, its id is lost."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, lists: int = 0) -> None:
        self._inner = inner
        self._lists = lists  # garble this many list answers too

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        garble = request.method == "POST" and request.url.path.endswith("/join")
        if not garble and request.method == "GET" and "channel" in request.url.params:
            garble, self._lists = self._lists > 0, self._lists - 1
        if garble:
            await response.aread()
            return httpx.Response(200, content=b"<html>bad gateway</html>")
        return response


async def test_session_join_answered_with_garbled_200_is_reconciled(app: EmulatorApp) -> None:
    """A join answered 200 with an unreadable body (ResponseError) may have created the
    agent: the session reconciles and adopts it, and stops it on exit (no leak)."""
    client = AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=GarbledJoinTransport(app.transport()),
        retry=RetryPolicy.testing(),
    )
    async with client, Session(client) as session:
        with anyio.fail_after(20):
            handle = await session.start("k", join(1))
            assert handle.agent_id is not None
            assert handle.record.phase is sm.Phase.ACTIVE
        assert client.statistics().by_operation["join"].calls == 1
    assert running(await emulator_state(app)) == 0


async def test_session_reconcile_list_answered_with_garbled_200_is_retried(
    app: EmulatorApp,
) -> None:
    """A reconcile whose list answer is unreadable (ResponseError) is retried later
    like any failed reconcile, not left stuck: the agent is adopted and stopped."""
    client = AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=GarbledJoinTransport(app.transport(), lists=1),
        retry=RetryPolicy.testing(),
    )
    policy = sm.MachinePolicy(retry_interval_s=0.05)
    async with client, Session(client, policy=policy) as session:
        with anyio.fail_after(20):
            try:
                handle = await session.start("k", join(1))
            except SessionError:
                handle = session.handle("k")
            await handle.wait_for(AgentStatus.RUNNING, timeout=10)
            assert handle.agent_id is not None
    assert running(await emulator_state(app)) == 0
