"""Per-request section: client CPU per ``client.agents.get`` against doing it by hand.

Every path GETs one real agent (joined first, RUNNING) of the emulator, which runs on
loopback in a child process (uvicorn, one worker: ``Context.emulator``), with Basic
auth; the baselines send the headers the SDK sends (``Authorization``,
``X-Request-Id``, ``Accept``, ``User-Agent``). The paths and the interleaved runs are
``benchmarks/transport.py``'s (the order of the paths rotates each repetition). This
section picks the paths the issue compares and turns their runs into the issue's keys:

- ``sdk_vs_raw_cpu_ratio``: the SDK on its default path (``fast=None``: aiohttp
  directly on asyncio when installed) over raw ``httpx.AsyncClient`` doing the same GETs
  and ``json.loads``, at concurrency 50 (the headline);
- ``sdk_httpx_vs_raw_cpu_ratio``: the SDK on httpx's own transport (``fast=False``)
  over raw httpx: like for like;
- ``sdk_vs_aiohttp_cpu_ratio``: the SDK's default over raw aiohttp (the floor), an
  object keyed by concurrency (target <= 1.5 each), and ``sdk_cpu_flatness``: the SDK's
  CPU per request at the largest concurrency over the smallest's (target <= 1.3);
- full run only: ``sdk_trio_vs_raw_cpu_ratio`` (the SDK on trio over raw httpx on trio,
  target <= 1.10) and ``httpx_ours_vs_httpx_aiohttp_cpu_ratio`` (an httpx client over
  the SDK's ``AiohttpTransport`` over one over the ``httpx-aiohttp`` package's), keyed by
  concurrency; ``paths``: CPU ms per request and requests/s of every path and C;
- ``sdk_overhead_ms_per_call``: the SDK's own CPU per call on ``httpx.MockTransport``,
  from paired, interleaved blocks against the same request made by hand.

Ratios are taken per repetition (the SDK's run against the baseline's run of the same
repetition and concurrency, which ran next to it), then summarised. A path whose
package is missing is left out with a warning (``Context.warn``), never silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import anyio
import httpx
import transport
from _bench_common import (
    APP_ID,
    AUTHORIZATION,
    CUSTOMER_ID,
    CUSTOMER_SECRET,
    V7_PREFIX,
    Context,
    Figure,
    Section,
    Target,
    figure,
    join_body,
)

RAW: Final = "raw_httpx"
SDK_HTTPX: Final = "sdk_native"
AIOHTTP: Final = "raw_aiohttp"
THEIRS: Final = "httpx_aiohttp"
OURS: Final = "httpx_ours"
RAW_TRIO: Final = "raw_httpx_trio"
SDK_TRIO: Final = "sdk_trio"
HEADLINE_C: Final = 50
CPU_RATIO_TARGET: Final = Target(1.10, goal=1.05)
AIOHTTP_RATIO_TARGET: Final = Target(1.5)
"""Issue 8: SDK CPU per request <= 1.5x raw aiohttp at every concurrency (asyncio)."""
FLATNESS_TARGET: Final = Target(1.3)
"""Issue 8: SDK CPU per request at the largest concurrency within 1.3x the smallest's."""
TRIO_TARGET: Final = Target(1.10)
"""Issue 8: on trio, no worse than 1.10x raw httpx."""
OVERHEAD_TARGET: Final = Target(0.10)


def sdk_default_path() -> str:
    """transport.py's path for the SDK's default (``fast=None``) on asyncio."""
    return "sdk_fast" if transport.available("sdk_fast") else SDK_HTTPX


async def running_agent(base_url: str) -> transport.Endpoint:
    """Join one agent on the emulator, wait until it is RUNNING; the endpoint to GET."""
    headers = {"Authorization": AUTHORIZATION, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10.0) as http:
        response = await http.post(
            f"{V7_PREFIX}/join", content=join_body("bench-requests", "bench-requests")
        )
        response.raise_for_status()
        agent_id = str(response.json()["agent_id"])
        with anyio.fail_after(30):
            while True:
                got = await http.get(f"{V7_PREFIX}/agents/{agent_id}")
                got.raise_for_status()
                if got.json()["status"] == "RUNNING":
                    break
                await anyio.sleep(0.05)
    return transport.Endpoint(
        base_url,
        app_id=APP_ID,
        agent_id=agent_id,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
    )


def _by_key(runs: Sequence[transport.Run]) -> dict[tuple[str, int], list[transport.Run]]:
    groups: dict[tuple[str, int], list[transport.Run]] = {}
    for run in runs:
        groups.setdefault((run.path, run.concurrency), []).append(run)
    return groups


def _paired(
    groups: dict[tuple[str, int], list[transport.Run]], a: str, b: str, c: int
) -> list[float]:
    return [
        x.cpu_ms_per_request / y.cpu_ms_per_request
        for x, y in zip(groups[(a, c)], groups[(b, c)], strict=True)
    ]


def choose_paths(ctx: Context, sdk: str) -> list[str]:
    """The installed paths this run compares; each one missing is said (``ctx.warn``)."""
    if sdk != "sdk_fast":
        ctx.warn(
            "aiohttp is not installed: the SDK's default is measured on httpx's transport "
            "(sdk_native), not on its asyncio default (sdk_fast)"
        )
    wanted = [RAW, sdk, SDK_HTTPX, AIOHTTP]
    if ctx.sizes.compare_transports:
        wanted += [THEIRS, OURS, RAW_TRIO, SDK_TRIO]
    paths: list[str] = []
    for path in dict.fromkeys(wanted):
        if transport.available(path):
            paths.append(path)
        else:
            ctx.warn(
                f"per-request path {path} left out: {transport.NEEDS[path]} is not installed "
                "(pip install -e '.[dev]'); its comparisons are missing from these results"
            )
    return paths


def requests_section(ctx: Context) -> Section:
    """Issue 6 figure 1 and issue 8's figures."""
    sizes = ctx.sizes
    sdk = sdk_default_path()
    paths = choose_paths(ctx, sdk)
    concurrencies = tuple(sorted(sizes.request_concurrency, key=lambda c: c != HEADLINE_C))
    endpoint = anyio.run(running_agent, ctx.emulator())
    runs = transport.measure_paths(
        endpoint,
        paths=paths,
        concurrencies=concurrencies,
        n=sizes.request_n,
        runs=ctx.runs,
        progress=lambda r: ctx.log(
            f"requests {r.path:14} C={r.concurrency:<4} {r.cpu_ms_per_request:.3f} ms CPU/req "
            f"{r.requests_per_s:7.0f} req/s" + (f" {r.failed} FAILED" if r.failed else "")
        ),
    )
    failed = sum(r.failed for r in runs)
    if failed:
        raise RuntimeError(f"{failed} requests failed in the per-request section")
    groups = _by_key(runs)
    head = HEADLINE_C if HEADLINE_C in concurrencies else concurrencies[0]
    ratio = figure(
        f"sdk_vs_raw_cpu_ratio [C={head}]", _paired(groups, sdk, RAW, head), "x", CPU_RATIO_TARGET
    )
    like = figure(
        f"sdk_httpx_vs_raw_cpu_ratio [fast=False, C={head}]",
        _paired(groups, SDK_HTTPX, RAW, head),
        "x",
        CPU_RATIO_TARGET,
    )
    figures: list[Figure] = [ratio, like]
    keyed: dict[str, dict[int, float]] = {}

    def by_concurrency(key: str, a: str, b: str, target: Target | None) -> None:
        for c in sorted(concurrencies):
            if (a, c) in groups and (b, c) in groups:
                fig = figure(f"{key} [C={c}]", _paired(groups, a, b, c), "x", target)
                figures.append(fig)
                keyed.setdefault(key, {})[c] = fig.median

    by_concurrency("sdk_vs_aiohttp_cpu_ratio", sdk, AIOHTTP, AIOHTTP_RATIO_TARGET)
    low_c, high_c = min(concurrencies), max(concurrencies)
    flatness: Figure | None = None
    if low_c != high_c:
        flatness = figure(
            f"sdk_cpu_flatness [C={high_c} / C={low_c}]",
            [
                x.cpu_ms_per_request / y.cpu_ms_per_request
                for x, y in zip(groups[(sdk, high_c)], groups[(sdk, low_c)], strict=True)
            ],
            "x",
            FLATNESS_TARGET,
        )
        figures.append(flatness)
    by_concurrency("sdk_trio_vs_raw_cpu_ratio", SDK_TRIO, RAW_TRIO, TRIO_TARGET)
    by_concurrency("httpx_ours_vs_httpx_aiohttp_cpu_ratio", OURS, THEIRS, None)
    if sizes.compare_transports:
        by_concurrency("sdk_vs_raw_cpu_ratio_by_concurrency", sdk, RAW, CPU_RATIO_TARGET)
    per_path: dict[str, dict[int, dict[str, float]]] = {}
    for path in paths:
        for c in sorted(concurrencies):
            cpu = figure(
                f"cpu_ms_per_request [{path}, C={c}]",
                [r.cpu_ms_per_request for r in groups[(path, c)]],
                "ms",
            )
            rps = figure(
                f"requests_per_s [{path}, C={c}]",
                [r.requests_per_s for r in groups[(path, c)]],
                "req/s",
                digits=0,
            )
            figures += [cpu, rps]
            per_path.setdefault(path, {})[c] = {
                "cpu_ms_per_request": cpu.rounded(cpu.median),
                "requests_per_s": rps.rounded(rps.median),
            }
    overheads = [
        transport.measure_sdk_overhead(sizes.overhead_rounds, sizes.overhead_block)
        for _ in range(ctx.runs)
    ]
    for o in overheads:
        ctx.log(
            f"overhead: SDK {o['sdk_ms_per_call_mock']:.4f} ms/call, by hand "
            f"{o['hand_ms_per_call_mock']:.4f} ms/call on MockTransport"
        )
    overhead = figure(
        "sdk_overhead_ms_per_call [MockTransport, paired]",
        [o["sdk_overhead_ms_per_call"] for o in overheads],
        "ms",
        OVERHEAD_TARGET,
        digits=4,
    )
    figures += [
        overhead,
        figure(
            "sdk_ms_per_call_mock", [o["sdk_ms_per_call_mock"] for o in overheads], "ms", digits=4
        ),
        figure(
            "hand_ms_per_call_mock", [o["hand_ms_per_call_mock"] for o in overheads], "ms", digits=4
        ),
    ]
    out: dict[str, object] = {
        "request_n": sizes.request_n,
        "request_concurrency": head,
        "sdk_path": sdk,
        "sdk_vs_raw_cpu_ratio": ratio.median,
        "sdk_httpx_vs_raw_cpu_ratio": like.median,
        **keyed,
        "sdk_overhead_ms_per_call": overhead.median,
        "paths": per_path,
    }
    if flatness is not None:
        out["sdk_cpu_flatness"] = flatness.median
    notes = (
        f"`{sdk}` is the SDK's default on asyncio (`AsyncClient()`, `fast=None`); "
        "`sdk_native` is `fast=False` (httpx's own transport, sharded); `raw_httpx` a "
        "shared `httpx.AsyncClient` with its pool sized to C; `raw_aiohttp` the floor; "
        "`httpx_aiohttp` / `httpx_ours` an `httpx.AsyncClient` over the `httpx-aiohttp` "
        "package's transport / over the SDK's own `AiohttpTransport`; `*_trio` the same "
        "on trio. Every run: C workers share N GETs of one RUNNING agent of the emulator "
        "(a child process, uvicorn, one worker; Basic auth), the baselines sending the "
        "SDK's headers and parsing the JSON body, after a warm-up that fills the pool; "
        "client CPU is `time.process_time()`; the order of the paths rotates each "
        "repetition.",
    )
    return Section(
        title=f"Per request: client.agents.get vs raw httpx ({sizes.request_n} requests per run)",
        figures=tuple(figures),
        json=out,
        notes=notes,
    )
