"""The lifecycle of one STT task, as a pure state machine, for both API generations.

Rule 1: every transition of a task record lives in this file. The session (the I/O
shell) never edits a record: it feeds an event to :func:`step` and executes the
actions that come back, in order.

Rule 2: no I/O, no ``await``, no clock reads. Time arrives as the ``now`` argument
(wall-clock Unix seconds from the injected ``Clock``, because deadlines such as the
builder-token window must survive a restart). This module imports the standard
library, attrs, cattrs and the leaf modules of the package only.

Theory of operation
-------------------

A :class:`TaskRecord` tracks two things separately, as h11 keeps one small machine
per role instead of one tangled one:

* the **local phase** (:class:`Phase`): what the SDK has done and intends. It changes
  only through :func:`step`, and every change is listed in :data:`PHASE_TRANSITIONS`;
* the **server status** (``agent_status`` for v7, ``task_status`` for legacy): what the
  server last said, through a start answer, a query, a list or a webhook. Which
  changes of it are believable is data too (:data:`V7_STATUS_EDGES`,
  :data:`LEGACY_TASK_EDGES`).

The session is a loop::

    step = state.step(record, event, now=clock.now(), policy=policy)
    for action in step.actions:   # Persist first whenever the record changed
        ...execute it; feed each answer back as a new event...
    record = step.record

Events are past-tense facts (:class:`StartSucceeded`); actions are imperative
commands (:class:`SendStart`). Every ``Send*``/``AcquireToken``/``Reconcile`` action
gets exactly one answer event from the session (see each action's docstring).

Two kinds of wrong, as in h11:

* **local misuse** (starting twice, updating a stopped task, stopping a legacy task with
  a token that did not start it, feeding a legacy-only event to a v7 record) raises
  :class:`~agora_stt_async._errors.UsageError`; the caller's record is untouched
  (records are immutable);
* an **impossible remote observation** (a status moving backwards, an answer nobody
  asked for) becomes a :class:`Report` action and leaves the record unchanged. It is
  never a crash.

Terminal phases (``STOPPED``, ``FAILED``) absorb every event: the record stays as it
is and the only possible action is a :class:`Report`.

``agora-stt diagram [phases|v7|legacy]`` prints a Mermaid diagram drawn
from the tables.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from typing import Any, Final, TypeAlias, TypeVar, final

import attrs
import cattrs
from typing_extensions import assert_never

from agora_stt_async._constants import (
    INSTANCE_ID_MAX_LEN,
    INSTANCE_ID_PATTERN,
    NAME_MAX_LEN,
    TOKEN_TTL_S,
)
from agora_stt_async._enums import AgentStatus, ApiGeneration, LegacyTaskStatus
from agora_stt_async._errors import ConfigurationError, UsageError, ValidationError
from agora_stt_async._secrets import mask

__all__ = [
    # data
    "Phase",
    "ServerStatus",
    "TaskRecord",
    "MachinePolicy",
    "DEFAULT_POLICY",
    "Step",
    "new_record",
    "step",
    "token_deadline",
    # events
    "Event",
    "AnyEvent",
    "StartRequested",
    "StopRequested",
    "UpdateRequested",
    "TokenAcquired",
    "TokenExpired",
    "StartSucceeded",
    "StartRejected",
    "StartOutcomeUnknown",
    "StartConflicted",
    "ReconcileFound",
    "ReconcileFoundNothing",
    "ReconcileFailed",
    "StatusObserved",
    "NotFoundObserved",
    "UpdateSucceeded",
    "UpdateFailed",
    "StopSucceeded",
    "StopFailed",
    "Tick",
    "Recovered",
    # actions
    "Action",
    "AnyAction",
    "Persist",
    "AcquireToken",
    "SendJoin",
    "SendStart",
    "Reconcile",
    "SendQuery",
    "SendUpdate",
    "SendLeave",
    "SendStop",
    "WakeAt",
    "Report",
    # tables
    "PHASE_TRANSITIONS",
    "V7_STATUS_EDGES",
    "LEGACY_TASK_EDGES",
    "V7_OBSERVABLE",
    "LEGACY_OBSERVABLE",
    # serialisation and diagrams
    "record_to_dict",
    "record_from_dict",
    "mermaid",
]


# === data =================================================================================


class Phase(str, enum.Enum):
    """What the SDK has done and intends for one task (persisted by value).

    ``PENDING``      the intent is recorded; nothing was sent.
    ``ACQUIRING``    legacy only: a builder token was requested.
    ``STARTING``     a start (legacy) or join (v7) was sent; its answer is not known yet.
    ``RECONCILING``  a start may or may not have been processed; the session is finding
                     out (v7: list the channel; legacy: repeat the start with the same
                     token, whose conflict answer carries the taskId).
    ``ACTIVE``       the server id is known and the task is believed to be live.
    ``STOPPING``     a stop/leave was sent, or the server says the task is stopping.
    ``STOPPED``      terminal: nothing runs on the server for this record any more.
    ``FAILED``       terminal: the start produced no running task (refused, gave up, or
                     the server reported the new task failed at once).
    """

    PENDING = "PENDING"
    ACQUIRING = "ACQUIRING"
    STARTING = "STARTING"
    RECONCILING = "RECONCILING"
    ACTIVE = "ACTIVE"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        """``True`` for STOPPED and FAILED: the record will never change again."""
        return self in (Phase.STOPPED, Phase.FAILED)

    def __str__(self) -> str:
        return self.value


ServerStatus: TypeAlias = AgentStatus | LegacyTaskStatus
"""A server status of either generation."""

_S = TypeVar("_S", AgentStatus, LegacyTaskStatus)


def _non_empty(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must not be empty")


def _non_negative(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@final
@attrs.frozen
class TaskRecord:
    """Everything the SDK remembers about one task; what the stores persist.

    Times ending in ``_at`` are local wall-clock Unix seconds; ``create_ts`` is the
    server's. ``token_name`` is the legacy builder token (the API also calls it
    ``tokenName``, ``builderToken`` and ``resourceId``, spec §5); it is masked in
    ``repr``.

    Attributes:
        key: the caller's name for the task; unique in a store.
        api: which API generation the task runs on.
        phase: the local phase (:class:`Phase`).
        channel: the RTC channel transcribed.
        created_at: when the record was made.
        updated_at: when :func:`step` last changed it.
        name: v7 agent ``name``, the server's dedupe key (spec §4.8).
        instance_id: legacy ``instanceId`` the builder token is acquired for.
        agent_status: v7 server status as last observed.
        task_status: legacy server status as last observed.
        status_observed_at: when the current server status was first observed; older
            observations arriving later are ignored as stale.
        agent_id: v7 agent id, once known. Never cleared.
        task_id: legacy task id, once known. Never cleared.
        create_ts: the server's creation time (Unix s), once known.
        token_name: the builder token of the current start attempt; once a start was
            sent with it, the only token that may stop, query or update the task.
        token_acquired_at: local time read *before* the acquire request was sent, so
            the 5-minute window (spec §5.1) is measured conservatively.
        start_sent_at: when the first start with the current token (legacy) or the
            first join (v7) was sent; ``None`` before. v7 reconciles list from here.
        start_attempts: start/join requests sent so far, repeats included.
        stop_requested: the user wants the task stopped; honoured as soon as an id is
            known (e.g. a stop asked while the start was in flight).
        stop_sent_at: when the stop/leave now in flight was sent; ``None`` otherwise.
        sequence_id: the last update ``sequenceId`` allocated; the next is one more.
            Never decreases and is persisted, so it survives restarts (spec §4.6).
        wake_at: the deadline of the :class:`WakeAt` the machine is waiting for.
        last_error: a human-readable account of the last thing that went wrong.
        version: bumped by every change; stores use it for optimistic concurrency.
        request: the start (legacy) or join (v7) body as sent on the wire, so a new
            session can repeat it after a restart. Never changed by :func:`step`. It
            holds whatever the body holds (bot tokens, storage keys): a durable store
            must be protected like a credential file. Hidden from ``repr``.
    """

    key: str = attrs.field(validator=_non_empty)
    api: ApiGeneration
    phase: Phase
    channel: str
    created_at: float
    updated_at: float
    name: str | None = None
    instance_id: str | None = None
    agent_status: AgentStatus | None = None
    task_status: LegacyTaskStatus | None = None
    status_observed_at: float | None = None
    agent_id: str | None = None
    task_id: str | None = None
    create_ts: int | None = None
    token_name: str | None = attrs.field(default=None, repr=mask)
    token_acquired_at: float | None = None
    start_sent_at: float | None = None
    start_attempts: int = attrs.field(default=0, validator=_non_negative)
    stop_requested: bool = False
    stop_sent_at: float | None = None
    sequence_id: int = attrs.field(default=0, validator=_non_negative)
    wake_at: float | None = None
    last_error: str | None = None
    version: int = attrs.field(default=0, validator=_non_negative)
    request: Mapping[str, Any] | None = attrs.field(default=None, repr=False)

    @property
    def server_id(self) -> str | None:
        """The v7 ``agent_id`` or the legacy ``task_id``, whichever this task has."""
        return self.agent_id if self.api is ApiGeneration.V7 else self.task_id

    @property
    def server_status(self) -> ServerStatus | None:
        """The server status as last observed, for either generation."""
        return self.agent_status if self.api is ApiGeneration.V7 else self.task_status


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{attribute.name} must be a positive number, got {value!r}")


@final
@attrs.frozen
class MachinePolicy:
    """The numbers the machine decides with. All durations are seconds.

    Attributes:
        token_ttl_s: how long a builder token may wait before starting its task
            (spec §5.1: 5 minutes).
        token_safety_margin_s: a start is sent only while
            ``now < token_acquired_at + token_ttl_s - token_safety_margin_s``. The 30 s
            default (10 % of the window) covers what happens between this decision and
            the server's own check: the durable write before the request, a wait for
            a concurrency slot, the documented in-call retries of code 20 (3 s, then
            6 s, spec §6.1) with their timeouts, and a wall clock stepped by NTP.
            Measuring from a time read *before* the acquire was sent already absorbs
            the acquire's own latency.
        max_start_attempts: start/join requests (repeats included) before the machine
            stops trying at full speed. v7 then fails when a list finds nothing;
            legacy keeps repeating the same-token start every ``retry_interval_s``,
            with a :class:`Report`, because only that can reveal a task that may be
            running.
        retry_interval_s: wait before asking the server again after a reconcile or a
            stop whose outcome is unknown, and between polls of a task the server is
            stopping on its own.
    """

    token_ttl_s: float = attrs.field(default=TOKEN_TTL_S, validator=_positive)
    # SPEC-SILENT: the margin, the attempt count and the retry pace are ours (the spec
    # gives only the 5-minute window and the 3 s / 6 s code-20 back-off); see above.
    token_safety_margin_s: float = attrs.field(default=30.0)
    max_start_attempts: int = attrs.field(default=5)
    retry_interval_s: float = attrs.field(default=5.0, validator=_positive)

    @token_safety_margin_s.validator
    def _check_margin(self, _: attrs.Attribute[float], value: float) -> None:
        if not (math.isfinite(value) and 0 <= value < self.token_ttl_s):
            raise ConfigurationError(
                f"token_safety_margin_s must be in [0, token_ttl_s={self.token_ttl_s}), "
                f"got {value!r}"
            )

    @max_start_attempts.validator
    def _check_attempts(self, _: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ConfigurationError(f"max_start_attempts must be >= 1, got {value!r}")


DEFAULT_POLICY: Final = MachinePolicy()


# === events: past-tense facts fed to step() ==============================================


class Event:
    """Base class of everything :func:`step` accepts."""

    __slots__ = ()


@final
@attrs.frozen
class StartRequested(Event):
    """Local: the user asked to start the task. Legal in ``PENDING`` only."""


@final
@attrs.frozen
class StopRequested(Event):
    """Local: the user asked to stop the task. Idempotent.

    ``token_name`` (legacy only) is the token the caller believes started the task; if
    given it must be that token (spec §5.1), else :class:`UsageError`.
    """

    token_name: str | None = attrs.field(default=None, repr=mask)


@final
@attrs.frozen
class UpdateRequested(Event):
    """Local: the user asked to update the task; allocates the next ``sequence_id``."""


@final
@attrs.frozen
class TokenAcquired(Event):
    """Legacy: the acquire answered with a builder token.

    ``acquired_at`` is the local time read *before* the acquire request was sent.
    ``instance_id`` is the server's echo, if the session has it.
    """

    token_name: str = attrs.field(repr=mask)
    acquired_at: float
    instance_id: str | None = None


@final
@attrs.frozen
class TokenExpired(Event):
    """Legacy: the token was never used and its window passed.

    Fed when the server answers "resourceId reaches out the limited time interval!"
    (spec §6.1), or when the session could not send a :class:`SendStart` before its
    ``not_after``. A used token stays valid for the whole session (spec §5.1), so
    either way no task exists with this token.
    """

    message: str = ""


@final
@attrs.frozen
class StartSucceeded(Event):
    """The start (legacy) or join (v7) answered 200.

    ``server_id`` is the v7 ``agent_id`` or the legacy ``taskId``.
    """

    server_id: str
    status: ServerStatus | None = None
    create_ts: int | None = None


@final
@attrs.frozen
class StartRejected(Event):
    """The start, join or acquire was refused in a way that proves nothing was created.

    Use it only for answers that do not depend on whether an earlier attempt was
    processed (schema, quota, service not enabled); an authentication failure on a
    *repeat* is :class:`StartOutcomeUnknown`. ``error_kind`` is the error class name.
    """

    error_kind: str
    message: str


@final
@attrs.frozen
class StartOutcomeUnknown(Event):
    """The start or join may have been processed (timeout, connection lost)."""

    message: str


@final
@attrs.frozen
class StartConflicted(Event):
    """The server says a task already exists for this token (legacy) or name (v7).

    ``server_id`` is the id the answer carried ("... taskId is <id>", spec §6.1), or
    ``None`` when it carried none.
    """

    server_id: str | None
    message: str = ""


@final
@attrs.frozen
class ReconcileFound(Event):
    """The session found the server task a start created."""

    server_id: str
    status: ServerStatus | None = None
    create_ts: int | None = None


@final
@attrs.frozen
class ReconcileFoundNothing(Event):
    """v7: listing the channel found no agent the join could have created."""


@final
@attrs.frozen
class ReconcileFailed(Event):
    """v7: the list could not be completed; try again later."""

    message: str


@final
@attrs.frozen
class StatusObserved(Event):
    """The server reported a status (query, list, update answer or webhook).

    ``observed_at`` is the local time the answer arrived; older observations than the
    one recorded are ignored (webhooks may arrive out of order).
    """

    status: ServerStatus
    observed_at: float


@final
@attrs.frozen
class NotFoundObserved(Event):
    """The server says the task does not exist or has ended (404, "not found")."""

    message: str = ""


@final
@attrs.frozen
class UpdateSucceeded(Event):
    """The update with ``sequence_id`` answered 200."""

    sequence_id: int
    status: ServerStatus | None = None


@final
@attrs.frozen
class UpdateFailed(Event):
    """The update with ``sequence_id`` failed or its outcome is unknown."""

    sequence_id: int
    message: str


@final
@attrs.frozen
class StopSucceeded(Event):
    """The stop/leave answered 200, or a legacy repeated stop answered code 49."""


@final
@attrs.frozen
class StopFailed(Event):
    """The stop/leave failed. ``maybe_processed``: it may have taken effect."""

    message: str
    maybe_processed: bool


@final
@attrs.frozen
class Tick(Event):
    """Time passed: a :class:`WakeAt` deadline was reached (early ticks are ignored)."""


@final
@attrs.frozen
class Recovered(Event):
    """The record was loaded by a new session (after a restart or crash)."""


AnyEvent: TypeAlias = (
    StartRequested
    | StopRequested
    | UpdateRequested
    | TokenAcquired
    | TokenExpired
    | StartSucceeded
    | StartRejected
    | StartOutcomeUnknown
    | StartConflicted
    | ReconcileFound
    | ReconcileFoundNothing
    | ReconcileFailed
    | StatusObserved
    | NotFoundObserved
    | UpdateSucceeded
    | UpdateFailed
    | StopSucceeded
    | StopFailed
    | Tick
    | Recovered
)
"""Every concrete event; :func:`step` matches on it exhaustively."""


# === actions: imperative commands returned by step() =====================================


class Action:
    """Base class of everything :func:`step` asks the session to do."""

    __slots__ = ()


@final
@attrs.frozen
class Persist(Action):
    """Write ``record`` to the store, durably, before executing the next action.

    Use ``store.put(record, expected_version=action.expected_version)``.
    """

    record: TaskRecord

    @property
    def expected_version(self) -> int:
        """The version the stored copy must have: the one before this change."""
        return self.record.version - 1


@final
@attrs.frozen
class AcquireToken(Action):
    """Legacy: acquire a builder token for ``instance_id``.

    Read the clock *before* sending; answer with :class:`TokenAcquired` (that time as
    ``acquired_at``) or :class:`StartRejected`.
    """

    instance_id: str


@final
@attrs.frozen
class SendJoin(Action):
    """v7: join with the request body the session holds for this record.

    Answer with :class:`StartSucceeded`, :class:`StartConflicted` (409),
    :class:`StartRejected` or :class:`StartOutcomeUnknown`.
    """

    name: str
    channel: str


@final
@attrs.frozen
class SendStart(Action):
    """Legacy: start the task with ``token_name``.

    ``not_after``: do not begin sending at or after this local time; if the session
    cannot, it feeds :class:`TokenExpired` instead. ``None`` for a ``repeat``: the
    same-token repeat after an ambiguous outcome is sent whatever the window says,
    because its conflict answer carries the taskId and an "expired" answer proves no
    task was started with the token. Answers as for :class:`SendJoin`, plus
    :class:`TokenExpired`.
    """

    token_name: str = attrs.field(repr=mask)
    channel: str
    not_after: float | None
    repeat: bool


@final
@attrs.frozen
class Reconcile(Action):
    """v7: find the agent an ambiguous join may have created.

    List ``channel`` from ``since`` (minus clock slack). Answer with
    :class:`ReconcileFound`, :class:`ReconcileFoundNothing` or :class:`ReconcileFailed`.
    """

    channel: str
    name: str
    since: float


@final
@attrs.frozen
class SendQuery(Action):
    """Query the task. Answer with :class:`StatusObserved` or :class:`NotFoundObserved`
    (or nothing, if the query failed: queries are advisory)."""

    server_id: str
    token_name: str | None = attrs.field(repr=mask)


@final
@attrs.frozen
class SendUpdate(Action):
    """Update the task with ``sequence_id``.

    Answer with :class:`UpdateSucceeded` or :class:`UpdateFailed`.
    """

    server_id: str
    sequence_id: int
    token_name: str | None = attrs.field(repr=mask)


@final
@attrs.frozen
class SendLeave(Action):
    """v7: ask the agent to leave.

    Answer with :class:`StopSucceeded`, :class:`NotFoundObserved` (404) or
    :class:`StopFailed`.
    """

    agent_id: str


@final
@attrs.frozen
class SendStop(Action):
    """Legacy: stop the task, always with the token that started it (spec §5.1).

    Answer as for :class:`SendLeave`; a repeated stop's code 49 is a success.
    """

    task_id: str
    token_name: str = attrs.field(repr=mask)


@final
@attrs.frozen
class WakeAt(Action):
    """Feed :class:`Tick` at or after ``deadline`` (local wall-clock Unix seconds)."""

    deadline: float


@final
@attrs.frozen
class Report(Action):
    """Something impossible or worrying was observed; log it, never crash."""

    anomaly: str


AnyAction: TypeAlias = (
    Persist
    | AcquireToken
    | SendJoin
    | SendStart
    | Reconcile
    | SendQuery
    | SendUpdate
    | SendLeave
    | SendStop
    | WakeAt
    | Report
)
"""Every concrete action; match on it in the session, ending with ``assert_never``."""


@final
@attrs.frozen
class Step:
    """What :func:`step` returns: the new record and the actions, in order."""

    record: TaskRecord
    actions: tuple[AnyAction, ...] = ()


# === tables ===============================================================================

_P = Phase

# Phase changes, per phase and event. step() checks every change against this table,
# so it is the documentation *and* a tripwire. Staying in the same phase is always
# allowed and not listed. Which branch applies depends on the generation, the token
# window, stop_requested and the attempt count (see the special cases below).
PHASE_TRANSITIONS: Final[Mapping[Phase, Mapping[type[Event], frozenset[Phase]]]] = {
    _P.PENDING: {
        StartRequested: frozenset({_P.ACQUIRING, _P.STARTING}),
        StopRequested: frozenset({_P.STOPPED}),
    },
    _P.ACQUIRING: {
        TokenAcquired: frozenset({_P.STARTING, _P.FAILED}),
        StartRejected: frozenset({_P.FAILED}),
        StopRequested: frozenset({_P.STOPPED}),
    },
    _P.STARTING: {
        StartSucceeded: frozenset({_P.ACTIVE, _P.STOPPING, _P.FAILED}),
        ReconcileFound: frozenset({_P.ACTIVE, _P.STOPPING, _P.FAILED}),
        StartConflicted: frozenset({_P.ACTIVE, _P.STOPPING, _P.RECONCILING}),
        StartRejected: frozenset({_P.FAILED}),
        StartOutcomeUnknown: frozenset({_P.RECONCILING}),
        TokenExpired: frozenset({_P.ACQUIRING, _P.STOPPED}),
        Recovered: frozenset({_P.RECONCILING}),
    },
    _P.RECONCILING: {
        StartSucceeded: frozenset({_P.ACTIVE, _P.STOPPING, _P.FAILED}),
        ReconcileFound: frozenset({_P.ACTIVE, _P.STOPPING, _P.FAILED}),
        StartConflicted: frozenset({_P.ACTIVE, _P.STOPPING}),
        StartRejected: frozenset({_P.FAILED}),
        TokenExpired: frozenset({_P.ACQUIRING, _P.STOPPED}),
        ReconcileFoundNothing: frozenset({_P.STARTING, _P.FAILED, _P.STOPPED}),
    },
    _P.ACTIVE: {
        StopRequested: frozenset({_P.STOPPING}),
        StatusObserved: frozenset({_P.STOPPING, _P.STOPPED}),
        UpdateSucceeded: frozenset({_P.STOPPING, _P.STOPPED}),
        NotFoundObserved: frozenset({_P.STOPPED}),
    },
    _P.STOPPING: {
        StopSucceeded: frozenset({_P.STOPPED}),
        StopFailed: frozenset({_P.ACTIVE}),
        StatusObserved: frozenset({_P.STOPPED}),
        UpdateSucceeded: frozenset({_P.STOPPED}),
        NotFoundObserved: frozenset({_P.STOPPED}),
    },
    _P.STOPPED: {},
    _P.FAILED: {},
}

_A = AgentStatus
_V7_NOT_TERMINAL: Final = frozenset(s for s in AgentStatus if not s.is_terminal)

# spec §4.3 [SILENT], natural reading: STARTING → RUNNING ⇄ RECOVERING, → STOPPING →
# STOPPED, FAILED terminal. IDLE ("not initialised") precedes STARTING. Every live state
# may begin stopping (leave, idle timeout, 72 h lifetime) or fail.
V7_STATUS_EDGES: Final[Mapping[AgentStatus, frozenset[AgentStatus]]] = {
    _A.IDLE: frozenset({_A.STARTING, _A.STOPPING, _A.FAILED}),
    _A.STARTING: frozenset({_A.RUNNING, _A.STOPPING, _A.FAILED}),
    _A.RUNNING: frozenset({_A.RECOVERING, _A.STOPPING, _A.FAILED}),
    _A.RECOVERING: frozenset({_A.RUNNING, _A.STOPPING, _A.FAILED}),
    _A.STOPPING: frozenset({_A.STOPPED, _A.FAILED}),
    _A.STOPPED: frozenset(),
    _A.FAILED: frozenset(),
}

_L = LegacyTaskStatus
_LEGACY_EXITS: Final = frozenset({_L.STOPPING, _L.FAILURE_STOP})

# spec §5.3 [INFERRED]: the documented order IDLE, PREPARING, PREPARED, STARTING,
# CREATED, STARTED, IN_PROGRESS; RECONNECTING (2024 quickstart) comes and goes while
# running. STARTED ⇄ IN_PROGRESS both ways, because Agora's samples treat both as
# "running" and a conflict answer reports STARTED for a task queries call IN_PROGRESS.
LEGACY_TASK_EDGES: Final[Mapping[LegacyTaskStatus, frozenset[LegacyTaskStatus]]] = {
    _L.IDLE: frozenset({_L.PREPARING}) | _LEGACY_EXITS,
    _L.PREPARING: frozenset({_L.PREPARED}) | _LEGACY_EXITS,
    _L.PREPARED: frozenset({_L.STARTING}) | _LEGACY_EXITS,
    _L.STARTING: frozenset({_L.CREATED}) | _LEGACY_EXITS,
    _L.CREATED: frozenset({_L.STARTED}) | _LEGACY_EXITS,
    _L.STARTED: frozenset({_L.IN_PROGRESS, _L.RECONNECTING}) | _LEGACY_EXITS,
    _L.IN_PROGRESS: frozenset({_L.STARTED, _L.RECONNECTING}) | _LEGACY_EXITS,
    _L.RECONNECTING: frozenset({_L.STARTED, _L.IN_PROGRESS}) | _LEGACY_EXITS,
    _L.STOPPING: frozenset({_L.STOPPED, _L.FAILURE_STOP}),
    _L.STOPPED: frozenset(),
    _L.FAILURE_STOP: frozenset(),
}


def _closure(edges: Mapping[_S, frozenset[_S]]) -> Mapping[_S, frozenset[_S]]:
    """The reflexive-transitive closure: every status reachable from each one."""
    closed: dict[_S, frozenset[_S]] = {}
    for start in edges:
        seen = {start}
        todo = [start]
        while todo:
            for nxt in edges[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        closed[start] = frozenset(seen)
    return closed


# SPECIAL CASE: the edge tables say what the server does in one move; a poller sees
# what happened *between two polls*. A task can go STARTING → RUNNING → STOPPING →
# STOPPED between two queries, so "STARTING then STOPPED" is a legal observation. What
# may be observed after a status is therefore the reflexive-transitive closure of the
# edges. A status outside it (RUNNING after STOPPED, STARTING after RUNNING) is a
# status moving backwards: a Report, not a crash.
V7_OBSERVABLE: Final = _closure(V7_STATUS_EDGES)
LEGACY_OBSERVABLE: Final = _closure(LEGACY_TASK_EDGES)

# Statuses that mean "the server is winding the task down on its own".
_STOPPING_STATUSES: Final[frozenset[object]] = frozenset({_A.STOPPING, _L.STOPPING})
_FAILURE_STATUSES: Final[frozenset[object]] = frozenset({_A.FAILED, _L.FAILURE_STOP})
_AWAITING_START: Final = frozenset({_P.STARTING, _P.RECONCILING})


# === the entry points =====================================================================


def new_record(
    key: str,
    api: ApiGeneration,
    *,
    channel: str,
    name: str | None = None,
    instance_id: str | None = None,
    now: float,
) -> TaskRecord:
    """A fresh ``PENDING`` record at version 0, ready for ``store.create()``.

    Args:
        key: the caller's unique name for the task.
        api: the API generation.
        channel: the RTC channel to transcribe.
        name: v7 only, required: the agent ``name`` (≤ 64 chars, spec §4.8).
        instance_id: legacy only: the ``instanceId`` (≤ 64 of ``[A-Za-z0-9_-]``);
            defaults to ``channel``, as the docs recommend (spec §5.1).
        now: the current wall-clock time.

    Raises:
        ValidationError: a value breaks a documented limit or belongs to the other
            generation.
    """
    if not key:
        raise ValidationError("key", "must not be empty", key)
    if not channel:
        raise ValidationError("channel", "must not be empty", channel)
    if api is ApiGeneration.V7:
        if not name or len(name) > NAME_MAX_LEN:
            raise ValidationError("name", f"required for v7, 1..{NAME_MAX_LEN} characters", name)
        if instance_id is not None:
            raise ValidationError("instance_id", "legacy only; v7 agents have none", instance_id)
    else:
        if name is not None:
            raise ValidationError("name", "v7 only; legacy tasks have none", name)
        instance_id = channel if instance_id is None else instance_id
        if len(instance_id) > INSTANCE_ID_MAX_LEN or not re.fullmatch(
            INSTANCE_ID_PATTERN, instance_id
        ):
            raise ValidationError(
                "instance_id",
                f"1..{INSTANCE_ID_MAX_LEN} characters of {INSTANCE_ID_PATTERN}"
                " (pass instance_id= when the channel name does not qualify)",
                instance_id,
            )
    return TaskRecord(
        key=key,
        api=api,
        phase=Phase.PENDING,
        channel=channel,
        name=name,
        instance_id=instance_id,
        created_at=now,
        updated_at=now,
    )


def token_deadline(record: TaskRecord, policy: MachinePolicy = DEFAULT_POLICY) -> float | None:
    """The local time from which ``record``'s builder token may no longer start a task.

    ``None`` when the record holds no token.
    """
    if record.token_acquired_at is None:
        return None
    return record.token_acquired_at + policy.token_ttl_s - policy.token_safety_margin_s


def step(
    record: TaskRecord,
    event: AnyEvent,
    *,
    now: float,
    policy: MachinePolicy = DEFAULT_POLICY,
) -> Step:
    """Apply ``event`` to ``record`` at time ``now``.

    If the record changed, the new one has ``version + 1`` and ``updated_at = now``,
    and the first action is :class:`Persist` of it; otherwise there is no Persist.
    Pure: the same arguments always give the same result.

    Raises:
        UsageError: local misuse; ``record`` is still valid and unchanged.

    Any other exception is a bug.
    """
    if not math.isfinite(now):
        raise UsageError(f"now must be a finite Unix time, got {now!r}")
    new, actions = _dispatch(record, event, now, policy)
    if new == record:
        return Step(record, actions)
    if new.phase is not record.phase:
        allowed = PHASE_TRANSITIONS[record.phase].get(type(event), frozenset())
        if new.phase not in allowed:  # a bug in this file, never the caller's fault
            raise AssertionError(
                f"{type(event).__name__} moved {record.phase} to {new.phase},"
                " which PHASE_TRANSITIONS does not list"
            )
    if new.phase.is_terminal:
        new = attrs.evolve(new, wake_at=None)
    new = attrs.evolve(new, version=record.version + 1, updated_at=now)
    return Step(new, (Persist(new), *actions))


# === transitions ==========================================================================

_Out: TypeAlias = tuple[TaskRecord, tuple[AnyAction, ...]]


def _dispatch(r: TaskRecord, e: AnyEvent, now: float, policy: MachinePolicy) -> _Out:
    match e:
        case StartRequested():
            return _on_start_requested(r, now, policy)
        case StopRequested():
            return _on_stop_requested(r, e, now)
        case UpdateRequested():
            return _on_update_requested(r)
        case TokenAcquired():
            return _on_token_acquired(r, e, now, policy)
        case TokenExpired():
            return _on_token_expired(r, e)
        case StartSucceeded() | ReconcileFound():
            return _adopt(r, e.server_id, e.status, e.create_ts, now, policy)
        case StartRejected():
            return _on_start_rejected(r, e)
        case StartOutcomeUnknown():
            return _on_start_unknown(r, e.message, now, policy)
        case StartConflicted():
            return _on_start_conflicted(r, e, now, policy)
        case ReconcileFoundNothing():
            return _on_found_nothing(r, now, policy)
        case ReconcileFailed():
            return _on_reconcile_failed(r, e, now, policy)
        case StatusObserved():
            return _observe(r, e.status, e.observed_at, now, policy)
        case NotFoundObserved():
            return _on_not_found(r, e)
        case UpdateSucceeded():
            return _on_update_succeeded(r, e, now, policy)
        case UpdateFailed():
            return _on_update_failed(r, e)
        case StopSucceeded():
            return _on_stop_succeeded(r)
        case StopFailed():
            return _on_stop_failed(r, e, now, policy)
        case Tick():
            return _on_tick(r, now, policy)
        case Recovered():
            return _on_recovered(r, now, policy)
        case _:
            assert_never(e)


def _report(r: TaskRecord, anomaly: str) -> _Out:
    return r, (Report(f"task {r.key!r} ({r.phase}): {anomaly}"),)


def _legacy_only(r: TaskRecord, what: str) -> None:
    if r.api is not ApiGeneration.LEGACY:
        raise UsageError(f"{what} is legacy-only; task {r.key!r} runs on the v7 API")


def _check_status_type(r: TaskRecord, status: ServerStatus | None) -> None:
    expected = AgentStatus if r.api is ApiGeneration.V7 else LegacyTaskStatus
    if status is not None and not isinstance(status, expected):
        raise UsageError(
            f"task {r.key!r} runs on the {r.api} API and takes {expected.__name__}, got {status!r}"
        )


def _need(value: str | None, what: str) -> str:
    if value is None:  # pragma: no cover - guarded by the phase invariants
        raise AssertionError(f"{what} missing")
    return value


def _stop_action(r: TaskRecord) -> AnyAction:
    if r.api is ApiGeneration.V7:
        return SendLeave(agent_id=_need(r.agent_id, "agent_id"))
    return SendStop(task_id=_need(r.task_id, "task_id"), token_name=_need(r.token_name, "token"))


def _query_action(r: TaskRecord) -> AnyAction:
    return SendQuery(server_id=_need(r.server_id, "server id"), token_name=r.token_name)


def _send_stop(r: TaskRecord, now: float) -> _Out:
    r = attrs.evolve(r, phase=Phase.STOPPING, stop_requested=True, stop_sent_at=now, wake_at=None)
    return r, (_stop_action(r),)


def _wait(r: TaskRecord, now: float, policy: MachinePolicy, *before: AnyAction) -> _Out:
    deadline = now + policy.retry_interval_s
    return attrs.evolve(r, wake_at=deadline), (*before, WakeAt(deadline))


def _server_stopping(r: TaskRecord, now: float, policy: MachinePolicy) -> _Out:
    # The server winds the task down on its own (idle timeout, lifetime, fault): poll
    # until it confirms, so the record is not left in STOPPING forever.
    return _wait(attrs.evolve(r, phase=Phase.STOPPING), now, policy)


def _send_join(r: TaskRecord, now: float) -> _Out:
    r = attrs.evolve(
        r,
        phase=Phase.STARTING,
        start_sent_at=now if r.start_sent_at is None else r.start_sent_at,
        start_attempts=r.start_attempts + 1,
        wake_at=None,
    )
    return r, (SendJoin(name=_need(r.name, "name"), channel=r.channel),)


def _send_fresh_start(r: TaskRecord, now: float, policy: MachinePolicy) -> _Out:
    """Legacy: the record holds a token never sent; start with it if its window allows."""
    if r.start_attempts >= policy.max_start_attempts:
        return attrs.evolve(
            r,
            phase=Phase.FAILED,
            last_error=f"gave up after {r.start_attempts} start attempts",
        ), ()
    deadline = token_deadline(r, policy)
    if deadline is None or now >= deadline:
        # SPECIAL CASE: the acquire answered too late for the window (with its margin).
        # Never send a stale token: acquire another; the unused one costs nothing.
        r = attrs.evolve(
            r,
            phase=Phase.ACQUIRING,
            token_name=None,
            token_acquired_at=None,
            last_error="builder token arrived too late to start within its window",
        )
        return r, (AcquireToken(instance_id=_need(r.instance_id, "instance_id")),)
    r = attrs.evolve(
        r,
        phase=Phase.STARTING,
        start_sent_at=now,
        start_attempts=r.start_attempts + 1,
        wake_at=None,
    )
    token = _need(r.token_name, "token")
    return r, (SendStart(token_name=token, channel=r.channel, not_after=deadline, repeat=False),)


def _reconcile(r: TaskRecord, now: float, policy: MachinePolicy, *, bounded: bool) -> _Out:
    """The action that finds out what an ambiguous start did. ``r`` is RECONCILING."""
    r = attrs.evolve(r, phase=Phase.RECONCILING, wake_at=None)
    if r.api is ApiGeneration.V7:
        since = _need_float(r.start_sent_at)
        return r, (Reconcile(channel=r.channel, name=_need(r.name, "name"), since=since),)
    # SPECIAL CASE (legacy): there is no list endpoint; the only way to learn the
    # taskId of a start that may have been processed is to repeat it with the SAME
    # token, even past the token window: a used token stays valid (spec §5.1) and the
    # conflict answer carries the taskId (spec §6.1); an "expired" answer proves the
    # token never started anything. A new token would instead risk a second task.
    if bounded and r.start_attempts >= policy.max_start_attempts:
        return _wait(
            r,
            now,
            policy,
            Report(
                f"task {r.key!r}: start outcome still unknown after {r.start_attempts}"
                " attempts; a task may be running; repeating the start more slowly"
            ),
        )
    r = attrs.evolve(r, start_attempts=r.start_attempts + 1)
    token = _need(r.token_name, "token")
    return r, (SendStart(token_name=token, channel=r.channel, not_after=None, repeat=True),)


def _need_float(value: float | None) -> float:
    if value is None:  # pragma: no cover - guarded by the phase invariants
        raise AssertionError("start_sent_at missing")
    return value


def _with_status(r: TaskRecord, status: ServerStatus, observed_at: float) -> TaskRecord:
    if status == r.server_status:
        return r
    if isinstance(status, AgentStatus):
        return attrs.evolve(r, agent_status=status, status_observed_at=observed_at)
    return attrs.evolve(r, task_status=status, status_observed_at=observed_at)


def _with_id(r: TaskRecord, server_id: str) -> TaskRecord:
    if r.api is ApiGeneration.V7:
        return attrs.evolve(r, agent_id=server_id)
    return attrs.evolve(r, task_id=server_id)


# --- local events -------------------------------------------------------------------------


def _on_start_requested(r: TaskRecord, now: float, policy: MachinePolicy) -> _Out:
    if r.phase is not Phase.PENDING:
        raise UsageError(f"task {r.key!r} was already started (phase {r.phase})")
    if r.api is ApiGeneration.V7:
        return _send_join(r, now)
    r = attrs.evolve(r, phase=Phase.ACQUIRING)
    return r, (AcquireToken(instance_id=_need(r.instance_id, "instance_id")),)


def _on_stop_requested(r: TaskRecord, e: StopRequested, now: float) -> _Out:
    if e.token_name is not None:
        _legacy_only(r, "a stop with a builder token")
        if e.token_name != r.token_name:
            raise UsageError(
                f"task {r.key!r} must be stopped with the builder token that started it"
                " (spec §5.1); the token given is a different one"
            )
    match r.phase:
        case Phase.PENDING | Phase.ACQUIRING:
            # Nothing was started: a token being acquired is unused and harmless.
            return attrs.evolve(r, phase=Phase.STOPPED, stop_requested=True), ()
        case Phase.STARTING | Phase.RECONCILING:
            # SPECIAL CASE: no id yet. Remember the wish; the start's answer (or the
            # reconcile) will reveal the id, and the stop goes out then.
            return attrs.evolve(r, stop_requested=True), ()
        case Phase.ACTIVE:
            return _send_stop(r, now)
        case Phase.STOPPING:
            if r.stop_sent_at is None:  # the server is stopping it, or a retry waits
                return _send_stop(r, now)
            return attrs.evolve(r, stop_requested=True), ()
        case Phase.STOPPED | Phase.FAILED:
            return r, ()
        case _:
            assert_never(r.phase)


def _on_update_requested(r: TaskRecord) -> _Out:
    if r.phase is not Phase.ACTIVE:
        raise UsageError(
            f"task {r.key!r} cannot be updated in phase {r.phase}; only a running task can"
        )
    # spec §4.6: each update carries a larger sequenceId. Allocate and persist it
    # before the request, so neither a failure nor a restart can ever reuse it.
    r = attrs.evolve(r, sequence_id=r.sequence_id + 1)
    server_id = _need(r.server_id, "server id")
    return r, (SendUpdate(server_id=server_id, sequence_id=r.sequence_id, token_name=r.token_name),)


# --- answers to the start ---------------------------------------------------------------


def _on_token_acquired(r: TaskRecord, e: TokenAcquired, now: float, policy: MachinePolicy) -> _Out:
    _legacy_only(r, "TokenAcquired")
    if not e.token_name:
        raise UsageError("TokenAcquired needs a non-empty token_name")
    if e.acquired_at > now:
        raise UsageError(
            "TokenAcquired.acquired_at must be read before the acquire request was sent;"
            f" got {e.acquired_at}, later than now={now}"
        )
    if r.phase.is_terminal:
        return r, ()
    if r.phase is not Phase.ACQUIRING:
        return _report(r, "a builder token arrived that nobody asked for; ignored")
    if e.instance_id is not None and e.instance_id != r.instance_id:
        anomaly = f"acquire answered for instanceId {e.instance_id!r}, asked {r.instance_id!r}"
        return attrs.evolve(r, phase=Phase.FAILED, last_error=anomaly), (Report(anomaly),)
    r = attrs.evolve(r, token_name=e.token_name, token_acquired_at=e.acquired_at)
    return _send_fresh_start(r, now, policy)


def _on_token_expired(r: TaskRecord, e: TokenExpired) -> _Out:
    _legacy_only(r, "TokenExpired")
    if r.phase.is_terminal:
        return r, ()
    if r.phase not in _AWAITING_START:
        return _report(r, "a token-expired answer arrived while no start was in flight")
    # The token provably started nothing: forget it, and acquire another.
    r = attrs.evolve(
        r,
        token_name=None,
        token_acquired_at=None,
        start_sent_at=None,
        wake_at=None,
        last_error=e.message or "builder token expired before the start",
    )
    if r.stop_requested:
        return attrs.evolve(r, phase=Phase.STOPPED), ()
    r = attrs.evolve(r, phase=Phase.ACQUIRING)
    return r, (AcquireToken(instance_id=_need(r.instance_id, "instance_id")),)


def _adopt(
    r: TaskRecord,
    server_id: str,
    status: ServerStatus | None,
    create_ts: int | None,
    now: float,
    policy: MachinePolicy,
) -> _Out:
    """A start answered with, or a reconcile found, the server id ``server_id``."""
    _check_status_type(r, status)
    known = r.server_id
    if r.phase not in _AWAITING_START:
        if server_id == known:
            return r, ()  # a duplicate answer: nothing new
        what = (
            "a server task nobody tracks"
            if known is None
            else f"a second task (tracking {known!r})"
        )
        return _report(r, f"the server reports {server_id!r}: {what}; it may need stopping")
    if not server_id:
        return _report(r, "a start answer carried an empty id; ignored")
    # Record the id at once: the Persist that follows makes the tokenName → taskId
    # mapping durable before anything else is sent (spec §6.1).
    r = _with_id(r, server_id)
    r = attrs.evolve(
        r,
        create_ts=r.create_ts if create_ts is None else create_ts,
        last_error=None,
        wake_at=None,
    )
    if status is not None:
        r = _with_status(r, status, now)
        if status.is_terminal:
            return attrs.evolve(
                r, phase=Phase.FAILED, last_error=f"the server reports {status} for the new task"
            ), ()
    if r.stop_requested:
        return _send_stop(r, now)
    if status in _STOPPING_STATUSES:
        return _server_stopping(r, now, policy)
    return attrs.evolve(r, phase=Phase.ACTIVE), ()


def _on_start_rejected(r: TaskRecord, e: StartRejected) -> _Out:
    if r.phase.is_terminal:
        return r, ()
    if r.phase not in (Phase.ACQUIRING, Phase.STARTING, Phase.RECONCILING):
        return _report(r, f"a start rejection arrived while no start was in flight: {e.message}")
    return attrs.evolve(r, phase=Phase.FAILED, last_error=f"{e.error_kind}: {e.message}"), ()


def _on_start_unknown(r: TaskRecord, message: str, now: float, policy: MachinePolicy) -> _Out:
    if r.phase.is_terminal:
        return r, ()
    if r.phase not in _AWAITING_START:
        return _report(r, f"a start outcome arrived while no start was in flight: {message}")
    r = attrs.evolve(r, last_error=message)
    return _reconcile(r, now, policy, bounded=True)


def _on_start_conflicted(
    r: TaskRecord, e: StartConflicted, now: float, policy: MachinePolicy
) -> _Out:
    if e.server_id:
        # SPECIAL CASE (legacy, spec §6.1): "The task has been started, ..., taskId is
        # <id>" names the task this token started: adopt it as if the start succeeded.
        # (If another token of the same instanceId started it, stop will be refused
        # with a token mismatch: see the open questions in the session docs.)
        return _adopt(r, e.server_id, None, None, now, policy)
    if r.phase.is_terminal:
        return r, ()
    # No id in the answer: a task exists but we cannot name it; find it like an
    # ambiguous start (v7: list the channel; legacy: repeat, hoping for the id).
    return _on_start_unknown(r, e.message or "start conflicted without an id", now, policy)


def _on_found_nothing(r: TaskRecord, now: float, policy: MachinePolicy) -> _Out:
    if r.api is not ApiGeneration.V7:
        raise UsageError(
            "ReconcileFoundNothing is v7-only: legacy tasks reconcile by repeating the start"
        )
    if r.phase.is_terminal:
        return r, ()
    if r.phase is not Phase.RECONCILING:
        return _report(r, "a reconcile answer arrived while not reconciling; ignored")
    if r.stop_requested:
        # Nothing to stop. A join still in flight at the server could yet create an
        # agent; its maxIdleTime bounds the cost. Reported so the user can check.
        return attrs.evolve(r, phase=Phase.STOPPED), (
            Report(f"task {r.key!r}: stopped before its agent was found; none was found"),
        )
    if r.start_attempts >= policy.max_start_attempts:
        return attrs.evolve(
            r, phase=Phase.FAILED, last_error=f"no agent after {r.start_attempts} join attempts"
        ), ()
    # SPECIAL CASE (v7): the join was not processed. Joining again is safe: the same
    # name makes a late duplicate answer 409 instead of creating a second agent (§4.8).
    return _send_join(r, now)


def _on_reconcile_failed(
    r: TaskRecord, e: ReconcileFailed, now: float, policy: MachinePolicy
) -> _Out:
    if r.phase.is_terminal:
        return r, ()
    if r.phase is not Phase.RECONCILING:
        return _report(r, f"a reconcile failure arrived while not reconciling: {e.message}")
    return _wait(attrs.evolve(r, last_error=e.message), now, policy)


# --- observations -------------------------------------------------------------------------


def _observe(
    r: TaskRecord,
    status: ServerStatus,
    observed_at: float,
    now: float,
    policy: MachinePolicy,
) -> _Out:
    _check_status_type(r, status)
    if r.phase.is_terminal:
        # Stale (taken before we concluded), or consistent with the end: absorb.
        if observed_at < r.updated_at or status.is_terminal or status in _STOPPING_STATUSES:
            return r, ()
        return _report(
            r, f"the server reports {status} for a task believed over; it may be leaking"
        )
    if r.server_id is None:
        return _report(r, f"status {status} observed for a task whose id is not known yet")
    if r.status_observed_at is not None and observed_at < r.status_observed_at:
        return r, ()  # out of order: an older observation than the one we hold
    previous = r.server_status
    if previous is not None and not _may_follow(previous, status):
        return _report(r, f"status moved backwards: {previous} then {status}; ignored")
    r = _with_status(r, status, observed_at)
    if status.is_terminal:
        error = f"the server reports {status}" if status in _FAILURE_STATUSES else r.last_error
        return attrs.evolve(r, phase=Phase.STOPPED, last_error=error), ()
    if status in _STOPPING_STATUSES and r.phase is Phase.ACTIVE:
        return _server_stopping(r, now, policy)
    return r, ()


def _may_follow(previous: ServerStatus, status: ServerStatus) -> bool:
    if isinstance(previous, AgentStatus) and isinstance(status, AgentStatus):
        return status in V7_OBSERVABLE[previous]
    if isinstance(previous, LegacyTaskStatus) and isinstance(status, LegacyTaskStatus):
        return status in LEGACY_OBSERVABLE[previous]
    return False


def _on_not_found(r: TaskRecord, e: NotFoundObserved) -> _Out:
    if r.phase.is_terminal:
        return r, ()
    if r.server_id is None:
        return _report(r, "not-found observed for a task whose id is not known yet")
    error = r.last_error if r.stop_requested else f"ended on the server: {e.message or 'not found'}"
    return attrs.evolve(r, phase=Phase.STOPPED, last_error=error), ()


# --- answers to updates and stops ----------------------------------------------------------


def _valid_sequence(r: TaskRecord, sequence_id: int) -> bool:
    return 1 <= sequence_id <= r.sequence_id


def _on_update_succeeded(
    r: TaskRecord, e: UpdateSucceeded, now: float, policy: MachinePolicy
) -> _Out:
    _check_status_type(r, e.status)
    if r.phase.is_terminal:
        return r, ()
    if not _valid_sequence(r, e.sequence_id):
        return _report(r, f"an answer for update {e.sequence_id}, which was never sent")
    if e.status is None:
        return r, ()
    return _observe(r, e.status, now, now, policy)


def _on_update_failed(r: TaskRecord, e: UpdateFailed) -> _Out:
    if r.phase.is_terminal:
        return r, ()
    if not _valid_sequence(r, e.sequence_id):
        return _report(r, f"a failure for update {e.sequence_id}, which was never sent")
    # The sequence id stays spent: the next update uses a larger one anyway.
    return attrs.evolve(r, last_error=f"update {e.sequence_id} failed: {e.message}"), ()


def _on_stop_succeeded(r: TaskRecord) -> _Out:
    if r.phase.is_terminal:
        return r, ()
    if r.phase is not Phase.STOPPING or r.stop_sent_at is None:
        return _report(r, "a stop answer arrived while no stop was in flight; ignored")
    return attrs.evolve(r, phase=Phase.STOPPED, stop_sent_at=None), ()


def _on_stop_failed(r: TaskRecord, e: StopFailed, now: float, policy: MachinePolicy) -> _Out:
    if r.phase.is_terminal:
        return r, ()
    if r.phase is not Phase.STOPPING or r.stop_sent_at is None:
        return _report(r, f"a stop failure arrived while no stop was in flight: {e.message}")
    r = attrs.evolve(r, stop_sent_at=None, last_error=f"stop failed: {e.message}")
    if e.maybe_processed:
        # Repeating a stop is harmless (404 or code 49 both mean "gone"): retry soon.
        return _wait(r, now, policy)
    if r.server_status in _STOPPING_STATUSES:
        return _wait(attrs.evolve(r, stop_requested=False), now, policy)
    # Refused outright: the task still runs. The user's stop call fails; asking again
    # sends a new stop.
    return attrs.evolve(r, phase=Phase.ACTIVE, stop_requested=False), ()


# --- time and restarts --------------------------------------------------------------------


def _on_tick(r: TaskRecord, now: float, policy: MachinePolicy) -> _Out:
    if r.wake_at is None or now < r.wake_at:
        return r, ()  # early or unasked: timers may fire twice or late, never harmfully
    r = attrs.evolve(r, wake_at=None)
    if r.phase is Phase.RECONCILING:
        return _reconcile(r, now, policy, bounded=False)
    if r.phase is Phase.STOPPING:
        if r.stop_requested:
            return _send_stop(r, now)
        return _wait(r, now, policy, _query_action(r))
    return r, ()  # pragma: no cover - only RECONCILING and STOPPING ever wait


def _on_recovered(r: TaskRecord, now: float, policy: MachinePolicy) -> _Out:
    # A new session picks up where the old one died: whatever was in flight may or may
    # not have happened, so ask again in the way that is safe for each phase.
    match r.phase:
        case Phase.PENDING | Phase.STOPPED | Phase.FAILED:
            return r, ()
        case Phase.ACQUIRING:
            return r, (AcquireToken(instance_id=_need(r.instance_id, "instance_id")),)
        case Phase.STARTING | Phase.RECONCILING:
            return _reconcile(r, now, policy, bounded=False)
        case Phase.ACTIVE:
            return r, (_query_action(r),)
        case Phase.STOPPING:
            if r.stop_requested:
                return _send_stop(r, now)
            return _wait(r, now, policy, _query_action(r))
        case _:
            assert_never(r.phase)


# === serialisation ========================================================================

_converter = cattrs.Converter(forbid_extra_keys=False)
for _enum in (Phase, ApiGeneration, AgentStatus, LegacyTaskStatus):
    _converter.register_unstructure_hook(_enum, lambda value: value.value)


def record_to_dict(record: TaskRecord) -> dict[str, object]:
    """``record`` as a JSON-compatible dict: snake_case keys, enums as their values."""
    data: dict[str, object] = _converter.unstructure(record)
    return data


def record_from_dict(data: Mapping[str, object]) -> TaskRecord:
    """The record :func:`record_to_dict` produced; exact round trip.

    Unknown keys are ignored (a newer version may add fields).

    Raises:
        ValueError: ``data`` is not a valid record.
    """
    try:
        return _converter.structure(dict(data), TaskRecord)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a valid task record: {exc}") from exc


# === diagrams =============================================================================


def mermaid(table: str = "phases") -> str:
    """A Mermaid ``stateDiagram-v2`` drawn from a table: ``phases``, ``v7`` or ``legacy``.

    Raises:
        ValueError: unknown table name.
    """
    lines = ["stateDiagram-v2"]
    if table == "phases":
        lines.append(f"    [*] --> {Phase.PENDING}: new_record")
        for source, by_event in PHASE_TRANSITIONS.items():
            labels: dict[Phase, list[str]] = {}
            for event_type, targets in by_event.items():
                for target in targets:
                    labels.setdefault(target, []).append(event_type.__name__)
            lines.extend(
                f"    {source} --> {target}: {', '.join(labels[target])}"
                for target in Phase
                if target in labels
            )
        lines.extend(f"    {phase} --> [*]" for phase in Phase if phase.is_terminal)
    elif table == "v7":
        lines.extend(_status_lines(V7_STATUS_EDGES, list(AgentStatus)))
    elif table == "legacy":
        lines.extend(_status_lines(LEGACY_TASK_EDGES, list(LegacyTaskStatus)))
    else:
        raise ValueError(f"table must be 'phases', 'v7' or 'legacy', got {table!r}")
    return "\n".join(lines) + "\n"


def _status_lines(edges: Mapping[_S, frozenset[_S]], order: list[_S]) -> list[str]:
    lines = [f"    [*] --> {order[0]}"]
    for source in order:
        lines.extend(f"    {source} --> {target}" for target in order if target in edges[source])
        if not edges[source]:
            lines.append(f"    {source} --> [*]")
    return lines
