"""``agora-stt demo`` and ``agora-stt emulator``.

The demo runs every channel through the whole lifecycle, concurrently, through one
``Session``: start, wait until running, update the languages, list the agents back
through the cursor, stop. With no base URL it serves the emulator in process (with
throw-away credentials it makes up, so nothing is read from the environment and nothing
secret exists to print). At the end it counts what is still running on the service:
``leaked`` must be 0 and every stop confirmed, faults or not, or the exit status is 1.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final, Literal

import anyio
import attrs
import click
import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agora_stt_async import (
    AgentStatus,
    AgoraSTTError,
    AsyncClient,
    JoinRequest,
    LegacyStartRequest,
    LegacyTaskStatus,
    NotFoundError,
    RetryBudgetConfig,
    RetryPolicy,
    RtcConfig,
    Session,
    StopIncompleteError,
    TaskHandle,
    emulator,
)
from agora_stt_async._cli import _agents, _common, _render
from agora_stt_async._cli._common import Settings, connection_options_defaulting_to, json_option
from agora_stt_async.state import TaskRecord

ApiChoice = Literal["v7", "legacy", "both"]

START_LANGUAGES: Final = ("en-US",)
UPDATED_LANGUAGES: Final = ("en-US", "es-ES")
WAIT_RUNNING_S: Final = 60.0
STOP_CONFIRM_S: Final = 60.0
LIST_PAGE_SIZE: Final = 50
REMOTE_UPDATE_DELAY_S: Final = 5.0
"""Wait between running and the update against a real service (spec §4.6: 5 s after join)."""

IN_PROCESS_BASE_URL: Final = "http://in-process-emulator.invalid"
"""The base URL the in-process demo's client logs: requests never leave the process (an
in-memory transport), and ``.invalid`` can name no real host (RFC 2606), so a ``-v`` log
cannot be mistaken for traffic to Agora."""

DEMO_EMULATOR: Final = emulator.EmulatorConfig(start_delay=0.3, stop_delay=0.2)
"""Agents come up in 0.3 s and go down in 0.2 s (the real service takes seconds)."""

FAULT_KINDS: Final[Mapping[emulator.FaultKind, float]] = {
    "500": 1.0,
    "502": 1.0,
    "503": 2.0,
    "504": 1.0,
    "429": 1.0,
    "code20": 1.0,
    "latency": 2.0,
    "drop": 1.0,
}
"""What ``--fault-rate`` injects: every kind the emulator knows, dropped responses too
(the case where a start may have happened without the client hearing of it)."""

DEMO_RETRY: Final = RetryPolicy(
    attempts=6,
    wait_initial=0.05,
    wait_max=0.5,
    retry_after_cap=2.0,
    budget=RetryBudgetConfig(ratio=0.5, min_per_s=50.0),
)
"""Short waits, so a demo with faults finishes in seconds; six attempts, so a call fails
only when all six meet a fault (0.2**6 = 6e-5 at ``--fault-rate 0.2``); the retry
budget stays on, sized for a fault rate of tens of percent (the documented 3 s / 6 s
waits of Agora's code 20 and 5xx still apply)."""

LIVE_AGENT: Final = frozenset(_agents.LIVE_STATES)
LIVE_TASK: Final = frozenset(
    s for s in LegacyTaskStatus if not s.is_terminal and s is not LegacyTaskStatus.STOPPING
)
"""Statuses that count as "still running" (STOPPING does not: it ends by itself)."""


def fault_config(rate: float) -> emulator.FaultConfig | None:
    """The demo's fault mix at ``rate`` (``None`` for 0)."""
    if rate <= 0:
        return None
    return emulator.FaultConfig(rate=rate, kinds=dict(FAULT_KINDS), retry_after=1, latency=0.2)


# --- the summary -----------------------------------------------------------------------------


@attrs.define
class Tally:
    channels: int = 0
    started: int = 0
    running: int = 0
    updated: int = 0
    listed: int | None = 0
    """``None`` when no channel runs on v7 (the legacy API has no list endpoint)."""
    stopped: int = 0
    leaked: int = 0
    errors: Counter[str] = attrs.field(factory=Counter)
    failed_channels: set[str] = attrs.field(factory=set)

    def fail(self, key: str, step: str, error: BaseException) -> None:
        self.failed_channels.add(key)
        self.errors[f"{step}: {type(error).__name__}"] += 1


def summary(
    tally: Tally,
    client: AsyncClient,
    *,
    api: ApiChoice,
    fault_rate: float,
    target: str,
    wall_s: float,
    faults_injected: int | None,
    stop_incomplete: int,
) -> dict[str, object]:
    stats = client.statistics()
    latency = {
        op: {
            "calls": s.calls,
            "retries": s.retries,
            "errors": s.errors,
            "p50_ms": _ms(s.p50_ms),
            "p99_ms": _ms(s.p99_ms),
        }
        for op, s in stats.by_operation.items()
    }
    return {
        "channels": tally.channels,
        "api": api,
        "target": target,
        "fault_rate": fault_rate,
        "started": tally.started,
        "running": tally.running,
        "updated": tally.updated,
        "listed": tally.listed,
        "stopped": tally.stopped,
        "leaked": tally.leaked,
        "errors": len(tally.failed_channels),
        "errors_by_step": dict(sorted(tally.errors.items())),
        "stop_incomplete": stop_incomplete,
        "requests": stats.requests,
        "retries": stats.retries,
        "failed_requests": stats.errors,
        "faults_injected": faults_injected,
        "latency_ms": latency,
        "wall_s": round(wall_s, 3),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def print_summary(data: Mapping[str, object]) -> None:
    rows = [
        ("channels", data["channels"]),
        ("api", data["api"]),
        ("service", data["target"]),
        ("fault rate", data["fault_rate"]),
        ("started", data["started"]),
        ("running", data["running"]),
        ("updated", data["updated"]),
        ("listed back", data["listed"]),
        ("stopped", data["stopped"]),
        ("still running (leaked)", data["leaked"]),
        ("channels with errors", data["errors"]),
        ("requests", data["requests"]),
        ("retries", data["retries"]),
        ("failed requests", data["failed_requests"]),
        ("faults injected", data["faults_injected"]),
        ("wall time (s)", data["wall_s"]),
    ]
    _render.table("agora-stt demo", ("", "value"), rows)
    latency = data["latency_ms"]
    assert isinstance(latency, dict)
    _render.table(
        "per call",
        ("call", "calls", "retries", "errors", "p50 ms", "p99 ms"),
        [
            (op, s["calls"], s["retries"], s["errors"], s["p50_ms"], s["p99_ms"])
            for op, s in latency.items()
        ],
    )
    errors = data["errors_by_step"]
    assert isinstance(errors, dict)
    if errors:
        _render.table("errors", ("step: error", "channels"), errors.items())


# --- progress --------------------------------------------------------------------------------

STAGES: Final = ("started", "running", "updated", "stopped")


class _Progress:
    """A live bar per stage on stderr, or nothing (not a terminal, or ``--json``)."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self._progress = progress
        self._ids = (
            {stage: progress.add_task(stage, total=total) for stage in STAGES}
            if progress is not None
            else {}
        )

    def advance(self, stage: str) -> None:
        if self._progress is not None:
            self._progress.advance(self._ids[stage])


@contextmanager
def progress_bars(enabled: bool, total: int) -> Iterator[_Progress]:
    if not enabled:
        yield _Progress(None, total)
        return
    progress = Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_render.stderr(),
        transient=False,
    )
    with progress:
        yield _Progress(progress, total)


# --- the lifecycle ---------------------------------------------------------------------------


def start_config(run_id: str, index: int, legacy: bool) -> JoinRequest | LegacyStartRequest:
    channel = f"demo-{run_id}-{index:05d}"
    if legacy:
        return LegacyStartRequest(
            languages=START_LANGUAGES,
            rtc_config=RtcConfig(
                channel_name=channel,
                pub_bot_uid=str(100_000 + index),
                sub_bot_uid=str(200_000 + index),
            ),
        )
    return JoinRequest(
        name=channel,
        languages=START_LANGUAGES,
        rtc_config=RtcConfig(channel_name=channel, pub_bot_uid=str(100_000 + index)),
    )


@attrs.define
class Demo:
    session: Session
    tally: Tally
    progress: _Progress
    run_id: str
    api: ApiChoice
    update_delay: float
    handles: dict[str, TaskHandle] = attrs.field(factory=dict)
    ready: dict[str, TaskHandle] = attrs.field(factory=dict)

    def is_legacy(self, index: int) -> bool:
        return self.api == "legacy" or (self.api == "both" and index % 2 == 1)

    async def bring_up(self, index: int) -> None:
        """Start, wait until running, update the languages; failures are counted."""
        key = f"ch-{index:05d}"
        step = "start"
        try:
            handle = await self.session.start(
                key, start_config(self.run_id, index, self.is_legacy(index))
            )
            self.handles[key] = handle
            self.tally.started += 1
            self.progress.advance("started")
            step = "wait running"
            await handle.wait_for(AgentStatus.RUNNING, timeout=WAIT_RUNNING_S)
            self.tally.running += 1
            self.progress.advance("running")
            step = "update"
            if self.update_delay:
                await anyio.sleep(self.update_delay)
            await handle.update(languages=UPDATED_LANGUAGES)
            self.tally.updated += 1
            self.progress.advance("updated")
            self.ready[key] = handle
        except (AgoraSTTError, TimeoutError) as error:
            self.tally.fail(key, step, error)

    async def list_back(self) -> None:
        """List the running agents through the cursor and count the demo's own."""
        ours = {h.agent_id for h in self.ready.values() if h.agent_id is not None}
        if not ours:
            return
        listed = 0
        try:
            async for agent in self.session.client.agents.list(
                state=AgentStatus.RUNNING, page_size=LIST_PAGE_SIZE
            ):
                listed += agent.agent_id in ours
            self.tally.listed = listed
        except AgoraSTTError as error:
            self.tally.fail("list", "list", error)

    async def stop(self, key: str, handle: TaskHandle) -> None:
        try:
            await handle.stop(wait=True, timeout=STOP_CONFIRM_S)
            self.tally.stopped += 1
            self.progress.advance("stopped")
        except (AgoraSTTError, TimeoutError) as error:
            self.tally.fail(key, "stop", error)


async def count_leaked_in_process(app: emulator.EmulatorApp) -> int:
    """Agents and tasks the emulator still has running, from its control API."""
    async with httpx.AsyncClient(transport=app.transport(), base_url="http://emulator") as raw:
        response = await raw.get("/_emulator/state")
        response.raise_for_status()
        state = response.json()
    return _count(state["agents"]["by_status"], {s.value for s in LIVE_AGENT}) + _count(
        state["tasks"]["by_status"], {s.value for s in LIVE_TASK}
    )


def _count(by_status: Mapping[str, int], live: set[str]) -> int:
    return sum(n for status, n in by_status.items() if status in live)


async def count_leaked_remote(client: AsyncClient, records: Iterable[TaskRecord]) -> int:
    """The tasks of ``records`` a remote service still runs: each is asked for by id. A
    task whose id the session never learned, or that cannot be asked for, counts as
    leaked."""
    leaked = 0
    for record in records:
        try:
            if record.agent_id is not None:
                agent = await client.agents.get(record.agent_id)
                leaked += agent.status in LIVE_AGENT
            elif record.task_id is not None and record.token_name is not None:
                task = await client.legacy.query(record.task_id, record.token_name)
                leaked += task.status in LIVE_TASK
            elif not record.phase.is_terminal:
                leaked += 1
        except NotFoundError:
            pass
        except AgoraSTTError:
            leaked += 1
    return leaked


async def run_demo(
    settings: Settings,
    *,
    channels: int,
    api: ApiChoice,
    fault_rate: float,
    seed: int,
    json_mode: bool,
    show_progress: bool,
    update_delay: float | None = None,
) -> int:
    began = time.perf_counter()
    app: emulator.EmulatorApp | None = None
    if settings.base_url is None:
        # Throw-away credentials: nothing is read from the environment, nothing to leak.
        app_id, customer_id, secret = uuid.uuid4().hex, "demo", secrets.token_urlsafe(18)
        app = emulator.create_app(
            DEMO_EMULATOR,
            seed=seed,
            faults=fault_config(fault_rate),
            app_ids=[app_id],
            credentials={customer_id: secret},
        )
        client = AsyncClient(
            app_id=app_id,
            customer_id=customer_id,
            customer_secret=secret,
            base_url=IN_PROCESS_BASE_URL,
            # Plain http to a non-loopback name is refused by default to protect
            # credentials on the wire; here there is no wire (an in-memory transport)
            # and the credentials are made up for this run.
            allow_insecure=True,
            transport=app.transport(),
            retry=DEMO_RETRY,
        )
        target = "in-process emulator"
    else:
        client = _common.make_client(settings, retry=DEMO_RETRY, fast=None)
        target = client.base_urls[0]
    if update_delay is None:
        # spec §4.6: Agora asks for 5 s after join before an update; the in-process
        # emulator does not enforce it.
        update_delay = 0.0 if app is not None else REMOTE_UPDATE_DELAY_S

    tally = Tally(channels=channels, listed=None if api == "legacy" else 0)
    run_id = uuid.uuid4().hex[:8]
    stop_incomplete = 0
    handles: dict[str, TaskHandle] = {}
    async with client:
        session = Session(client, refresh_interval=1.0, stop_timeout=STOP_CONFIRM_S)
        with progress_bars(show_progress, channels) as progress:
            try:
                async with session as s:
                    demo = Demo(s, tally, progress, run_id, api, update_delay, handles)
                    async with anyio.create_task_group() as tg:
                        for index in range(channels):
                            tg.start_soon(demo.bring_up, index)
                    await demo.list_back()
                    async with anyio.create_task_group() as tg:
                        for key, handle in handles.items():
                            tg.start_soon(demo.stop, key, handle)
            except StopIncompleteError as error:
                stop_incomplete = len(error.keys)
        if app is not None:
            tally.leaked = await count_leaked_in_process(app)
            faults: int | None = sum(app.faults.injected.values())
        else:
            # The demo's handles and every task the session still owns: a start() that
            # raised can leave a task the session drives (and may have started), and the
            # session forgets the oldest ended tasks, which are asked for all the same.
            owned = {key: handle.record for key, handle in handles.items()}
            owned.update((handle.key, handle.record) for handle in session.handles())
            tally.leaked = await count_leaked_remote(client, owned.values())
            faults = None
        data = summary(
            tally,
            client,
            api=api,
            fault_rate=fault_rate,
            target=target,
            wall_s=time.perf_counter() - began,
            faults_injected=faults,
            stop_incomplete=stop_incomplete,
        )
    if json_mode:
        _render.json_object(data)
    else:
        print_summary(data)
        if tally.leaked:
            _render.error(f"{tally.leaked} task(s) still running at the end")
        if stop_incomplete:
            _render.error(f"{stop_incomplete} stop(s) not confirmed at the end")
    ok = tally.leaked == 0 and stop_incomplete == 0
    return _common.EXIT_OK if ok else _common.EXIT_FAILURE


@click.command()
@click.option(
    "--channels",
    type=click.IntRange(1, 100_000),
    default=200,
    show_default=True,
    help="Channels to run through the lifecycle, concurrently.",
)
@click.option(
    "--api",
    type=click.Choice(["v7", "legacy", "both"]),
    default="v7",
    show_default=True,
    help="API generation; 'both' runs half the channels on each.",
)
@click.option(
    "--fault-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of requests the in-process emulator answers with a fault.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the in-process emulator (ids, faults).",
)
@click.option(
    "--update-delay",
    type=click.FloatRange(0.0, 3600.0),
    default=None,
    metavar="SECONDS",
    help="Wait this long after an agent runs before updating it "
    "(default: 0 in process, 5 with a base URL, as Agora asks).",
)
@json_option
@connection_options_defaulting_to("the emulator in this process")
@click.pass_context
def demo(
    ctx: click.Context,
    channels: int,
    api: ApiChoice,
    fault_rate: float,
    seed: int,
    update_delay: float | None,
    json_mode: bool,
    base_url: str | None,
    verbose: bool,
) -> None:
    """Run CHANNELS tasks through start, running, update, list and stop, concurrently.

    With no base URL (--base-url or AGORA_STT_BASE_URL) the emulator runs in this
    process and no credentials are needed. Exits 0 only if nothing is left running
    and every stop was confirmed.
    """
    opts = _common.settings(ctx, base_url, verbose)
    if fault_rate and opts.base_url is not None:
        raise click.UsageError("--fault-rate needs the in-process emulator (no --base-url)")
    show = not json_mode and _render.stderr().is_terminal

    async def main() -> int:
        return await run_demo(
            opts,
            channels=channels,
            api=api,
            fault_rate=fault_rate,
            seed=seed,
            json_mode=json_mode,
            show_progress=show,
            update_delay=update_delay,
        )

    _common.run(ctx, opts, main, json_mode=json_mode)


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
# Not 0: the banner's export lines must name the port the server really listens on.
@click.option("--port", type=click.IntRange(1, 65535), default=8787, show_default=True)
@click.option(
    "--fault-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of requests answered with a fault (the demo's mix of kinds).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of ids and faults.")
@click.option(
    "--start-delay",
    type=click.FloatRange(0.0),
    default=1.0,
    show_default=True,
    help="Seconds an agent stays STARTING.",
)
@click.option(
    "--stop-delay",
    type=click.FloatRange(0.0),
    default=0.5,
    show_default=True,
    help="Seconds an agent stays STOPPING.",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
def emulator_command(
    host: str,
    port: int,
    fault_rate: float,
    seed: int,
    start_delay: float,
    stop_delay: float,
    log_level: str,
) -> None:
    """Serve the Agora STT emulator (v7 and legacy APIs) until interrupted."""
    config = emulator.EmulatorConfig(start_delay=start_delay, stop_delay=stop_delay)
    app = emulator.create_app(config, seed=seed, faults=fault_config(fault_rate))
    shown = f"[{host}]" if ":" in host else host
    _render.info(
        f"Agora STT emulator on http://{shown}:{port} (seed {seed}, fault rate {fault_rate}).\n"
        "Point the SDK or this CLI at it with the emulator's published test credentials:\n"
        f"  export {_common.ENV_BASE_URL}=http://{shown}:{port}\n"
        f"  export {_common.ENV_APP_ID}={_common.EMULATOR_APP_ID}\n"
        f"  export {_common.ENV_CUSTOMER_ID}={_common.EMULATOR_CUSTOMER_ID}\n"
        f"  export {_common.ENV_CUSTOMER_SECRET}={_common.EMULATOR_CUSTOMER_SECRET}"
    )
    emulator.run(app, host=host, port=port, log_level=log_level)
