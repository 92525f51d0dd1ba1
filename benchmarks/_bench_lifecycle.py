"""Lifecycle sections: N channels through ``Session`` against a hand-written raw-httpx loop.

Each channel is started, waited for until RUNNING, updated once and stopped. The SDK
does it with ``Session.start`` / ``TaskHandle.wait_for`` / ``update`` / ``stop``; the
baseline with one shared ``httpx.AsyncClient`` (the same 64 connections as the SDK's
pool), sending the headers the SDK sends (``transport.sdk_headers``): ``POST /join``,
``GET /agents/{id}`` every ``POLL_INTERVAL_S`` until RUNNING (the gap the session keeps
between its status sweeps), ``POST .../update`` and ``POST .../leave``. All channels
run at once. The emulator (a child process, reset
before every run) counts the requests each side made.

Cost is client-process CPU (``time.process_time``) from the first request to the end of
the ``Session`` block (its exit included); wall time is reported beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Final, Literal

import anyio
import attrs
import httpx
import transport
from _bench_common import (
    AUTHORIZATION,
    V7_PREFIX,
    Context,
    Cost,
    Figure,
    Section,
    Target,
    emulator_reset,
    emulator_state,
    figure,
    join_body,
    join_request,
    requests_made,
    sdk_client,
    span,
)

from agora_stt_async import AgentStatus, Session
from agora_stt_async._session import MIN_REFRESH_GAP_S

POLL_INTERVAL_S: Final = MIN_REFRESH_GAP_S
"""The baseline polls each agent this often: the session's own sweep gap."""
CONNECTIONS: Final = 64
"""Connections of the baseline's pool: the SDK's default ``max_in_flight``."""
WAIT_TIMEOUT_S: Final = 600.0
UPDATED_LANGUAGES: Final = ("en-US", "es-ES")

Who = Literal["sdk", "sdk_httpx", "raw"]


@attrs.frozen
class LifecycleRun:
    who: Who
    channels: int
    cost: Cost
    requests: int

    @property
    def cpu_ms_per_channel(self) -> float:
        return self.cost.cpu_s * 1000 / self.channels

    @property
    def requests_per_channel(self) -> float:
        return self.requests / self.channels


async def _sdk(base_url: str, channels: int, *, fast: bool | None) -> Cost:
    async with sdk_client(base_url, fast=fast) as client:
        with span() as cost:
            async with Session(client) as session:

                async def one(i: int) -> None:
                    handle = await session.start(f"ch{i}", join_request(f"bench-{i}", f"ch{i}"))
                    await handle.wait_for(AgentStatus.RUNNING, timeout=WAIT_TIMEOUT_S)
                    await handle.update(languages=list(UPDATED_LANGUAGES))
                    await handle.stop()

                async with anyio.create_task_group() as tg:
                    for i in range(channels):
                        tg.start_soon(one, i)
    return cost[0]


async def _raw(base_url: str, channels: int) -> Cost:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    update = json.dumps({"languages": list(UPDATED_LANGUAGES)}).encode()
    # As the SDK does: no more requests in flight than connections, so none queue
    # inside httpx's pool (whose cost grows with the queue).
    limiter = anyio.CapacityLimiter(CONNECTIONS)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10.0) as http:

        async def call(
            method: str,
            path: str,
            *,
            content: bytes | None = None,
            params: dict[str, str] | None = None,
        ) -> dict[str, object]:
            headers = transport.sdk_headers(AUTHORIZATION)
            if content is not None:
                headers["Content-Type"] = "application/json"
            async with limiter:
                response = await http.request(
                    method, path, content=content, params=params, headers=headers
                )
            if response.status_code != 200:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
            body = json.loads(response.content) if response.content else {}
            assert isinstance(body, dict)
            return body

        async def one(i: int) -> None:
            agent = await call(
                "POST", f"{V7_PREFIX}/join", content=join_body(f"bench-{i}", f"ch{i}")
            )
            agent_id, status = agent["agent_id"], agent["status"]
            while status != "RUNNING":
                await anyio.sleep(POLL_INTERVAL_S)
                status = (await call("GET", f"{V7_PREFIX}/agents/{agent_id}"))["status"]
            await call(
                "POST",
                f"{V7_PREFIX}/agents/{agent_id}/update",
                content=update,
                params={"sequenceId": "1", "updateMask": "languages"},
            )
            await call("POST", f"{V7_PREFIX}/agents/{agent_id}/leave")

        with span() as cost:
            async with anyio.create_task_group() as tg:
                for i in range(channels):
                    tg.start_soon(one, i)
    return cost[0]


def measure_lifecycle(base_url: str, who: Who, channels: int) -> LifecycleRun:
    """One run on a freshly reset emulator."""

    async def main() -> LifecycleRun:
        await emulator_reset(base_url)
        if who == "raw":
            cost = await _raw(base_url, channels)
        else:
            cost = await _sdk(base_url, channels, fast=None if who == "sdk" else False)
        requests = requests_made(await emulator_state(base_url))
        return LifecycleRun(who, channels, cost, requests)

    return anyio.run(main)


def _ratios(a: Sequence[LifecycleRun], b: Sequence[LifecycleRun], what: str) -> list[float]:
    """Per-repetition ratios a/b (runs of a repetition are neighbours in time)."""
    if what == "cpu":
        return [x.cost.cpu_s / y.cost.cpu_s for x, y in zip(a, b, strict=True)]
    return [x.cost.wall_s / y.cost.wall_s for x, y in zip(a, b, strict=True)]


def lifecycle_section(ctx: Context) -> Section:
    """Issue figure 2: ``lifecycle_ratio`` and requests per channel, SDK vs by hand."""
    url = ctx.emulator()
    n = ctx.sizes.lifecycle_channels
    order: tuple[Who, ...] = ("raw", "sdk", "sdk_httpx")
    for who in order if ctx.sizes.warm_up else ():  # imports, converter hooks, connections
        measure_lifecycle(url, who, min(n, 10))
    runs: dict[Who, list[LifecycleRun]] = {who: [] for who in order}
    for r in range(ctx.runs):
        for who in order if r % 2 == 0 else order[::-1]:
            run = measure_lifecycle(url, who, n)
            runs[who].append(run)
            ctx.log(
                f"lifecycle {who:9} N={n}: cpu {run.cost.cpu_s:.2f}s wall {run.cost.wall_s:.2f}s "
                f"{run.requests_per_channel:.2f} req/channel"
            )
    sdk, raw, httpx_ = runs["sdk"], runs["raw"], runs["sdk_httpx"]
    figures = (
        figure(f"lifecycle_ratio [CPU, N={n}]", _ratios(sdk, raw, "cpu"), "x", Target(1.20)),
        figure(f"lifecycle_httpx_ratio [CPU, fast=False, N={n}]", _ratios(httpx_, raw, "cpu"), "x"),
        figure(f"lifecycle_wall_ratio [N={n}]", _ratios(sdk, raw, "wall"), "x"),
        figure("lifecycle_cpu_ms_per_channel_sdk", [x.cpu_ms_per_channel for x in sdk], "ms"),
        figure("lifecycle_cpu_ms_per_channel_raw", [x.cpu_ms_per_channel for x in raw], "ms"),
        figure("lifecycle_wall_s_sdk", [x.cost.wall_s for x in sdk], "s", digits=2),
        figure("lifecycle_wall_s_raw", [x.cost.wall_s for x in raw], "s", digits=2),
        figure("lifecycle_requests_per_channel_sdk", [x.requests_per_channel for x in sdk], "req"),
        figure("lifecycle_requests_per_channel_raw", [x.requests_per_channel for x in raw], "req"),
        figure(
            "lifecycle_requests_ratio [SDK/raw]",
            [x.requests / y.requests for x, y in zip(sdk, raw, strict=True)],
            "x",
            Target(1.0),
        ),
    )
    by_name = {f.name.split(" ")[0]: f for f in figures}
    return Section(
        title=f"Lifecycle: {n} channels, Session vs hand-written httpx",
        figures=figures,
        json={
            "lifecycle_channels": n,
            "lifecycle_ratio": by_name["lifecycle_ratio"].median,
            "lifecycle_httpx_ratio": by_name["lifecycle_httpx_ratio"].median,
            "lifecycle_wall_ratio": by_name["lifecycle_wall_ratio"].median,
            "lifecycle_cpu_ms_per_channel_sdk": by_name["lifecycle_cpu_ms_per_channel_sdk"].median,
            "lifecycle_cpu_ms_per_channel_raw": by_name["lifecycle_cpu_ms_per_channel_raw"].median,
            "lifecycle_requests_per_channel_sdk": by_name[
                "lifecycle_requests_per_channel_sdk"
            ].median,
            "lifecycle_requests_per_channel_raw": by_name[
                "lifecycle_requests_per_channel_raw"
            ].median,
        },
    )


def scaling_exponent(channels: Sequence[int], costs: Sequence[float]) -> float:
    """Least-squares slope of log(cost) over log(channels): 1.0 is linear growth."""
    xs = [math.log(n) for n in channels]
    ys = [math.log(c) for c in costs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def scaling_section(ctx: Context) -> Section:
    """Issue figure 4b: lifecycle cost at growing N (``lifecycle_scaling``)."""
    url = ctx.emulator()
    sizes = ctx.sizes.scaling_channels
    if ctx.sizes.warm_up:
        measure_lifecycle(url, "sdk", min(sizes[0], 10))
    runs: dict[int, list[LifecycleRun]] = {n: [] for n in sizes}
    for _ in range(ctx.runs):
        for n in sizes:
            run = measure_lifecycle(url, "sdk", n)
            runs[n].append(run)
            ctx.log(
                f"scaling   sdk N={n}: cpu {run.cost.cpu_s:.2f}s wall {run.cost.wall_s:.2f}s "
                f"{run.requests_per_channel:.2f} req/channel"
            )
    figures: list[Figure] = []
    scaling: list[dict[str, object]] = []
    for n in sizes:
        wall = figure(
            f"lifecycle_scaling [N={n}] wall", [r.cost.wall_s for r in runs[n]], "s", digits=2
        )
        cpu = figure(
            f"lifecycle_scaling [N={n}] CPU", [r.cost.cpu_s for r in runs[n]], "s", digits=2
        )
        per = figure(
            f"lifecycle_scaling [N={n}] CPU/channel", [r.cpu_ms_per_channel for r in runs[n]], "ms"
        )
        reqs = figure(
            f"lifecycle_scaling [N={n}] req/channel",
            [r.requests_per_channel for r in runs[n]],
            "req",
        )
        figures += [wall, cpu, per, reqs]
        scaling.append(
            {
                "channels": n,
                "wall_s": wall.median,
                "cpu_s": cpu.median,
                "cpu_ms_per_channel": per.median,
                "requests_per_channel": reqs.median,
            }
        )
    exponents = [
        scaling_exponent(sizes, [runs[n][r].cost.cpu_s for n in sizes]) for r in range(ctx.runs)
    ]
    slope = figure("lifecycle_scaling_exponent [CPU ~ N^k]", exponents, "k", Target(1.15))
    figures.append(slope)
    return Section(
        title="Scale: lifecycle cost against the number of channels",
        figures=tuple(figures),
        json={"lifecycle_scaling": scaling, "lifecycle_scaling_exponent": slope.median},
    )
