"""The world's wake-ups: at most one pending per job, in a heap keyed by its deadline.

Nothing runs in the background: the world asks for the wake-ups due by "now" before it
answers anything (``_world.World.advance``). Replacing a job's wake-up leaves the old
heap entry behind, marked stale by the job's ``wake_gen``; stale entries are skipped when
popped and swept out when they outnumber the live ones. Stdlib only; no clock here.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from typing import Literal

from agora_stt_async.emulator._records import Job

WakeKind = Literal["run", "stop", "idle", "lifetime"]
"""STARTING → RUNNING, STOPPING → STOPPED, the idle timeout, the hard lifetime."""


class WakeHeap:
    """Pending wake-ups, at most one per job (its ``wake_at`` / ``wake_gen`` slots)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, WakeKind, Job]] = []
        self._tick = itertools.count()  # ties break in scheduling order
        self._pending = 0

    def set(self, job: Job, due: tuple[float, WakeKind] | None) -> None:
        """Replace ``job``'s pending wake-up with ``due`` (deadline, kind); ``None``: none."""
        job.wake_gen += 1
        if job.wake_at is not None:
            self._pending -= 1
            job.wake_at = None
        if due is None:
            return
        job.wake_at = due[0]
        self._pending += 1
        heapq.heappush(self._heap, (due[0], next(self._tick), job.wake_gen, due[1], job))
        if len(self._heap) > 4 * self._pending + 1024:
            # Superseded entries pile up when channels flap; drop them now and then.
            self._heap = [e for e in self._heap if e[4].wake_gen == e[2]]
            heapq.heapify(self._heap)

    def pop_due(self, now: float) -> Iterator[tuple[float, WakeKind, Job]]:
        """Yield (deadline, kind, job) for each wake-up due by ``now``, earliest first.

        The consumer may ``set`` new wake-ups between items; those due by ``now`` are
        yielded too, in deadline order.
        """
        while self._heap and self._heap[0][0] <= now:
            deadline, _, gen, kind, job = heapq.heappop(self._heap)
            if job.wake_gen != gen:
                continue  # superseded by a later set()
            job.wake_at = None
            self._pending -= 1
            yield deadline, kind, job
