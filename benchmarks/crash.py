"""Crash recovery: SIGKILL a worker mid-run, recover in a new process, nothing left running.

    python benchmarks/crash.py --rounds 10 --json
    python benchmarks/crash.py --rounds 2 --slots 6 --fault-rate 0 --json   # the CI size

The emulator runs as a separate server process (``serve(subprocess=True)``). Each round:

1. a worker process (``crash_worker.py run``) opens a ``Session`` over one
   ``SqliteStore`` file and churns channels (v7 and legacy) in ``--slots`` loops;
2. after a random delay it is killed with SIGKILL: requests in flight, tasks starting,
   running and stopping, records half-way;
3. a new process (``crash_worker.py recover``) calls ``Session.recover()`` on the same
   file and stops everything;
4. the emulator's books are audited (``_emulator_proc.audit``).

The JSON has ``rounds``, ``leaked`` (agents/tasks of the App ID not STOPPED/FAILED at
the end), ``lost`` (ids the emulator issued that the store does not hold),
``duplicates`` (channels with more than one agent/task), ``jobs``, ``per_round``
(kill delay, jobs so far, leaked and lost after that round's recovery, the recovery
report) and ``wall_s``. Exit status 0 when leaked, lost and duplicates are 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _emulator_proc import Audit, audit, settled_jobs, store_ids  # benchmarks/ on sys.path
from soak import fault_config

from agora_stt_async import _constants as C
from agora_stt_async.emulator import EmulatorConfig, serve
from agora_stt_async.stores import SqliteStore

WORKER: Final = str(Path(__file__).resolve().parent / "crash_worker.py")
APP_ID: Final = C.EMULATOR_APP_ID
READY_TIMEOUT_S: Final = 60.0
RECOVER_TIMEOUT_S: Final = 300.0


async def _audit(base_url: str, db: Path) -> Audit:
    async with httpx.AsyncClient(base_url=base_url) as control:
        jobs = await settled_jobs(control, APP_ID, settle_s=10.0)
    async with SqliteStore(db) as store:
        held = store_ids(await store.all())
    return audit(jobs, held)


def _kill_after_ready(args: list[str], delay: float, log: Path) -> int:
    """Start a worker, wait for ``ready``, let it run ``delay`` s, SIGKILL it."""
    with log.open("ab") as errors:
        worker = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors)
        try:
            assert worker.stdout is not None
            ready, _, _ = select.select([worker.stdout], [], [], READY_TIMEOUT_S)
            line = worker.stdout.readline() if ready else b""  # "ready", or EOF if it died
            if line.strip() != b"ready":
                raise RuntimeError(f"worker did not start ({line!r}); see {log}")
            time.sleep(delay)
            worker.send_signal(signal.SIGKILL)
            return worker.wait(READY_TIMEOUT_S)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            if worker.stdout is not None:
                worker.stdout.close()


def _recover(common: list[str], log: Path) -> dict[str, Any]:
    with log.open("ab") as errors:
        done = subprocess.run(
            [*common[:2], "recover", *common[2:]],
            stdout=subprocess.PIPE,
            stderr=errors,
            timeout=RECOVER_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"recovery process failed ({done.returncode}); see {log}")
    report: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return report


def crash(
    *,
    rounds: int = 10,
    slots: int = 40,
    fault_rate: float = 0.05,
    seed: int = 0,
    min_delay: float = 0.5,
    max_delay: float = 4.0,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark; return the JSON-able result (see the module docstring)."""
    started = time.perf_counter()
    rng = random.Random(f"crash/{seed}")
    per_round: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="agora-stt-crash-") as tmp:
        where = Path(workdir or tmp)
        db, log = where / "tasks.db", where / "workers.log"
        faults = fault_config(fault_rate, latency=0.05) if fault_rate > 0 else None
        config = EmulatorConfig(start_delay=0.2, stop_delay=0.1)
        with serve(subprocess=True, config=config, seed=seed, faults=faults) as url:
            common = [sys.executable, WORKER, "--base-url", url, "--db", str(db)]
            result = None
            for round_no in range(rounds):
                delay = round(rng.uniform(min_delay, max_delay), 3)
                run_args = [*common[:2], "run", *common[2:]]
                run_args += ["--round", str(round_no), "--slots", str(slots)]
                status = _kill_after_ready(run_args, delay, log)
                recovery = _recover(common, log)
                result = anyio.run(_audit, url, db)
                per_round.append(
                    {
                        "round": round_no,
                        "kill_after_s": delay,
                        "worker_exit": status,
                        "jobs": result.jobs,
                        "leaked": result.leaked,
                        "lost": result.lost,
                        "recovery": recovery,
                    }
                )
        assert result is not None or rounds == 0
    final = result or Audit(leaked=0, duplicates=0, lost=0, jobs=0)
    return {
        "rounds": rounds,
        "leaked": final.leaked,
        "lost": final.lost,
        "duplicates": final.duplicates,
        "jobs": final.jobs,
        "killed": sum(1 for r in per_round if r["worker_exit"] == -signal.SIGKILL),
        "slots": slots,
        "fault_rate": fault_rate,
        "seed": seed,
        "wall_s": round(time.perf_counter() - started, 2),
        "per_round": per_round,
        "details": {
            "leaked_ids": list(final.leaked_ids[:20]),
            "lost_ids": list(final.lost_ids[:20]),
            "duplicate_channels": list(final.duplicate_channels[:20]),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--slots", type=int, default=40, help="concurrent channel loops")
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-delay", type=float, default=0.5, help="earliest kill (s)")
    parser.add_argument("--max-delay", type=float, default=4.0, help="latest kill (s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if os.name != "posix":
        parser.error("SIGKILL needs a POSIX system")
    result = crash(
        rounds=args.rounds,
        slots=args.slots,
        fault_rate=args.fault_rate,
        seed=args.seed,
        min_delay=args.min_delay,
        max_delay=args.max_delay,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>12}: {value}")
    return 0 if result["leaked"] == result["lost"] == result["duplicates"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
