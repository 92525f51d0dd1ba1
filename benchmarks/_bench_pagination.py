"""Pagination section: iterate many agents through ``client.agents.list``.

The emulator (a child process) is first topped up to ``list_large`` RUNNING agents.
It has no bulk-seed endpoint, so the missing agents are created with ``POST /join``
over loopback (raw aiohttp, or httpx without it; not measured). Agents left RUNNING by
the memory section count towards the total, whichever section ran first.

Each run then iterates ``list_large`` items three times with ``page_size=100`` (the
emulator's largest page): once untraced for items/s and client CPU per item, and twice
under ``tracemalloc`` for the peak traced memory after ``list_small`` and after
``list_large`` items. The client is built and its first page fetched before tracing
starts, so the peaks hold what iterating costs, not the pool's setup.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Final

import anyio
import httpx
from _bench_common import (
    AUTHORIZATION,
    V7_PREFIX,
    Context,
    Section,
    Target,
    agents_in,
    emulator_state,
    figure,
    join_body,
    sdk_client,
    span,
)

PAGE_SIZE: Final = 100
"""The emulator's ``list_max_limit``: the largest page it serves."""
SEED_CONCURRENCY: Final = 32
FLATNESS_LIMIT: Final = 1.2
"""The peak at ``list_large`` items must stay within this factor of ``list_small``'s."""


async def _seed_with_aiohttp(base_url: str, names: list[str]) -> None:
    import aiohttp

    url = base_url + f"{V7_PREFIX}/join"
    headers = {"Authorization": AUTHORIZATION, "Content-Type": "application/json"}
    todo = iter(names)
    connector = aiohttp.TCPConnector(limit=SEED_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for name in todo:
                async with session.post(url, data=join_body(name, name), headers=headers) as r:
                    if r.status != 200:
                        raise RuntimeError(f"seeding join: {r.status} {await r.text()}")
                    await r.read()

        async with anyio.create_task_group() as tg:
            for _ in range(SEED_CONCURRENCY):
                tg.start_soon(worker)


async def _seed_with_httpx(base_url: str, names: list[str]) -> None:
    limits = httpx.Limits(max_connections=SEED_CONCURRENCY)
    headers = {"Authorization": AUTHORIZATION, "Content-Type": "application/json"}
    todo = iter(names)
    async with httpx.AsyncClient(base_url=base_url, limits=limits) as http:

        async def worker() -> None:
            for name in todo:
                r = await http.post(
                    f"{V7_PREFIX}/join", content=join_body(name, name), headers=headers
                )
                if r.status_code != 200:
                    raise RuntimeError(f"seeding join: {r.status_code} {r.text}")

        async with anyio.create_task_group() as tg:
            for _ in range(SEED_CONCURRENCY):
                tg.start_soon(worker)


async def ensure_running_agents(base_url: str, count: int) -> int:
    """Join agents until the emulator holds at least ``count`` RUNNING ones; return
    how many were created."""
    state = await emulator_state(base_url)
    have = agents_in(state, "RUNNING") + agents_in(state, "STARTING")
    missing = max(0, count - have)
    if missing:
        agents = state["agents"]
        assert isinstance(agents, dict)
        first = int(agents["total"])  # names stay unique: the total only grows
        names = [f"seed-{first + i}" for i in range(missing)]
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            await _seed_with_httpx(base_url, names)
        else:
            await _seed_with_aiohttp(base_url, names)
    while agents_in(await emulator_state(base_url), "STARTING"):
        await anyio.sleep(0.05)
    return missing


async def _iterate(base_url: str, items: int, *, trace: bool) -> tuple[int, float, float, float]:
    """Iterate ``items`` agents; (items seen, cpu s, wall s, peak traced bytes)."""
    async with sdk_client(base_url) as client:
        async for _ in client.agents.list(page_size=PAGE_SIZE):
            break  # connections open, converter hooks built: not part of the figure
        gc.collect()
        if trace:
            tracemalloc.start()
        try:
            seen = 0
            with span() as cost:
                iterator = client.agents.list(page_size=PAGE_SIZE)
                async for _ in iterator:
                    seen += 1
                    if seen >= items:
                        break
            peak = tracemalloc.get_traced_memory()[1] if trace else 0
        finally:
            if trace:
                tracemalloc.stop()
    return seen, cost[0].cpu_s, cost[0].wall_s, float(peak)


def pagination_section(ctx: Context) -> Section:
    """Issue figure 3: ``list_items_per_s`` and flat peak memory at 10k / 100k items."""
    url = ctx.emulator()
    small, large = ctx.sizes.list_small, ctx.sizes.list_large
    with span() as seeding:
        created = anyio.run(ensure_running_agents, url, large)
    ctx.log(f"pagination: seeded {created} agents by join in {seeding[0].wall_s:.1f}s")
    rates: list[float] = []
    cpu_us: list[float] = []
    peaks_small: list[float] = []
    peaks_large: list[float] = []
    for _ in range(ctx.runs):
        seen, cpu, wall, _peak = anyio.run(lambda: _iterate(url, large, trace=False))
        if seen != large:
            raise RuntimeError(f"listed {seen} agents, expected {large}")
        rates.append(seen / wall)
        cpu_us.append(cpu * 1e6 / seen)
        peaks_small.append(anyio.run(lambda: _iterate(url, small, trace=True))[3] / 1024)
        peaks_large.append(anyio.run(lambda: _iterate(url, large, trace=True))[3] / 1024)
        ctx.log(
            f"pagination: {rates[-1]:.0f} items/s, {cpu_us[-1]:.1f} us CPU/item, peak "
            f"{peaks_small[-1]:.0f} KiB at {small}, {peaks_large[-1]:.0f} KiB at {large}"
        )
    flat = [b / a for a, b in zip(peaks_small, peaks_large, strict=True)]
    k_small, k_large = _k(small), _k(large)
    figures = (
        figure(f"list_items_per_s [{large} items]", rates, "items/s", digits=0),
        figure("list_cpu_us_per_item", cpu_us, "us", digits=1),
        figure(f"list_peak_kib_10k [{small} items]", peaks_small, "KiB", digits=1),
        figure(f"list_peak_kib_100k [{large} items]", peaks_large, "KiB", digits=1),
        figure(
            f"list_peak_ratio [{k_large}/{k_small}]", flat, "x", Target(FLATNESS_LIMIT), digits=3
        ),
    )
    return Section(
        title=f"Pagination: {large} agents through client.agents.list",
        figures=figures,
        json={
            "list_items": [small, large],
            "list_items_per_s": figures[0].median,
            "list_cpu_us_per_item": figures[1].median,
            "list_peak_kib_10k": figures[2].median,
            "list_peak_kib_100k": figures[3].median,
            "list_peak_ratio": figures[4].median,
        },
    )


def _k(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 and n >= 1000 else str(n)
