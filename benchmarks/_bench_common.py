"""What the benchmark sections of ``run.py`` share: sizes, figures, targets, the emulator.

A section is a function ``(Context) -> Section``. It repeats its own measurements
``context.runs`` times (interleaving the SDK and its baseline where it compares them),
and returns one ``Figure`` per number it measured (every run's value, so the table can
show min / median / max) plus the JSON it contributes (medians, under the documented
keys). A section that cannot run here raises ``SectionSkipped`` with the reason; one
that runs without part of its comparison says so with ``Context.warn``. ``run.py``
keeps the list of sections; a new figure is a new function there.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Final, Literal

import attrs
import httpx

from agora_stt_async import AsyncClient, JoinRequest, RtcConfig
from agora_stt_async import _constants as C

APP_ID: Final = C.EMULATOR_APP_ID
CUSTOMER_ID: Final = C.EMULATOR_CUSTOMER_ID
CUSTOMER_SECRET: Final = C.EMULATOR_CUSTOMER_SECRET
AUTHORIZATION: Final = (
    "Basic " + base64.b64encode(f"{CUSTOMER_ID}:{CUSTOMER_SECRET}".encode()).decode()
)
V7_PREFIX: Final = C.V7_PATH_PREFIX.format(app_id=APP_ID)

START_DELAY_S: Final = 0.1
"""The emulator's STARTING → RUNNING delay in every section (small: we time the client)."""
STOP_DELAY_S: Final = 0.1
"""The emulator's STOPPING → STOPPED delay."""


# --- sizes -------------------------------------------------------------------------------


@attrs.frozen
class Sizes:
    """How much work each section does; ``FULL`` is the issue's, ``QUICK`` a quick look."""

    request_n: int
    """Requests per run and path in the per-request section."""
    request_concurrency: tuple[int, ...]
    """Concurrencies of the per-request section (the first 50 is the headline)."""
    overhead_rounds: int
    """Paired SDK/by-hand blocks per run of the MockTransport overhead."""
    overhead_block: int
    """Calls per block of the MockTransport overhead."""
    lifecycle_channels: int
    """Channels per lifecycle run (SDK and hand-written)."""
    scaling_channels: tuple[int, ...]
    """Channels per run of the scaling section."""
    list_small: int
    """Items of the first pagination memory reading (10k in the full run)."""
    list_large: int
    """Items iterated by the pagination section (100k in the full run)."""
    tasks: int
    """Tasks tracked by one session in the memory section."""
    compare_transports: bool = False
    """Also measure the transport candidates (httpx-aiohttp, the SDK's own adapter) and
    both trio paths in the per-request section: the numbers behind the choice of path."""
    limiter_requests: int = 2000
    """Requests per round of the rate limiter's overhead (``benchmarks/limiter.py``)."""
    limiter_rounds: int = 7
    """Interleaved rounds (limiter on / off) per run of the limiter's overhead."""
    warm_up: bool = True
    """Run each lifecycle once, untimed, before measuring (off only for the smoke test)."""
    store_lifecycles: int = 0
    """Lifecycles per run and store of the store cost section (0: the section is left
    out; ``benchmarks/store_cost.py``)."""
    store_concurrency: int = 50
    """Lifecycles in flight for the store cost section's throughput."""


FULL: Final = Sizes(
    request_n=3000,
    request_concurrency=(10, 50, 200),
    overhead_rounds=14,
    overhead_block=200,
    lifecycle_channels=1000,
    scaling_channels=(100, 1000, 10_000),
    list_small=10_000,
    list_large=100_000,
    tasks=10_000,
    compare_transports=True,
    store_lifecycles=200,
)
QUICK: Final = Sizes(
    request_n=150,
    request_concurrency=(50,),
    overhead_rounds=4,
    overhead_block=80,
    lifecycle_channels=25,
    scaling_channels=(10, 30, 90),
    list_small=1000,
    list_large=3000,
    tasks=250,
    limiter_requests=200,
    limiter_rounds=5,
)
"""For a check by hand: every section but the store cost's, the same repetitions and
keys, about 30 s on 2 idle cores (raw httpx at C=50, about 8 ms of CPU per request,
takes the most). The list memory reading at 1k/3k items is noisier than the full run's
10k/100k: URL caches of the libraries underneath (yarl, urllib, re) fill during the
first few hundred pages."""
TOY: Final = Sizes(
    request_n=40,
    request_concurrency=(10,),
    overhead_rounds=2,
    overhead_block=20,
    lifecycle_channels=4,
    scaling_channels=(2, 4),
    list_small=50,
    list_large=250,
    tasks=40,
    compare_transports=True,
    limiter_requests=50,
    limiter_rounds=3,
    warm_up=False,
    store_lifecycles=5,
    store_concurrency=5,
)
"""For the smoke test: every code path, a few seconds."""


# --- figures -----------------------------------------------------------------------------


@attrs.frozen
class Target:
    """A pass/miss line: ``value <= limit`` (or ``>=``), with an optional stricter goal."""

    limit: float
    op: Literal["<=", ">="] = "<="
    goal: float | None = None

    def passes(self, value: float) -> bool:
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        goal = f" (goal {self.goal:g})" if self.goal is not None else ""
        return f"{self.op} {self.limit:g}{goal}"


@attrs.frozen
class Figure:
    """One measured number: its value in every run, a unit and maybe a target."""

    name: str
    """Row label in the table (the JSON key, with ``[C=50]``-style qualifiers)."""
    values: tuple[float, ...]
    unit: str = ""
    target: Target | None = None
    digits: int = 3

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def high(self) -> float:
        return max(self.values)

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "PASS" if self.target.passes(self.median) else "MISS"

    def rounded(self, value: float) -> float:
        return round(value, self.digits)

    def stats(self) -> dict[str, object]:
        out: dict[str, object] = {
            "min": self.rounded(self.low),
            "median": self.rounded(self.median),
            "max": self.rounded(self.high),
            "runs": [self.rounded(v) for v in self.values],
        }
        if self.unit:
            out["unit"] = self.unit
        if self.target is not None:
            out["target"] = str(self.target)
            out["verdict"] = self.verdict
        return out


def figure(
    name: str,
    values: Sequence[float],
    unit: str = "",
    target: Target | None = None,
    digits: int = 3,
) -> Figure:
    if not values:
        raise ValueError(f"figure {name!r} has no values")
    return Figure(name, tuple(float(v) for v in values), unit, target, digits)


@attrs.frozen
class Section:
    """What one section measured: figures for the table, JSON for ``--json``, notes."""

    title: str
    figures: tuple[Figure, ...]
    json: dict[str, object]
    notes: tuple[str, ...] = ()


class SectionSkipped(Exception):
    """A section cannot run here (its reason is printed and written with the results)."""


@attrs.define
class Context:
    """Everything a section needs: sizes, repetitions, the emulator, a progress line."""

    sizes: Sizes
    runs: int
    quick: bool
    log: Callable[[str], None]
    stack: contextlib.ExitStack = attrs.field(factory=contextlib.ExitStack)
    warnings: list[str] = attrs.field(factory=list)
    """What the run measured without (a comparison path whose package is missing, ...)."""
    _emulator_url: str | None = None

    def warn(self, message: str) -> None:
        """Say that part of a comparison is missing: on stderr even with ``--quiet``, and
        in the results."""
        self.warnings.append(message)
        print(f"WARNING: {message}", file=sys.stderr, flush=True)

    def emulator(self) -> str:
        """The base URL of the emulator (started on first use, in a child process)."""
        if self._emulator_url is None:
            from agora_stt_async import emulator
            from agora_stt_async.emulator import EmulatorConfig

            config = EmulatorConfig(start_delay=START_DELAY_S, stop_delay=STOP_DELAY_S)
            self._emulator_url = self.stack.enter_context(
                emulator.serve(subprocess=True, config=config, seed="benchmarks")
            )
        return self._emulator_url

    def close(self) -> None:
        self.stack.close()
        self._emulator_url = None


# --- measuring ---------------------------------------------------------------------------


@attrs.frozen
class Cost:
    """Client-process CPU seconds (``time.process_time``) and wall seconds of one span."""

    cpu_s: float
    wall_s: float


@contextlib.contextmanager
def span() -> Iterator[list[Cost]]:
    """``with span() as cost:`` — ``cost[0]`` is the span's ``Cost`` once it ends."""
    out: list[Cost] = []
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    yield out
    out.append(Cost(time.process_time() - cpu, time.perf_counter() - wall))


def sdk_client(base_url: str, *, fast: bool | None = None, max_in_flight: int = 64) -> AsyncClient:
    """An ``AsyncClient`` for the emulator's default App ID and credentials."""
    return AsyncClient(
        app_id=APP_ID,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        base_url=base_url,
        fast=fast,
        max_in_flight=max_in_flight,
    )


def join_request(name: str, channel: str) -> JoinRequest:
    """A minimal v7 join for channel ``channel``."""
    return JoinRequest(
        name=name,
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=channel, pub_bot_uid="1000"),
    )


def join_body(name: str, channel: str) -> bytes:
    """The same join, as the hand-written baseline sends it."""
    return json.dumps(
        {
            "name": name,
            "languages": ["en-US"],
            "rtcConfig": {"channelName": channel, "pubBotUid": "1000"},
        },
        separators=(",", ":"),
    ).encode()


# --- the emulator's control API ----------------------------------------------------------


async def emulator_reset(base_url: str) -> None:
    """Forget every agent and zero the request counters."""
    async with httpx.AsyncClient(base_url=base_url) as control:
        (await control.post("/_emulator/reset")).raise_for_status()


async def emulator_state(base_url: str) -> dict[str, object]:
    """``GET /_emulator/state``: counts by status and requests per route."""
    async with httpx.AsyncClient(base_url=base_url) as control:
        response = await control.get("/_emulator/state")
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body


def requests_made(state: dict[str, object]) -> int:
    """API requests the emulator served (control requests are not counted)."""
    requests = state.get("requests")
    assert isinstance(requests, dict)
    return sum(int(n) for n in requests.values())


def agents_in(state: dict[str, object], status: str) -> int:
    agents = state.get("agents")
    assert isinstance(agents, dict)
    by_status = agents.get("by_status", {})
    assert isinstance(by_status, dict)
    return int(by_status.get(status, 0))
