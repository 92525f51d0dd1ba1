"""The task store's cost per task lifecycle: MemoryStore vs SqliteStore vs RedisStore.

A lifecycle is what a backend does per channel: ``session.start(key, join)`` then
``handle.stop(wait=True)`` (join, RUNNING, leave, STOPPED). The emulator runs in this
process behind an in-memory transport, so the HTTP side costs the same for every store
and the difference is the store's. Every store call goes through a timing proxy; the
figures per store are:

- ``calls``: store calls per lifecycle (with ``RedisStore``: lease calls included);
- ``store_ms``: time spent inside store calls per lifecycle, lifecycles run one at a
  time (the latency a lifecycle pays to its store);
- ``lifecycle_ms``: wall time per lifecycle, one at a time;
- ``throughput``: lifecycles per second with ``--concurrency`` of them in flight.

Redis: ``AGORA_STT_TEST_REDIS_URL``, else a ``redis-server`` on ``PATH`` started on a
loopback port for the run (``tests/_redis_server.py``); without either, Redis is left
out and the table says so. SQLite writes to a temporary file (WAL, the store's default).

    python benchmarks/store_cost.py [--lifecycles 300] [--concurrency 50] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio

from agora_stt_async import AsyncClient, JoinRequest, RetryPolicy, RtcConfig, Session
from agora_stt_async import _constants as C
from agora_stt_async.emulator import EmulatorConfig, create_app
from agora_stt_async.state import TaskRecord
from agora_stt_async.stores import MemoryStore, RedisStore, SqliteStore, TaskStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests._redis_server import NoRedisError, redis_server

_T = TypeVar("_T")
EMULATOR: Final = EmulatorConfig(start_delay=0.0, stop_delay=0.0)


class Timed:
    """A proxy that times every store call (the TaskStore methods)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls = 0
        self.seconds = 0.0

    async def _timed(self, call: Awaitable[_T]) -> _T:
        began = time.perf_counter()
        try:
            return await call
        finally:
            self.seconds += time.perf_counter() - began
            self.calls += 1

    async def get(self, key: str) -> TaskRecord | None:
        return await self._timed(self.store.get(key))

    async def create(self, record: TaskRecord) -> bool:
        return await self._timed(self.store.create(record))

    async def put(self, record: TaskRecord, *, expected_version: int | None) -> None:
        await self._timed(self.store.put(record, expected_version=expected_version))

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        await self._timed(self.store.delete(key, expected_version=expected_version))

    async def all(self) -> list[TaskRecord]:
        return await self._timed(self.store.all())

    async def aclose(self) -> None:
        await self.store.aclose()


class TimedLeasing(Timed):
    """``Timed`` plus the LeasingStore methods, so the session still sees leases."""

    @property
    def lease_ttl(self) -> float:
        ttl: float = self.store.lease_ttl
        return ttl

    def check_event_loop(self) -> None:
        self.store.check_event_loop()

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        return await self._timed(self.store.acquire_lease(key, owner, ttl))

    async def renew_leases(self, keys: Collection[str], owner: str, ttl: float) -> set[str]:
        return await self._timed(self.store.renew_leases(keys, owner, ttl))

    async def release_lease(self, key: str, owner: str) -> None:
        await self._timed(self.store.release_lease(key, owner))

    async def lease_owner(self, key: str) -> str | None:
        return await self._timed(self.store.lease_owner(key))

    async def unleased(self) -> list[TaskRecord]:
        return await self._timed(self.store.unleased())


def join(key: str) -> JoinRequest:
    return JoinRequest(
        name=f"agent-{key}",
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=key, pub_bot_uid="1000"),
    )


async def lifecycles(
    make_store: Callable[[], TaskStore], n: int, concurrency: int
) -> tuple[Timed, float]:
    """Run ``n`` lifecycles, ``concurrency`` at a time; the proxy and the wall time."""
    app = create_app(EMULATOR, seed=0)
    store = make_store()
    timed: Timed = TimedLeasing(store) if isinstance(store, RedisStore) else Timed(store)
    prefix = uuid.uuid4().hex[:8]
    limiter = anyio.CapacityLimiter(concurrency)
    client = AsyncClient(
        app_id=C.EMULATOR_APP_ID,
        customer_id=C.EMULATOR_CUSTOMER_ID,
        customer_secret=C.EMULATOR_CUSTOMER_SECRET,
        transport=app.transport(),
        retry=RetryPolicy.testing(),
    )
    session = Session(client, store=timed, refresh_interval=0.05, max_in_flight=concurrency)
    async with client, session:

        async def one(i: int) -> None:
            async with limiter:
                key = f"{prefix}-{i}"
                handle = await session.start(key, join(key))
                await handle.stop(wait=True, timeout=30)

        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        wall = time.perf_counter() - began
    await timed.aclose()
    return timed, wall


async def measure(
    name: str, make_store: Callable[[], TaskStore], n: int, concurrency: int, runs: int
) -> dict[str, Any]:
    store_ms: list[float] = []
    wall_ms: list[float] = []
    calls: list[float] = []
    throughput: list[float] = []
    await lifecycles(make_store, 20, 1)  # warm-up: connections, scripts, imports
    for _ in range(runs):
        timed, wall = await lifecycles(make_store, n, 1)
        store_ms.append(timed.seconds / n * 1000)
        wall_ms.append(wall / n * 1000)
        calls.append(timed.calls / n)
        _, wall = await lifecycles(make_store, n, concurrency)
        throughput.append(n / wall)
    return {
        "store": name,
        "calls": round(statistics.median(calls), 2),
        "store_ms": round(statistics.median(store_ms), 3),
        "lifecycle_ms": round(statistics.median(wall_ms), 3),
        "throughput": round(statistics.median(throughput), 1),
    }


@contextlib.contextmanager
def optional_redis() -> Iterator[str | None]:
    try:
        with redis_server() as url:
            yield url
    except NoRedisError:
        yield None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lifecycles", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3, help="repeats; medians are shown")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, optional_redis() as redis_url:
        stores: list[tuple[str, Callable[[], TaskStore]]] = [
            ("memory", MemoryStore),
            ("sqlite", lambda: SqliteStore(Path(tmp) / f"{uuid.uuid4().hex}.db")),
        ]
        if redis_url is not None:
            namespace = f"bench-{uuid.uuid4().hex[:8]}"
            stores.append(
                (
                    "redis",
                    lambda: RedisStore(redis_url, app_id=C.EMULATOR_APP_ID, namespace=namespace),
                )
            )
        for name, make in stores:
            results.append(
                anyio.run(measure, name, make, args.lifecycles, args.concurrency, args.runs)
            )
    report = {
        "lifecycles": args.lifecycles,
        "concurrency": args.concurrency,
        "runs": args.runs,
        "redis": redis_url is not None,
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"store cost per lifecycle (start + stop, {args.lifecycles} lifecycles, median of"
        f" {args.runs} runs; throughput at {args.concurrency} in flight)"
    )
    print(f"{'store':8} {'calls':>6} {'store ms':>9} {'lifecycle ms':>13} {'lifecycles/s':>13}")
    for row in results:
        print(
            f"{row['store']:8} {row['calls']:>6} {row['store_ms']:>9.3f}"
            f" {row['lifecycle_ms']:>13.3f} {row['throughput']:>13.1f}"
        )
    if redis_url is None:
        print("redis: left out (no AGORA_STT_TEST_REDIS_URL and no redis-server on PATH)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
