"""``Session``: runs many STT tasks safely; the I/O shell around ``state``.

The session never decides anything itself: for every task it feeds events to
``state.step`` and executes the actions that come back, in order (``Persist`` before
the request it guards). What it adds is I/O and concurrency:

* every request runs in the session's anyio task group, so a caller cancelled in the
  middle of ``start()`` does not abandon a request that may have created a task: the
  session finishes it, records the id, and owns the task (it is stopped on exit);
* one lock per task key serialises the work on a task; a ``CapacityLimiter`` bounds
  how many tasks are being worked on at once;
* a background refresh keeps server statuses current, listing v7 agents page by page
  instead of querying each one, and querying only what the list cannot answer;
* leaving ``async with`` stops every task the session owns, shielded from
  cancellation and bounded in time, and raises ``StopIncompleteError`` naming the
  tasks it could not confirm stopped (logs it, if the body raised). That holds when
  the scope around the session is cancelled too (a server shutting down), although the
  session's task group, with the requests in flight, is cancelled with it: a write
  that records an answer is shielded, and a task whose request was cut off is
  re-established (``state.Recovered``: reconcile, stop again) before it is stopped.

Reconciling an ambiguous start and ``recover()`` live in ``_reconcile.py``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, Final, NamedTuple, final

import anyio
import attrs
from anyio.abc import TaskGroup
from typing_extensions import assert_never

from agora_stt_async import _actions as actions
from agora_stt_async import state as sm
from agora_stt_async._client import AsyncClient
from agora_stt_async._clock import Clock
from agora_stt_async._converter import structure_request, unstructure_request
from agora_stt_async._enums import AgentStatus, ApiGeneration
from agora_stt_async._errors import (
    AgoraSTTError,
    ConfigurationError,
    SessionError,
    StopIncompleteError,
    UsageError,
    ValidationError,
)
from agora_stt_async._handle import WAIT_POLL_S, StartConfig, TaskHandle, _Entry, stop_refused
from agora_stt_async._leases import (
    LeaseKeeper,
    check_event_loop,
    reload_after_conflict,
    stop_unowned,
)
from agora_stt_async._models import (
    JoinRequest,
    LegacyStartRequest,
    UpdateRequest,
)
from agora_stt_async._ratelimit import plan_refresh, rotate
from agora_stt_async._reconcile import reconcile_v7, refresh_v7
from agora_stt_async.hooks import ReconcileOutcome, TaskStateChanged
from agora_stt_async.notifications import AgentJoined, AgentLeft, Event
from agora_stt_async.stores import LeasingStore, MemoryStore, StoreConflictError, TaskStore

logger: Final = logging.getLogger("agora_stt_async.session")


DEFAULT_MAX_IN_FLIGHT: Final = 64
DEFAULT_STOP_TIMEOUT_S: Final = 60.0
DEFAULT_REFRESH_INTERVAL_S: Final = 5.0
MIN_REFRESH_GAP_S: Final = 0.2
"""Sweeps asked for by waiters are at least this far apart, so 500 waiters cost one
sweep, not 500."""
QUERY_INSTEAD_OF_LIST_BELOW: Final = 4
"""With fewer live v7 agents than this, a sweep queries each; from here it lists."""
DEFAULT_EVENT_SWEEP_INTERVAL_S: Final = 60.0
"""With webhooks flowing, the reconciliation sweep runs this often (seconds)."""
UNMATCHED_EVENTS_KEPT: Final = 1000
MAX_STOP_PAUSE_S: Final = 10.0
"""Longest pause between two stops of one task while leaving (refused stops repeat)."""
ENDED_TASKS_KEPT: Final = 10_000
"""Ended tasks a session keeps (for ``handle(key)``, ``statistics()`` and webhooks of
ended agents); older ones are forgotten, so a long-running session over thousands of
churned channels stays bounded. A ``TaskHandle`` already held keeps working."""
MAX_STORE_CONFLICTS: Final = 8
"""Times one drive reloads its record after another session changed it (issue 10)."""


@attrs.frozen
class SessionStatistics:
    """Counts of the session's tasks by phase, and what it sent (from the client)."""

    tasks: int
    by_phase: Mapping[str, int]
    sweeps: int
    reports: int


@attrs.frozen
class RecoveryReport:
    """What ``Session.recover()`` found in the store."""

    loaded: int
    live: tuple[str, ...]
    ended: tuple[str, ...]
    unresolved: tuple[str, ...]


def _check_session_args(
    *,
    max_in_flight: object,
    stop_timeout: object,
    refresh_interval: object,
    list_page_size: object,
    store: object,
    policy: object,
) -> None:
    """Bad arguments are a ConfigurationError naming the argument, at construction."""
    for name, count in (("max_in_flight", max_in_flight), ("list_page_size", list_page_size)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigurationError(f"{name} must be an integer >= 1, got {count!r}")
    for name, seconds in (("stop_timeout", stop_timeout), ("refresh_interval", refresh_interval)):
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 < seconds < float("inf")  # also refuses NaN
        ):
            raise ConfigurationError(f"{name} must be a finite number of seconds > 0")
    if store is not None and not isinstance(store, TaskStore):
        raise ConfigurationError(f"store must be a TaskStore, got {type(store).__name__}")
    if policy is not None and not isinstance(policy, sm.MachinePolicy):
        raise ConfigurationError("policy must be a state.MachinePolicy")


@final
class Session:
    """Runs many STT tasks, one per key, and never loses one.

    Args:
        client: the ``AsyncClient`` every request goes through.
        store: where task records live (default: a ``MemoryStore``). Each change is
            stored before the request it guards is sent.
        max_in_flight: tasks being worked on (started, updated, stopped) at once.
        stop_on_exit: stop every owned task when leaving ``async with``.
        stop_timeout: seconds the exit may spend stopping tasks.
        refresh_interval: seconds between background status sweeps when nobody waits.
        list_page_size: the ``limit`` of the list requests sweeps and reconciles send.
        event_sweep_interval: once webhooks flow (a first 101/102 for one of this
            session's tasks was ``feed``-ed), seconds between the slow reconciliation
            sweeps that catch what events missed; waiting callers then no longer
            trigger sweeps of their own. Not with a store that has leases
            (``RedisStore``): there an event may reach a worker that does not drive its
            task, which only records it, so sweeps keep the ``refresh_interval`` pace.
        policy: the state machine's numbers (token window margin, retry interval).
        clock: time source; defaults to the client's (``AsyncClient(clock=...)``).
        adopt_interval: with a store that has leases (``RedisStore``), seconds between
            automatic ``adopt_orphans()`` calls; ``None`` (the default) adopts only when
            asked. See ``_leases.py`` for who drives which task.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        store: TaskStore | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        stop_on_exit: bool = True,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT_S,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL_S,
        list_page_size: int = 100,
        event_sweep_interval: float = DEFAULT_EVENT_SWEEP_INTERVAL_S,
        policy: sm.MachinePolicy | None = None,
        clock: Clock | None = None,
        adopt_interval: float | None = None,
    ) -> None:
        if not isinstance(client, AsyncClient):
            raise ConfigurationError("Session needs an AsyncClient")
        _check_session_args(
            max_in_flight=max_in_flight,
            stop_timeout=stop_timeout,
            refresh_interval=refresh_interval,
            list_page_size=list_page_size,
            store=store,
            policy=policy,
        )
        store_app_id = getattr(store, "app_id", None)
        if isinstance(store_app_id, str) and store_app_id != client.app_id:
            # A store bound to another App ID (RedisStore(app_id=...)) would file this
            # App ID's tasks among the other's, where its workers would adopt and stop
            # them with credentials that cannot reach them.
            raise ConfigurationError(
                f"the store is bound to App ID {store_app_id!r}, the client to"
                f" {client.app_id!r}: give both the same App ID"
            )
        self.client: Final = client
        self._store: TaskStore = store if store is not None else MemoryStore()
        self._limiter = anyio.CapacityLimiter(max_in_flight)
        self._stop_on_exit = stop_on_exit
        self._stop_timeout = stop_timeout
        self._refresh_interval = refresh_interval
        self._waiters = 0  # callers blocked in wait_for() or stop(wait=True)
        self.list_page_size: Final = list_page_size
        self._policy = policy or sm.DEFAULT_POLICY
        self._clock = clock or client.clock
        self._entries: dict[str, _Entry] = {}
        self._by_server_id: dict[str, _Entry] = {}
        self._channel_locks: dict[str, _ChannelLock] = {}
        self._ended: deque[_Entry] = deque()  # oldest first; see _note_ended()
        self._creating: dict[str, anyio.Event] = {}  # keys whose start() is creating them
        self._tg: TaskGroup | None = None
        self._exit_tg: TaskGroup | None = None  # while leaving: where timers run
        self._stack: AsyncExitStack | None = None
        self._kick = anyio.Event()
        self._sweeps = 0
        self._reports = 0
        self._query_rotation = 0  # refresh planning: where the next sweep's queries start
        self._planned_interval = 0.0
        self._closing = False
        if not event_sweep_interval > 0:  # also refuses NaN
            raise ConfigurationError("event_sweep_interval must be > 0")
        self._event_sweep_interval = event_sweep_interval
        self._events_seen_at: float | None = None
        self.unmatched_events: deque[Event] = deque(maxlen=UNMATCHED_EVENTS_KEPT)
        # --- leases (issue 10): with a shared store, one session drives each task ---
        self._leases: LeaseKeeper | None = None
        if isinstance(self._store, LeasingStore):
            self._leases = LeaseKeeper(
                self, self._store, clock=self._clock, adopt_interval=adopt_interval
            )
        elif adopt_interval is not None:
            raise ConfigurationError("adopt_interval needs a store with leases (RedisStore)")

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Session:
        if self._stack is not None:
            raise UsageError("a Session can be entered once")
        check_event_loop(self._store)  # a RedisStore on trio: say so now
        self._stack = AsyncExitStack()
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._tg.start_soon(self._refresh_loop)
        if self._leases is not None:
            self._tg.start_soon(self._leases.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop every owned task (shielded, within ``stop_timeout``), then close.

        An exception of the ``async with`` body (a cancellation included: a server
        shutting down) comes out as itself, never wrapped in an ``ExceptionGroup``;
        a ``StopIncompleteError`` is then logged (ERROR, logger
        ``agora_stt_async.session``) rather than raised in its place.

        Raises:
            StopIncompleteError: the body ended normally and some task could not be
                confirmed stopped.
        """
        if self._stack is None or self._tg is None:
            raise UsageError("the Session was not entered")
        incomplete: StopIncompleteError | None = None
        if self._leases is not None:
            self._leases.stop_adopting()
        try:
            if self._stop_on_exit:
                # Shielded: a cancelled caller must not leave paid tasks running. Bounded:
                # _stop_everything gives up after stop_timeout.
                with anyio.CancelScope(shield=True):
                    incomplete = await self._stop_everything()
        finally:
            if self._leases is not None:  # what still runs is adopted by other sessions
                with anyio.CancelScope(shield=True):
                    await self._leases.release_all()
            self._closing = True
            if incomplete is not None and exc is not None:
                # The body's exception goes on (re-raised by the group's exit below), so
                # the report can only be logged, and before that exit, or it is lost.
                logger.error("%s", incomplete)
            self._tg.cancel_scope.cancel()
            try:
                await self._exit_group(exc_type, exc, tb)
            except BaseException:
                if incomplete is not None and exc is None:
                    logger.error("%s", incomplete)  # a task of the group failed: say both
                raise
        if incomplete is not None and exc is None:
            raise incomplete

    async def _exit_group(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave the session's task group. A single exception comes out as itself (house
        style 4.5, as trio's ``raise_single_exception_from_group``); returning means the
        body's own exception, if any, goes on unchanged."""
        assert self._stack is not None
        try:
            await self._stack.__aexit__(exc_type, exc, tb)
        except BaseException as error:
            single = _only_exception(error)
            if single is None:
                raise  # not a group, or several independent failures: as they are
            if single is exc:
                return  # the body's exception, with its own traceback
            context = single.__context__
            try:
                raise single  # the group is noise; the exception's own context is kept
            finally:
                single.__context__ = context

    async def _stop_everything(self) -> StopIncompleteError | None:
        with anyio.move_on_after(self._stop_timeout):
            async with anyio.create_task_group() as timers:
                # The timers the stops ask for (retries of unclear stops, polls of tasks
                # the server is stopping) run in this group while leaving: if the scope
                # around the session was cancelled (a server shutting down), the
                # session's own group, with its timers and sweeps, is gone.
                self._exit_tg = timers
                if self._leases is not None:  # its renewals may be gone with the group
                    timers.start_soon(self._leases.keep_renewing)
                try:
                    async with anyio.create_task_group() as stops:
                        for entry in list(self._entries.values()):
                            if entry.record.phase.is_terminal:
                                continue
                            if entry.record.wake_at is not None:  # re-armed here
                                self._schedule_tick(entry, entry.record.wake_at)
                            stops.start_soon(self._stop_quietly, entry)
                finally:
                    self._exit_tg = None
                timers.cancel_scope.cancel()  # every stop is over: no timer is needed
        left = tuple(
            key for key, entry in self._entries.items() if not entry.record.phase.is_terminal
        )
        if left:
            return StopIncompleteError(left)
        return None

    async def _stop_quietly(self, entry: _Entry) -> None:
        # A stop refused after the client's retries (a 429 or 5xx streak, an empty
        # retry budget) leaves the task ACTIVE: send it again, pausing longer each time,
        # until the exit's stop_timeout ends (issue 7: giving up at once left paid tasks
        # running while time remained to stop them).
        # A stop repeated in the background (after an unclear answer) can be refused the
        # same way, and the record falls back to ACTIVE: send it again too.
        pause = self._policy.retry_interval_s
        while True:
            try:
                await self._stop(entry)
                while not stop_refused(entry.record):
                    if entry.record.phase.is_terminal:
                        return
                    if self._entries.get(entry.record.key) is not entry:
                        return  # its lease was lost: another session drives it now
                    changed = entry.changed
                    self._kick_refresh()
                    await changed.wait()
            except AgoraSTTError as error:
                if not stop_refused(entry.record):
                    logger.warning("could not stop task %r: %s", entry.record.key, error)
                    return
                logger.info(
                    "stop of task %r refused (%s); again in %.1fs", entry.record.key, error, pause
                )
            await self._clock.sleep(pause)
            pause = min(pause * 2, MAX_STOP_PAUSE_S)

    # --- public operations --------------------------------------------------------------

    async def start(
        self,
        key: str,
        config: StartConfig,
        *,
        api: ApiGeneration | str | None = None,
    ) -> TaskHandle:
        """Start the task ``key`` with ``config``; return its handle.

        ``key`` is a non-empty string naming the task. ``config`` is a ``JoinRequest``
        (v7, the default) or a ``LegacyStartRequest`` (``api="legacy"``; the builder
        token is acquired, and re-acquired when its 5-minute window passes, for you).
        Starting a key that is already live with the same ``config`` returns its handle.
        If the caller is cancelled, the start still completes in the background: the
        task is owned by the session and stopped on exit.

        Raises:
            ValidationError: ``key`` is not a non-empty string, or ``config`` does not
                match ``api``.
            UsageError: ``key`` is live with another ``config`` (or API generation):
                stop it first, or use another key.
            APIError: the server refused the start (nothing is running).
            SessionError: the outcome could not be established (the session keeps
                trying in the background).
        """
        self._require_open()
        given: object = key  # typed str, but callers pass anything
        if not isinstance(given, str) or not given:
            raise ValidationError("key", "a non-empty string", given)
        generation = _generation(config, api)
        request = unstructure_request(config)
        while True:
            existing = self._entries.get(key)
            if existing is not None and not existing.record.phase.is_terminal:
                _check_same_start(existing.record, generation, request)
                return TaskHandle(self, existing)
            creating = self._creating.get(key)
            if creating is None:
                break
            # Another call is creating this key's record right now: share its task
            # rather than refuse (or send a second join). If that start ended without
            # a live task, this call starts its own.
            await creating.wait()
        created = self._creating[key] = anyio.Event()
        try:
            return await self._create_and_start(key, config, generation, request)
        finally:
            del self._creating[key]
            created.set()

    async def _create_and_start(
        self, key: str, config: StartConfig, generation: ApiGeneration, request: dict[str, Any]
    ) -> TaskHandle:
        now = self._clock.now()
        if generation is ApiGeneration.V7:
            assert isinstance(config, JoinRequest)
            record = sm.new_record(
                key, generation, channel=config.rtc_config.channel_name, name=config.name, now=now
            )
        else:
            record = sm.new_record(key, generation, channel=config.rtc_config.channel_name, now=now)
        record = attrs.evolve(record, request=request)
        if self._leases is not None:  # the lease first: a live record always has a driver
            await self._leases.acquire_for_start(key)
        try:
            if not await self._store.create(record):
                stored = await self._store.get(key)
                # A PENDING record means nothing was sent (the next write, STARTING,
                # comes before the request): a start cancelled (or crashed) right after
                # its create. Take the key over rather than refuse it forever.
                if stored is not None and stored.phase not in _REPLACEABLE:
                    raise SessionError(
                        f"task {key!r} is live in the store but not driven by this session; "
                        "call recover() to adopt it"
                    )
                if stored is not None:
                    # Versions keep rising across the key's lifecycles: a write prepared
                    # against the ended one (a stop from another worker, read before the
                    # restart) must fail its version check on this one, never pass it
                    # because the new record counted up to the same number (ABA).
                    record = attrs.evolve(record, version=stored.version + 1)
                await self._store.put(
                    record, expected_version=None if stored is None else stored.version
                )
        except BaseException:
            if self._leases is not None and key not in self._entries:
                with anyio.CancelScope(shield=True):
                    await self._leases.release(key)
            raise
        entry = _Entry(record, config)
        self._entries[key] = entry
        await self._run_in_group(self._start(entry))
        return TaskHandle(self, entry)

    def handle(self, key: str) -> TaskHandle:
        """The handle of a task this session knows; ``KeyError``-free: ``UsageError``.

        A session keeps the last ``ENDED_TASKS_KEPT`` (10,000) ended tasks; older ones
        are forgotten (``UsageError`` here; a handle already held keeps working)."""
        entry = self._entries.get(key)
        if entry is None:
            raise UsageError(f"no task {key!r} in this session")
        return TaskHandle(self, entry)

    def handles(self) -> list[TaskHandle]:
        return [TaskHandle(self, entry) for entry in self._entries.values()]

    async def stop(self, key: str) -> None:
        """Stop the task ``key`` (idempotent).

        A key this session does not drive is stopped from its stored record: any session
        can stop any task of a shared store (see ``_leases.py``).

        Raises:
            UsageError: neither this session nor its store knows ``key``.
        """
        entry = self._entries.get(key)
        if entry is None:
            self._require_open()
            await stop_unowned(self, key)
            return
        await TaskHandle(self, entry).stop()

    async def feed(self, event: Event) -> bool:
        """Apply a webhook event (``agora_stt_async.notifications``) to its task.

        Events are hints: one is applied only if it moves the task forward from the
        status last observed (STARTING → RUNNING, anything live → STOPPED/FAILED), so an
        out-of-order or duplicate event never moves a task backwards, and the background
        sweep still catches anything the events missed. A 101 (agent joined) only says
        the agent was RUNNING once: it moves a task that was not yet RUNNING, never one
        the server reported RECOVERING since. From the first 101/102 that matches a
        task of this session on, waiting callers no longer trigger sweeps: the session
        falls back to one reconciliation sweep every ``event_sweep_interval`` seconds
        (not with a store that has leases: see ``Session``'s ``event_sweep_interval``).

        Returns ``True`` if the event matched a task of this session; events for
        unknown agents are kept (bounded) in ``unmatched_events``, and applied if the
        agent turns out to be one of this session's (a 101 can overtake the join's
        answer).
        """
        hint = _observation(event)
        if hint is None:
            return False
        entry = self._by_server_id.get(hint.server_id)
        if entry is None:
            # Not (yet) ours: with several workers, most likely another worker's task,
            # which says nothing about whether this session's events arrive.
            self.unmatched_events.append(event)
            return False
        self._note_events_flowing()
        await self._feed_hint(entry, hint)
        return True

    def statistics(self) -> SessionStatistics:
        by_phase: dict[str, int] = {}
        for entry in self._entries.values():
            by_phase[entry.record.phase.value] = by_phase.get(entry.record.phase.value, 0) + 1
        return SessionStatistics(
            tasks=len(self._entries), by_phase=by_phase, sweeps=self._sweeps, reports=self._reports
        )

    async def recover(self) -> RecoveryReport:
        """Adopt what the store holds after a restart: reconcile each record with the
        server, resume watching the live ones, and mark the ended ones.

        Records this session already drives are skipped. With a store that has leases
        (``RedisStore``), this is ``adopt_orphans()``: tasks other sessions drive are
        theirs.
        """
        self._require_open()
        if self._leases is not None:
            return await self.adopt_orphans()
        return await self._adopt_records(await self._store.all())

    async def adopt_orphans(self) -> RecoveryReport:
        """With a store that has leases: take over the live tasks no session drives (their
        worker died or left), reconcile them with the server and drive them from now on;
        they are stopped on exit like the session's own. Without leases: ``recover()``.
        """
        self._require_open()
        if self._leases is None:
            return await self.recover()
        return await self._adopt_records(await self._leases.store.unleased())

    async def _adopt_records(self, records: list[sm.TaskRecord]) -> RecoveryReport:
        loaded = [r for r in records if r.key not in self._entries]
        if self._leases is not None:  # only the records whose lease this session wins
            claimed = await self._leases.claim(loaded)
            loaded = [r for r in claimed if r.key not in self._entries]
        adopted: list[_Entry] = []
        async with anyio.create_task_group() as tg:
            for record in loaded:
                config = _config_from(record)
                entry = _Entry(record, config)
                self._entries[record.key] = entry
                adopted.append(entry)
                if record.server_id:
                    self._by_server_id[record.server_id] = entry
                if record.phase.is_terminal:
                    self._note_ended(entry)
                else:
                    tg.start_soon(self._drive_quietly, entry, sm.Recovered())
        # An entry may be gone again (its lease was lost meanwhile): not live here.
        kept = [e for e in adopted if self._entries.get(e.record.key) is e]
        live = tuple(e.record.key for e in kept if not e.record.phase.is_terminal)
        ended = tuple(e.record.key for e in adopted if e.record.phase.is_terminal)
        unresolved = tuple(
            e.record.key
            for e in kept
            if e.record.phase in (sm.Phase.RECONCILING, sm.Phase.STARTING)
        )
        return RecoveryReport(loaded=len(loaded), live=live, ended=ended, unresolved=unresolved)

    # --- running work in the group ------------------------------------------------------

    def _require_open(self) -> None:
        if self._tg is None or self._closing:
            raise UsageError("use the Session inside 'async with Session(...) as session:'")

    async def _run_in_group(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the session's task group and wait for it.

        If the caller is cancelled, the work goes on: it owns requests that may have
        changed the server's state.

        Raises:
            UsageError: the session is not open (never entered, or closed).
            SessionError: the session closed while the work ran (it was cancelled).
        """
        if self._tg is None or self._closing:
            work.close()
            raise UsageError("the Session is not open")
        done = anyio.Event()
        outcome: list[BaseException] = []
        finished = False

        async def runner() -> None:
            nonlocal finished
            try:
                await work
                finished = True
            except Exception as error:  # noqa: BLE001 - re-raised in the waiting caller
                outcome.append(error)
            finally:
                done.set()

        self._tg.start_soon(runner)
        await done.wait()
        if outcome:
            raise outcome[0]
        if not finished:  # cancelled by the session's exit: no silent success
            raise SessionError("the Session closed before the operation finished")

    # --- the per-task drivers -----------------------------------------------------------

    async def _start(self, entry: _Entry) -> None:
        async with self._limiter, entry.lock:
            await self._drive(entry, sm.StartRequested())
        record = entry.record
        if record.phase is sm.Phase.FAILED:
            if entry.error is not None:
                raise entry.error
            raise SessionError(f"task {record.key!r} could not start: {record.last_error}")

    async def _stop(self, entry: _Entry) -> None:
        async with self._limiter, entry.lock:
            if entry.record.phase.is_terminal:
                return
            await self._drive(entry, sm.StopRequested())
            if entry.record.phase is sm.Phase.ACTIVE:
                # The stop was refused outright (e.g. 429 after the retries): the task
                # still runs. Say so; calling stop() again sends a new stop.
                raise SessionError(
                    f"task {entry.record.key!r} was not stopped: {entry.record.last_error}"
                )

    async def _update(self, entry: _Entry, body: UpdateRequest) -> None:
        async with self._limiter, entry.lock:
            entry.pending_update = body
            entry.last_update = None
            try:
                await self._drive(entry, sm.UpdateRequested())
            finally:
                entry.pending_update = None
        if entry.last_update is not None:
            raise entry.last_update

    async def _drive_quietly(self, entry: _Entry, event: sm.AnyEvent) -> None:
        try:
            async with self._limiter, entry.lock:
                await self._drive(entry, event)
        except AgoraSTTError as error:
            logger.warning("task %r: %s", entry.record.key, error)

    async def _drive(self, entry: _Entry, event: sm.AnyEvent) -> None:
        """Feed ``event`` and execute the actions, feeding their answers back, until the
        machine asks for nothing more. The caller holds ``entry.lock``.

        If the task's last drive was cut off mid-way (cancelled with the session's task
        group when the scope around the session was, or failed), what it had sent may
        or may not have happened, and its answer is lost (a join's agent id, say): after
        ``event``, the task is re-established with ``Recovered``, as after a restart
        (reconcile the start, send the stop again, query)."""
        cut_off = entry.unfinished
        await self._run_steps(entry, event)
        if cut_off and not isinstance(event, sm.Recovered) and not entry.record.phase.is_terminal:
            await self._run_steps(entry, sm.Recovered())

    async def _run_steps(self, entry: _Entry, event: sm.AnyEvent) -> None:
        pending: list[sm.AnyEvent] = [event]
        conflicts = 0
        while pending:
            current = pending.pop(0)
            result = sm.step(entry.record, current, now=self._clock.now(), policy=self._policy)
            entry.unfinished = True  # until every answer is in and recorded
            for action in result.actions:
                try:
                    answer = await self._execute(entry, action)
                except StoreConflictError:
                    # Another session changed the record (a stop sent from another
                    # worker): reload it, and apply the event again to the fresh record.
                    # Persist is always a step's first action: nothing else was done yet.
                    conflicts += 1
                    if conflicts > MAX_STORE_CONFLICTS or not await reload_after_conflict(
                        self, entry
                    ):
                        raise
                    pending.insert(0, current)
                    break
                if answer is not None:
                    pending.append(answer)
        entry.unfinished = False

    async def _execute(self, entry: _Entry, action: sm.AnyAction) -> sm.AnyEvent | None:
        match action:
            case sm.Persist():
                # Shielded: a cancellation arriving just after a request was answered
                # (an agent id in hand) must not lose the answer between the two. The
                # store's own timeouts bound the write.
                with anyio.CancelScope(shield=True):
                    await self._store.put(action.record, expected_version=action.expected_version)
                    if action.record.server_id:
                        self._claim(action.record.server_id, entry)
                    previous = entry.record
                    entry.set_record(action.record)
                if action.record.phase.is_terminal and not previous.phase.is_terminal:
                    self._note_ended(entry)
                self._emit_state_change(previous, action.record)
                if self._leases is not None:
                    await self._leases.on_persisted(action.record)
                return None
            case sm.AcquireToken():
                return await actions.acquire(self.client, self._clock, entry, action)
            case sm.SendJoin():
                return await actions.join(self.client, entry)
            case sm.SendStart():
                return await actions.legacy_start(self.client, self._clock, entry, action)
            case sm.Reconcile():
                outcome = await reconcile_v7(self, entry, action)
                self._emit_reconcile(entry, action, outcome)
                return outcome
            case sm.SendQuery():
                return await actions.query(self.client, self._clock, entry, action)
            case sm.SendUpdate():
                return await actions.update(self.client, entry, action)
            case sm.SendLeave():
                return await actions.leave(self.client, action)
            case sm.SendStop():
                return await actions.legacy_stop(self.client, action)
            case sm.WakeAt():
                self._schedule_tick(entry, action.deadline)
                return None
            case sm.Report():
                self._reports += 1
                logger.warning("%s", action.anomaly)
                return None
            case _:
                assert_never(action)

    def _note_ended(self, entry: _Entry) -> None:
        """``entry`` ended: remember it, and forget the oldest ended tasks beyond
        ``ENDED_TASKS_KEPT`` (their entry and server id), so memory stays bounded."""
        if self._entries.get(entry.record.key) is not entry:
            return  # not one this session drives (a stop sent for another worker's task)
        self._ended.append(entry)
        while len(self._ended) > ENDED_TASKS_KEPT:
            old = self._ended.popleft()
            if not old.record.phase.is_terminal:
                continue
            if self._entries.get(old.record.key) is old:
                del self._entries[old.record.key]
            server_id = old.record.server_id
            if server_id and self._by_server_id.get(server_id) is old:
                del self._by_server_id[server_id]
            if old.timer is not None:
                old.timer.cancel()
                old.timer = None

    def _schedule_tick(self, entry: _Entry, deadline: float) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
        scope = anyio.CancelScope()
        entry.timer = scope
        group = self._exit_tg or self._tg
        assert group is not None

        async def tick() -> None:
            with scope:
                await self._clock.sleep(max(0.0, deadline - self._clock.now()))
                if entry.timer is scope:
                    entry.timer = None
                await self._drive_quietly(entry, sm.Tick())

        group.start_soon(tick)

    # --- background refresh -------------------------------------------------------------

    def _note_events_flowing(self) -> None:
        """An event for one of this session's tasks came: webhooks reach it."""
        if self._events_seen_at is None:
            self._kick.set()  # the first event: the refresh loop moves to the slow sweep
        self._events_seen_at = self._clock.monotonic()

    def _events_flowing(self) -> bool:
        # Once a first status event for one of our tasks came, webhooks are set up: stay
        # on the slow sweep. An agent is silent between its 101 and its 102 (hours,
        # often), so a silence says nothing about lost events; the sweep catches those,
        # at its own pace.
        # SPEC-SILENT: how to tell a broken webhook from a quiet one; we don't try.
        # SPEC-SILENT: with a store that has leases (several workers), a webhook for a
        # task may reach a worker that does not drive it (behind a load balancer, about
        # (N-1)/N of them), which only records it (unmatched_events); the driver learns
        # of the change from its sweeps alone. Those keep the polling pace then, so
        # webhooks never make a task's status staler than polling would.
        return self._events_seen_at is not None and self._leases is None

    def _kick_refresh(self) -> None:
        if not self._events_flowing():
            self._kick.set()

    def _emit_state_change(self, previous: sm.TaskRecord, record: sm.TaskRecord) -> None:
        if previous.phase is not record.phase:
            self._emit_phase(record, previous.phase.value, record.phase.value)

    def _emit_phase(self, record: sm.TaskRecord, old_phase: str, new_phase: str) -> None:
        """Tell hook subscribers ``record``'s task went from ``old_phase`` to ``new_phase``
        (a ``state.Phase`` value, or ``_leases.DROPPED``)."""
        hooks = self.client.hooks
        if not hooks.wants(TaskStateChanged):
            return
        status = record.server_status
        hooks.emit(
            TaskStateChanged(
                key=record.key,
                api=record.api.value,
                old_phase=old_phase,
                new_phase=new_phase,
                server_id=record.server_id,
                server_status=None if status is None else status.name,
            )
        )

    def _emit_reconcile(self, entry: _Entry, action: sm.Reconcile, outcome: sm.AnyEvent) -> None:
        hooks = self.client.hooks
        if not hooks.wants(ReconcileOutcome):
            return
        if isinstance(outcome, sm.ReconcileFound):
            event = ReconcileOutcome(
                key=entry.record.key,
                channel=action.channel,
                outcome="found",
                server_id=outcome.server_id,
                message=None,
            )
        elif isinstance(outcome, sm.ReconcileFailed):
            event = ReconcileOutcome(
                key=entry.record.key,
                channel=action.channel,
                outcome="failed",
                server_id=None,
                message=outcome.message,
            )
        else:
            event = ReconcileOutcome(
                key=entry.record.key,
                channel=action.channel,
                outcome="nothing",
                server_id=None,
                message=None,
            )
        hooks.emit(event)

    async def _refresh_loop(self) -> None:
        while True:
            interval = (
                self._event_sweep_interval if self._events_flowing() else self._refresh_interval
            )
            if self._waiters and not self._events_flowing():
                interval = min(interval, WAIT_POLL_S)  # someone waits: look more often
            interval = max(interval, self._planned_interval)
            with anyio.move_on_after(interval):
                await self._kick.wait()
            self._kick = anyio.Event()
            try:
                await self._sweep()
            except AgoraSTTError as error:
                logger.info("status sweep failed: %s", error)
            await anyio.sleep(MIN_REFRESH_GAP_S)

    async def _sweep(self) -> None:
        self._sweeps += 1
        live_v7: list[_Entry] = []
        live_legacy: list[_Entry] = []
        for entry in self._entries.values():
            record = entry.record
            if record.phase.is_terminal or record.server_id is None:
                continue
            (live_v7 if record.api is ApiGeneration.V7 else live_legacy).append(entry)
        to_query = list(live_legacy)
        list_pages = 0
        if len(live_v7) >= QUERY_INSTEAD_OF_LIST_BELOW:
            list_pages = -(-len(live_v7) // max(1, self.list_page_size))
            to_query.extend(await refresh_v7(self, live_v7))
        else:
            to_query.extend(live_v7)
        limiter = self.client.rate_limiter
        pace = 0.0
        if limiter is not None and to_query:
            # Within the budget (issue 11): list pages first (done above), then as many
            # single queries as the query budget of one interval leaves, in rotation,
            # paced; with many tasks each is refreshed less often instead of queueing.
            plan = plan_refresh(
                list_pages=list_pages,
                single=len(to_query),
                query_rate=limiter.group_rate("query"),
                interval=self._refresh_interval,
            )
            rotation = self._query_rotation
            chosen, self._query_rotation = rotate(len(to_query), rotation, plan.queries)
            to_query = [to_query[i] for i in chosen]
            pace = plan.pace
            self._planned_interval = max(
                self._refresh_interval, (list_pages + len(to_query)) * pace
            )
        if to_query:
            async with anyio.create_task_group() as tg:
                for index, entry in enumerate(to_query):
                    if pace and index:
                        await self._clock.sleep(pace)
                    tg.start_soon(self._observe_by_query, entry)

    async def _observe_by_query(self, entry: _Entry) -> None:
        record = entry.record
        if record.server_id is None or record.phase.is_terminal:
            return
        action = sm.SendQuery(server_id=record.server_id, token_name=record.token_name)
        async with self._limiter:
            answer = await actions.query(self.client, self._clock, entry, action)
        if answer is not None:
            await self._observe(entry, answer)

    async def _feed_hint(self, entry: _Entry, hint: _Hint) -> None:
        """Apply a webhook's status to a task, waiting for its lock, if it is news.

        A webhook carries the time of the event, not of the sending (start_ts is when the
        agent was created, whole seconds, on Agora's clock), so it cannot be ordered
        against queries by time. It is applied, as observed now, only when the status
        may follow the one recorded; anything else (a late 101 after a 102, a repeat) is
        dropped quietly rather than reported as a status moving backwards.

        A task that is busy (its start or stop in flight, perhaps retrying) gets the hint
        from the session's task group once it is free: the webhook's answer does not
        wait for it (NCS gives up after 10 s, spec §8.1).
        """
        try:
            entry.lock.acquire_nowait()
        except anyio.WouldBlock:
            if self._tg is not None and not self._closing:
                self._tg.start_soon(self._apply_hint_later, entry, hint)
                return
            await entry.lock.acquire()
        try:
            await self._apply_hint(entry, hint)
        finally:
            entry.lock.release()

    async def _apply_hint_later(self, entry: _Entry, hint: _Hint) -> None:
        try:
            async with entry.lock:
                await self._apply_hint(entry, hint)
        except AgoraSTTError as error:
            logger.warning("task %r: webhook not applied: %s", entry.record.key, error)

    async def _apply_hint(self, entry: _Entry, hint: _Hint) -> None:
        """The caller holds ``entry.lock``."""
        record = entry.record
        current = record.server_status
        status = hint.status
        if record.phase.is_terminal or current == status:
            return
        if hint.joined and current not in _JOINED_FROM:
            # A 101 says "RUNNING for the first time", whenever it arrives: a late one
            # must not take a task the server reported RECOVERING back to RUNNING.
            return
        if isinstance(current, AgentStatus) and status not in sm.V7_OBSERVABLE[current]:
            return
        observed = sm.StatusObserved(status=status, observed_at=self._clock.now())
        await self._drive(entry, observed)

    async def _observe(self, entry: _Entry, event: sm.AnyEvent) -> None:
        """Apply a sweep's observation unless the task is busy: its owner is already
        talking to the server about it, and the next sweep will catch up.

        A failure (the store refusing the write, the lease lost) is logged, not raised:
        sweeps run in task groups, and one task's error must not end the session; the
        next sweep observes again."""
        try:
            entry.lock.acquire_nowait()
        except anyio.WouldBlock:
            return
        try:
            if not entry.record.phase.is_terminal:
                await self._drive(entry, event)
        except AgoraSTTError as error:
            logger.warning("task %r: status not applied: %s", entry.record.key, error)
        finally:
            entry.lock.release()

    def _known_server_ids(self) -> frozenset[str]:
        return frozenset(self._by_server_id)

    def _claim(self, server_id: str, entry: _Entry) -> None:
        """Reserve ``server_id`` for ``entry`` (before its record is persisted, or as it
        is). Events that came for it before the session knew it are applied now: a 101
        can overtake the join's answer."""
        known = self._by_server_id.get(server_id) is entry
        self._by_server_id[server_id] = entry
        if known or not self.unmatched_events:
            return
        for event in list(self.unmatched_events):
            hint = _observation(event)
            if hint is None or hint.server_id != server_id:
                continue
            self.unmatched_events.remove(event)
            self._note_events_flowing()  # it was one of ours after all
            if self._tg is not None and not self._closing:  # after the current step
                self._tg.start_soon(self._apply_hint_later, entry, hint)

    @asynccontextmanager
    async def _channel_lock(self, channel: str) -> AsyncIterator[None]:
        # Counted, and dropped with its last user: a long-running session that sees
        # thousands of channels come and go keeps a lock only for those in use.
        lock = self._channel_locks.get(channel)
        if lock is None:
            lock = self._channel_locks[channel] = _ChannelLock()
        lock.users += 1
        try:
            async with lock.lock:
                yield
        finally:
            lock.users -= 1
            if not lock.users:
                del self._channel_locks[channel]


_REPLACEABLE: Final = frozenset(
    {phase for phase in sm.Phase if phase.is_terminal} | {sm.Phase.PENDING}
)


@final
class _ChannelLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = anyio.Lock()
        self.users = 0


def _generation(config: object, api: ApiGeneration | str | None) -> ApiGeneration:
    if isinstance(config, JoinRequest):
        inferred = ApiGeneration.V7
    elif isinstance(config, LegacyStartRequest):
        inferred = ApiGeneration.LEGACY
    else:
        raise ValidationError("config", "a JoinRequest (v7) or a LegacyStartRequest (legacy)")
    if api is not None:
        try:
            wanted = ApiGeneration(api)
        except ValueError:
            raise ValidationError("api", "'v7' or 'legacy'", api) from None
        if wanted is not inferred:
            raise ValidationError(
                "config",
                f"api={wanted.value!r} needs a "
                + ("JoinRequest" if wanted is ApiGeneration.V7 else "LegacyStartRequest"),
            )
    return inferred


def _only_exception(error: BaseException) -> BaseException | None:
    """The one exception an exception group holds, or ``None`` (not a group, or several).

    Duck-typed: on Python 3.10 anyio raises the ``exceptiongroup`` backport's class, and
    this module imports neither."""
    inner = getattr(error, "exceptions", None)
    if isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException):
        return inner[0]
    return None


def _check_same_start(
    record: sm.TaskRecord, generation: ApiGeneration, request: Mapping[str, object]
) -> None:
    """``UsageError`` unless a start of the live ``record``'s key asks for the same task:
    returning its handle would silently ignore the new request."""
    # A record adopted from a store may hold no request (nothing to compare): accepted.
    if record.api is generation and (record.request is None or record.request == request):
        return
    what = "API generation" if record.api is not generation else "start request"
    raise UsageError(
        f"task {record.key!r} is live with another {what}; stop it first, or start the"
        " new one under another key"
    )


class _Hint(NamedTuple):
    """What a webhook event says about an agent's status."""

    server_id: str
    status: AgentStatus
    joined: bool
    """A 101: the agent was RUNNING once (not: it is RUNNING now)."""


_JOINED_FROM: Final[frozenset[AgentStatus | None]] = frozenset(
    {None, AgentStatus.IDLE, AgentStatus.STARTING}
)
"""The statuses a 101 may move a task from: those before the first RUNNING."""


def _observation(event: Event) -> _Hint | None:
    """The hint of the events that say something about status."""
    if isinstance(event, AgentJoined):
        return _Hint(event.agent_id, AgentStatus.RUNNING, joined=True)
    if isinstance(event, AgentLeft):
        return _Hint(event.agent_id, event.status, joined=False)
    return None


def _config_from(record: sm.TaskRecord) -> StartConfig | None:
    """The start request stored with a record (so a restarted session can repeat it)."""
    if record.request is None:
        return None
    cls: type[StartConfig] = JoinRequest if record.api is ApiGeneration.V7 else LegacyStartRequest
    try:
        return structure_request(record.request, cls)
    except Exception:  # noqa: BLE001 - a stored body that no longer validates: go on without
        logger.warning("task %r: its stored start request could not be read", record.key)
        return None
