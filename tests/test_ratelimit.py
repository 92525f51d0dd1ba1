"""Client-side rate limiting: the pure buckets and AIMD, and the limiter inside HttpCore."""

from __future__ import annotations

import math
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest

from agora_stt_async import (
    AsyncClient,
    ConfigurationError,
    GroupLimit,
    NotFoundError,
    RateLimit,
    RateLimiter,
    RateLimitError,
    RetryPolicy,
)
from agora_stt_async._ratelimit import TokenBucket, plan_refresh, rotate
from agora_stt_async.hooks import HookEvent, RateAdjusted, RateLimitedWait, ResponseReceived

APP = "app0"
AGENT = {"agent_id": "a1", "create_ts": 1, "status": "RUNNING"}
NO_GROUPS = RateLimit(rate=2.0, burst=2, query=None)


# --- the pure parts ---------------------------------------------------------------------


def test_ratelimit_bucket_burst_then_spacing():
    """A full bucket lends ``burst`` tokens at once, then one every 1/rate seconds."""
    bucket = TokenBucket(rate=4.0, capacity=2.0, now=0.0)
    waits = [bucket.reserve(0.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.75])


def test_ratelimit_bucket_refund_and_refill():
    """A refunded token is the next one lent; tokens refill with time, up to capacity."""
    bucket = TokenBucket(rate=1.0, capacity=1.0, now=0.0)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == pytest.approx(1.0)
    bucket.refund(0.0)
    assert bucket.reserve(0.0) == pytest.approx(1.0)  # the refunded slot, not 2 s
    assert bucket.reserve(100.0) == 0.0  # refilled, capped at one token
    assert bucket.reserve(100.0) == pytest.approx(1.0)


def test_ratelimit_bucket_stop_until():
    """``stop_until`` (Retry-After) lends nothing before the deadline."""
    bucket = TokenBucket(rate=10.0, capacity=10.0, now=0.0)
    bucket.stop_until(0.0, 3.0)
    assert bucket.reserve(0.0) == pytest.approx(3.0)
    assert bucket.reserve(0.0) == pytest.approx(3.1)


def test_ratelimit_group_cap_inside_app_budget():
    """The query group's own cap applies on top of the App ID's bucket."""
    limiter = RateLimiter(RateLimit(rate=10.0, burst=10, query=GroupLimit(rate=2.0, burst=1)))
    query = [limiter.reserve("query", 0.0).wait for _ in range(3)]
    control = [limiter.reserve("control", 0.0).wait for _ in range(3)]
    assert query == pytest.approx([0.0, 0.5, 1.0])
    assert control == pytest.approx([0.0, 0.0, 0.0])  # 3 + 3 of the App ID's 10
    assert limiter.group_rate("query") == 2.0
    assert limiter.group_rate("control") == 10.0


def test_ratelimit_cancel_returns_the_tokens():
    """A cancelled reservation gives its tokens back to both buckets."""
    limiter = RateLimiter(RateLimit(rate=1.0, burst=1, query=GroupLimit(rate=1.0, burst=1)))
    assert limiter.reserve("query", 0.0).wait == 0.0
    pending = limiter.reserve("query", 0.0)
    assert pending.wait == pytest.approx(1.0)
    limiter.cancel(pending, 0.5)
    assert limiter.reserve("query", 0.5).wait == pytest.approx(0.5)


def test_ratelimit_throttle_decreases_to_ceiling_of_accepted():
    """A 429 halves the rate, caps it at 80 % of what the server accepted in the last
    second, shrinks the burst to one, and reschedules waiters (epoch)."""
    limiter = RateLimiter(RateLimit(rate=20.0, burst=20, query=None))
    for i in range(10):
        limiter.record_accepted(0.5 + i * 0.01)
    epoch = limiter.epoch
    change = limiter.record_throttled(0.6, None)
    assert change is not None
    assert change.reason == "throttled"
    assert (change.old_rate, change.new_rate) == (20.0, 8.0)  # min(20 * 0.5, 0.8 * 10)
    assert limiter.ceiling == pytest.approx(8.0)
    assert limiter.epoch == epoch + 1
    waits = [limiter.reserve("control", 0.6).wait for _ in range(2)]
    assert waits == pytest.approx([0.0, 1 / 8.0])  # burst of one


def test_ratelimit_throttle_once_per_window():
    """The 429s of one overshoot decrease the rate once; the next window again."""
    limiter = RateLimiter(RateLimit(rate=16.0, burst=16, query=None, ceiling_fraction=1.0))
    assert limiter.record_throttled(0.0, None) is not None
    assert limiter.record_throttled(0.5, None) is None
    assert limiter.rate == 8.0
    assert limiter.record_throttled(1.0, None) is not None
    assert limiter.rate == 4.0
    assert limiter.throttles == 2


def test_ratelimit_retry_after_honoured_even_when_not_adaptive():
    """``Retry-After`` stops the bucket; ``adaptive=False`` keeps the rate."""
    limiter = RateLimiter(RateLimit(rate=10.0, burst=10, query=None, adaptive=False))
    assert limiter.record_throttled(0.0, 2.0) is None
    assert limiter.rate == 10.0
    assert limiter.reserve("control", 0.0).wait == pytest.approx(2.0)


def test_ratelimit_additive_increase_and_probe():
    """After a 429 the rate grows by ``increase_per_s`` up to the ceiling; after
    ``probe_after_s`` the ceiling is lifted and it climbs to the configured rate."""
    config = RateLimit(rate=10.0, burst=10, query=None, increase_per_s=1.0, probe_after_s=60.0)
    limiter = RateLimiter(config)
    for _ in range(5):
        limiter.record_accepted(0.0)
    limiter.record_throttled(0.1, None)
    assert limiter.rate == pytest.approx(4.0)  # min(5, 0.8 * 5)
    limiter.record_accepted(1.1)
    assert limiter.rate == pytest.approx(4.0)  # already at the ceiling
    changes = [limiter.record_accepted(t) for t in (60.0, 61.1, 70.0)]
    assert changes[0] is None
    assert changes[1] is not None
    assert changes[1].reason == "probe"
    assert limiter.ceiling is None
    assert limiter.rate == pytest.approx(min(10.0, 4.0 + (70.0 - 61.1)))


def test_ratelimit_increase_towards_ceiling():
    """The rate regains ``increase_per_s`` per second of success, not more."""
    config = RateLimit(rate=10.0, burst=10, query=None, increase_per_s=0.5)
    limiter = RateLimiter(config)
    for _ in range(10):
        limiter.record_accepted(0.0)
    limiter.record_throttled(0.5, None)
    assert limiter.rate == pytest.approx(5.0)
    limiter.record_accepted(2.5)
    assert limiter.rate == pytest.approx(6.0)
    limiter.record_accepted(100.0)
    assert limiter.rate == pytest.approx(8.0)  # the ceiling: 0.8 * 10 accepted


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0},
        {"rate": math.inf},
        {"rate": "10"},
        {"burst": 0},
        {"burst": 1.5},
        {"query": 5},
        {"decrease_factor": 1.5},
        {"ceiling_fraction": 0},
        {"adaptive": 1},
        {"probe_after_s": -1},
    ],
)
def test_ratelimit_config_validated(kwargs: dict[str, Any]):
    """Bad values are a ConfigurationError, not a later surprise."""
    with pytest.raises(ConfigurationError):
        RateLimit(**kwargs)


def test_ratelimit_refresh_plan_lists_first():
    """Single queries get what the list pages leave of the sweep's budget, at least one."""
    plan = plan_refresh(list_pages=3, single=100, query_rate=4.0, interval=5.0)
    assert plan.queries == 7  # 4/s * 0.5 * 5 s = 10 requests, 3 of them list pages
    assert plan.pace == pytest.approx(0.5)
    assert plan_refresh(list_pages=30, single=5, query_rate=4.0, interval=5.0).queries == 1
    assert plan_refresh(list_pages=0, single=3, query_rate=4.0, interval=5.0).queries == 3


def test_ratelimit_rotate_covers_everyone():
    """Rotation visits every task before any twice."""
    seen: list[int] = []
    start = 0
    for _ in range(3):
        chosen, start = rotate(7, start, 3)
        seen.extend(chosen)
    assert seen[:7] == [0, 1, 2, 3, 4, 5, 6]
    assert rotate(0, 5, 3) == ([], 0)


# --- inside the client ------------------------------------------------------------------


class RecordingClock:
    """Monotonic time that only moves when the SDK sleeps; sleeps are recorded."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return 1_700_000_000.0 + self.t

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await anyio.lowlevel.checkpoint()


def agents_handler(statuses: list[int] | None = None, retry_after: str = "1"):
    queue = list(statuses or [])

    def handle(request: httpx.Request) -> httpx.Response:
        status = queue.pop(0) if queue else 200
        if status == 429:
            return httpx.Response(
                429, json={"message": "slow down"}, headers={"Retry-After": retry_after}
            )
        return httpx.Response(200, json=AGENT, headers={"X-Request-Id": "srv-1"})

    return handle


def make_client(handler: Any, clock: Any, **kw: Any) -> AsyncClient:
    options: dict[str, Any] = {
        "app_id": APP,
        "customer_id": "cid",
        "customer_secret": "secret",
        "transport": httpx.MockTransport(handler),
        "retry": RetryPolicy(attempts=3, budget=None, jitter="none"),
        "clock": clock,
        **kw,
    }
    return AsyncClient(**options)


@pytest.mark.anyio
async def test_ratelimit_client_spaces_requests():
    """Beyond the burst, requests wait for their token on the client's clock."""
    clock = RecordingClock()
    async with make_client(agents_handler(), clock, rate_limit=NO_GROUPS) as client:
        events: list[HookEvent] = []
        client.hooks.subscribe(events.append, RateLimitedWait)
        with anyio.fail_after(5):
            for _ in range(5):
                await client.agents.get("a1")
    assert clock.sleeps == pytest.approx([0.5, 0.5, 0.5])
    assert len(events) == 3
    assert all(isinstance(e, RateLimitedWait) and e.group == "query" for e in events)


@pytest.mark.anyio
async def test_ratelimit_cancelled_wait_takes_no_token():
    """A call cancelled while it waits for a token gives it back."""

    class BlockingClock(RecordingClock):
        async def sleep(self, seconds: float) -> None:
            self.sleeps.append(seconds)
            await anyio.sleep_forever()

    clock = BlockingClock()
    limiter = RateLimiter(RateLimit(rate=1.0, burst=1, query=None))
    async with make_client(agents_handler(), clock, rate_limit=limiter) as client:
        with anyio.fail_after(5):
            await client.agents.get("a1")  # the burst token
            with anyio.move_on_after(0.05) as scope:
                await client.agents.get("a1")  # waits forever on the blocking clock
        assert scope.cancelled_caught
    assert clock.sleeps == pytest.approx([1.0])
    # The cancelled call's token is back: the next one waits 1 s, not 2 s.
    assert limiter.reserve("query", clock.monotonic()).wait == pytest.approx(1.0)


@pytest.mark.anyio
async def test_ratelimit_cancelled_wait_for_a_slot_takes_no_token():
    """A call that has its token but is cancelled while it waits for a slot in flight
    (max_in_flight) gives the token back: no request was sent for it."""
    arrived, release = anyio.Event(), anyio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        arrived.set()
        await release.wait()
        return httpx.Response(200, json=AGENT)

    clock = RecordingClock()
    limiter = RateLimiter(RateLimit(rate=1.0, burst=2, query=None, adaptive=False))
    async with make_client(slow, clock, rate_limit=limiter, max_in_flight=1) as client:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.agents.get, "a1")  # token 1 and the only slot
                await arrived.wait()
                with anyio.move_on_after(0.05) as scope:
                    await client.agents.get("a1")  # token 2, then waits for the slot
                assert scope.cancelled_caught
                release.set()
    assert clock.sleeps == []
    # Token 2 is back: one is left, so the next request goes at once.
    assert limiter.reserve("query", clock.monotonic()).wait == 0.0


@pytest.mark.anyio
async def test_ratelimit_429_adapts_and_honours_retry_after():
    """A 429 with Retry-After: the retry waits for it, the rate drops, a hook says so."""
    clock = RecordingClock()
    limiter = RateLimiter(RateLimit(rate=10.0, burst=10, query=None))
    handler = agents_handler([200, 200, 200, 200, 429], retry_after="2")
    async with make_client(handler, clock, rate_limit=limiter) as client:
        events: list[HookEvent] = []
        client.hooks.subscribe(events.append, RateAdjusted, ResponseReceived)
        with anyio.fail_after(5):
            for _ in range(5):
                await client.agents.get("a1")
    adjusted = [e for e in events if isinstance(e, RateAdjusted)]
    assert len(adjusted) == 1
    assert adjusted[0].old_rate == 10.0
    assert adjusted[0].new_rate == pytest.approx(3.2)  # 0.8 * 4 accepted
    statuses = [e.status_code for e in events if isinstance(e, ResponseReceived)]
    assert statuses == [200, 200, 200, 200, 429, 200]
    assert sum(clock.sleeps) >= 2.0  # Retry-After honoured before the retry
    assert limiter.rate < 10.0


def test_ratelimit_auto_default():
    """``"auto"``: on towards Agora, off towards a transport or a loopback host."""
    common: dict[str, Any] = {"app_id": APP, "customer_id": "cid", "customer_secret": "secret"}
    assert AsyncClient(**common).rate_limiter is not None
    assert AsyncClient(**common, base_url="http://127.0.0.1:8000").rate_limiter is None
    transport = httpx.MockTransport(agents_handler())
    assert AsyncClient(**common, transport=transport).rate_limiter is None
    assert AsyncClient(**common, rate_limit=None).rate_limiter is None
    custom = AsyncClient(**common, transport=transport, rate_limit=RateLimit(rate=3.0))
    assert custom.rate_limiter is not None
    assert custom.rate_limiter.config.rate == 3.0
    shared = RateLimiter()
    a = AsyncClient(**common, rate_limit=shared)
    b = AsyncClient(**common, rate_limit=shared)
    assert a.rate_limiter is b.rate_limiter is shared
    with pytest.raises(ConfigurationError):
        AsyncClient(**common, rate_limit=10)  # type: ignore[arg-type]


# --- the emulator's qps_limit and the benchmark ---------------------------------------


@pytest.mark.anyio
async def test_ratelimit_emulator_qps_limit():
    """``EmulatorConfig(qps_limit=N)``: the N+1st request within a second answers 429
    with Retry-After; a second later there is room again."""
    from agora_stt_async import _constants as C
    from agora_stt_async.emulator import EmulatorConfig, create_app
    from agora_stt_async.testing import FakeClock

    clock = FakeClock()
    app = create_app(EmulatorConfig(qps_limit=3), clock=clock)
    client = AsyncClient(
        app_id=C.EMULATOR_APP_ID,
        customer_id=C.EMULATOR_CUSTOMER_ID,
        customer_secret=C.EMULATOR_CUSTOMER_SECRET,
        transport=app.transport(),
        retry=RetryPolicy.none(),
        rate_limit=None,
    )
    statuses: list[int | None] = []
    async with client:
        client.hooks.subscribe(lambda e: statuses.append(e.status_code), ResponseReceived)
        for expected in (NotFoundError,) * 3 + (RateLimitError,) * 2:
            with pytest.raises(expected):
                await client.agents.get("nobody")
        clock.advance(1.0)
        with pytest.raises(NotFoundError):
            await client.agents.get("nobody")
    assert statuses == [404, 404, 404, 429, 429, 404]
    assert app.responses[429] == 2


def test_ratelimit_benchmark_reports_figures(monkeypatch: pytest.MonkeyPatch):
    """``benchmarks/limiter.py`` measures both sides and the runner's key (values are
    timings: only their presence and sign are checked)."""
    import pathlib
    import sys

    bench = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    sys.modules.pop("limiter", None)
    import limiter  # type: ignore[import-not-found,unused-ignore]

    figures = limiter.measure_side_by_side(n=20, rounds=2)
    assert set(figures) == {
        "limiter_on_ms_per_request",
        "limiter_off_ms_per_request",
        "limiter_overhead_ms_per_request",
        "limiter_bookkeeping_ms_per_request",
    }
    assert figures["limiter_on_ms_per_request"] > 0
    assert figures["limiter_off_ms_per_request"] > 0
    assert figures["limiter_bookkeeping_ms_per_request"] > 0
    assert isinstance(limiter.measure_limiter_overhead(n=10, rounds=1), float)
