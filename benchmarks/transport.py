"""Client CPU per request of each HTTP path, against a loopback server in another process.

    python benchmarks/transport.py [--quick] [--json out.json] [--runs 3] [-n 2000]
    python benchmarks/transport.py --profile raw_httpx -c 50      # cProfile one path

Standalone, the server is a minimal Starlette app (one route answering the small agent
body the emulator answers a query with); ``benchmarks/run.py`` points the same paths at
the emulator instead (an ``Endpoint`` naming a real agent and the emulator's
credentials). Paths (the same GET, with the headers the SDK sends: ``Authorization``,
``X-Request-Id``, ``Accept``, ``User-Agent``; the JSON body parsed with ``json.loads``):

    raw_httpx        httpx.AsyncClient, httpx's own transport          (asyncio)
    httpx_aiohttp    httpx.AsyncClient + httpx_aiohttp.AiohttpTransport (asyncio)
    httpx_ours       httpx.AsyncClient + the SDK's AiohttpTransport     (asyncio)
    httpx_sharded    httpx.AsyncClient + the SDK's ShardedTransport     (asyncio)
    raw_aiohttp      aiohttp.ClientSession: the floor                   (asyncio)
    sdk_fast         AsyncClient(fast=True).agents.get: the asyncio default (HttpCore
                     sending by aiohttp directly: ``_transports.direct.DirectClient``)
    sdk_native       AsyncClient(fast=False).agents.get (sharded httpx)
    raw_httpx_trio   httpx.AsyncClient on trio
    sdk_trio         AsyncClient().agents.get on trio (automatic → sharded httpx)

Every client has its pool (and the SDK its limiter) sized to the concurrency C; C
workers share N requests. Client CPU is ``time.process_time()`` of this process (the
server runs in a child process), after a warm-up that fills the pool. Runs are
interleaved (run 1 of every path and C, then run 2, ...) so drift spreads evenly, and
the order of the paths rotates from one repetition to the next, so no path always runs
first (on a cold machine) or last.

``sdk_overhead_ms_per_call`` is measured in-process on ``httpx.MockTransport``: blocks
of SDK calls alternate with blocks of the same request made by hand (headers, GET,
status check, ``json.loads``); the figure is the median over pairs of the difference.

The functions are importable (``benchmarks/run.py`` uses ``measure_paths``,
``summarise`` and ``measure_sdk_overhead``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import cProfile
import gc
import json
import os
import pstats
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Final

import anyio
import attrs
import httpx

from agora_stt_async import AsyncClient
from agora_stt_async import _constants as C
from agora_stt_async._http import USER_AGENT

APP_ID: Final = "bench-app"
AGENT_ID: Final = "agent-1"
AGENT_BODY: Final = {"agent_id": AGENT_ID, "status": "RUNNING", "create_ts": 1_700_000_000}

ASYNCIO_PATHS: Final = (
    "raw_httpx",
    "httpx_aiohttp",
    "httpx_ours",
    "httpx_sharded",
    "raw_aiohttp",
    "sdk_fast",
    "sdk_native",
)
TRIO_PATHS: Final = ("raw_httpx_trio", "sdk_trio")
ALL_PATHS: Final = ASYNCIO_PATHS + TRIO_PATHS
CONCURRENCY: Final = (10, 50, 200)

Call = Callable[[], Awaitable[object]]


def sdk_headers(authorization: str) -> dict[str, str]:
    """The headers the SDK sends with a request without a body, with a fresh request id
    (``_http.HttpCore.request``): a baseline sends them too, so both do the same work."""
    return {
        "Authorization": authorization,
        "X-Request-Id": f"sdk_{uuid.uuid4().hex}",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }


@attrs.frozen
class Endpoint:
    """What every path GETs: one agent of one App ID on one server, and the credentials.

    The defaults fit the minimal server of this module (which checks nothing);
    ``run.py`` names a real agent of the emulator and its credentials.
    """

    base_url: str
    app_id: str = APP_ID
    agent_id: str = AGENT_ID
    customer_id: str = "bench"
    customer_secret: str = "bench"

    @property
    def url(self) -> str:
        prefix = C.V7_PATH_PREFIX.format(app_id=self.app_id)
        return f"{self.base_url}{prefix}/agents/{self.agent_id}"

    @property
    def authorization(self) -> str:
        pair = f"{self.customer_id}:{self.customer_secret}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def headers(self) -> dict[str, str]:
        """``sdk_headers`` for this endpoint's credentials."""
        return sdk_headers(self.authorization)


def sdk_client(
    endpoint: Endpoint,
    *,
    max_in_flight: int = 64,
    fast: bool | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncClient:
    return AsyncClient(
        app_id=endpoint.app_id,
        customer_id=endpoint.customer_id,
        customer_secret=endpoint.customer_secret,
        base_url=endpoint.base_url,
        max_in_flight=max_in_flight,
        fast=fast,
        transport=transport,
    )


# --- the server --------------------------------------------------------------------------


def _minimal_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def agent(request: Request) -> JSONResponse:
        return JSONResponse(
            AGENT_BODY, headers={"X-Request-Id": request.headers.get("X-Request-Id", "")}
        )

    return Starlette(routes=[Route("/api/speech-to-text/v1/projects/{app}/agents/{agent}", agent)])


def _serve(port: int) -> None:
    import uvicorn

    uvicorn.run(
        _minimal_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="asyncio",
        lifespan="off",
        backlog=4096,
        # Longer than any client's keep-alive (httpx and aiohttp: 5 s and 15 s), so the
        # server never closes a connection just as a client reuses it.
        timeout_keep_alive=75,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def loopback_server(timeout: float = 20.0) -> Iterator[str]:
    """Start the server in a child process; yield its base URL; stop it."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", str(port)],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the clients -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_path(path: str, endpoint: Endpoint, concurrency: int) -> AsyncIterator[Call]:
    """Yield a zero-argument coroutine function doing one request on ``path``."""
    url = endpoint.url
    headers = endpoint.headers
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    if path in ("raw_httpx", "raw_httpx_trio", "httpx_aiohttp", "httpx_ours", "httpx_sharded"):
        transport: httpx.AsyncBaseTransport | None = None
        if path == "httpx_aiohttp":
            from httpx_aiohttp import AiohttpTransport as TheirTransport

            transport = TheirTransport(limits=limits)
        elif path == "httpx_ours":
            from agora_stt_async._transports.aiohttp import AiohttpTransport

            transport = AiohttpTransport(max_connections=concurrency)
        elif path == "httpx_sharded":
            from agora_stt_async._transports import ShardedTransport

            transport = ShardedTransport(limits=limits)
        async with httpx.AsyncClient(transport=transport, limits=limits) as client:

            async def call_httpx() -> object:
                response = await client.get(url, headers=headers())
                if response.status_code != 200:
                    raise RuntimeError(f"GET {url}: {response.status_code}")
                return json.loads(response.content)

            yield call_httpx
    elif path == "raw_aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def call_aiohttp() -> object:
                async with session.get(url, headers=headers()) as response:
                    if response.status != 200:
                        raise RuntimeError(f"GET {url}: {response.status}")
                    return json.loads(await response.read())

            yield call_aiohttp
    elif path in ("sdk_fast", "sdk_native", "sdk_trio"):
        fast = {"sdk_fast": True, "sdk_native": False, "sdk_trio": None}[path]
        async with sdk_client(endpoint, max_in_flight=concurrency, fast=fast) as sdk:
            agent_id = endpoint.agent_id

            async def call_sdk() -> object:
                return await sdk.agents.get(agent_id)

            yield call_sdk
    else:
        raise ValueError(f"unknown path {path!r}")


NEEDS: Final = {
    "httpx_aiohttp": "httpx-aiohttp",
    "raw_aiohttp": "aiohttp",
    "httpx_ours": "aiohttp",
    "sdk_fast": "aiohttp",
    "raw_httpx_trio": "trio",
    "sdk_trio": "trio",
}
"""The distribution each path needs beyond httpx (all in the ``dev`` extra)."""


def available(path: str) -> bool:
    """Whether the packages ``path`` needs are installed."""
    import importlib.util

    distribution = NEEDS.get(path)
    module = None if distribution is None else distribution.replace("-", "_")
    return module is None or importlib.util.find_spec(module) is not None


def backend_of(path: str) -> str:
    return "trio" if path.endswith("_trio") else "asyncio"


async def drive(call: Call, n: int, concurrency: int) -> int:
    """Make ``n`` calls with ``concurrency`` workers; return how many failed."""
    remaining = n
    failed = 0

    async def worker() -> None:
        nonlocal remaining, failed
        while remaining > 0:
            remaining -= 1
            try:
                await call()
            except Exception:  # noqa: BLE001 - counted and reported, whatever it is
                failed += 1

    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, n)):
            tg.start_soon(worker)
    return failed


@attrs.frozen
class Run:
    path: str
    concurrency: int
    n: int
    cpu_s: float
    wall_s: float
    failed: int = 0

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_s * 1000 / self.n

    @property
    def requests_per_s(self) -> float:
        return self.n / self.wall_s


def measure_once(path: str, endpoint: Endpoint, concurrency: int, n: int) -> Run:
    """One run: a fresh client, a warm-up filling the pool, then ``n`` timed calls."""

    async def main() -> Run:
        async with open_path(path, endpoint, concurrency) as call:
            await drive(call, min(max(2 * concurrency, 100), n), concurrency)  # fills the pool
            gc.collect()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            failed = await drive(call, n, concurrency)
            cpu1, wall1 = time.process_time(), time.perf_counter()
        return Run(path, concurrency, n, cpu1 - cpu0, wall1 - wall0, failed)

    return anyio.run(main, backend=backend_of(path))


def rotated(items: Sequence[str], by: int) -> list[str]:
    """``items`` rotated left by ``by`` (modulo their number)."""
    if not items:
        return []
    k = by % len(items)
    return [*items[k:], *items[:k]]


def measure_paths(
    endpoint: Endpoint,
    *,
    paths: Sequence[str] = ALL_PATHS,
    concurrencies: Sequence[int] = CONCURRENCY,
    n: int = 2000,
    runs: int = 3,
    progress: Callable[[Run], None] | None = None,
) -> list[Run]:
    """Every (installed) path at every concurrency, ``runs`` times, interleaved; the
    order of the paths rotates by one each repetition."""
    paths = [p for p in paths if available(p)]
    results: list[Run] = []
    for repetition in range(runs):
        for concurrency in concurrencies:
            for path in rotated(paths, repetition):
                run = measure_once(path, endpoint, concurrency, n)
                results.append(run)
                if progress is not None:
                    progress(run)
    return results


def compare(
    a: str, b: str, endpoint: Endpoint, *, concurrency: int, n: int = 1000, pairs: int = 8
) -> dict[str, float]:
    """Paired runs of ``a`` and ``b`` alternating (ABBA...): CPU ratio a/b per pair.

    Neighbouring runs see the same machine, so the ratio is steadier than two medians
    taken minutes apart on a shared machine.
    """
    ratios_: list[float] = []
    for i in range(pairs):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        x = measure_once(first, endpoint, concurrency, n)
        y = measure_once(second, endpoint, concurrency, n)
        ra, rb = (x, y) if first == a else (y, x)
        ratios_.append(ra.cpu_ms_per_request / rb.cpu_ms_per_request)
    return {
        "concurrency": concurrency,
        "ratio_min": round(min(ratios_), 3),
        "ratio_median": round(statistics.median(ratios_), 3),
        "ratio_max": round(max(ratios_), 3),
        "pairs": pairs,
    }


@attrs.frozen
class Summary:
    path: str
    concurrency: int
    cpu_ms: tuple[float, float, float]
    """min, median, max client CPU ms per request."""
    rps: tuple[float, float, float]
    """min, median, max requests per second."""
    failed: int = 0
    """calls that raised, over all runs (each one a bug to look at)."""


def _three(values: Sequence[float]) -> tuple[float, float, float]:
    return (min(values), statistics.median(values), max(values))


def summarise(runs: Sequence[Run]) -> dict[tuple[str, int], Summary]:
    groups: dict[tuple[str, int], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.path, run.concurrency), []).append(run)
    return {
        key: Summary(
            key[0],
            key[1],
            _three([r.cpu_ms_per_request for r in group]),
            _three([r.requests_per_s for r in group]),
            sum(r.failed for r in group),
        )
        for key, group in groups.items()
    }


def ratios(
    summary: dict[tuple[str, int], Summary], numerator: str, denominator: str
) -> dict[int, float]:
    """Median CPU of ``numerator`` / median CPU of ``denominator``, per concurrency."""
    out: dict[int, float] = {}
    for (path, concurrency), value in summary.items():
        other = summary.get((denominator, concurrency))
        if path == numerator and other is not None:
            out[concurrency] = round(value.cpu_ms[1] / other.cpu_ms[1], 3)
    return dict(sorted(out.items()))


# --- SDK overhead on MockTransport -------------------------------------------------------


async def _overhead(rounds: int, block: int) -> dict[str, float]:
    body = json.dumps(AGENT_BODY).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Request-Id": request.headers.get("X-Request-Id", ""),
            },
        )

    mock = httpx.MockTransport(handler)
    endpoint = Endpoint(C.DEFAULT_BASE_URL)
    url = endpoint.url
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with (
        sdk_client(endpoint, transport=mock) as sdk,
        httpx.AsyncClient(transport=mock, limits=limits) as client,
    ):

        async def by_sdk() -> None:
            for _ in range(block):
                await sdk.agents.get(AGENT_ID)

        async def by_hand() -> None:
            for _ in range(block):
                response = await client.request("GET", url, headers=endpoint.headers())
                if response.status_code != 200:
                    raise RuntimeError(response.status_code)
                json.loads(response.content)

        async def timed(fn: Callable[[], Awaitable[None]]) -> float:
            start = time.process_time()
            await fn()
            return time.process_time() - start

        await by_sdk()
        await by_hand()
        sdk_times: list[float] = []
        hand_times: list[float] = []
        diffs: list[float] = []
        gc.collect()
        for i in range(rounds):
            if i % 2:
                a, b = await timed(by_sdk), await timed(by_hand)
            else:
                b, a = await timed(by_hand), await timed(by_sdk)
            sdk_times.append(a)
            hand_times.append(b)
            diffs.append(a - b)
    ms = 1000 / block
    return {
        "sdk_overhead_ms_per_call": round(statistics.median(diffs) * ms, 4),
        "sdk_ms_per_call_mock": round(statistics.median(sdk_times) * ms, 4),
        "hand_ms_per_call_mock": round(statistics.median(hand_times) * ms, 4),
        "rounds": rounds,
        "block": block,
    }


def measure_sdk_overhead(rounds: int = 40, block: int = 200) -> dict[str, float]:
    """SDK CPU per call minus hand-made httpx CPU per call, on MockTransport (asyncio)."""
    return anyio.run(_overhead, rounds, block, backend="asyncio")


# --- profiling ---------------------------------------------------------------------------


def profile(path: str, endpoint: Endpoint, concurrency: int, n: int, top: int = 30) -> str:
    """cProfile ``n`` calls on ``path``; the top functions by own time, as text."""
    profiler = cProfile.Profile()

    async def main() -> None:
        async with open_path(path, endpoint, concurrency) as call:
            await drive(call, max(2 * concurrency, 100), concurrency)
            profiler.enable()
            await drive(call, n, concurrency)
            profiler.disable()

    anyio.run(main, backend=backend_of(path))
    out = _StringSink()
    stats = pstats.Stats(profiler, stream=out)  # type: ignore[arg-type]
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.text()


class _StringSink:
    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, text: str) -> int:
        self._parts.append(text)
        return len(text)

    def text(self) -> str:
        return "".join(self._parts)


# --- report ------------------------------------------------------------------------------


def report(runs: Sequence[Run], overhead: dict[str, float] | None) -> dict[str, object]:
    summary = summarise(runs)
    out: dict[str, object] = {
        "results": [
            {
                "path": s.path,
                "concurrency": s.concurrency,
                "cpu_ms_per_request": {
                    "min": s.cpu_ms[0],
                    "median": s.cpu_ms[1],
                    "max": s.cpu_ms[2],
                },
                "requests_per_s": {"min": s.rps[0], "median": s.rps[1], "max": s.rps[2]},
                "failed": s.failed,
            }
            for s in summary.values()
        ],
        "sdk_vs_aiohttp_cpu_ratio": ratios(summary, "sdk_fast", "raw_aiohttp"),
        "sdk_vs_raw_cpu_ratio": ratios(summary, "sdk_fast", "raw_httpx"),
        "sdk_native_vs_raw_cpu_ratio": ratios(summary, "sdk_native", "raw_httpx"),
        "sdk_trio_vs_raw_trio_cpu_ratio": ratios(summary, "sdk_trio", "raw_httpx_trio"),
        "httpx_ours_vs_httpx_aiohttp_cpu_ratio": ratios(summary, "httpx_ours", "httpx_aiohttp"),
        "httpx_sharded_vs_raw_cpu_ratio": ratios(summary, "httpx_sharded", "raw_httpx"),
    }
    sdk = {c: s.cpu_ms[1] for (p, c), s in summary.items() if p == "sdk_fast"}
    if sdk:
        out["sdk_cpu_flatness"] = round(sdk[max(sdk)] / sdk[min(sdk)], 3)
    if overhead is not None:
        out.update(overhead)
    return out


def print_table(runs: Sequence[Run]) -> None:
    summary = summarise(runs)
    concurrencies = sorted({c for _, c in summary})
    paths = [p for p in ALL_PATHS if any(p == q for q, _ in summary)]
    head = "path".ljust(16) + "".join(
        f"C={c} cpu ms/req (min/med/max)".rjust(30) + f"C={c} req/s".rjust(12)
        for c in concurrencies
    )
    print(head)
    for path in paths:
        line = path.ljust(16)
        for c in concurrencies:
            s = summary.get((path, c))
            if s is None:
                line += " " * 42
                continue
            lo, mid, hi = s.cpu_ms
            line += f"{lo:.3f} / {mid:.3f} / {hi:.3f}".rjust(30) + f"{s.rps[1]:.0f}".rjust(12)
        print(line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="n=500, 1 run")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("-n", type=int, default=2000, help="requests per run (default 2000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("-c", "--concurrency", type=int, action="append")
    parser.add_argument("--paths", help="comma-separated subset of: " + ",".join(ALL_PATHS))
    parser.add_argument("--profile", metavar="PATH", help="cProfile one path instead")
    parser.add_argument("--compare", metavar="A,B", help="paired CPU ratio A/B instead")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--no-overhead", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve)
        return 0
    n, runs = (500, 1) if args.quick else (args.n, args.runs)
    concurrencies = tuple(args.concurrency or CONCURRENCY)
    paths = tuple(args.paths.split(",")) if args.paths else ALL_PATHS
    with loopback_server() as base_url:
        endpoint = Endpoint(base_url)
        if args.profile:
            print(profile(args.profile, endpoint, concurrencies[0], n))
            return 0
        if args.compare:
            a, b = args.compare.split(",")
            for c in concurrencies:
                print(json.dumps(compare(a, b, endpoint, concurrency=c, n=n, pairs=args.pairs)))
            return 0
        results = measure_paths(
            endpoint,
            paths=paths,
            concurrencies=concurrencies,
            n=n,
            runs=runs,
            progress=lambda r: print(
                f"  {r.path:15} C={r.concurrency:<4} {r.cpu_ms_per_request:.3f} ms/req "
                f"{r.requests_per_s:7.0f} req/s" + (f" {r.failed} FAILED" if r.failed else ""),
                file=sys.stderr,
            ),
        )
    overhead = (
        None if args.no_overhead else measure_sdk_overhead(*((10, 200) if args.quick else ()))
    )
    print_table(results)
    figures = report(results, overhead)
    for key, value in figures.items():
        if key != "results":
            print(f"{key}: {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
