"""A fleet of backend workers: sessions in separate processes sharing one Redis and one
emulator (issue 10).

Each worker is ``tests/_multiworker_worker.py``: a Session on a ``RedisStore`` (short
leases, adopting orphans by itself) talking to one emulator served from its own process
over loopback HTTP. The test drives the workers through JSON lines and, at the end,
checks the three books against each other:

- the emulator: no agent of this run still live, no channel with two agents;
- the store: every agent id the emulator issued is in a record (no record lost), and
  every record has ended;
- the workers: every start answered, exactly one per contested channel.

Counts: each test spreads 1,000 channels over its workers (about 15 s each on a quiet
2-core machine). Both kill one worker with
SIGKILL while it is starting channels, stop tasks from workers that did not start them,
and start the same channels from all workers at once.

Runs on asyncio only (the parent reads the store with ``RedisStore``).
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Final

import anyio
import httpx
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from agora_stt_async._constants import EMULATOR_APP_ID
from agora_stt_async.emulator import EmulatorConfig, serve
from agora_stt_async.stores import RedisStore
from tests._redis_server import redis_for_tests

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

logger: Final = logging.getLogger(__name__)
WORKER: Final = Path(__file__).with_name("_multiworker_worker.py")
LEASE_TTL: Final = 5.0
"""Seconds: renewals every 5/3 s; a killed worker's tasks are free 5 s after its death.
(Shorter TTLs expire every lease at once when a loaded CI machine stalls for a few
seconds; the books below still balance then, but starts in flight fail.)"""
LEASE_LOST: Final = "driven by another worker now"
"""The one start error allowed: a lease lost (machine stall) while the join was sent."""
ADOPT_INTERVAL: Final = 1.0
EMULATOR: Final = EmulatorConfig(start_delay=0.05, stop_delay=0.02, list_max_limit=1000)
LIVE: Final = frozenset({"IDLE", "STARTING", "RUNNING", "RECOVERING", "STOPPING"})
LINE_LIMIT: Final = 1 << 24


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    """asyncio only: the parent reads the store through redis.asyncio."""
    return ("asyncio", {})


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_for_tests() as url:
        yield url


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with serve(subprocess=True, config=EMULATOR, seed=10) as url:
        yield url


class Worker:
    """One worker process and its command pipe."""

    def __init__(self, name: str, process: Process, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log
        assert process.stdout is not None
        self._lines = BufferedByteReceiveStream(process.stdout)
        self.owner = ""

    async def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(json.dumps(command).encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        try:
            line = await self._lines.receive_until(b"\n", LINE_LIMIT)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            pytest.fail(f"worker {self.name} ended early:\n{self.log.read_text()[-4000:]}")
        message: dict[str, Any] = json.loads(line)
        return message

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        await self.send(command)
        return await self.receive()


@pytest.fixture
async def fleet(redis_url: str, emulator_url: str, tmp_path: Path) -> AsyncIterator[Fleet]:
    async with AsyncExitStack() as stack:
        made = Fleet(redis_url, emulator_url, tmp_path, stack)
        try:
            yield made
        finally:
            for worker in made.workers:  # whatever is still running: SIGKILL, reap
                if worker.process.returncode is None:
                    worker.process.kill()
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    await worker.process.wait()


class Fleet:
    """The workers of one test, their Redis namespace and the channels' prefix."""

    def __init__(self, redis_url: str, emulator_url: str, tmp: Path, stack: AsyncExitStack):
        self.redis_url = redis_url
        self.emulator_url = emulator_url
        self.tmp = tmp
        self.stack = stack
        run = uuid.uuid4().hex[:8]
        self.namespace = f"test-mw-{run}"
        self.prefix = f"mw{run}-"
        self.workers: list[Worker] = []

    async def spawn(self, count: int) -> list[Worker]:
        workers = []
        for i in range(len(self.workers), len(self.workers) + count):
            log = self.tmp / f"worker-{i}.log"
            process = await anyio.open_process(
                [sys.executable, str(WORKER), self.redis_url, self.namespace,
                 self.emulator_url, f"w{i}", str(LEASE_TTL), str(ADOPT_INTERVAL)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stack.enter_context(log.open("wb")),
            )  # fmt: skip
            worker = Worker(f"w{i}", process, log)
            self.workers.append(worker)
            workers.append(worker)
        for worker in workers:
            ready = await worker.receive()
            worker.owner = ready["ready"]
        return workers

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def jobs(self) -> list[dict[str, Any]]:
        """This run's agents on the emulator, once none is STOPPING any more."""
        async with httpx.AsyncClient(base_url=self.emulator_url) as control:
            while True:
                response = await control.get(
                    "/_emulator/state", params={"list": "1", "limit": "10000"}
                )
                body = response.json()["agents"]
                assert body["total"] == len(body["items"])
                ours = [a for a in body["items"] if a["channel"].startswith(self.prefix)]
                stopping = [a for a in ours if a["status"] == "STOPPING"]
                logger.info("jobs: %d, stopping %d", len(ours), len(stopping))
                if not stopping:
                    return ours
                await anyio.sleep(0.05)

    async def records(self) -> list[Any]:
        async with RedisStore(
            self.redis_url, app_id=EMULATOR_APP_ID, namespace=self.namespace
        ) as store:
            return await store.all()


async def start_on(workers: list[Worker], shares: list[list[str]]) -> list[dict[str, Any]]:
    """Start each share on its worker, all workers at once; their answers."""
    for worker, keys in zip(workers, shares, strict=True):
        await worker.send({"op": "start", "keys": keys})
    return [await worker.receive() for worker in workers]


async def wait_for_adoption(fleet: Fleet, survivors: list[Worker]) -> set[str]:
    """Poll until the survivors drive every live record between them (the dead worker's
    leases expired and its tasks were adopted); the keys they drive."""
    async with RedisStore(
        fleet.redis_url, app_id=EMULATOR_APP_ID, namespace=fleet.namespace
    ) as store:
        while True:
            live = {r.key for r in await store.all() if not r.phase.is_terminal}
            driving: list[str] = []
            for worker in survivors:
                driving += (await worker.ask({"op": "status"}))["driving"]
            assert len(driving) == len(set(driving)), "a task is driven twice"
            if live <= set(driving) and not await store.unleased():
                owners = {await store.lease_owner(key) for key in live}
                assert owners <= {w.owner for w in survivors}
                return set(driving)
            await anyio.sleep(0.2)


async def run_fleet(fleet: Fleet, *, workers: int, channels: int, seed: int) -> None:
    rng = random.Random(seed)
    fleet_workers = await fleet.spawn(workers)

    logger.info("phase # 1.")
    # 1. Channels spread across the workers, started by all at once.
    keys = [fleet.key(f"{i:04d}") for i in range(channels)]
    shares = [keys[i::workers] for i in range(workers)]
    answers = await start_on(fleet_workers, shares)
    for share, got in zip(shares, answers, strict=True):
        unexpected = {k: e for k, e in got["errors"].items() if LEASE_LOST not in e}
        assert unexpected == {}
        assert got["refused"] == []
        assert sorted(got["ok"] + list(got["errors"])) == sorted(share)

    logger.info("phase # 2.")
    # 2. Stops from workers that did not start the tasks: worker i stops a tenth of
    # worker i+1's channels.
    stopped: set[str] = set()
    for i, worker in enumerate(fleet_workers):
        theirs = shares[(i + 1) % workers]
        chosen = rng.sample(theirs, max(1, len(theirs) // 10))
        got = await worker.ask({"op": "stop", "keys": chosen})
        assert got == {"stopped": len(chosen), "errors": {}}
        stopped.update(chosen)

    logger.info("phase # 3.")
    # 3. The same channels started by every worker at once: exactly one start each.
    contested = [fleet.key(f"same-{i}") for i in range(10)]
    for worker in fleet_workers:
        assert await worker.ask({"op": "start", "keys": contested, "armed": True}) == {
            "armed": len(contested)
        }
    for worker in fleet_workers:
        await worker.send({"op": "go"})
    results = [await worker.receive() for worker in fleet_workers]
    assert all(r["errors"] == {} for r in results)
    wins = Counter(key for r in results for key in r["ok"])
    assert wins == Counter(contested)  # each contested key won exactly once
    refusals = Counter(key for r in results for key in r["refused"])
    assert refusals == Counter(dict.fromkeys(contested, workers - 1))

    logger.info("phase # 4.")
    # 4. SIGKILL one worker, at a random moment while it starts more channels.
    victim = rng.choice(fleet_workers)
    extra = [fleet.key(f"late-{i}") for i in range(40)]
    await victim.send({"op": "start", "keys": extra})
    await anyio.sleep(rng.uniform(0.0, 0.3))
    victim.process.kill()
    assert await victim.process.wait() == -9
    survivors = [w for w in fleet_workers if w is not victim]

    logger.info("phase # 5.")
    # 5. Its leases expire; the survivors adopt its tasks, one driver each.
    driving = await wait_for_adoption(fleet, survivors)
    assert set(shares[fleet_workers.index(victim)]) - stopped <= driving

    logger.info("phase # 6.")
    # 6. A replacement worker joins (the dead one restarted) and stops a task that a
    # survivor adopted: a stop from a worker that neither started nor drives it.
    (replacement,) = await fleet.spawn(1)
    target = sorted(set(shares[fleet_workers.index(victim)]) - stopped)[0]
    assert target in driving
    assert await replacement.ask({"op": "stop", "keys": [target]}) == {
        "stopped": 1,
        "errors": {},
    }
    assert (await replacement.ask({"op": "status"}))["driving"] == []
    survivors.append(replacement)

    logger.info("phase # 7.")
    # 7. The survivors leave, stopping what they drive.
    for worker in survivors:
        await worker.send({"op": "exit"})
    for worker in survivors:
        assert await worker.receive() == {"exit": True}
        logger.info("%s left", worker.name)
        assert await worker.process.wait() == 0

    logger.info("phase # The")
    # The books: nothing running, nothing duplicated, no record lost.
    jobs = await fleet.jobs()
    records = await fleet.records()
    assert [j["agent_id"] for j in jobs if j["status"] in LIVE] == []
    per_channel = Counter(j["channel"] for j in jobs)
    assert [c for c, n in per_channel.items() if n > 1] == []
    held = {r.agent_id for r in records if r.agent_id}
    assert sorted(j["agent_id"] for j in jobs if j["agent_id"] not in held) == []
    assert [r.key for r in records if not r.phase.is_terminal] == []
    assert {r.key for r in records} >= set(keys) | set(contested)
    assert set(per_channel) >= set(keys) | set(contested)


async def test_multiworker_two_workers_thousand_channels(fleet: Fleet) -> None:
    """Two workers, 1,000 channels; cross stops, contested starts, one SIGKILL."""
    with anyio.fail_after(120):
        await run_fleet(fleet, workers=2, channels=1000, seed=2)


async def test_multiworker_four_workers(fleet: Fleet) -> None:
    """Four workers, 1,000 channels; cross stops, contested starts, one SIGKILL."""
    with anyio.fail_after(120):
        await run_fleet(fleet, workers=4, channels=1000, seed=4)
