"""The retry budget through the client (issue 7.1): an outage cannot become a storm.

``RetryBudget`` itself is tested in ``tests/test_retry.py``; here the whole client runs
into a total outage (every answer a 503) and the budget shared by its calls keeps the
retries to about 10 % of the calls, plus the floor of ``min_per_s * window_s``.
Time is frozen, so every call falls in one budget window.
"""

from __future__ import annotations

from typing import Final

import anyio
import attrs
import httpx
import pytest

from agora_stt_async import AsyncClient, RetryBudgetConfig, RetryPolicy, ServerError
from agora_stt_async.testing import FakeClock

pytestmark = pytest.mark.anyio

CALLS: Final = 200


class FrozenClock:
    """A ``Clock`` whose time stands still: sleeps only yield."""

    def __init__(self) -> None:
        self._fake = FakeClock()

    def now(self) -> float:
        return self._fake.now()

    def monotonic(self) -> float:
        return self._fake.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.lowlevel.checkpoint()


async def outage(policy: RetryPolicy) -> tuple[int, int]:
    """``CALLS`` concurrent idempotent calls against a server that answers 503 to all;
    return (HTTP requests sent, retries)."""
    sent = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return httpx.Response(503, json={"detail": "down", "reason": "ServiceUnavailable"})

    async def call(client: AsyncClient, i: int) -> None:
        with pytest.raises(ServerError):
            await client.agents.get(f"agent{i}")

    with anyio.fail_after(30):
        async with AsyncClient(
            app_id="app0",
            customer_id="c",
            customer_secret="s",
            transport=httpx.MockTransport(handler),
            retry=policy,
            clock=FrozenClock(),
        ) as client:
            async with anyio.create_task_group() as tg:
                for i in range(CALLS):
                    tg.start_soon(call, client, i)
            stats = client.statistics()
    assert stats.requests == sent
    return sent, stats.retries


async def test_retry_budget_caps_retries_in_an_outage() -> None:
    policy = RetryPolicy(no_wait=True)
    budget = policy.budget
    assert budget == RetryBudgetConfig(ratio=0.1, min_per_s=1.0, window_s=10.0)
    sent, retries = await outage(policy)
    ceiling = int(CALLS * budget.ratio + budget.min_per_s * budget.window_s)  # 20 + 10
    assert 0 < retries <= ceiling
    assert sent == CALLS + retries


async def test_retry_budget_off_retries_every_call() -> None:
    """The control: without a budget every call makes all its attempts."""
    policy = attrs.evolve(RetryPolicy(no_wait=True), budget=None)
    sent, retries = await outage(policy)
    assert retries == CALLS * (policy.attempts - 1)
    assert sent == CALLS * policy.attempts
