"""Leaving ``async with Session``: when the scope around it is cancelled (a server shutting
down), and when its body raises."""

from __future__ import annotations

import logging

import anyio
import httpx
import pytest

from agora_stt_async import (
    AsyncClient,
    JoinRequest,
    LegacyStartRequest,
    Session,
    StopIncompleteError,
)
from agora_stt_async import state as sm
from agora_stt_async.emulator import EmulatorApp, FaultConfig, ScheduledFault, create_app
from agora_stt_async.stores import LeasingMemoryStore, MemoryStore
from tests.test_session import (
    FAST,
    Hook,
    Tripwire,
    TripwireStore,
    client_for,
    emulator_state,
    join,
    legacy,
    running,
)

pytestmark = pytest.mark.anyio

_STARTS = {"v7": "/join", "legacy": "/tasks"}  # the request that creates the task


@pytest.fixture
def app() -> EmulatorApp:
    return create_app(FAST, seed=7)


def _config(api: str) -> JoinRequest | LegacyStartRequest:
    return join(1) if api == "v7" else legacy(1)


def _cancel_after_start(api: str, scope: anyio.CancelScope) -> Hook:
    """A request hook that cancels ``scope`` once the server has processed the start, while
    the SDK reads its answer (which is lost)."""

    async def hook(when: str, request: httpx.Request) -> None:
        if when == "after" and request.method == "POST" and request.url.path.endswith(_STARTS[api]):
            scope.cancel()
            await anyio.lowlevel.checkpoint()  # where the cancellation strikes

    return hook


@pytest.mark.parametrize("api", ["v7", "legacy"])
async def test_session_exit_after_enclosing_cancel_mid_start_stops_the_task(
    app: EmulatorApp, api: str
) -> None:
    """The scope around the session is cancelled right after the server created the task,
    whose answer is then lost: leaving finds the task (reconciles) and stops it, quickly,
    and the cancellation goes on as usual."""
    outer = anyio.CancelScope()
    async with client_for(app, hook=_cancel_after_start(api, outer)) as client:
        with anyio.fail_after(20):
            with outer:
                async with Session(client, stop_timeout=10) as session:
                    await session.start("k", _config(api))
                    await anyio.sleep_forever()
            assert outer.cancelled_caught
        record = session.handle("k").record
        assert record.phase is sm.Phase.STOPPED
        assert record.server_id is not None
    assert running(await emulator_state(app)) == 0


@pytest.mark.parametrize("api", ["v7", "legacy"])
async def test_session_exit_after_enclosing_cancel_reports_an_unconfirmed_stop(
    app: EmulatorApp, api: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelled around the session mid-start while every stop fails: the cancellation
    goes on, and the task left running is reported (logged: it cannot be raised)."""
    route = "leave" if api == "v7" else "stop"
    app.faults.configure(FaultConfig(routes={route: 1.0}, kinds={"503": 1.0}))
    outer = anyio.CancelScope()
    async with client_for(app, hook=_cancel_after_start(api, outer)) as client:
        with anyio.fail_after(20):
            with outer:
                async with Session(client, stop_timeout=0.5) as session:
                    await session.start("k", _config(api))
                    await anyio.sleep_forever()
            assert outer.cancelled_caught
    assert session.handle("k").record.server_id is not None  # found, but not stopped
    reports = [r for r in caplog.records if "could not be confirmed stopped: k" in r.getMessage()]
    assert [r.levelno for r in reports] == [logging.ERROR]
    app.faults.configure(FaultConfig())
    assert running(await emulator_state(app)) == 1


class CancellingStore(TripwireStore):
    """Cancels ``scope`` when the record with the task's id is being written, then lets the
    write go on over a checkpoint (where a cancellation would strike)."""

    def __init__(self, scope: anyio.CancelScope) -> None:
        super().__init__()
        self.scope = scope

    async def put(self, record: sm.TaskRecord, *, expected_version: int | None) -> None:
        if record.server_id is not None and not self.scope.cancel_called:
            self.scope.cancel()
            await anyio.lowlevel.checkpoint()
        await self.inner.put(record, expected_version=expected_version)


async def test_session_id_answered_just_before_an_enclosing_cancel_is_kept(
    app: EmulatorApp,
) -> None:
    """The join answered and the scope around the session is cancelled while its agent id
    is being stored: the write completes (shielded), so leaving stops the agent by its id
    without having to look for it."""
    outer = anyio.CancelScope()
    store = CancellingStore(outer)
    async with client_for(app) as client:
        with anyio.fail_after(20):
            with outer:
                async with Session(client, store=store, stop_timeout=10) as session:
                    await session.start("k", join(1))
                    await anyio.sleep_forever()
            assert outer.cancelled_caught
        stored = await store.get("k")
        assert stored is not None
        assert stored.phase is sm.Phase.STOPPED
        assert stored.agent_id is not None
        assert "list" not in client.statistics().by_operation  # nothing had to be found
    assert running(await emulator_state(app)) == 0


async def test_session_exit_after_enclosing_cancel_runs_retry_timers(app: EmulatorApp) -> None:
    """A task waiting to retry (its reconcile failed) when the scope around the session is
    cancelled: the session's own timers are gone, yet leaving retries on time, finds the
    agent and stops it."""
    lists_fail = True

    async def hook(when: str, request: httpx.Request) -> None:
        if when == "before" and lists_fail and request.method == "GET":
            raise httpx.ConnectError("lists are down", request=request)

    app.faults.configure(FaultConfig(schedule=(ScheduledFault("drop", "join"),)))
    policy = sm.MachinePolicy(retry_interval_s=0.2)
    async with client_for(app, hook=hook) as client:
        with anyio.fail_after(20):
            with anyio.CancelScope() as outer:
                async with Session(client, policy=policy, stop_timeout=10) as session:
                    handle = await session.start("k", join(1))
                    assert handle.record.phase is sm.Phase.RECONCILING
                    assert handle.record.wake_at is not None
                    lists_fail = False
                    outer.cancel()
                    await anyio.sleep_forever()
            assert outer.cancelled_caught
        assert handle.record.phase is sm.Phase.STOPPED
        assert handle.agent_id is not None
    assert running(await emulator_state(app)) == 0


class StrikingTripwire(Tripwire):
    """A ``Tripwire`` whose cancellation strikes inside the request it cancels at (the
    answer of a request processed by the server is then lost)."""

    async def hook(self, when: str, request: httpx.Request) -> None:
        await super().hook(when, request)
        await anyio.lowlevel.checkpoint()


# Enough steps to pass the end of either start (the last values cancel nothing).
_STEPS = 16


@pytest.mark.parametrize("api", ["v7", "legacy"])
@pytest.mark.parametrize("at", range(1, _STEPS + 1))
async def test_session_enclosing_cancel_at_every_step_of_start_leaves_nothing_running(
    app: EmulatorApp, api: str, at: int
) -> None:
    """Whichever store write or request of a start the scope around the session is
    cancelled at, leaving stops what was started: nothing runs afterwards."""
    outer = anyio.CancelScope()
    tripwire = StrikingTripwire(at, outer)
    store = TripwireStore()
    async with client_for(app, hook=tripwire.hook) as client:
        with anyio.fail_after(20):
            with outer:
                async with Session(client, store=store, stop_timeout=10) as session:
                    store.tripwire = tripwire
                    await session.start("k", _config(api))
                    tripwire.scope = anyio.CancelScope()  # the start is over: cancel nothing
                    outer.cancel()
                    await anyio.sleep_forever()
            assert outer.cancelled_caught
    assert running(await emulator_state(app)) == 0


async def test_session_body_exception_comes_out_as_itself(app: EmulatorApp) -> None:
    """An exception raised in the body of ``async with Session`` comes out as itself, not
    wrapped in an ExceptionGroup, and the tasks are still stopped."""

    async def run(client: AsyncClient) -> None:
        async with Session(client) as session:
            await session.start("k", join(1))
            raise KeyError("mine")

    async with client_for(app) as client:
        with anyio.fail_after(20), pytest.raises(KeyError) as caught:
            await run(client)
    assert type(caught.value) is KeyError
    assert caught.value.args == ("mine",)
    assert running(await emulator_state(app)) == 0


async def test_session_body_exception_wins_and_the_unconfirmed_stop_is_logged(
    app: EmulatorApp, caplog: pytest.LogCaptureFixture
) -> None:
    """The body raises while a stop cannot be confirmed: the body's exception comes out
    (as itself), and the StopIncompleteError is logged instead of hiding it."""

    async def run(client: AsyncClient) -> None:
        async with Session(client, stop_timeout=0.5) as session:
            await session.start("k", join(1))
            app.faults.configure(FaultConfig(routes={"leave": 1.0}, kinds={"503": 1.0}))
            raise RuntimeError("body failed")

    async with client_for(app) as client:
        with anyio.fail_after(20), pytest.raises(RuntimeError, match="body failed"):
            await run(client)
    assert any("could not be confirmed stopped: k" in r.getMessage() for r in caplog.records)
    app.faults.configure(FaultConfig())


async def test_session_exit_without_body_error_still_raises_stop_incomplete(
    app: EmulatorApp,
) -> None:
    """A normal exit that cannot confirm a stop raises StopIncompleteError itself, not in
    an ExceptionGroup."""

    async def run(client: AsyncClient) -> None:
        async with Session(client, store=MemoryStore(), stop_timeout=0.5) as session:
            await session.start("k", join(1))
            app.faults.configure(FaultConfig(routes={"leave": 1.0}, kinds={"503": 1.0}))

    async with client_for(app) as client:
        with anyio.fail_after(20), pytest.raises(StopIncompleteError) as caught:
            await run(client)
    assert type(caught.value) is StopIncompleteError
    assert caught.value.keys == ("k",)
    app.faults.configure(FaultConfig())


async def test_session_exit_after_enclosing_cancel_keeps_its_leases(app: EmulatorApp) -> None:
    """With a shared store, leaving after the scope around the session was cancelled
    keeps renewing the leases of the tasks it stops, however long the stops take: no
    other worker adopts a task this one is still stopping."""
    store = LeasingMemoryStore(lease_ttl=0.3)  # renewed every 0.1 s
    owners: list[str | None] = []

    async def slow_leave(when: str, request: httpx.Request) -> None:
        if when == "before" and request.method == "POST" and request.url.path.endswith("/leave"):
            await anyio.sleep(1.0)  # more than three lease TTLs
            owners.append(await store.lease_owner("k"))

    async with client_for(app, hook=slow_leave) as client:
        with anyio.fail_after(20):
            with anyio.CancelScope() as outer:
                async with Session(client, store=store, stop_timeout=10) as session:
                    await session.start("k", join(1))
                    outer.cancel()
                    await anyio.sleep_forever()
            assert outer.cancelled_caught
    assert session._leases is not None
    assert owners == [session._leases.owner]
    assert running(await emulator_state(app)) == 0
