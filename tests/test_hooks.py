"""Typed event hooks: what is emitted, filtering, unsubscribing, failing subscribers,
logging as a subscriber, and no secrets in events."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import httpx
import pytest

from agora_stt_async import (
    AsyncClient,
    JoinRequest,
    RateLimitError,
    RetryBudgetConfig,
    RetryPolicy,
    RtcConfig,
    Session,
)
from agora_stt_async._constants import (
    EMULATOR_APP_ID,
    EMULATOR_CUSTOMER_ID,
    EMULATOR_CUSTOMER_SECRET,
)
from agora_stt_async.emulator import EmulatorConfig, FaultConfig, ScheduledFault, create_app
from agora_stt_async.hooks import (
    CallCompleted,
    HookEvent,
    Hooks,
    ReconcileOutcome,
    RequestSent,
    ResponseReceived,
    RetryBudgetExhausted,
    RetryScheduled,
    TaskStateChanged,
)

pytestmark = pytest.mark.anyio

APP = "app0"
SECRET = "hook-secret-value"
AGENT = {"agent_id": "a1", "create_ts": 1, "status": "RUNNING"}
TASK = {"taskId": "t1", "createTs": 1, "status": "IN_PROGRESS"}


def scripted(statuses: list[int]) -> httpx.MockTransport:
    queue = list(statuses)

    def handle(request: httpx.Request) -> httpx.Response:
        status = queue.pop(0) if queue else 200
        body = TASK if "/tasks/" in request.url.path else AGENT
        if status != 200:
            code = {"code": 501} if status >= 500 else {}
            return httpx.Response(status, json={"message": "no", **code})
        return httpx.Response(200, json=body, headers={"X-Request-Id": "srv-7"})

    return httpx.MockTransport(handle)


def make_client(statuses: list[int] | None = None, **kw: Any) -> AsyncClient:
    options: dict[str, Any] = {
        "app_id": APP,
        "customer_id": "cid",
        "customer_secret": SECRET,
        "transport": scripted(statuses or []),
        "retry": RetryPolicy.testing(),
        **kw,
    }
    return AsyncClient(**options)


async def test_hooks_events_of_a_retried_call():
    """Sent, received (503), retry scheduled, sent, received (200), completed: in order,
    one request id for the call, attempts counted."""
    events: list[HookEvent] = []
    async with make_client([503]) as client:
        client.hooks.subscribe(events.append)
        with anyio.fail_after(5):
            await client.agents.get("a1", request_id="call-1")
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "RequestSent",
        "ResponseReceived",
        "RetryScheduled",
        "RequestSent",
        "ResponseReceived",
        "CallCompleted",
    ]
    sent = [e for e in events if isinstance(e, RequestSent)]
    assert [(e.attempt, e.request_id, e.operation) for e in sent] == [
        (1, "call-1", "query"),
        (2, "call-1", "query"),
    ]
    received = [e for e in events if isinstance(e, ResponseReceived)]
    assert [(e.status_code, e.agora_code) for e in received] == [(503, 501), (200, None)]
    assert received[1].request_id == "srv-7"
    assert received[0].error == "ServerError"
    done = events[-1]
    assert isinstance(done, CallCompleted)
    assert (done.attempts, done.status_code, done.error) == (2, 200, None)


async def test_hooks_filter_and_unsubscribe():
    """A filtered subscriber gets only its types; an unsubscribed one nothing more."""
    only: list[HookEvent] = []
    every: list[HookEvent] = []
    async with make_client() as client:
        sub = client.hooks.subscribe(only.append, CallCompleted, RetryScheduled)
        with client.hooks.subscribe(every.append):
            await client.agents.get("a1")
        assert len(every) == 3
        sub.unsubscribe()
        sub.unsubscribe()  # idempotent
        await client.agents.get("a1")
    assert len(every) == 3
    assert [type(e) for e in only] == [CallCompleted]
    assert not sub.active


def test_hooks_subscribe_checks_arguments():
    hooks = Hooks(log=False)
    with pytest.raises(TypeError):
        hooks.subscribe("not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hooks.subscribe(print, int)  # type: ignore[type-var]
    assert hooks.subscriptions == ()
    assert not hooks.wants(RequestSent)


async def test_hooks_failing_subscriber_is_logged_never_breaks(caplog):
    """A subscriber that raises is logged; the call and later subscribers go on."""
    caplog.set_level(logging.ERROR, logger="agora_stt_async.hooks")
    after: list[HookEvent] = []

    def broken(event: HookEvent) -> None:
        raise RuntimeError("subscriber bug")

    async with make_client() as client:
        client.hooks.subscribe(broken)
        client.hooks.subscribe(after.append)
        agent = await client.agents.get("a1")
    assert agent.agent_id == "a1"
    assert len(after) == 3
    failures = [r for r in caplog.records if r.name == "agora_stt_async.hooks"]
    assert len(failures) == 3
    assert "subscriber bug" in caplog.text


async def test_hooks_logging_is_a_subscriber(caplog):
    """The SDK's log lines come from the logging subscriber: unsubscribe it, no lines."""
    caplog.set_level(logging.DEBUG, logger="agora_stt_async")
    async with make_client([503]) as client:
        assert client.hooks.logging is not None
        await client.agents.get("a1", request_id="with-log")
        client.hooks.logging.unsubscribe()
        await client.agents.get("a1", request_id="without-log")
    messages = [r.getMessage() for r in caplog.records if r.name == "agora_stt_async"]
    assert any("with-log" in m and "-> 503" in m for m in messages)
    assert any("retrying GET" in m for m in messages)
    assert not any("without-log" in m for m in messages)


async def test_hooks_no_secrets_in_events():
    """Events never carry the secret, the Authorization header or a builder token."""
    events: list[HookEvent] = []
    async with make_client([503]) as client:
        client.hooks.subscribe(events.append)
        await client.legacy.query("t1", "builder-token-xyz")
    assert events
    text = " ".join(repr(attrs.asdict(e)) for e in events)
    for secret in (SECRET, "builder-token-xyz", "Basic ", "Authorization"):
        assert secret not in text
    assert "builderToken=***" in text or "builderToken=%2A%2A%2A" in text


async def test_hooks_retry_budget_exhausted():
    """A retry refused by the empty budget is its own event."""
    events: list[HookEvent] = []
    policy = RetryPolicy(
        attempts=3, no_wait=True, budget=RetryBudgetConfig(ratio=0.0, min_per_s=0.0)
    )
    async with make_client([429, 429], retry=policy) as client:
        client.hooks.subscribe(events.append, RetryBudgetExhausted, CallCompleted)
        with pytest.raises(RateLimitError):
            await client.agents.get("a1")
    assert [type(e) for e in events] == [RetryBudgetExhausted, CallCompleted]
    done = events[1]
    assert isinstance(done, CallCompleted)
    assert (done.error, done.status_code) == ("RateLimitError", 429)


async def test_hooks_cancelled_call_completes():
    """A call cancelled mid-request still ends with CallCompleted (spans never leak)."""

    class Slow(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

    events: list[HookEvent] = []
    async with make_client(transport=Slow()) as client:
        client.hooks.subscribe(events.append, CallCompleted)
        with anyio.move_on_after(0.05):
            await client.agents.get("a1")
    assert len(events) == 1
    done = events[0]
    assert isinstance(done, CallCompleted)
    assert done.error is not None
    assert done.status_code is None


def join(i: int) -> JoinRequest:
    return JoinRequest(
        name=f"agent-{i}",
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=f"ch-{i}", pub_bot_uid="1000"),
    )


def emulator_client(app: Any) -> AsyncClient:
    return AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=app.transport(),
        retry=RetryPolicy.testing(),
    )


async def test_hooks_session_task_states_and_reconcile():
    """The session reports every phase change, and the reconcile of a lost join."""
    app = create_app(EmulatorConfig(start_delay=0.0, stop_delay=0.0), seed=1)
    app.faults.configure(FaultConfig(schedule=(ScheduledFault("drop", "join"),)))
    events: list[HookEvent] = []
    async with emulator_client(app) as client:
        client.hooks.subscribe(events.append, TaskStateChanged, ReconcileOutcome)
        with anyio.fail_after(20):
            async with Session(client) as session:
                handle = await session.start("k1", join(1))
                await handle.stop()
    reconciles = [e for e in events if isinstance(e, ReconcileOutcome)]
    assert len(reconciles) == 1
    assert reconciles[0].outcome == "found"
    assert reconciles[0].server_id == handle.agent_id
    assert reconciles[0].channel == "ch-1"
    phases = [(e.old_phase, e.new_phase) for e in events if isinstance(e, TaskStateChanged)]
    assert ("RECONCILING", "ACTIVE") in phases
    assert phases[-1][1] == "STOPPED"
    for old, new in itertools.pairwise(phases):
        assert old[1] == new[0]  # a chain: each change starts where the last ended
