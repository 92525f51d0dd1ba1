"""What the soak and crash benchmarks share: reading the emulator's books.

The emulator is the ground truth: its control API (``GET /_emulator/state?list=1``)
lists every agent and legacy task it ever created, with App ID, channel and status.
``audit()`` compares that with the ids a ``TaskStore`` holds:

- ``leaked``: agents or tasks of the App ID that are not STOPPED/FAILED (still costing
  money), after waiting up to ``settle_s`` for the ones in STOPPING to finish;
- ``duplicates``: channels in which more than one agent or task was ever created;
- ``lost``: ids the emulator issued to the App ID that the store does not hold (a task
  the SDK could never stop after a restart).

Control requests are not faulted and not counted by the emulator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Final

import anyio
import attrs
import httpx

from agora_stt_async.state import TaskRecord

STATE_PATH: Final = "/_emulator/state"
LIST_LIMIT: Final = 10_000
"""The control API's largest ``limit``; the benchmarks stay below it."""
_TERMINAL: Final = frozenset({"STOPPED", "FAILED", "FAILURE_STOP"})


@attrs.frozen
class Job:
    """One agent (v7) or task (legacy) as the emulator describes it."""

    id: str
    kind: str  # "agent" or "task"
    channel: str
    status: str

    @property
    def is_terminal(self) -> bool:
        return self.status in _TERMINAL


@attrs.frozen
class Audit:
    """The three figures, and what they were computed from."""

    leaked: int
    duplicates: int
    lost: int
    jobs: int
    leaked_ids: tuple[str, ...] = ()
    duplicate_channels: tuple[str, ...] = ()
    lost_ids: tuple[str, ...] = ()


async def emulator_jobs(control: httpx.AsyncClient, app_id: str) -> list[Job]:
    """Every agent and task the emulator created for ``app_id``."""
    response = await control.get(STATE_PATH, params={"list": "1", "limit": str(LIST_LIMIT)})
    response.raise_for_status()
    body = response.json()
    jobs: list[Job] = []
    for kind, id_key in (("agents", "agent_id"), ("tasks", "task_id")):
        section = body[kind]
        items = section.get("items", [])
        if section["total"] > len(items):
            raise RuntimeError(f"more {kind} than the control API lists ({LIST_LIMIT})")
        jobs.extend(
            Job(id=item[id_key], kind=kind[:-1], channel=item["channel"], status=item["status"])
            for item in items
            if item["app_id"] == app_id
        )
    return jobs


async def settled_jobs(
    control: httpx.AsyncClient, app_id: str, *, settle_s: float, poll_s: float = 0.05
) -> list[Job]:
    """``emulator_jobs``, once nothing is STOPPING any more (or ``settle_s`` passed)."""
    with anyio.move_on_after(settle_s):
        while True:
            jobs = await emulator_jobs(control, app_id)
            if not any(job.status == "STOPPING" for job in jobs):
                return jobs
            await anyio.sleep(poll_s)
    return await emulator_jobs(control, app_id)


def store_ids(records: Iterable[TaskRecord]) -> set[str]:
    """Every server id the records hold (v7 agent ids and legacy task ids)."""
    ids: set[str] = set()
    for record in records:
        ids.update(i for i in (record.agent_id, record.task_id) if i)
    return ids


def audit(jobs: Iterable[Job], held: set[str]) -> Audit:
    """Compare the emulator's jobs with the ids a store holds."""
    jobs = list(jobs)
    leaked = sorted(job.id for job in jobs if not job.is_terminal)
    per_channel = Counter(job.channel for job in jobs)
    duplicates = sorted(channel for channel, n in per_channel.items() if n > 1)
    lost = sorted(job.id for job in jobs if job.id not in held)
    return Audit(
        leaked=len(leaked),
        duplicates=len(duplicates),
        lost=len(lost),
        jobs=len(jobs),
        leaked_ids=tuple(leaked),
        duplicate_channels=tuple(duplicates),
        lost_ids=tuple(lost),
    )
