"""Fault soak: many channels through one ``Session`` while the emulator misbehaves.

    python benchmarks/soak.py --channels 1000 --fault-rate 0.2 --json
    python benchmarks/soak.py --channels 200 --api legacy --seed 7
    python benchmarks/soak.py --channels 60 --in-process --no-wait --json   # the CI size

Every channel goes start → wait RUNNING → update → stop (and wait for the stop), all
at once, through one ``Session`` over one ``AsyncClient``. The emulator (a separate
process by default, so it does not share the GIL with the SDK) injects every fault kind
it has at ``--fault-rate`` on every route: 500, 502, 503, 504, 429 (with
``Retry-After``), Agora code 20, latency, and ``drop`` (the request is processed, the
response never arrives: the case that makes a blind retry of join/start create a
second task).

The output's figures come from the emulator's books (``_emulator_proc.audit``):

- ``leaked``: agents/tasks of the App ID still not STOPPED/FAILED after the run;
- ``duplicates``: channels with more than one agent/task ever created;
- ``lost``: ids the emulator issued that the session's store does not hold;
- ``channels``, ``stopped`` (the caller's stop returned and the record is STOPPED),
  ``failed`` (typed SDK errors the caller saw, by class), ``unsettled`` (channels that
  ended neither way: must be 0), ``update_errors`` (typed errors of the update step,
  which does not end the channel), ``exit_incomplete`` (tasks the session's exit could
  not confirm stopped: it raised ``StopIncompleteError``), ``requests``, ``retries``, ``wall_s``.

The core is ``await soak(...)`` (importable; ``tests/test_soak.py`` runs a small one in
process, on asyncio and trio). ``--no-wait`` uses ``RetryPolicy.testing()`` and short
session intervals: the same decisions, no waiting.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _emulator_proc import audit, settled_jobs, store_ids  # benchmarks/ is on sys.path

from agora_stt_async import (
    AgentStatus,
    AgoraSTTError,
    AsyncClient,
    JoinRequest,
    LegacyStartRequest,
    RetryPolicy,
    RtcConfig,
    Session,
    StopIncompleteError,
)
from agora_stt_async import _constants as C
from agora_stt_async import state as sm
from agora_stt_async.emulator import (
    FAULT_KINDS,
    EmulatorConfig,
    FaultConfig,
    create_app,
    serve,
)
from agora_stt_async.stores import MemoryStore

APP_ID: Final = C.EMULATOR_APP_ID
CONTROL_BASE: Final = "http://emulator"
APIS: Final = ("v7", "legacy", "both")


def fault_config(rate: float, *, latency: float, retry_after: int = 1) -> FaultConfig:
    """Every fault kind the emulator has, equally likely, at ``rate`` on every route."""
    return FaultConfig(
        rate=rate,
        kinds=dict.fromkeys(FAULT_KINDS, 1.0),
        retry_after=retry_after,
        latency=latency,
    )


def emulator_config(*, fast: bool) -> EmulatorConfig:
    """Short start/stop delays; RUNNING a moment after join, STOPPED after leave."""
    delay = 0.05 if fast else 0.5
    return EmulatorConfig(start_delay=delay, stop_delay=delay / 2)


def _config(i: int, api: str) -> JoinRequest | LegacyStartRequest:
    channel = f"soak-{i:05d}"
    if api == "v7":
        return JoinRequest(
            name=f"agent-{channel}",
            languages=["en-US"],
            rtc_config=RtcConfig(channel_name=channel, pub_bot_uid="1000"),
        )
    return LegacyStartRequest(
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=channel, pub_bot_uid="1000", sub_bot_uid="2000"),
    )


def _api_of(i: int, api: str) -> str:
    if api == "both":
        return "v7" if i % 2 == 0 else "legacy"
    return api


async def _channel(
    session: Session,
    i: int,
    api: str,
    outcome: dict[str, str],
    notes: dict[str, str],
    update_errors: Counter[str],
    wait_s: float,
    rng: random.Random,
) -> None:
    key = f"soak-{i:05d}"
    await anyio.sleep(rng.uniform(0, 0.5))  # a ramp, not one burst
    step = "start"
    try:
        handle = await session.start(key, _config(i, api), api=api)
        step = "wait_running"
        await handle.wait_for(AgentStatus.RUNNING, timeout=wait_s)
        try:
            await handle.update(languages=["en-US", "es-ES"])
        except AgoraSTTError as error:
            update_errors[type(error).__name__] += 1
        step = "stop"
        await handle.stop(wait=True, timeout=wait_s)
    except AgoraSTTError as error:
        outcome[key] = type(error).__name__
        notes[key] = f"{step}: {type(error).__name__}: {error}"[:300]
    except Exception as error:  # noqa: BLE001 - anything else is a finding of the soak
        outcome[key] = f"untyped:{type(error).__name__}"
        record = session.handle(key).record if key in _keys(session) else None
        where = "" if record is None else f" (phase {record.phase}, {record.server_status})"
        notes[key] = f"{step}: {type(error).__name__}{where}"
    else:
        outcome[key] = "stopped"


def _keys(session: Session) -> set[str]:
    return {handle.key for handle in session.handles()}


@asynccontextmanager
async def _in_process(
    seed: int, fault_rate: float, *, fast: bool
) -> AsyncIterator[tuple[httpx.AsyncBaseTransport, httpx.AsyncClient]]:
    app = create_app(
        emulator_config(fast=fast),
        seed=seed,
        faults=fault_config(fault_rate, latency=0.02 if fast else 0.2),
    )
    async with httpx.AsyncClient(base_url=CONTROL_BASE, transport=app.transport()) as control:
        yield app.transport(), control


async def soak(
    *,
    channels: int = 1000,
    fault_rate: float = 0.2,
    api: str = "both",
    seed: int = 0,
    base_url: str | None = None,
    no_wait: bool = False,
    wait_s: float = 120.0,
) -> dict[str, Any]:
    """Run the soak; return the JSON-able result (see the module docstring).

    Args:
        channels: how many channels (one task each).
        fault_rate: probability of a fault per request, on every route.
        api: ``"v7"``, ``"legacy"`` or ``"both"`` (alternating).
        seed: seeds the emulator (ids, faults) and the client's jitter.
        base_url: an emulator already serving with its faults set (a separate process);
            ``None`` builds one in process with ``fault_rate``.
        no_wait: ``RetryPolicy.testing()`` and short session intervals (CI).
        wait_s: per-channel bound on waiting for RUNNING and for the stop.
    """
    if api not in APIS:
        raise ValueError(f"api must be one of {APIS}")
    policy = sm.MachinePolicy(retry_interval_s=0.1 if no_wait else 2.0)
    retry = RetryPolicy.testing() if no_wait else RetryPolicy()
    started = time.perf_counter()
    outcome: dict[str, str] = {}
    notes: dict[str, str] = {}
    exit_incomplete: list[str] = []
    update_errors: Counter[str] = Counter()
    rng = random.Random(f"{seed}/ramp")
    store = MemoryStore()
    async with _emulator(base_url, seed, fault_rate, fast=no_wait) as (transport, control):
        async with AsyncClient(
            app_id=APP_ID,
            customer_id=C.EMULATOR_CUSTOMER_ID,
            customer_secret=C.EMULATOR_CUSTOMER_SECRET,
            base_url=base_url,
            transport=transport,
            retry=retry,
            rng=random.Random(f"{seed}/client"),
        ) as client:
            try:
                async with (
                    Session(
                        client,
                        store=store,
                        policy=policy,
                        refresh_interval=1.0 if no_wait else 5.0,
                        stop_timeout=wait_s,
                    ) as session,
                    anyio.create_task_group() as tg,
                ):
                    for i in range(channels):
                        tg.start_soon(
                            _channel,
                            session,
                            i,
                            _api_of(i, api),
                            outcome,
                            notes,
                            update_errors,
                            wait_s,
                            rng,
                        )
            except StopIncompleteError as error:  # the audit says if they leaked
                exit_incomplete.extend(error.keys)
            stats = client.statistics()
        jobs = await settled_jobs(control, APP_ID, settle_s=10.0)
        state = (await control.get("/_emulator/state")).json()
    records = await store.all()
    result = audit(jobs, store_ids(records))
    failed = Counter(v for v in outcome.values() if v != "stopped")
    typed = {k: n for k, n in failed.items() if not k.startswith("untyped:")}
    phases = Counter(record.phase.value for record in records)
    return {
        "leaked": result.leaked,
        "duplicates": result.duplicates,
        "lost": result.lost,
        "channels": channels,
        "api": api,
        "fault_rate": fault_rate,
        "seed": seed,
        "stopped": sum(1 for v in outcome.values() if v == "stopped"),
        "failed": dict(sorted(typed.items())),
        "unsettled": channels - sum(1 for v in outcome.values() if not v.startswith("untyped:")),
        "untyped": dict(sorted((k, n) for k, n in failed.items() if k.startswith("untyped:"))),
        "update_errors": dict(sorted(update_errors.items())),
        "exit_incomplete": len(exit_incomplete),
        "records_by_phase": dict(sorted(phases.items())),
        "jobs": result.jobs,
        "requests": stats.requests,
        "retries": stats.retries,
        "emulator_requests": sum(state["requests"].values()),
        "faults_injected": sum(state["faults"]["injected"].values()),
        "wall_s": round(time.perf_counter() - started, 2),
        "details": {
            "leaked_ids": list(result.leaked_ids[:20]),
            "duplicate_channels": list(result.duplicate_channels[:20]),
            "lost_ids": list(result.lost_ids[:20]),
            "errors": dict(sorted(notes.items())[:20]),
        },
    }


@asynccontextmanager
async def _emulator(
    base_url: str | None, seed: int, fault_rate: float, *, fast: bool
) -> AsyncIterator[tuple[httpx.AsyncBaseTransport | None, httpx.AsyncClient]]:
    if base_url is None:
        async with _in_process(seed, fault_rate, fast=fast) as (transport, control):
            yield transport, control
        return
    async with httpx.AsyncClient(base_url=base_url) as control:
        yield None, control


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--api", choices=APIS, default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--in-process", action="store_true", help="emulator in this process")
    parser.add_argument("--no-wait", action="store_true", help="RetryPolicy.testing()")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--wait-s", type=float, default=120.0, help="per-channel wait bound")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {
        "channels": args.channels,
        "fault_rate": args.fault_rate,
        "api": args.api,
        "seed": args.seed,
        "no_wait": args.no_wait,
        "wait_s": args.wait_s,
    }
    if args.in_process:
        result = anyio.run(lambda: soak(**options), backend=args.backend)
    else:
        faults = fault_config(args.fault_rate, latency=0.02 if args.no_wait else 0.2)
        with serve(
            subprocess=True,
            config=emulator_config(fast=args.no_wait),
            seed=args.seed,
            faults=faults,
        ) as url:
            result = anyio.run(lambda: soak(base_url=url, **options), backend=args.backend)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>18}: {value}")
    ok = result["leaked"] == result["duplicates"] == result["lost"] == result["unsettled"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
