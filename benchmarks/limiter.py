"""The client-side rate limiter's overhead per request, side by side (issue 11).

    python benchmarks/limiter.py [--requests 2000] [--rounds 7]

Two clients send ``client.agents.get`` sequentially through ``httpx.MockTransport``
(an instant 200, no network, no server): one with the limiter on, at a rate so high it
never waits (only its bookkeeping is measured: two bucket reservations, the feedback
on the answer), one with ``rate_limit=None``. Rounds alternate between the two; each
overhead is the median of the rounds' paired differences per request, in milliseconds
of wall time. The limiter's bookkeeping is also timed alone, as a cross-check: on a
busy machine the side-by-side difference is below the noise.

``run.py`` imports ``measure_limiter_overhead()`` for ``limiter_overhead_ms_per_request``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Final

import anyio
import httpx

from agora_stt_async import AsyncClient, GroupLimit, RateLimit, RateLimiter, RetryPolicy

AGENT: Final = b'{"agent_id":"a1","create_ts":1,"status":"RUNNING"}'
NEVER_WAITS: Final = RateLimit(rate=1e12, burst=10**12, query=None)
"""The limiter fully on (buckets, AIMD feedback, hooks checks), but never sleeping."""


def _handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        content=AGENT,
        headers={"Content-Type": "application/json", "X-Request-Id": "bench"},
    )


def _client(limited: bool) -> AsyncClient:
    return AsyncClient(
        app_id="benchapp",
        customer_id="bench",
        customer_secret="bench-secret",
        transport=httpx.MockTransport(_handler),
        retry=RetryPolicy.testing(),
        rate_limit=NEVER_WAITS if limited else None,
    )


async def _round(client: AsyncClient, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await client.agents.get("a1")
    return time.perf_counter() - started


async def _measure(n: int, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds per request of each round, limiter on and off, rounds interleaved."""
    on_s: list[float] = []
    off_s: list[float] = []
    async with _client(True) as on, _client(False) as off:
        await _round(on, min(n, 200))  # warm-up: imports, first-call caches
        await _round(off, min(n, 200))
        for i in range(rounds):
            order = (on, off) if i % 2 == 0 else (off, on)
            for client in order:
                elapsed = await _round(client, n) / n
                (on_s if client is on else off_s).append(elapsed)
    return on_s, off_s


def bookkeeping_ms(n: int = 100_000) -> float:
    """The limiter's own work per request, timed alone: a reservation (two buckets)
    and the feedback on the answer, in ms (the side-by-side figure's cross-check)."""
    limiter = RateLimiter(RateLimit(rate=1e12, burst=10**12, query=GroupLimit(1e12, 10**12)))
    now = 0.0
    started = time.perf_counter()
    for _ in range(n):
        now += 1e-6
        reservation = limiter.reserve("query", now)
        if reservation.wait > 0:  # pragma: no cover - never at this rate
            raise AssertionError("the benchmark limiter waited")
        limiter.record_accepted(now)
    return (time.perf_counter() - started) / n * 1000


def measure_side_by_side(n: int = 2000, rounds: int = 7) -> dict[str, float]:
    """Milliseconds per request with the limiter on, off, and the difference (the
    median of the rounds' paired differences; below the noise it may be negative)."""
    on_s, off_s = anyio.run(_measure, n, rounds)
    diffs = [a - b for a, b in zip(on_s, off_s, strict=True)]
    return {
        "limiter_on_ms_per_request": statistics.median(on_s) * 1000,
        "limiter_off_ms_per_request": statistics.median(off_s) * 1000,
        "limiter_overhead_ms_per_request": statistics.median(diffs) * 1000,
        "limiter_bookkeeping_ms_per_request": bookkeeping_ms(),
    }


def measure_limiter_overhead(n: int = 2000, rounds: int = 7) -> float:
    """The limiter's overhead per request, in ms (what ``run.py`` reports)."""
    return measure_side_by_side(n, rounds)["limiter_overhead_ms_per_request"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    figures = measure_side_by_side(args.requests, args.rounds)
    for key, value in figures.items():
        print(f"{key:36s} {value:.4f} ms")


if __name__ == "__main__":
    main()
