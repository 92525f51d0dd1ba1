"""Webhooks end to end (issue 9): the ASGI receiver, and a session fed by the emulator's
signed callbacks through it, with lost, repeated and reordered events."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from aiohttp import web
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from agora_stt_async import (
    AgentStatus,
    AsyncClient,
    ConfigurationError,
    JoinRequest,
    RetryPolicy,
    RtcConfig,
    Session,
    SystemClock,
    TaskHandle,
    notifications,
)
from agora_stt_async import state as sm
from agora_stt_async._constants import (
    EMULATOR_APP_ID,
    EMULATOR_CUSTOMER_ID,
    EMULATOR_CUSTOMER_SECRET,
)
from agora_stt_async.emulator import EmulatorApp, EmulatorConfig, create_app, serve
from agora_stt_async.notifications import (
    AgentJoined,
    AgentLeft,
    Deduplicator,
    Event,
    UnknownEvent,
    asgi_app,
    handle_request,
    sign,
)

pytestmark = pytest.mark.anyio

SECRET = "ncs-secret"
HOOK = "http://sdk.test/agora/ncs"

# spec §8.1: Agora's test vector, re-computed.
VECTOR_BODY = (
    b'{"eventMs":1560408533119,"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-'
    b'53f411c2761f","notifyMs":1560408533119,"payload":{"a":"1","b":2},"productId":1}'
)
VECTOR_SHA1 = "033c62f40f687675f17f0f41f91a40c71c0f134c"
VECTOR_SHA256 = "6d3320c60b11101395b7fc8f9068748808a0aa1bfa064438e39d1bc2c7d74d99"


def left_body(notice_id: str = "n-1", agent_id: str = "AGENT1") -> bytes:
    return json.dumps(
        {
            "noticeId": notice_id,
            "productId": 20,
            "eventType": 102,
            "notifyMs": 1_750_000_000_000,
            "sid": agent_id,
            "payload": {
                "agent_id": agent_id,
                "channel": "ch",
                "start_ts": 1_750_000_000,
                "stop_ts": 1_750_000_100,
                "status": "STOPPED",
                "message": "Idle for too long",
            },
        }
    ).encode()


class Sink:
    """An async callback target that records events, failing the first ``fail`` calls."""

    def __init__(self, fail: int = 0) -> None:
        self.events: list[Event] = []
        self.fail = fail

    async def __call__(self, event: Event) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("storage down")
        self.events.append(event)


async def post(app: Any, body: bytes, secret: str = SECRET, **kwargs: Any) -> httpx.Response:
    headers = {"Content-Type": "application/json", **sign(body, secret)}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://sdk.test"
    ) as raw:
        return await raw.post("/agora/ncs", content=body, headers=headers, **kwargs)


# --- the receiver ----------------------------------------------------------------------


async def test_webhooks_test_vector_accepted() -> None:
    """Agora's test vector signs as documented and is accepted (an unknown event type)."""
    assert sign(VECTOR_BODY, "secret") == {
        "Agora-Signature": VECTOR_SHA1,
        "Agora-Signature-V2": VECTOR_SHA256,
    }
    sink = Sink()
    response = await post(asgi_app(sink, "secret"), VECTOR_BODY, secret="secret")
    assert (response.status_code, response.json()) == (200, {})
    assert response.headers["content-type"] == "application/json"
    assert isinstance(sink.events[0], UnknownEvent)
    assert sink.events[0].notice_id == "4eb720f0-8da7-11e9-a43e-53f411c2761f"


async def test_webhooks_tampered_body_rejected() -> None:
    """A body changed after signing is refused with 401 and never reaches the target."""
    sink = Sink()
    body = left_body()
    headers = sign(body, SECRET)
    tampered = body.replace(b"STOPPED", b"FAILED!")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(asgi_app(sink, SECRET)), base_url="http://x"
    ) as raw:
        response = await raw.post("/", content=tampered, headers=headers)
    assert response.status_code == 401
    assert "signature" in response.json()["error"]
    assert sink.events == []


async def test_webhooks_wrong_secret_and_no_signature_rejected() -> None:
    """A signature made with another secret, or none at all, is a 401."""
    sink = Sink()
    app = asgi_app(sink, SECRET)
    assert (await post(app, left_body(), secret="not-the-secret")).status_code == 401
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://x") as raw:
        assert (await raw.post("/", content=left_body())).status_code == 401
    assert sink.events == []


async def test_webhooks_duplicate_notice_fed_once() -> None:
    """A resend (same noticeId) answers 200 and is not handed over again."""
    sink = Sink()
    app = asgi_app(sink, SECRET)
    for _ in range(3):
        assert (await post(app, left_body("same"))).status_code == 200
    assert (await post(app, left_body("other"))).status_code == 200
    assert [e.notice_id for e in sink.events] == ["same", "other"]
    assert isinstance(sink.events[0], AgentLeft)
    assert sink.events[0].status is AgentStatus.STOPPED


async def test_webhooks_failed_feed_is_500_and_resend_handled() -> None:
    """If the target raises, the answer is 500 and NCS's resend is fed, not deduped."""
    sink = Sink(fail=1)
    app = asgi_app(sink, SECRET)
    assert (await post(app, left_body("n"))).status_code == 500
    assert (await post(app, left_body("n"))).status_code == 200
    assert [e.notice_id for e in sink.events] == ["n"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"noticeId": "x"}',
        b'{"noticeId":"x","eventType":"102",'
        b'"productId":20,"payload":{"agent_id":"A","status":"STOPPED"}}',
    ],
    ids=["not-json", "array", "no-event-type", "event-type-string"],
)
async def test_webhooks_bad_body_is_400(body: bytes) -> None:
    """A signed body that is no notification (its envelope unreadable) is a 400 naming
    the problem; a documented event with an unexpected payload is not (see
    tests/test_webhooks_receiver.py)."""
    sink = Sink()
    response = await post(asgi_app(sink, SECRET), body)
    assert response.status_code == 400
    assert response.json()["error"]
    assert sink.events == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD"])
async def test_webhooks_other_methods_405(method: str) -> None:
    """Only POST is served; the answer says so."""
    app = asgi_app(Sink(), SECRET)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://x") as raw:
        response = await raw.request(method, "/agora/ncs")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_webhooks_body_too_large_413() -> None:
    """A body over max_body is refused, by Content-Length or while streaming."""
    sink = Sink()
    app = asgi_app(sink, SECRET, max_body=64)
    big = b"x" * 65
    assert (await post(app, big)).status_code == 413

    class Chunks(httpx.AsyncByteStream):
        """Ten 10-byte chunks, no Content-Length (a class: left unfinished, it needs no
        finalising, unlike an async generator)."""

        def __init__(self) -> None:
            self.left = 10

        def __aiter__(self) -> AsyncIterator[bytes]:
            return self

        async def __anext__(self) -> bytes:
            if not self.left:
                raise StopAsyncIteration
            self.left -= 1
            return b"y" * 10

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://x") as raw:
        request = httpx.Request("POST", "http://x/", stream=Chunks())
        assert "content-length" not in request.headers
        response = await raw.send(request)
    assert response.status_code == 413
    assert sink.events == []
    assert (await post(asgi_app(sink, SECRET, max_body=len(left_body())), left_body())).is_success


async def test_webhooks_lifespan_answered() -> None:
    """Served alone, the app completes the lifespan handshake."""
    app = asgi_app(Sink(), SECRET)
    inbox: list[dict[str, object]] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return inbox.pop(0)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_webhooks_handle_request_any_framework() -> None:
    """handle_request gives (status, body) from raw bytes and any headers mapping;
    a shared Deduplicator drops repeats."""
    sink = Sink()
    dedupe = Deduplicator()
    body = left_body()
    headers = sign(body, SECRET)
    assert await handle_request(sink, SECRET, body, headers, dedupe=dedupe) == (200, b"{}")
    assert await handle_request(sink, SECRET, body, headers, dedupe=dedupe) == (200, b"{}")
    assert len(sink.events) == 1
    status, answer = await handle_request(sink, SECRET, body + b" ", headers)
    assert status == 401
    assert json.loads(answer) == {"error": "invalid signature"}
    # without a deduplicator every copy is handed over
    await handle_request(sink, SECRET, body, list(headers.items()))
    assert len(sink.events) == 2


async def test_webhooks_receiver_handle_and_dedupe_exposed() -> None:
    """The app's handle() serves non-ASGI frameworks and shares its deduplicator."""
    sink = Sink()
    app = asgi_app(sink, SECRET, dedupe=Deduplicator(max_entries=10), clock=SystemClock())
    body = left_body()
    assert await app.handle(body, sign(body, SECRET)) == (200, b"{}")
    assert (await post(app, body)).status_code == 200
    assert len(sink.events) == 1
    assert len(app.dedupe) == 1


@pytest.mark.parametrize(
    ("target", "secret", "max_body"),
    [(Sink(), "", 10), (Sink(), SECRET, 0), (object(), SECRET, 10)],
    ids=["empty-secret", "max-body", "not-a-target"],
)
def test_webhooks_configuration_errors(target: Any, secret: str, max_body: int) -> None:
    """Mistakes in setting up the receiver fail at once, not on the first callback."""
    with pytest.raises(ConfigurationError):
        asgi_app(target, secret, max_body=max_body)


# --- session integration ----------------------------------------------------------------


def client_for(app: EmulatorApp) -> AsyncClient:
    return AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=app.transport(),
        retry=RetryPolicy.testing(),
    )


def join(i: int, *, max_idle_time: int | None = None) -> JoinRequest:
    return JoinRequest(
        name=f"agent-{i}",
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=f"ch-{i}", pub_bot_uid="1000"),
        max_idle_time=max_idle_time,
    )


async def control(app: EmulatorApp, path: str, body: dict[str, object]) -> None:
    async with httpx.AsyncClient(transport=app.transport(), base_url="http://emulator") as raw:
        response = await raw.post(f"/_emulator/{path}", json=body)
        assert response.status_code == 200, response.text


async def leaked(app: EmulatorApp) -> int:
    async with httpx.AsyncClient(transport=app.transport(), base_url="http://emulator") as raw:
        by_status: dict[str, int] = (await raw.get("/_emulator/state")).json()["agents"][
            "by_status"
        ]
    return sum(by_status.get(s, 0) for s in ("IDLE", "STARTING", "RUNNING", "RECOVERING"))


async def test_webhooks_feed_moves_forward_only() -> None:
    """Events are hints: a late 101 after the 102 changes nothing, repeats are no-ops, and
    an event for an agent this session does not know is kept aside."""
    app = create_app(EmulatorConfig(start_delay=60.0, stop_delay=0.0), seed=5)
    async with client_for(app) as client, Session(client) as session:
        handle = await session.start("k", join(1))
        agent_id = handle.agent_id
        assert agent_id is not None
        assert status(handle) is AgentStatus.STARTING
        joined = AgentJoined(notice_id="j", event_type=101, agent_id=agent_id)
        left = AgentLeft(
            notice_id="l",
            event_type=102,
            agent_id=agent_id,
            status=AgentStatus.FAILED,
            message="RTC connection error",
        )
        assert await session.feed(joined)
        assert status(handle) is AgentStatus.RUNNING
        assert await session.feed(joined)  # a repeat: nothing moves
        assert status(handle) is AgentStatus.RUNNING
        assert await session.feed(left)
        assert handle.record.phase is sm.Phase.STOPPED
        assert status(handle) is AgentStatus.FAILED
        assert await session.feed(joined)  # late: the task stays over
        assert status(handle) is AgentStatus.FAILED
        assert session.statistics().reports == 0
        stranger = AgentLeft(
            notice_id="s", event_type=102, agent_id="NOBODY", status=AgentStatus.STOPPED
        )
        assert not await session.feed(stranger)
        assert list(session.unmatched_events) == [stranger]
        assert not await session.feed(UnknownEvent(notice_id="u", event_type=7))


async def test_webhooks_feed_does_not_wait_for_a_busy_task() -> None:
    """An event for a task that is busy (a request of its own in flight) is accepted at
    once, so the webhook's answer is quick, and applied when the task is free."""
    app = create_app(EmulatorConfig(start_delay=3600.0), seed=6)
    async with client_for(app) as client, Session(client) as session:
        handle = await session.start("k", join(1))
        assert handle.agent_id is not None
        joined = AgentJoined(notice_id="j", event_type=101, agent_id=handle.agent_id)
        lock, release = session._entries["k"].lock, anyio.Event()

        async def busy(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            async with lock:  # as while its stop or update is sent
                task_status.started()
                await release.wait()

        async with anyio.create_task_group() as tg:
            await tg.start(busy)
            with anyio.fail_after(2):
                assert await session.feed(joined)
            assert status(handle) is AgentStatus.STARTING
            release.set()
        with anyio.fail_after(5):  # the server still says STARTING: only the event moves it
            await handle.wait_for(AgentStatus.RUNNING)


class EarlyEvents(httpx.AsyncBaseTransport):
    """Feeds the agent's 101 to the session before the join's answer reaches it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.session: Session | None = None
        self.fed: list[bool] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/join") and self.session is not None:
            await response.aread()
            agent_id = json.loads(response.content)["agent_id"]
            event = AgentJoined(notice_id="early", event_type=101, agent_id=agent_id)
            self.fed.append(await self.session.feed(event))
        return response


async def test_webhooks_event_before_the_join_answer_is_applied() -> None:
    """A 101 that overtakes the join's answer is kept, then applied once the session
    learns the agent ID."""
    app = create_app(EmulatorConfig(start_delay=3600.0), seed=4)
    transport = EarlyEvents(app.transport())
    async with (
        AsyncClient(
            app_id=EMULATOR_APP_ID,
            customer_id=EMULATOR_CUSTOMER_ID,
            customer_secret=EMULATOR_CUSTOMER_SECRET,
            transport=transport,
            retry=RetryPolicy.testing(),
        ) as client,
        Session(client) as session,
    ):
        transport.session = session
        handle = await session.start("k", join(1))
        assert transport.fed == [False]  # unknown when it came
        with anyio.fail_after(5):  # the server still says STARTING: only the event moves it
            await handle.wait_for(AgentStatus.RUNNING)
        assert list(session.unmatched_events) == []


def status(handle: TaskHandle) -> object:
    """The handle's last observed status (a call, so that type checkers do not narrow it)."""
    return handle.status


async def run_channels(
    app: EmulatorApp,
    count: int,
    *,
    events: bool,
    endings: bool,
    event_sweep_interval: float,
    refresh_interval: float = 5.0,
    life: float = 0.0,
) -> tuple[Session, AsyncClient, list[Any]]:
    """Start ``count`` channels, wait until each runs, let it live ``life`` seconds, then
    end each one: stopped by us, or (with ``endings``) by an idle timeout or an injected
    failure on the server. Returns the closed session, its client and the handles."""
    handles: list[Any] = []
    async with (
        client_for(app) as client,
        Session(
            client,
            event_sweep_interval=event_sweep_interval,
            refresh_interval=refresh_interval,
        ) as session,
    ):
        if events:
            app.callbacks.transport = httpx.ASGITransport(asgi_app(session, SECRET))

        async def lifecycle(i: int) -> None:
            handle = await session.start(f"ch-{i}", join(i, max_idle_time=1))
            handles.append(handle)
            await handle.wait_for(AgentStatus.RUNNING, timeout=30)
            await anyio.sleep(life)
            ending = i % 4 if endings else 0
            if ending in (0, 1):
                await handle.stop()
                return
            if ending == 2:
                await control(app, f"channels/ch-{i}", {"hosts": 0})  # idle timeout
            else:
                await control(app, f"agents/{handle.agent_id}", {"status": "FAILED"})
            async for _ in handle.watch():
                pass

        async with anyio.create_task_group() as tg:
            if events:
                await tg.start(app.run_callbacks)
            async with anyio.create_task_group() as work:
                for i in range(count):
                    work.start_soon(lifecycle, i)
            tg.cancel_scope.cancel()
    return session, client, handles


STAGGER_S = 0.004  # channels start one after another, so notices flow all the time
LIFE_S = 0.25  # after start_delay (0.2 s): the agent is RUNNING, its 101 made


def all_ended_on_server(app: EmulatorApp, handles: list[TaskHandle]) -> bool:
    """Whether the agent of every handle has ended on the (emulated) server."""
    agents = [app.world.find_agent(str(h.agent_id)) for h in handles]
    return all(agent is not None and agent.status.is_terminal for agent in agents)


def agents_left_before_joined(app: EmulatorApp) -> set[str]:
    """Agents whose 102 was sent before their own 101 (held back across it)."""
    first: dict[str, int] = {}
    inverted: set[str] = set()
    for notice in app.callbacks.sent:
        if notice.event_type == 101 and first.get(notice.sid) == 102:
            inverted.add(notice.sid)
        first.setdefault(notice.sid, notice.event_type)
    return inverted


async def test_webhooks_200_channels_lossy_events_end_true() -> None:
    """200 channels; the emulator loses 30% of its callbacks, repeats others (the same
    noticeId, and redundant copies under a new one) and holds some back across many
    later ones. With no sweep, events alone end most server-ended tasks, a 102 coming
    before its own 101 included; then one sweep ends the rest: every task ends in its
    true final state, and nothing leaks."""
    config = EmulatorConfig(
        start_delay=0.2,
        stop_delay=0.1,
        callback_url=HOOK,
        callback_secret=SECRET,
        callback_loss=0.3,
        callback_duplicate=0.2,
        callback_reorder=0.2,
        callback_retry_delay=0.0,
        events_kept=10_000,
    )
    app = create_app(config, seed=11)
    app.callbacks.reorder_depth = 300
    app.callbacks.redundant = 0.2
    fed_by_notice: Counter[str] = Counter()
    fed_by_event: Counter[tuple[str | None, int]] = Counter()
    handles: list[TaskHandle] = []
    server_ended: list[TaskHandle] = []
    async with (
        client_for(app) as client,
        # Longer than the run: only events move tasks, until the sweep forced below.
        Session(client, refresh_interval=3600.0, event_sweep_interval=3600.0) as session,
    ):

        async def feed(event: Event) -> None:
            fed_by_notice[event.notice_id] += 1
            fed_by_event[event.sid, event.event_type] += 1
            await session.feed(event)

        app.callbacks.transport = httpx.ASGITransport(asgi_app(feed, SECRET))

        async def lifecycle(i: int) -> None:
            # Nobody waits on a status here: a waiter would make the session poll.
            handle = await session.start(f"ch-{i}", join(i, max_idle_time=1))
            handles.append(handle)
            await anyio.sleep(LIFE_S)
            ending = i % 4
            if ending in (0, 1):
                await handle.stop()
                return
            server_ended.append(handle)
            if ending == 2:
                await control(app, f"channels/ch-{i}", {"hosts": 0})  # idle timeout
            else:
                await control(app, f"agents/{handle.agent_id}", {"status": "FAILED"})

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(app.run_callbacks)
                async with anyio.create_task_group() as work:
                    for i in range(200):
                        work.start_soon(lifecycle, i)
                        await anyio.sleep(STAGGER_S)
                # Until every agent has ended on the server and every notice is answered.
                while not (all_ended_on_server(app, handles) and app.callbacks.idle):
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
            await anyio.sleep(0.05)  # hints queued behind a busy task are applied
            by_events = {h.agent_id for h in server_ended if h.record.phase.is_terminal}
            sweeps = session.statistics().sweeps
            status_requests = app.requests["query"] + app.requests["list"]
            # The one sweep; a FakeClock cannot reach it: the refresh loop waits on anyio's.
            session._kick.set()
            while not all(h.record.phase.is_terminal for h in handles):
                await anyio.sleep(0.02)
            assert session.statistics().sweeps == sweeps + 1
    inverted = agents_left_before_joined(app)
    print(
        f"\n200 channels, lossy callbacks {dict(app.callbacks.stats)}: "
        f"{len(by_events)} of {len(server_ended)} server-ended tasks ended by events alone "
        f"({sweeps} sweep(s), {status_requests} status requests), then one sweep; "
        f"102 before 101 for {len(inverted)} agents; "
        f"{client.statistics().requests / 200:.2f} requests per channel"
    )
    # Events did the work: no sweep but the one a first event brings, and every
    # server-ended task whose 102 came through had ended. That one sweep usually runs
    # before any agent ends; on a loaded machine it may run later and end a task whose
    # 102 was lost too, so only without it must the two sets be equal.
    assert sweeps <= 1
    assert len(server_ended) == 100
    left = {n.sid for n in app.callbacks.sent if n.event_type == 102 and 200 in n.attempts}
    delivered = left & {h.agent_id for h in server_ended}
    assert delivered <= by_events
    assert by_events == delivered or sweeps == 1
    assert len(delivered) >= 55, len(delivered)  # ~70% of their 102s are not lost
    # Reordering went deep enough for a 102 to overtake its own 101, and feed saw
    # repeats (redundant copies) while resends of one noticeId were dropped before it.
    assert inverted
    assert max(fed_by_notice.values()) == 1
    assert any(count > 1 for count in fed_by_event.values())
    assert len(handles) == 200
    assert session.statistics().by_phase == {"STOPPED": 200}
    finals: dict[str, int] = {}
    for handle in handles:
        agent = app.world.find_agent(str(handle.agent_id))
        assert agent is not None
        assert agent.status.is_terminal, handle
        if handle.record.stop_requested:
            assert agent.status is AgentStatus.STOPPED
        else:  # ended by the server: the record says how
            assert handle.status is agent.status, (handle, agent.exit_message)
        finals[agent.exit_message] = finals.get(agent.exit_message, 0) + 1
    assert finals == {"OK": 100, "Idle for too long": 50, "RTC connection error": 50}
    assert await leaked(app) == 0
    assert app.callbacks.stats["lost"] >= 0.25 * app.callbacks.stats["generated"]  # ~30%
    assert app.callbacks.stats["duplicated"] > 0
    assert app.callbacks.stats["redundant"] > 0
    assert app.callbacks.stats["reordered"] > 0
    assert app.callbacks.stats["failed"] == 0
    assert session.statistics().reports == 0


# A measurement, taken once: the backend does not change what is sent, and on both
# backends it would double the file's run time.
@pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])
async def test_webhooks_requests_per_channel_events_vs_polling() -> None:
    """Each channel is started, awaited, lives 1 s, then is stopped by us or watched until
    the server ends it. Join and leave cost the same either way; finding out (queries
    and lists) costs far less with events: the sweep interval is 12 times longer, as
    with the defaults (5 s polling, 60 s sweep), and waiting callers ask for no sweep."""
    count = 20
    per_channel: dict[str, float] = {}
    status_per_channel: dict[str, float] = {}
    for mode in ("polling", "events"):
        config = EmulatorConfig(
            start_delay=0.2,
            stop_delay=0.1,
            callback_url=HOOK if mode == "events" else None,
            callback_secret=SECRET,
            callback_retry_delay=0.0,
        )
        app = create_app(config, seed=21)
        with anyio.fail_after(20):
            _, client, handles = await run_channels(
                app,
                count,
                events=mode == "events",
                endings=True,
                refresh_interval=0.5,
                event_sweep_interval=6.0,
                life=1.0,
            )
        assert all(h.record.phase is sm.Phase.STOPPED for h in handles)
        assert await leaked(app) == 0
        assert app.requests["join"] == count
        per_channel[mode] = client.statistics().requests / count
        status_per_channel[mode] = (app.requests["query"] + app.requests["list"]) / count
    print(
        f"\nrequests per channel ({count} channels, 1 s each): all {per_channel}, "
        f"status (query + list) {status_per_channel}"
    )
    assert per_channel["events"] < per_channel["polling"], per_channel
    assert status_per_channel["events"] <= 0.5 * status_per_channel["polling"], status_per_channel


async def test_webhooks_sweep_catches_missed_event() -> None:
    """With events flowing, an agent that fails without its 102 reaching us is still
    found by the slow sweep, and ends FAILED with the server's word."""
    app = create_app(EmulatorConfig(start_delay=0.0, stop_delay=0.0), seed=7)
    async with (
        client_for(app) as client,
        Session(client, refresh_interval=3600.0, event_sweep_interval=0.2) as session,
    ):
        handle = await session.start("k", join(1))
        await handle.wait_for(AgentStatus.RUNNING, timeout=10)
        assert handle.agent_id is not None
        # the 101, late: a no-op for the task, but events now flow
        assert await session.feed(
            AgentJoined(notice_id="j", event_type=101, agent_id=handle.agent_id)
        )
        await control(app, f"agents/{handle.agent_id}", {"status": "FAILED"})  # no 102 sent
        with anyio.fail_after(10):
            seen = [s async for s in handle.watch()]
    assert seen[-1] is AgentStatus.FAILED
    assert handle.record.phase is sm.Phase.STOPPED


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan")])
async def test_webhooks_event_sweep_interval_checked(interval: float) -> None:
    """A sweep interval that is not a positive number is refused at once."""
    app = create_app(seed=1)
    async with client_for(app) as client:
        with pytest.raises(ConfigurationError, match="event_sweep_interval"):
            Session(client, event_sweep_interval=interval)


# --- the documented framework examples (README "Webhooks") ------------------------------


def joined_body(agent_id: str, notice_id: str = "n-101") -> bytes:
    return json.dumps(
        {
            "noticeId": notice_id,
            "productId": 20,
            "eventType": 101,
            "notifyMs": 1_750_000_000_000,
            "sid": agent_id,
            "payload": {"agent_id": agent_id, "channel": "ch-1", "start_ts": 1_750_000_000},
        }
    ).encode()


@pytest.fixture
def served_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorApp]:
    """An emulator on loopback, with the AGORA_* variables the examples read."""
    app = create_app(EmulatorConfig(start_delay=3600.0, stop_delay=0.0), seed=9)
    with serve(app) as url:
        for name, value in {
            "AGORA_APP_ID": EMULATOR_APP_ID,
            "AGORA_CUSTOMER_ID": EMULATOR_CUSTOMER_ID,
            "AGORA_CUSTOMER_SECRET": EMULATOR_CUSTOMER_SECRET,
            "AGORA_STT_BASE_URL": url,
            "AGORA_NCS_SECRET": SECRET,
        }.items():
            monkeypatch.setenv(name, value)
        yield app


# The Starlette example, as in the README (FastAPI: the same lifespan and handler, with
# ``@app.post("/agora/ncs")``).
@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with AsyncClient() as client, Session(client) as session:
        app.state.stt = session
        app.state.ncs = notifications.asgi_app(session, os.environ["AGORA_NCS_SECRET"])
        yield


async def agora_ncs(request: Request) -> Response:
    # handle_stream reads at most 1 MiB (413 past it) before checking the signature
    status, body = await request.app.state.ncs.handle_stream(request.stream(), request.headers)
    return Response(body, status_code=status, media_type="application/json")


starlette_app = Starlette(
    lifespan=lifespan, routes=[Route("/agora/ncs", agora_ncs, methods=["POST"])]
)


async def test_webhooks_starlette_example(served_emulator: EmulatorApp) -> None:
    """The README's Starlette example verifies, feeds the session, and refuses forgeries
    and bodies over 1 MiB."""
    async with starlette_app.router.lifespan_context(starlette_app):
        session: Session = starlette_app.state.stt
        handle = await session.start("k", join(1))
        assert handle.agent_id is not None
        assert status(handle) is AgentStatus.STARTING
        forged = joined_body(handle.agent_id, "forged")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(starlette_app), base_url="http://sdk.test"
        ) as raw:
            bad = await raw.post("/agora/ncs", content=forged, headers=sign(forged, "guess"))
            assert bad.status_code == 401
            huge = await raw.post("/agora/ncs", content=b"x" * ((1 << 20) + 1))
            assert huge.status_code == 413
            assert status(handle) is AgentStatus.STARTING
            response = await post(starlette_app, joined_body(handle.agent_id))
        assert (response.status_code, response.json()) == (200, {})
        assert status(handle) is AgentStatus.RUNNING  # from the event: no query said so
        assert served_emulator.world.find_agent(handle.agent_id) is not None


# The aiohttp example, as in the README.
NCS = web.AppKey("ncs", notifications.NotificationReceiver)
STT = web.AppKey("stt", Session)


async def stt_session(app: web.Application) -> AsyncIterator[None]:
    async with AsyncClient() as client, Session(client) as session:
        app[STT] = session
        app[NCS] = notifications.asgi_app(session, os.environ["AGORA_NCS_SECRET"])
        yield


async def agora_ncs_aiohttp(request: web.Request) -> web.Response:
    status, body = await request.app[NCS].handle(await request.read(), request.headers)
    return web.Response(status=status, body=body, content_type="application/json")


def make_aiohttp_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(stt_session)
    app.router.add_post("/agora/ncs", agora_ncs_aiohttp)
    return app


@pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])
async def test_webhooks_aiohttp_example_end_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp runs on asyncio only. The README's aiohttp example, over real HTTP: the
    served emulator signs and posts its 101 and 102 to it, and the session follows."""
    receiver = socket.socket()
    receiver.bind(("127.0.0.1", 0))
    hook = f"http://127.0.0.1:{receiver.getsockname()[1]}/agora/ncs"
    config = EmulatorConfig(
        start_delay=0.1, stop_delay=0.1, callback_url=hook, callback_secret=SECRET
    )
    emulator = create_app(config, seed=12)
    aio = make_aiohttp_app()
    runner = web.AppRunner(aio)
    with serve(emulator) as url:  # served with its lifespan: the sender runs
        for name, value in {
            "AGORA_APP_ID": EMULATOR_APP_ID,
            "AGORA_CUSTOMER_ID": EMULATOR_CUSTOMER_ID,
            "AGORA_CUSTOMER_SECRET": EMULATOR_CUSTOMER_SECRET,
            "AGORA_STT_BASE_URL": url,
            "AGORA_NCS_SECRET": SECRET,
        }.items():
            monkeypatch.setenv(name, value)
        await runner.setup()
        try:
            await web.SockSite(runner, receiver).start()
            session = aio[STT]
            handle = await session.start("k", join(1))
            with anyio.fail_after(10):
                await handle.wait_for(AgentStatus.RUNNING)
                await handle.stop(wait=True)
                while emulator.callbacks.stats["delivered"] < 2:
                    await anyio.sleep(0.02)
            assert len(aio[NCS].dedupe) == 2  # the 101 and the 102 came through aiohttp
            assert emulator.callbacks.stats["failed"] == 0
        finally:
            await runner.cleanup()
    assert handle.record.phase is sm.Phase.STOPPED
