"""A 1,000-channel session against an emulator that answers 429 above N requests/s.

The run takes minutes of simulated time, so it runs on trio's ``MockClock`` with
autojump: time moves to the next timer whenever every task is blocked, so the SDK's
clock, the session's timers and the emulator's rate window all share one deterministic
virtual time. That clock exists on trio only, hence this module overrides
``anyio_backend`` (no asyncio variant to skip).
"""

from __future__ import annotations

import anyio
import pytest
import trio.testing

from agora_stt_async import (
    AsyncClient,
    GroupLimit,
    JoinRequest,
    LegacyStartRequest,
    RateLimit,
    RetryPolicy,
    RtcConfig,
    Session,
)
from agora_stt_async._constants import (
    EMULATOR_APP_ID,
    EMULATOR_CUSTOMER_ID,
    EMULATOR_CUSTOMER_SECRET,
)
from agora_stt_async.emulator import EmulatorConfig, create_app
from agora_stt_async.hooks import HookEvent, RateAdjusted, ResponseReceived, TaskStateChanged

pytestmark = pytest.mark.anyio

CHANNELS = 1000
SERVER_QPS = 20
ADAPTATION_WINDOW_S = 15.0
"""The first seconds of the run, in which the limiter may still meet 429s."""


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


class VirtualClock:
    """The SDK's ``Clock`` on the event loop's (mock) time."""

    def now(self) -> float:
        return 1_900_000_000.0 + anyio.current_time()

    def monotonic(self) -> float:
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))


def join(i: int) -> JoinRequest:
    return JoinRequest(
        name=f"agent-{i}",
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=f"ch-{i}", pub_bot_uid="1000"),
    )


async def test_ratelimit_session_1000_channels_no_429_after_adaptation():
    """Configured at twice the server's limit, the limiter meets 429s only in the first
    window; every task starts and stops; the server never sees more than N per second."""
    clock = VirtualClock()
    app = create_app(
        EmulatorConfig(qps_limit=SERVER_QPS, start_delay=0.5, stop_delay=0.2), clock=clock
    )
    client = AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=app.transport(),
        clock=clock,
        retry=RetryPolicy(attempts=10, timeout=600.0, budget=None),
        # Twice the server's limit, so the limiter has to find the real one.
        rate_limit=RateLimit(
            rate=2 * SERVER_QPS,
            burst=2 * SERVER_QPS,
            query=GroupLimit(rate=SERVER_QPS, burst=SERVER_QPS),
        ),
    )
    seen: list[tuple[float, int | None]] = []
    adjustments: list[RateAdjusted] = []
    phases: dict[str, str] = {}

    def on_event(event: HookEvent) -> None:
        if isinstance(event, ResponseReceived):
            seen.append((clock.monotonic(), event.status_code))
        elif isinstance(event, RateAdjusted):
            adjustments.append(event)
        elif isinstance(event, TaskStateChanged):
            phases[event.key] = event.new_phase

    client.hooks.subscribe(on_event)
    started = clock.monotonic()
    with anyio.fail_after(3600):  # virtual seconds
        async with client, Session(client, clock=clock, stop_timeout=3600) as session:
            async with anyio.create_task_group() as tg:
                for i in range(CHANNELS):
                    tg.start_soon(session.start, f"k{i}", join(i))
            running = [h for h in session.handles() if h.record.phase.value == "ACTIVE"]
            assert len(running) == CHANNELS
    elapsed = clock.monotonic() - started

    throttled = [t - started for t, status in seen if status == 429]
    assert throttled, "the limiter was never tested: no 429 at all"
    assert max(throttled) <= ADAPTATION_WINDOW_S, throttled[-5:]
    assert adjustments
    assert all(a.reason == "throttled" for a in adjustments)
    # Every task ended stopped, through the hooks too.
    assert len(phases) == CHANNELS
    assert set(phases.values()) == {"STOPPED"}
    # Nothing lost: 1,000 joins and 1,000 leaves reached the server.
    assert app.requests["join"] >= CHANNELS
    assert app.requests["leave"] >= CHANNELS
    # The run went about as fast as the server allows: not more than ~2.5x the minimum.
    accepted = sum(1 for _, status in seen if status == 200)
    assert elapsed < 2.5 * accepted / SERVER_QPS, (elapsed, accepted)
    assert len(throttled) < accepted * 0.05


def legacy(i: int) -> LegacyStartRequest:
    return LegacyStartRequest(
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=f"lch-{i}", pub_bot_uid="2000", sub_bot_uid="1000"),
    )


async def test_ratelimit_session_refresh_plans_within_budget():
    """With many tasks that need single queries, the background refresh spends about
    half of the query budget, in rotation: each task is refreshed, less often."""
    clock = VirtualClock()
    app = create_app(EmulatorConfig(start_delay=0.0, stop_delay=0.0), clock=clock)
    query_rate = 2.0
    client = AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=app.transport(),
        clock=clock,
        retry=RetryPolicy(budget=None),
        rate_limit=RateLimit(rate=50.0, burst=50, query=GroupLimit(rate=query_rate, burst=1)),
    )
    tasks = 30
    window_s = 120.0
    queried: list[str] = []

    def on_event(event: HookEvent) -> None:
        if isinstance(event, ResponseReceived) and event.operation == "legacy_query":
            queried.append(event.url.rpartition("/tasks/")[2].partition("?")[0])

    with anyio.fail_after(3600):
        async with client, Session(client, clock=clock, refresh_interval=5.0) as session:
            for i in range(tasks):
                await session.start(f"k{i}", legacy(i))
            client.hooks.subscribe(on_event)
            await anyio.sleep(window_s)
            subscription_end = len(queried)
    # Half of 2/s over the window (+ one sweep's worth of slack), not 30 every 5 s.
    budget = 0.5 * query_rate * window_s
    assert subscription_end <= budget + 10, subscription_end
    assert subscription_end >= budget / 2  # the refresh did run
    # Rotation: every task was refreshed in the window.
    assert len(set(queried[:subscription_end])) == tasks
