"""The emulated service's state: agents, legacy tasks, builder tokens and channels.

Rule 1: no HTTP here. Methods take validated values (``_validate``) and return records or
raise a ``WorldError``; ``_app`` owns the wire. Rule 2: all time comes from the injected
clock, all randomness from one ``random.Random`` seeded by the caller, so a run replays.

Theory of operation. Time-driven changes (STARTING → RUNNING, STOPPING → STOPPED, the idle
timeout, the 72 h lifetime, legacy task expiry) are not run by background tasks. Each job
(agent or task) has at most one pending wake-up in a heap, keyed by its next deadline;
every public method first pops the wake-ups that are due by ``clock.now()`` and applies
them in deadline order, at the deadline's time. So state is exact whenever it is observed,
nothing runs between requests, and 100,000 agents cost one heap entry each.

List indexes: agents are numbered in creation order (``seq``) and indexed by
``_index.AgentIndex`` per (App ID, status): a ``from_time``/``to_time`` window is a seq
range, ``meta.total`` is two ranks, and a page is read from the cursor's seq onwards.

Channels: there is no RTC here, only a host count per channel name (default
``default_hosts``). When a channel empties, the idle timer of each active job in it runs
from ``max(emptied_at, created_at)``; a host coming back cancels it.

Builder tokens (spec §5.1, §12.13/14): one instanceId mints many tokens, only one of
which may ever start a task; after that task ends, only a token minted after its end may
start the next one. Tokens carry a serial, so that rule is one dict lookup and one
comparison per start, with nothing stored per token until it starts a task.

Seam for NCS callbacks: every joined/left transition becomes a ``WorldEvent`` appended
to ``events`` and passed to ``on_event`` if set (``_callbacks`` turns them into signed
notifications; it calls ``advance()`` itself, so a 101 need not wait for a request).
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, deque
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from typing import Final

from agora_stt_async._enums import AgentStatus, LegacyTaskStatus
from agora_stt_async.emulator._config import EmulatorConfig, SupportsNow
from agora_stt_async.emulator._index import AgentIndex
from agora_stt_async.emulator._records import (
    MESSAGE_IDLE,
    MESSAGE_OK,
    Agent,
    BuilderToken,
    EventKind,
    Job,
    NameInUse,
    Page,
    StaleSequence,
    Task,
    TaskAlreadyStarted,
    TaskAlreadyStopped,
    TaskTokenMismatch,
    TokenExpired,
    TokenOfOtherApp,
    TransitionRefused,
    UnknownAgent,
    UnknownCursor,
    UnknownTask,
    UpdateTooSoon,
    WorldEvent,
    mint_token,
    pack,
    patch,
    read_token,
)
from agora_stt_async.emulator._timers import WakeHeap, WakeKind
from agora_stt_async.emulator._validate import JoinSpec, ListQuery, UpdateSpec

_ID_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Random bytes → alphabet in one translate(): ten times faster than random.choices. The
# slight bias of 256 % 36 does not matter for opaque ids (uniqueness is checked anyway).
_ID_TABLE: Final = bytes(ord(_ID_ALPHABET[b % 36]) for b in range(256))
_ACTIVE: Final = frozenset({AgentStatus.STARTING, AgentStatus.RUNNING, AgentStatus.RECOVERING})
_NEG_INF: Final = float("-inf")

# SPEC-SILENT: the exit message of an agent that hits the 72 h lifetime is undocumented;
# it is a normal end (status STOPPED), so "OK".
MESSAGE_LIFETIME: Final = MESSAGE_OK


@dataclass
class _Channel:
    hosts: int
    empty_since: float


# --- the world -----------------------------------------------------------------------------


class World:
    """Everything the emulated service knows. Not thread-safe; one event loop owns it."""

    def __init__(self, config: EmulatorConfig, clock: SupportsNow, seed: int | str = 0) -> None:
        self.config = config
        self.clock = clock
        self.seed = seed
        self.on_event: Callable[[WorldEvent], None] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget every agent, task, token and channel; re-seed the random ids."""
        self._rng = random.Random(f"{self.seed}/world")
        self._secret = self._rng.randbytes(32)
        self._agents: dict[str, Agent] = {}
        self._index = AgentIndex()
        self._names: dict[tuple[str, str], Agent] = {}
        self._tasks: dict[str, Task] = {}
        self._task_by_token: dict[str, Task] = {}
        self._last_task: dict[tuple[str, str], Task] = {}  # per (App ID, instanceId)
        self._channel_tasks: dict[str, set[Task]] = {}
        self._task_counts: Counter[tuple[str, LegacyTaskStatus]] = Counter()
        self._channels: dict[str, _Channel] = {}
        self._wakeups = WakeHeap()
        self.tokens_minted = 0
        self._now = _NEG_INF
        self.events: deque[WorldEvent] = deque(maxlen=self.config.events_kept)

    # -- time ----------------------------------------------------------------------------------

    def advance(self) -> float:
        """Apply every time-driven change due by now; return now.

        The world's time never goes back, even if the clock does (a wall clock stepped by
        NTP): creation order must stay time order for the list windows.
        """
        now = self._now = max(self.clock.now(), self._now)
        for deadline, kind, job in self._wakeups.pop_due(now):
            self._fire(job, kind, deadline)
            self._schedule(job)
        return now

    def _due(self, job: Job) -> tuple[float, WakeKind] | None:
        """The job's next time-driven change: (deadline, kind), earliest first.

        On a tie the start wins over an end, and an end by lifetime over one by idleness.
        """
        if isinstance(job, Agent):
            status = job.status
            if status is AgentStatus.STOPPING:
                return (job.stopping_at + self.config.stop_delay, "stop")
            if status not in _ACTIVE:
                return None
            lifetime = self.config.max_lifetime
        else:
            if job.status is not LegacyTaskStatus.IN_PROGRESS:
                return None
            status = None
            lifetime = self.config.legacy_max_lifetime
        deadline = job.created_at + lifetime
        kind: WakeKind = "lifetime"
        if status is AgentStatus.STARTING:
            run_at = job.created_at + self.config.start_delay
            if run_at <= deadline:
                deadline, kind = run_at, "run"
        if job.max_idle_time > 0 and (self._channels or self.config.default_hosts == 0):
            channel = self._channels.get(job.channel)
            hosts = channel.hosts if channel else self.config.default_hosts
            if hosts == 0:
                since = channel.empty_since if channel else _NEG_INF
                idle_at = max(since, job.created_at) + job.max_idle_time
                if idle_at < deadline:
                    deadline, kind = idle_at, "idle"
        return (deadline, kind)

    def _schedule(self, job: Job) -> None:
        self._wakeups.set(job, self._due(job))

    def _fire(self, job: Job, kind: WakeKind, at: float) -> None:
        if kind == "run":
            assert isinstance(job, Agent)
            self._set_agent_status(job, AgentStatus.RUNNING)
            self._emit("agent_joined", job, at)
        elif kind == "stop":
            self._finish(job, at)
        elif kind == "idle":
            self._begin_stop(job, at, MESSAGE_IDLE)
        else:
            self._begin_stop(job, at, MESSAGE_LIFETIME)

    def _begin_stop(self, job: Job, at: float, message: str) -> None:
        # SPEC-SILENT: every end of an agent (leave, idle, lifetime) passes through STOPPING
        # for stop_delay; a legacy task ends at once (after stop it is "not found" anyway).
        job.exit_message = message
        if isinstance(job, Agent) and self.config.stop_delay > 0:
            job.stopping_at = at
            self._set_agent_status(job, AgentStatus.STOPPING)
        else:
            self._finish(job, at)

    def _finish(self, job: Job, at: float, *, failed: bool = False) -> None:
        if isinstance(job, Agent):
            self._set_agent_status(job, AgentStatus.FAILED if failed else AgentStatus.STOPPED)
            key = (job.app_id, job.name)
            if self._names.get(key) is job:
                del self._names[key]
            self._emit("agent_left", job, at)
        else:
            self._task_counts[(job.app_id, job.status)] -= 1
            job.status = LegacyTaskStatus.STOPPED
            self._task_counts[(job.app_id, job.status)] += 1
            job.minted_before_end = self.tokens_minted
            self._channel_tasks.get(job.channel, set()).discard(job)
            self._emit("task_stopped", job, at)

    def _set_agent_status(self, agent: Agent, status: AgentStatus) -> None:
        old, agent.status = agent.status, status
        self._index.moved(agent, old)

    def _emit(self, kind: EventKind, job: Job, at: float) -> None:
        left = kind in ("agent_left", "task_stopped")
        if kind == "agent_joined":
            assert isinstance(job, Agent)
            job.joined = True
        event = WorldEvent(
            kind=kind,
            at=at,
            app_id=job.app_id,
            id=job.agent_id if isinstance(job, Agent) else job.task_id,
            channel=job.channel,
            start_ts=job.create_ts,
            stop_ts=int(at) if left else None,
            status=job.status.value if left else None,
            message=job.exit_message if left else None,
        )
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    # -- v7 agents -------------------------------------------------------------------------------

    def join(self, app_id: str, spec: JoinSpec) -> Agent:
        """Create an agent; ``NameInUse`` if its name is taken in this App ID."""
        now = self.advance()
        # SPEC-SILENT: name uniqueness is per App ID among agents not STOPPED/FAILED; the
        # name is free again once its agent has stopped (spec §4.8).
        existing = self._names.get((app_id, spec.name))
        if existing is not None:
            raise NameInUse(existing)
        agent_id = self._new_id(
            self._agents, lambda: self._rng.randbytes(26).translate(_ID_TABLE).decode()
        )
        immediate = self.config.join_status == "RUNNING" or self.config.start_delay <= 0
        status = AgentStatus.RUNNING if immediate else AgentStatus.STARTING
        agent = Agent(agent_id, app_id, spec, len(self._index.by_seq), now, status)
        self._agents[agent_id] = agent
        self._names[(app_id, spec.name)] = agent
        self._index.add(agent)
        if immediate:
            self._emit("agent_joined", agent, now)
        self._schedule(agent)
        return agent

    def agent(self, app_id: str, agent_id: str) -> Agent:
        """The agent, whatever its status; ``UnknownAgent`` if not in this App ID."""
        self.advance()
        agent = self._agents.get(agent_id)
        if agent is None or agent.app_id != app_id:
            raise UnknownAgent(agent_id)
        return agent

    def leave(self, app_id: str, agent_id: str) -> Agent:
        """Start stopping an agent (STOPPING, then STOPPED after ``stop_delay``)."""
        agent = self.agent(app_id, agent_id)
        if agent.status not in _ACTIVE:
            if self.config.idempotent_leave:
                return agent
            raise UnknownAgent(agent_id)
        self._begin_stop(agent, self._now, MESSAGE_OK)
        self._schedule(agent)
        return agent

    def update(
        self,
        app_id: str,
        agent_id: str,
        update: UpdateSpec,
        check: Callable[[dict[str, object]], None] | None = None,
    ) -> Agent:
        """Replace the masked fields of a STARTING/RUNNING/RECOVERING agent's config.

        ``check`` sees the whole new config before it is kept (the translation rule needs
        the languages, which may come from join). Timers are not reset (spec §4.6).
        """
        agent = self.agent(app_id, agent_id)
        if agent.status not in _ACTIVE:
            # SPEC-SILENT: updating a stopping or ended agent answers 404 TaskNotFound.
            raise UnknownAgent(agent_id)
        self._apply_update(agent, update, check)
        return agent

    def list_agents(self, app_id: str, query: ListQuery) -> Page:
        """One page of agents in creation order (SPEC-SILENT: the order is undocumented)."""
        self.advance()
        after = None
        if query.cursor is not None:
            cursor = self._agents.get(query.cursor)
            if cursor is None or cursor.app_id != app_id:
                raise UnknownCursor(query.cursor)
            after = cursor.seq
        return self._index.page(app_id, query, after)

    def set_agent_status(self, agent_id: str, status: AgentStatus, message: str | None) -> Agent:
        """Control API: force a status (RECOVERING, RUNNING, FAILED, STOPPED) on any app's agent.

        ``UnknownAgent`` if it is unknown or ended; ``TransitionRefused`` to bring a
        STOPPING agent back (it may only end); ``ValueError`` for any other status.
        """
        self.advance()
        agent = self._agents.get(agent_id)
        if agent is None:
            raise UnknownAgent(agent_id)
        now = self._now
        if agent.status.is_terminal:
            raise UnknownAgent(agent_id)
        if agent.status is AgentStatus.STOPPING and status not in (
            AgentStatus.FAILED,
            AgentStatus.STOPPED,
        ):
            # spec §4.3: STOPPING only ever ends (STOPPED, or FAILED if the exit fails);
            # an agent told to leave never comes back.
            raise TransitionRefused(agent.status, status)
        if status is AgentStatus.FAILED:
            agent.exit_message = message or "RTC connection error"
            self._finish(agent, now, failed=True)
        elif status is AgentStatus.STOPPED:
            agent.exit_message = message or MESSAGE_OK
            self._finish(agent, now)
        elif status in (AgentStatus.RECOVERING, AgentStatus.RUNNING):
            self._set_agent_status(agent, status)
            if status is AgentStatus.RUNNING and not agent.joined:
                # The first RUNNING is the join (101), also after STARTING → RECOVERING.
                self._emit("agent_joined", agent, now)
        else:
            raise ValueError(f"cannot force status {status.value}")
        self._schedule(agent)
        return agent

    # -- legacy builder tokens and tasks -----------------------------------------------------------

    def acquire(self, app_id: str, instance_id: str) -> BuilderToken:
        """Mint a builder token bound to the App ID and instanceId (spec §5.1)."""
        now = self.advance()
        serial = self.tokens_minted
        self.tokens_minted += 1
        return mint_token(self._secret, app_id, instance_id, now, self._rng.getrandbits(64), serial)

    def parse_token(self, app_id: str, name: str | None) -> BuilderToken:
        """Check a builder token: ``TokenUnparsable`` or ``TokenOfOtherApp``."""
        token = read_token(self._secret, name)
        if token.app_id != app_id:
            raise TokenOfOtherApp(token.name)
        return token

    def start(self, token: BuilderToken, spec: JoinSpec) -> Task:
        """Start the task of a builder token (spec §5.1, §6.1)."""
        now = self.advance()
        used = self._task_by_token.get(token.name)
        if used is not None:
            raise TaskAlreadyStarted(used.task_id)  # a started token outlives the window
        if now - token.created_at > self.config.token_ttl:
            # Before the instanceId rule below: "acquire again" is the advice that works.
            raise TokenExpired(token.name)
        # spec §5.1: "only one token of an instanceId can start a task" and "to transcribe
        # again after stop, acquire a new token". SPEC-SILENT: read together, a token may
        # start a task of its instanceId only if it was minted after the instanceId's
        # last task ended; any other (minted before that task started, or while it ran)
        # answers code 49 with that task's id.
        last = self._last_task.get((token.app_id, token.instance_id))
        if last is not None and (
            last.minted_before_end is None or token.serial < last.minted_before_end
        ):
            raise TaskAlreadyStarted(last.task_id)
        task_id = self._new_id(self._tasks, lambda: f"{self._rng.getrandbits(128):032x}")
        task = Task(task_id, token, spec, now)
        self._tasks[task_id] = task
        self._task_by_token[token.name] = task
        self._last_task[(token.app_id, token.instance_id)] = task
        self._channel_tasks.setdefault(task.channel, set()).add(task)
        self._task_counts[(task.app_id, task.status)] += 1
        self._emit("task_started", task, now)
        self._schedule(task)
        return task

    def task(self, token: BuilderToken, task_id: str) -> Task:
        """A running task, checked against its token (spec §5.3, §6.1)."""
        task = self._task_of(token, task_id)
        if task.status is not LegacyTaskStatus.IN_PROGRESS:
            raise UnknownTask(task_id)
        return task

    def stop(self, token: BuilderToken, task_id: str) -> Task:
        """Stop a task at once; later query answers "The task is not found", a later
        stop code 49 (``repeat_stop_code``; 404 for a task that ended on its own)."""
        task = self._task_of(token, task_id)
        if task.status is not LegacyTaskStatus.IN_PROGRESS:
            if task.stop_requested and self.config.repeat_stop_code == 49:
                raise TaskAlreadyStopped(task_id)
            raise UnknownTask(task_id)
        task.stop_requested = True
        self._finish(task, self._now)
        self._schedule(task)
        return task

    def _task_of(self, token: BuilderToken, task_id: str) -> Task:
        self.advance()
        task = self._tasks.get(task_id)
        if task is None or task.app_id != token.app_id:
            raise UnknownTask(task_id)
        if task.token != token.name:
            raise TaskTokenMismatch(task_id)
        return task

    def update_task(
        self,
        token: BuilderToken,
        task_id: str,
        update: UpdateSpec,
        check: Callable[[dict[str, object]], None] | None = None,
    ) -> Task:
        """Legacy PATCH: same rules as the v7 update."""
        task = self.task(token, task_id)
        self._apply_update(task, update, check)
        return task

    def _apply_update(
        self, job: Job, update: UpdateSpec, check: Callable[[dict[str, object]], None] | None
    ) -> None:
        now = self._now
        last = job.last_sequence_id
        if self.config.strict_sequence and last is not None and update.sequence_id <= last:
            raise StaleSequence(last)
        interval = self.config.update_min_interval
        if interval > 0:
            since = now - (job.last_update_at if job.last_update_at is not None else job.created_at)
            if since < interval:
                raise UpdateTooSoon(interval - since)
        config = patch(job.config, update.values)
        if check is not None:
            check(config)
        job.config = pack(config)
        job.last_sequence_id = update.sequence_id if last is None else max(last, update.sequence_id)
        job.last_update_at = now

    # -- channels ---------------------------------------------------------------------------------

    def set_hosts(self, channel: str, hosts: int) -> None:
        """Set how many hosts a channel has; 0 starts the idle timers of its jobs.

        SPEC-SILENT: presence is per channel name, across App IDs. A real RTC channel
        belongs to one App ID, but the emulator has no RTC to ask and its control API
        (``/_emulator/channels/X``) names only the channel; jobs of two App IDs in channels
        of the same name therefore share one host count.
        """
        if hosts < 0:
            raise ValueError("hosts must be >= 0")
        now = self.advance()
        state = self._channels.get(channel)
        if state is None:
            state = _Channel(self.config.default_hosts, _NEG_INF)
        was_empty = state.hosts == 0
        state.hosts = hosts
        if hosts == 0 and not was_empty:
            state.empty_since = now
        self._channels[channel] = state
        if (hosts == 0) != was_empty:
            for job in self._active_in(channel):
                self._schedule(job)

    def hosts(self, channel: str) -> int:
        """Hosts in a channel now."""
        state = self._channels.get(channel)
        return state.hosts if state else self.config.default_hosts

    def _active_in(self, channel: str) -> Iterator[Job]:
        for agent in self._index.in_channel(channel):
            if agent.status in _ACTIVE:
                yield agent
        yield from list(self._channel_tasks.get(channel, ()))

    # -- inspection -------------------------------------------------------------------------------

    def find_agent(self, agent_id: str) -> Agent | None:
        """Any app's agent by id (control API)."""
        self.advance()
        return self._agents.get(agent_id)

    def find_task(self, task_id: str) -> Task | None:
        """Any app's task by id (control API)."""
        self.advance()
        return self._tasks.get(task_id)

    def counts(self) -> dict[str, object]:
        """Counts of agents and tasks by status, overall and per App ID."""
        self.advance()
        agents_by_app = self._index.counts()
        tasks_by_app: dict[str, dict[str, int]] = {}
        for (app_id, task_status), n in sorted(self._task_counts.items()):
            if n:
                tasks_by_app.setdefault(app_id, {})[task_status.value] = n
        return {
            "agents": _totals(agents_by_app),
            "tasks": _totals(tasks_by_app),
            "tokens": self.tokens_minted,
            "channels": {name: state.hosts for name, state in sorted(self._channels.items())},
        }

    def agents(self, limit: int) -> list[Agent]:
        """The first ``limit`` agents in creation order."""
        self.advance()
        return self._index.by_seq[:limit]

    def tasks(self, limit: int) -> list[Task]:
        """The first ``limit`` tasks in start order."""
        self.advance()
        return list(itertools.islice(self._tasks.values(), limit))

    def _new_id(self, taken: Container[str], make: Callable[[], str]) -> str:
        while True:
            candidate = make()
            if candidate not in taken:
                return candidate


def _totals(by_app: dict[str, dict[str, int]]) -> dict[str, object]:
    by_status: Counter[str] = Counter()
    for counts in by_app.values():
        by_status.update(counts)
    return {"total": sum(by_status.values()), "by_status": dict(by_status), "by_app": by_app}
