"""Store cost section: a task lifecycle's cost in each task store, Redis vs SQLite vs memory.

The measurement is ``benchmarks/store_cost.py``'s (start → stop through a ``Session``
against the in-process emulator, every store call timed). This section runs it for
the three stores, interleaved (the order rotates each repetition), ``Context.runs``
times, and reports per store: store calls per lifecycle, milliseconds spent in the
store per lifecycle, the lifecycle's wall time one at a time, and lifecycles per
second with ``store_concurrency`` in flight.

It needs a Redis server (``AGORA_STT_TEST_REDIS_URL``, or ``redis-server`` on ``PATH``);
without one it is skipped with that reason: a table without Redis would not answer the
question the figure is for (what a shared store costs). ``--quick`` leaves it out.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Final

import anyio
import store_cost
from _bench_common import APP_ID, Context, Figure, Section, SectionSkipped, figure
from transport import rotated

from agora_stt_async.stores import MemoryStore, RedisStore, SqliteStore, TaskStore

STORES: Final = ("memory", "sqlite", "redis")


def store_section(ctx: Context) -> Section:
    """``store_cost``: per store, calls, store ms and wall ms per lifecycle, throughput."""
    n = ctx.sizes.store_lifecycles
    if n <= 0:
        raise SectionSkipped("left out of --quick (python benchmarks/store_cost.py runs it)")
    concurrency = ctx.sizes.store_concurrency
    with tempfile.TemporaryDirectory() as tmp, store_cost.optional_redis() as redis_url:
        if redis_url is None:
            raise SectionSkipped(
                "no Redis server: set AGORA_STT_TEST_REDIS_URL or put redis-server on PATH"
            )
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        makers: dict[str, Callable[[], TaskStore]] = {
            "memory": MemoryStore,
            "sqlite": lambda: SqliteStore(Path(tmp) / f"{uuid.uuid4().hex}.db"),
            "redis": lambda: RedisStore(redis_url, app_id=APP_ID, namespace=namespace),
        }
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in STORES}
        for repetition in range(ctx.runs):
            for name in rotated(STORES, repetition):
                row = anyio.run(store_cost.measure, name, makers[name], n, concurrency, 1)
                rows[name].append(row)
                ctx.log(
                    f"store {name:6} {row['calls']:.1f} calls, {row['store_ms']:.3f} ms in the "
                    f"store, {row['lifecycle_ms']:.2f} ms per lifecycle, "
                    f"{row['throughput']:.0f}/s at {concurrency} in flight"
                )
    figures: list[Figure] = []
    out: dict[str, dict[str, float]] = {}
    for name in STORES:
        values = rows[name]
        calls = figure(f"store_calls_per_lifecycle [{name}]", [r["calls"] for r in values], "")
        store_ms = figure(f"store_ms_per_lifecycle [{name}]", [r["store_ms"] for r in values], "ms")
        wall = figure(
            f"store_lifecycle_ms [{name}, one at a time]",
            [r["lifecycle_ms"] for r in values],
            "ms",
        )
        rate = figure(
            f"store_lifecycles_per_s [{name}, {concurrency} in flight]",
            [r["throughput"] for r in values],
            "/s",
            digits=0,
        )
        figures += [calls, store_ms, wall, rate]
        out[name] = {
            "calls": calls.median,
            "store_ms": store_ms.median,
            "lifecycle_ms": wall.median,
            "throughput": rate.median,
        }
    notes = (
        "Each lifecycle is `session.start()` then `handle.stop(wait=True)` against the "
        "emulator in process (the HTTP side costs the same for every store); SQLite on a "
        "temporary file (WAL), Redis on the server named above, with leases "
        "(`RedisStore`'s lease calls are counted as store calls).",
    )
    return Section(
        title=f"Store cost per task lifecycle ({n} lifecycles per run and store)",
        figures=tuple(figures),
        json={"store_cost": out, "store_lifecycles": n},
        notes=notes,
    )
