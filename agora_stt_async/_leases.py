"""Leases in the session: exactly one session drives a task at a time (issue 10).

With a :class:`~agora_stt_async.stores.LeasingStore` (``RedisStore``), several sessions
in several processes share one set of task records. The rules:

* **Who drives.** A session drives (starts, watches, updates, reconciles, stops on exit)
  only the tasks it holds a lease on. ``start()`` takes the lease *before* it creates
  the record, so a record is never live without a lease unless its driver died; a key
  whose lease another live session holds is refused with ``SessionError`` ("driven by
  another worker"), so of N workers starting the same channel at once exactly one
  sends a join.
* **Renewal.** :class:`LeaseKeeper` renews every lease the session holds every third of
  the store's ``lease_ttl``, in the session's task group, in one round trip (on a
  connection of its own with ``RedisStore``), before anything else it does. Leases of
  tasks that ended are released at once. A lease that turns out to be gone (the renewal
  came too late, e.g. after a long pause) means another session may drive the task now:
  this session drops the task (forgets it, stops its timers, and neither sweeps nor
  stops it) and logs a warning. So does a session that cannot reach the store for a
  whole ``lease_ttl``: it cannot prove it still holds anything. A renewal with no answer
  after a third of ``lease_ttl`` counts as failed, so a store that hangs is noticed too.
* **Who may stop.** Any session: ``Session.stop(key)`` for a key it does not drive loads
  the record, and if nobody holds the lease (its driver is gone) adopts the task and
  stops it as its own; else sends the stop itself with the stored ids (and legacy
  token) and stores the result with a version check. The driver's next write then
  fails its version check, it reloads the record, and carries on from the stopped one.
* **Adoption.** When a worker dies its leases expire after at most ``lease_ttl``.
  ``Session.adopt_orphans()`` (and ``recover()``, which is the same with a leasing
  store) takes the lease on each live record no lease covers, re-reads it, reconciles
  it with the server (``state.Recovered``) and drives it from then on; with
  ``Session(adopt_interval=s)`` the session does so every ``s`` seconds by itself. A
  dead worker's tasks are thus driven again within ``lease_ttl + adopt_interval``.

Correctness never rests on the leases: every write is version-checked, so a session
that lost a lease without knowing has its next write refused.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, final

import anyio

from agora_stt_async import state as sm
from agora_stt_async._clock import Clock
from agora_stt_async._errors import AgoraSTTError, SessionError, UsageError
from agora_stt_async._handle import _Entry
from agora_stt_async.stores import LeasingStore, StoreConflictError

if TYPE_CHECKING:
    from agora_stt_async._session import Session

logger: Final = logging.getLogger("agora_stt_async.session")

CLAIMS_AT_ONCE: Final = 32
"""Leases acquired (or released) concurrently when adopting (or leaving)."""
RELEASE_TIMEOUT_S: Final = 5.0
"""How long leaving may spend releasing leases; unreleased ones simply expire."""
REMOTE_STOP_ATTEMPTS: Final = 5
"""Times a stop from a session that does not drive the task reloads after a conflict."""
DROPPED: Final = "DROPPED"
"""The ``new_phase`` of the ``hooks.TaskStateChanged`` a session emits when it drops a
task whose lease it lost: not a ``state.Phase`` (the task goes on, driven by another
worker), but the end of this session's part in it."""


def check_event_loop(store: object) -> None:
    """``ConfigurationError`` now if ``store`` cannot run on this event loop (a
    ``RedisStore`` on trio), rather than at the session's first write."""
    check = getattr(store, "check_event_loop", None)
    if callable(check):
        check()


def default_owner() -> str:
    """A name for this session that no other session has: host, process id, random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@final
class LeaseKeeper:
    """Holds, renews and releases one session's leases; adopts orphans if asked to.

    Args:
        session: the session whose tasks these are.
        store: the session's store, which offers leases.
        clock: the session's clock (its ``monotonic()`` times the renewals' validity).
        adopt_interval: seconds between automatic ``adopt_orphans()`` calls, or ``None``.
        owner: this session's name in the store (default: :func:`default_owner`).
    """

    def __init__(
        self,
        session: Session,
        store: LeasingStore,
        *,
        clock: Clock,
        adopt_interval: float | None = None,
        owner: str | None = None,
    ) -> None:
        self._session = session
        self.store: Final = store
        self.owner: Final = owner or default_owner()
        self.ttl: Final = store.lease_ttl
        self._clock = clock
        self._adopt_interval = adopt_interval
        self._held: set[str] = set()
        self._confirmed_at = clock.monotonic()
        self._adopting = adopt_interval is not None
        self._renewing = True

    @property
    def held(self) -> frozenset[str]:
        """The keys this session holds leases on (as far as it knows)."""
        return frozenset(self._held)

    # --- single leases ----------------------------------------------------------------

    async def acquire(self, key: str) -> bool:
        """Take (or extend) the lease on ``key``; ``False`` if another session holds it."""
        if await self.store.acquire_lease(key, self.owner, self.ttl):
            self._held.add(key)
            return True
        return False

    async def acquire_for_start(self, key: str) -> None:
        """``acquire(key)``, or ``SessionError`` naming the reason."""
        if not await self.acquire(key):
            raise SessionError(
                f"task {key!r} is driven by another worker (it holds the task's lease); "
                "start it there, or stop it from any worker with session.stop(key)"
            )

    async def release(self, key: str) -> None:
        """Give the lease on ``key`` up (quietly: an unreleased lease just expires)."""
        if key not in self._held:
            return
        self._held.discard(key)
        try:
            await self.store.release_lease(key, self.owner)
        except AgoraSTTError as error:
            logger.info("could not release the lease on %r (it will expire): %s", key, error)

    async def on_persisted(self, record: sm.TaskRecord) -> None:
        """Called after each write of a driven task: an ended task's lease is released."""
        if record.phase.is_terminal and record.key in self._held:
            await self.release(record.key)

    async def still_held(self, key: str) -> bool:
        return key in self._held and await self.store.lease_owner(key) == self.owner

    # --- adoption ---------------------------------------------------------------------

    async def claim(self, records: Iterable[sm.TaskRecord]) -> list[sm.TaskRecord]:
        """The live records among ``records`` whose lease this session won, re-read after
        winning it (a record read before may be stale). Ended ones are left alone."""
        claimed: list[sm.TaskRecord] = []
        limiter = anyio.CapacityLimiter(CLAIMS_AT_ONCE)

        async def claim_one(record: sm.TaskRecord) -> None:
            async with limiter:
                if not await self.acquire(record.key):
                    return
                fresh = await self._session._store.get(record.key)
                if fresh is None or fresh.phase.is_terminal:
                    await self.release(record.key)
                    return
                claimed.append(fresh)

        async with anyio.create_task_group() as tg:
            for record in records:
                if not record.phase.is_terminal:
                    tg.start_soon(claim_one, record)
        return sorted(claimed, key=lambda record: record.key)

    # --- the background work ----------------------------------------------------------

    def stop_adopting(self) -> None:
        """The session is leaving: adopt nothing more (renewals go on)."""
        self._adopting = False

    async def run(self) -> None:
        """Renew every ``ttl / 3`` seconds, and adopt every ``adopt_interval``; runs in the
        session's task group until the session leaves."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.keep_renewing)
            if self._adopt_interval is not None:
                tg.start_soon(self._adopt_loop, self._adopt_interval)

    async def keep_renewing(self) -> None:
        """Renew every ``ttl / 3`` seconds until cancelled or ``release_all()``. Also run
        by the session's exit while it stops its tasks: if the scope around the session
        was cancelled, ``run()`` went with the session's task group, and a long exit
        must not let its leases expire under it (another worker would adopt the tasks
        it is stopping)."""
        while True:
            await anyio.sleep(self.ttl / 3)
            if not self._renewing:
                return
            await self.renew()

    async def _adopt_loop(self, interval: float) -> None:
        while True:
            await anyio.sleep(interval)
            if not self._adopting:
                return
            try:
                report = await self._session.adopt_orphans()
            except AgoraSTTError as error:
                logger.info("adopting orphaned tasks failed: %s", error)
            else:
                if report.loaded:
                    logger.info("adopted %d orphaned tasks", report.loaded)

    async def renew(self) -> None:
        """Renew the leases of live tasks, drop the lost ones, release the ended ones.

        Renewal comes first, in one round trip: releasing ended tasks' leases one by one
        (through a busy pool) must not delay it past the TTL.
        """
        entries = self._session._entries
        ended = {
            key
            for key in self._held
            if (entry := entries.get(key)) is not None and entry.record.phase.is_terminal
        }
        keys = self._held - ended
        started = self._clock.monotonic()
        try:
            await self._renew(keys, started)
        finally:
            for key in ended:
                await self.release(key)

    async def _renew(self, keys: set[str], started: float) -> None:
        if not keys:
            self._confirmed_at = started
            return
        failure: str | None = None
        kept: set[str] = set()
        # Bounded: a store that stops answering without an error (a partition that drops
        # packets, a stopped server) must count as a failure too, or the "give up after
        # lease_ttl" promise above would wait on it forever.
        with anyio.move_on_after(self.ttl / 3) as scope:
            try:
                kept = await self.store.renew_leases(keys, self.owner, self.ttl)
            except AgoraSTTError as error:
                failure = str(error)
        if scope.cancelled_caught:
            failure = f"no answer within {self.ttl / 3:.1f} s"
        if failure is not None:
            if self._clock.monotonic() - self._confirmed_at < self.ttl:
                logger.warning(
                    "renewing %d task leases failed (will retry): %s", len(keys), failure
                )
                return
            logger.error("task leases unconfirmed for %.1f s: giving the tasks up", self.ttl)
        else:
            self._confirmed_at = started
        lost = (keys - kept) & self._held
        if lost:
            self._held -= lost
            drop_entries(self._session, lost)

    async def release_all(self) -> None:
        """Stop renewing and give every lease up (bounded; the rest expire)."""
        self._adopting = False
        self._renewing = False
        limiter = anyio.CapacityLimiter(CLAIMS_AT_ONCE)

        async def release(key: str) -> None:
            async with limiter:
                await self.release(key)

        with anyio.move_on_after(RELEASE_TIMEOUT_S):
            async with anyio.create_task_group() as tg:
                for key in list(self._held):
                    tg.start_soon(release, key)

    def __repr__(self) -> str:
        return f"LeaseKeeper(owner={self.owner!r}, ttl={self.ttl}, held={len(self._held)})"


# --- what the session calls -------------------------------------------------------------


def drop_entries(session: Session, keys: Iterable[str]) -> None:
    """Forget tasks whose lease this session lost: another session may drive them now."""
    for key in keys:
        entry = session._entries.pop(key, None)
        if entry is None:
            continue
        logger.warning(
            "task %r: this session's lease expired; another worker may drive it now", key
        )
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        server_id = entry.record.server_id
        if server_id and session._by_server_id.get(server_id) is entry:
            del session._by_server_id[server_id]
        entry.set_record(entry.record)  # wake waiters: they see the task is gone from here
        # Subscribers (the OpenTelemetry gauge of live tasks) learn that the task left.
        session._emit_phase(entry.record, entry.record.phase.value, DROPPED)


async def reload_after_conflict(session: Session, entry: _Entry) -> bool:
    """A write of ``entry`` met another version: load the stored record into it.

    ``True``: the session still drives the task, and the caller re-applies its event to
    the fresh record. ``False``: not a task this session drives (let the error out).

    Raises:
        SessionError: this session's lease is gone; the task was dropped from it.
    """
    key = entry.record.key
    keeper = session._leases
    if session._entries.get(key) is not entry:
        if keeper is not None and entry.config is not None and key not in keeper._held:
            # A task this session drove, dropped meanwhile (its lease was lost).
            raise SessionError(
                f"task {key!r} is driven by another worker now (this session's lease expired)"
            )
        return False  # a stop of a task driven elsewhere (stop_unowned): let it retry
    if keeper is not None and not await keeper.still_held(key):
        drop_entries(session, (key,))
        keeper._held.discard(key)
        raise SessionError(
            f"task {key!r} is driven by another worker now (this session's lease expired)"
        )
    fresh = await session._store.get(key)
    if fresh is None:
        return False
    entry.set_record(fresh)
    if fresh.server_id:
        session._by_server_id[fresh.server_id] = entry
    return True


async def stop_unowned(session: Session, key: str) -> None:
    """``Session.stop(key)`` for a key the session does not drive ("any session can stop
    any task").

    Raises:
        UsageError: no such task in the store either.
        SessionError: the record kept changing under this stop.
    """
    record = await session._store.get(key)
    if record is None:
        raise UsageError(f"no task {key!r} in this session or its store")
    if record.phase.is_terminal:
        return
    keeper = session._leases
    if keeper is not None and await keeper.acquire(key):
        # Nobody drives it (its worker died or left): adopt it, then stop it as our own.
        await session._adopt_records([record])
        adopted = session._entries.get(key)
        if adopted is not None:
            await session._run_in_group(session._stop(adopted))
            return
        record = await session._store.get(key)  # ended meanwhile, or someone else won
        if record is None or record.phase.is_terminal:
            return
    # Another session drives it: send the stop from here; the version check tells it.
    for _ in range(REMOTE_STOP_ATTEMPTS):
        entry = _Entry(record, None)
        try:
            await session._run_in_group(_stop_foreign(session, entry))
            return
        except StoreConflictError:
            fresh = await session._store.get(key)
            if fresh is None or fresh.phase.is_terminal:
                return
            record = fresh
    raise SessionError(f"task {key!r} kept changing while it was being stopped; try again")


async def _stop_foreign(session: Session, entry: _Entry) -> None:
    try:
        async with session._limiter, entry.lock:
            await session._drive(entry, sm.StopRequested())
    finally:  # the Persist of a foreign record registered it: forget it again
        server_id = entry.record.server_id
        if server_id and session._by_server_id.get(server_id) is entry:
            del session._by_server_id[server_id]
