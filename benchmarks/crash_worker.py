"""The process ``crash.py`` kills, and the process that recovers after it.

    python benchmarks/crash_worker.py run --base-url URL --db PATH --round 3 --slots 40
    python benchmarks/crash_worker.py recover --base-url URL --db PATH

``run`` opens a ``Session`` over a ``SqliteStore`` and churns channels until it is
killed: each of ``--slots`` loops starts a task in a fresh channel (v7 and legacy
alternate), waits for RUNNING, then either stops it or leaves it running and moves on.
So a SIGKILL lands on tasks in every phase: being started, running, being stopped.
It prints ``ready`` once the session is open and bounds itself by ``--max-s``.

``recover`` opens a new ``Session`` over the same file, calls ``recover()``, stops every
task it holds, leaves (which stops anything still live), and prints one JSON line:
``loaded``, ``live``, ``ended``, ``unresolved``, ``stop_errors`` (typed errors of the
explicit stops, by class) and ``incomplete`` (keys ``StopIncompleteError`` named).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Final

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agora_stt_async import (
    AgentStatus,
    AgoraSTTError,
    AsyncClient,
    JoinRequest,
    LegacyStartRequest,
    RecoveryReport,
    RetryPolicy,
    RtcConfig,
    Session,
    StopIncompleteError,
)
from agora_stt_async import _constants as C
from agora_stt_async import state as sm
from agora_stt_async.stores import SqliteStore

APP_ID: Final = C.EMULATOR_APP_ID
MACHINE: Final = sm.MachinePolicy(retry_interval_s=0.2)


def _client(base_url: str, seed: str) -> AsyncClient:
    return AsyncClient(
        app_id=APP_ID,
        customer_id=C.EMULATOR_CUSTOMER_ID,
        customer_secret=C.EMULATOR_CUSTOMER_SECRET,
        base_url=base_url,
        retry=RetryPolicy(timeout=30.0),
        rng=random.Random(seed),
    )


def _config(channel: str, legacy: bool) -> JoinRequest | LegacyStartRequest:
    if legacy:
        return LegacyStartRequest(
            languages=["en-US"],
            rtc_config=RtcConfig(channel_name=channel, pub_bot_uid="1000", sub_bot_uid="2000"),
        )
    return JoinRequest(
        name=f"agent-{channel}",
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=channel, pub_bot_uid="1000"),
    )


async def _churn(session: Session, round_no: int, slot: int, rng: random.Random) -> None:
    legacy = slot % 2 == 1
    await anyio.sleep(rng.uniform(0, 0.3))
    for generation in range(10_000):
        channel = f"r{round_no:03d}-s{slot:03d}-g{generation:04d}"
        try:
            handle = await session.start(channel, _config(channel, legacy))
            await handle.wait_for(AgentStatus.RUNNING, timeout=20.0)
            if rng.random() < 0.5:
                await handle.stop(wait=rng.random() < 0.5, timeout=20.0)
        except (AgoraSTTError, TimeoutError):
            pass  # a fault the soak measures; here only the crash matters
        await anyio.sleep(rng.uniform(0, 0.1))


async def run(base_url: str, db: str, round_no: int, slots: int, max_s: float) -> None:
    rng = random.Random(f"crash/{round_no}")
    async with (
        _client(base_url, f"run/{round_no}") as client,
        SqliteStore(db) as store,
        Session(client, store=store, policy=MACHINE, refresh_interval=0.5) as session,
    ):
        print("ready", flush=True)
        with anyio.move_on_after(max_s):  # never outlive a parent that died
            async with anyio.create_task_group() as tg:
                for slot in range(slots):
                    tg.start_soon(_churn, session, round_no, slot, random.Random(rng.random()))


async def recover(base_url: str, db: str, stop_timeout: float) -> dict[str, Any]:
    stop_errors: Counter[str] = Counter()
    incomplete: list[str] = []
    report: RecoveryReport | None = None

    async def stop(key: str) -> None:
        try:
            await session.handle(key).stop(wait=True, timeout=stop_timeout)
        except AgoraSTTError as error:
            stop_errors[type(error).__name__] += 1

    async with _client(base_url, "recover") as client, SqliteStore(db) as store:
        try:
            async with Session(
                client,
                store=store,
                policy=MACHINE,
                refresh_interval=0.5,
                stop_timeout=stop_timeout,
            ) as session:
                report = await session.recover()
                async with anyio.create_task_group() as tg:
                    for key in report.live:
                        tg.start_soon(stop, key)
        except StopIncompleteError as error:
            incomplete = list(error.keys)
    if report is None:
        raise RuntimeError("recover() did not return")
    return {
        "loaded": report.loaded,
        "live": len(report.live),
        "ended": len(report.ended),
        "unresolved": len(report.unresolved),
        "stop_errors": dict(stop_errors),
        "incomplete": incomplete,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("run", "recover"))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--round", type=int, default=0)
    parser.add_argument("--slots", type=int, default=40)
    parser.add_argument("--max-s", type=float, default=120.0)
    parser.add_argument("--stop-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.mode == "run":
        anyio.run(run, args.base_url, args.db, args.round, args.slots, args.max_s)
        return 0
    result = anyio.run(recover, args.base_url, args.db, args.stop_timeout)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
