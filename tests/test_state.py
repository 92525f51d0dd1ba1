"""Table-driven tests of the sans-I/O task machine (h11 style).

Every scripted step states the whole outcome: which fields of the record change (all
others must stay put, the version goes up by one and ``updated_at`` becomes ``now``)
and the exact actions after the leading ``Persist``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import pytest

from agora_stt_async._enums import AgentStatus, ApiGeneration, LegacyTaskStatus
from agora_stt_async._errors import ConfigurationError, UsageError, ValidationError
from agora_stt_async.state import (
    LEGACY_OBSERVABLE,
    LEGACY_TASK_EDGES,
    PHASE_TRANSITIONS,
    V7_OBSERVABLE,
    V7_STATUS_EDGES,
    AcquireToken,
    AnyAction,
    AnyEvent,
    MachinePolicy,
    NotFoundObserved,
    Persist,
    Phase,
    Reconcile,
    ReconcileFailed,
    ReconcileFound,
    ReconcileFoundNothing,
    Recovered,
    Report,
    SendJoin,
    SendLeave,
    SendQuery,
    SendStart,
    SendStop,
    SendUpdate,
    StartConflicted,
    StartOutcomeUnknown,
    StartRejected,
    StartRequested,
    StartSucceeded,
    StatusObserved,
    StopFailed,
    StopRequested,
    StopSucceeded,
    TaskRecord,
    Tick,
    TokenAcquired,
    TokenExpired,
    UpdateFailed,
    UpdateRequested,
    UpdateSucceeded,
    WakeAt,
    mermaid,
    new_record,
    record_from_dict,
    record_to_dict,
    step,
    token_deadline,
)

T0 = 1_700_000_000.0  # a large offset: code that reads real time by mistake shows up
POLICY = MachinePolicy()
TOKEN = "tok-AAAA-secret"
OTHER_TOKEN = "tok-BBBB-secret"
WINDOW = POLICY.token_ttl_s - POLICY.token_safety_margin_s  # 270 s


class S(NamedTuple):
    """One scripted step: feed ``event`` at ``now``; expect ``changes`` and ``actions``.

    ``changes`` is ``None`` when the record must come back unchanged (no Persist).
    """

    event: AnyEvent
    now: float
    changes: Mapping[str, Any] | None
    actions: Sequence[AnyAction] = ()


def drive(record: TaskRecord, script: Sequence[S], policy: MachinePolicy = POLICY) -> TaskRecord:
    for number, (event, now, changes, actions) in enumerate(script):
        result = step(record, event, now=now, policy=policy)
        where = f"step {number}: {event!r}"
        if changes is None:
            assert result.record == record, where
            assert result.actions == tuple(actions), where
        else:
            expected = attrs.evolve(record, **changes, version=record.version + 1, updated_at=now)
            assert result.record == expected, where
            assert result.actions == (Persist(expected), *actions), where
            assert result.actions[0].expected_version == record.version  # type: ignore[union-attr]
        record = result.record
    return record


def v7() -> TaskRecord:
    return new_record("job-1", ApiGeneration.V7, channel="room", name="agent-1", now=T0)


def legacy() -> TaskRecord:
    return new_record("job-1", ApiGeneration.LEGACY, channel="room", now=T0)


# --- records through to each phase, for the tests below -------------------------------


def v7_starting() -> TaskRecord:
    return step(v7(), StartRequested(), now=T0 + 1).record


def v7_active() -> TaskRecord:
    r = v7_starting()
    return step(r, StartSucceeded("A1", AgentStatus.RUNNING, 1234), now=T0 + 2).record


def v7_stopped() -> TaskRecord:
    r = step(v7_active(), StopRequested(), now=T0 + 3).record
    return step(r, StopSucceeded(), now=T0 + 4).record


def legacy_starting() -> TaskRecord:
    r = step(legacy(), StartRequested(), now=T0 + 1).record
    return step(r, TokenAcquired(TOKEN, T0 + 1), now=T0 + 2).record


def legacy_active() -> TaskRecord:
    r = legacy_starting()
    return step(r, StartSucceeded("T1", LegacyTaskStatus.IN_PROGRESS), now=T0 + 3).record


# --- happy paths ----------------------------------------------------------------------


def test_step_v7_happy_path() -> None:
    """join → RUNNING → update → leave → STOPPED, with the exact record and actions."""
    r = drive(
        v7(),
        [
            S(
                StartRequested(),
                T0 + 1,
                {"phase": Phase.STARTING, "start_sent_at": T0 + 1, "start_attempts": 1},
                [SendJoin(name="agent-1", channel="room")],
            ),
            S(
                StartSucceeded("A1", AgentStatus.STARTING, 1234),
                T0 + 2,
                {
                    "phase": Phase.ACTIVE,
                    "agent_id": "A1",
                    "create_ts": 1234,
                    "agent_status": AgentStatus.STARTING,
                    "status_observed_at": T0 + 2,
                },
            ),
            S(
                StatusObserved(AgentStatus.RUNNING, T0 + 3),
                T0 + 3,
                {"agent_status": AgentStatus.RUNNING, "status_observed_at": T0 + 3},
            ),
            S(StatusObserved(AgentStatus.RUNNING, T0 + 4), T0 + 4, None),
            S(
                UpdateRequested(),
                T0 + 10,
                {"sequence_id": 1},
                [SendUpdate(server_id="A1", sequence_id=1, token_name=None)],
            ),
            S(UpdateSucceeded(1, AgentStatus.RUNNING), T0 + 11, None),
            S(
                StopRequested(),
                T0 + 20,
                {"phase": Phase.STOPPING, "stop_requested": True, "stop_sent_at": T0 + 20},
                [SendLeave(agent_id="A1")],
            ),
            S(StopSucceeded(), T0 + 21, {"phase": Phase.STOPPED, "stop_sent_at": None}),
        ],
    )
    assert r.phase.is_terminal
    assert r.version == 6


def test_step_legacy_happy_path() -> None:
    """acquire → start → update → stop, the stop carrying the token that started the task."""
    deadline = T0 + 1 + WINDOW
    drive(
        legacy(),
        [
            S(StartRequested(), T0 + 1, {"phase": Phase.ACQUIRING}, [AcquireToken("room")]),
            S(
                TokenAcquired(TOKEN, T0 + 1, instance_id="room"),
                T0 + 2,
                {
                    "phase": Phase.STARTING,
                    "token_name": TOKEN,
                    "token_acquired_at": T0 + 1,
                    "start_sent_at": T0 + 2,
                    "start_attempts": 1,
                },
                [SendStart(TOKEN, "room", not_after=deadline, repeat=False)],
            ),
            S(
                StartSucceeded("T1", LegacyTaskStatus.IN_PROGRESS, 99),
                T0 + 3,
                {
                    "phase": Phase.ACTIVE,
                    "task_id": "T1",
                    "create_ts": 99,
                    "task_status": LegacyTaskStatus.IN_PROGRESS,
                    "status_observed_at": T0 + 3,
                },
            ),
            S(
                UpdateRequested(),
                T0 + 500,
                {"sequence_id": 1},
                [SendUpdate(server_id="T1", sequence_id=1, token_name=TOKEN)],
            ),
            S(
                StopRequested(token_name=TOKEN),
                T0 + 600,
                {"phase": Phase.STOPPING, "stop_requested": True, "stop_sent_at": T0 + 600},
                [SendStop(task_id="T1", token_name=TOKEN)],
            ),
            S(StopSucceeded(), T0 + 601, {"phase": Phase.STOPPED, "stop_sent_at": None}),
        ],
    )


def test_new_record_defaults() -> None:
    """A new record is PENDING at version 0; legacy instance_id defaults to the channel."""
    r = legacy()
    assert (r.phase, r.version, r.instance_id, r.sequence_id) == (Phase.PENDING, 0, "room", 0)
    assert v7().name == "agent-1"


@pytest.mark.parametrize(
    ("api", "kwargs", "field"),
    [
        pytest.param(ApiGeneration.V7, {}, "name", id="v7-needs-name"),
        pytest.param(ApiGeneration.V7, {"name": "x" * 65}, "name", id="v7-name-too-long"),
        pytest.param(
            ApiGeneration.V7, {"name": "a", "instance_id": "i"}, "instance_id", id="v7-no-instance"
        ),
        pytest.param(ApiGeneration.LEGACY, {"name": "a"}, "name", id="legacy-no-name"),
        pytest.param(
            ApiGeneration.LEGACY, {"instance_id": "bad id!"}, "instance_id", id="legacy-charset"
        ),
        pytest.param(
            ApiGeneration.LEGACY, {"instance_id": "i" * 65}, "instance_id", id="legacy-length"
        ),
    ],
)
def test_new_record_validates(api: ApiGeneration, kwargs: dict[str, str], field: str) -> None:
    """Documented limits and generation-specific fields are checked up front."""
    with pytest.raises(ValidationError) as info:
        new_record("k", api, channel="room", now=T0, **kwargs)
    assert info.value.field == field


def test_new_record_legacy_channel_not_an_instance_id() -> None:
    """A channel name that is not a valid instanceId asks for an explicit one."""
    with pytest.raises(ValidationError, match="pass instance_id="):
        new_record("k", ApiGeneration.LEGACY, channel="room with spaces", now=T0)
    r = new_record("k", ApiGeneration.LEGACY, channel="room with spaces", instance_id="r1", now=T0)
    assert r.instance_id == "r1"


# --- the legacy token window ----------------------------------------------------------


@pytest.mark.parametrize(
    ("margin", "age", "starts"),
    [
        pytest.param(30.0, 0.0, True, id="fresh"),
        pytest.param(30.0, 269.9, True, id="just-inside-margin"),
        pytest.param(30.0, 270.0, False, id="at-margin"),
        pytest.param(30.0, 299.0, False, id="inside-ttl-but-past-margin"),
        pytest.param(0.0, 299.9, True, id="no-margin-inside"),
        pytest.param(0.0, 300.0, False, id="no-margin-at-ttl"),
    ],
)
def test_step_token_window_with_margin(margin: float, age: float, starts: bool) -> None:
    """A token starts a task only before acquired_at + ttl - margin; else acquire again."""
    policy = MachinePolicy(token_safety_margin_s=margin)
    r = step(legacy(), StartRequested(), now=T0).record
    now = T0 + age
    deadline = T0 + 300.0 - margin
    assert token_deadline(attrs.evolve(r, token_acquired_at=T0), policy) == deadline
    if starts:
        changes: dict[str, object] = {
            "phase": Phase.STARTING,
            "token_name": TOKEN,
            "token_acquired_at": T0,
            "start_sent_at": now,
            "start_attempts": 1,
        }
        actions: list[AnyAction] = [SendStart(TOKEN, "room", not_after=deadline, repeat=False)]
        drive(r, [S(TokenAcquired(TOKEN, T0), now, changes, actions)], policy)
    else:
        changes = {"last_error": "builder token arrived too late to start within its window"}
        drive(r, [S(TokenAcquired(TOKEN, T0), now, changes, [AcquireToken("room")])], policy)


def test_step_token_expired_acquires_again() -> None:
    """The server's "expired" answer proves the token unused: forget it and re-acquire."""
    r = legacy_starting()
    r = drive(
        r,
        [
            S(
                TokenExpired("resourceId reaches out the limited time interval!"),
                T0 + 3,
                {
                    "phase": Phase.ACQUIRING,
                    "token_name": None,
                    "token_acquired_at": None,
                    "start_sent_at": None,
                    "last_error": "resourceId reaches out the limited time interval!",
                },
                [AcquireToken("room")],
            ),
            S(
                TokenAcquired(OTHER_TOKEN, T0 + 4),
                T0 + 5,
                {
                    "phase": Phase.STARTING,
                    "token_name": OTHER_TOKEN,
                    "token_acquired_at": T0 + 4,
                    "start_sent_at": T0 + 5,
                    "start_attempts": 2,
                },
                [SendStart(OTHER_TOKEN, "room", not_after=T0 + 4 + WINDOW, repeat=False)],
            ),
        ],
    )


def test_step_legacy_unknown_outcome_repeats_same_token_past_window() -> None:
    """After an ambiguous start the SAME token is repeated, even past its window."""
    r = legacy_starting()  # token acquired at T0+1, start sent at T0+2
    late = T0 + 1000
    r = drive(
        r,
        [
            S(
                StartOutcomeUnknown("read timeout"),
                late,
                {
                    "phase": Phase.RECONCILING,
                    "start_attempts": 2,
                    "last_error": "read timeout",
                },
                [SendStart(TOKEN, "room", not_after=None, repeat=True)],
            ),
            # spec §6.1: the conflict message carries the taskId: map it at once.
            S(
                StartConflicted("c662ce96", "The task has been started ... taskId is c662ce96"),
                late + 1,
                {"phase": Phase.ACTIVE, "task_id": "c662ce96", "last_error": None},
            ),
            S(
                StopRequested(),
                late + 2,
                {"phase": Phase.STOPPING, "stop_requested": True, "stop_sent_at": late + 2},
                [SendStop(task_id="c662ce96", token_name=TOKEN)],
            ),
        ],
    )


def test_step_legacy_repeat_answered_expired_acquires_new_token() -> None:
    """A repeat answered "expired" proves nothing was started: then a new token is fine."""
    r = step(legacy_starting(), StartOutcomeUnknown("timeout"), now=T0 + 400).record
    drive(
        r,
        [
            S(
                TokenExpired(),
                T0 + 401,
                {
                    "phase": Phase.ACQUIRING,
                    "token_name": None,
                    "token_acquired_at": None,
                    "start_sent_at": None,
                    "last_error": "builder token expired before the start",
                },
                [AcquireToken("room")],
            )
        ],
    )


def test_step_conflict_with_task_id_on_first_start_maps_it() -> None:
    """A first start answered "already started, taskId is X" records X with the token."""
    r = drive(
        legacy_starting(),
        [S(StartConflicted("T9"), T0 + 3, {"phase": Phase.ACTIVE, "task_id": "T9"})],
    )
    assert (r.task_id, r.token_name) == ("T9", TOKEN)


def test_step_conflict_without_id_reconciles() -> None:
    """A conflict without an id is handled like an ambiguous outcome."""
    drive(
        v7_starting(),
        [
            S(
                StartConflicted(None, "TaskConflict"),
                T0 + 2,
                {"phase": Phase.RECONCILING, "last_error": "TaskConflict"},
                [Reconcile(channel="room", name="agent-1", since=T0 + 1)],
            )
        ],
    )


def test_step_legacy_attempts_exhausted_slows_down_but_never_forgets() -> None:
    """After max_start_attempts the same-token repeat continues on a timer, with a Report."""
    policy = MachinePolicy(max_start_attempts=2)
    r = legacy_starting()  # 1 attempt
    r = step(r, StartOutcomeUnknown("t1"), now=T0 + 10, policy=policy).record  # repeat: 2
    assert r.start_attempts == 2
    result = step(r, StartOutcomeUnknown("t2"), now=T0 + 20, policy=policy)
    wake = T0 + 20 + policy.retry_interval_s
    assert result.record == attrs.evolve(
        r, last_error="t2", wake_at=wake, version=r.version + 1, updated_at=T0 + 20
    )
    persist, report, wake_action = result.actions
    assert isinstance(persist, Persist)
    assert isinstance(report, Report)
    assert "still unknown after 2 attempts" in report.anomaly
    assert wake_action == WakeAt(wake)
    drive(
        result.record,
        [
            S(Tick(), wake - 1, None),  # early: ignored
            S(
                Tick(),
                wake,
                {"wake_at": None, "start_attempts": 3},
                [SendStart(TOKEN, "room", not_after=None, repeat=True)],
            ),
        ],
        policy,
    )


# --- v7 reconcile ---------------------------------------------------------------------


def test_step_v7_reconcile_found_nothing_joins_again_then_gives_up() -> None:
    """Nothing found → join again with the same name; FAILED after max attempts."""
    policy = MachinePolicy(max_start_attempts=2)
    since = T0 + 1
    drive(
        v7_starting(),
        [
            S(
                StartOutcomeUnknown("connection lost"),
                T0 + 5,
                {"phase": Phase.RECONCILING, "last_error": "connection lost"},
                [Reconcile(channel="room", name="agent-1", since=since)],
            ),
            S(
                ReconcileFoundNothing(),
                T0 + 6,
                {"phase": Phase.STARTING, "start_attempts": 2},
                [SendJoin(name="agent-1", channel="room")],
            ),
            S(
                StartOutcomeUnknown("connection lost again"),
                T0 + 7,
                {"phase": Phase.RECONCILING, "last_error": "connection lost again"},
                [Reconcile(channel="room", name="agent-1", since=since)],
            ),
            S(
                ReconcileFoundNothing(),
                T0 + 8,
                {"phase": Phase.FAILED, "last_error": "no agent after 2 join attempts"},
            ),
        ],
        policy,
    )


def test_step_v7_reconcile_found_adopts() -> None:
    """The agent the reconcile found is adopted with its status."""
    r = step(v7_starting(), StartOutcomeUnknown("timeout"), now=T0 + 5).record
    drive(
        r,
        [
            S(
                ReconcileFound("A7", AgentStatus.RUNNING),
                T0 + 6,
                {
                    "phase": Phase.ACTIVE,
                    "agent_id": "A7",
                    "agent_status": AgentStatus.RUNNING,
                    "status_observed_at": T0 + 6,
                    "last_error": None,
                },
            )
        ],
    )


def test_step_v7_reconcile_failed_retries_on_tick() -> None:
    """A list that could not complete is retried when the timer fires."""
    r = step(v7_starting(), StartOutcomeUnknown("timeout"), now=T0 + 5).record
    wake = T0 + 6 + POLICY.retry_interval_s
    drive(
        r,
        [
            S(
                ReconcileFailed("503"),
                T0 + 6,
                {"last_error": "503", "wake_at": wake},
                [WakeAt(wake)],
            ),
            S(
                Tick(),
                wake,
                {"wake_at": None},
                [Reconcile(channel="room", name="agent-1", since=T0 + 1)],
            ),
        ],
    )


# --- stop while starting --------------------------------------------------------------


def test_step_stop_while_starting_stops_once_id_known() -> None:
    """A stop asked during the join is remembered and sent when the id arrives."""
    drive(
        v7_starting(),
        [
            S(StopRequested(), T0 + 2, {"stop_requested": True}),
            S(StopRequested(), T0 + 2.5, None),  # idempotent
            S(
                StartSucceeded("A1", AgentStatus.STARTING),
                T0 + 3,
                {
                    "phase": Phase.STOPPING,
                    "agent_id": "A1",
                    "agent_status": AgentStatus.STARTING,
                    "status_observed_at": T0 + 3,
                    "stop_sent_at": T0 + 3,
                },
                [SendLeave("A1")],
            ),
            S(StopSucceeded(), T0 + 4, {"phase": Phase.STOPPED, "stop_sent_at": None}),
        ],
    )


def test_step_stop_while_reconciling_v7() -> None:
    """A stop during reconcile: found → leave; found nothing → STOPPED with a Report."""
    r = step(v7_starting(), StartOutcomeUnknown("timeout"), now=T0 + 5).record
    r = step(r, StopRequested(), now=T0 + 6).record
    found = step(r, ReconcileFound("A2"), now=T0 + 7)
    assert found.record.phase is Phase.STOPPING
    assert found.actions[1:] == (SendLeave("A2"),)
    nothing = step(r, ReconcileFoundNothing(), now=T0 + 7)
    assert nothing.record.phase is Phase.STOPPED
    assert [type(a) for a in nothing.actions] == [Persist, Report]


def test_step_stop_while_acquiring_is_immediate_and_absorbs_late_token() -> None:
    """Nothing was started while acquiring: stop at once; a late token changes nothing."""
    r = step(legacy(), StartRequested(), now=T0).record
    drive(
        r,
        [
            S(StopRequested(), T0 + 1, {"phase": Phase.STOPPED, "stop_requested": True}),
            S(TokenAcquired(TOKEN, T0), T0 + 2, None),
            S(StartSucceeded("T1"), T0 + 3, None, [Report(_any_text)]),
        ],
    )


class _AnyText(str):
    """Equal to any Report text (the wording is not the contract)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str)

    __hash__ = str.__hash__


_any_text = _AnyText("<any>")


def test_step_legacy_stop_while_starting_token_expired_means_stopped() -> None:
    """Expired token + stop wish: provably nothing started, so STOPPED."""
    r = step(legacy_starting(), StopRequested(), now=T0 + 3).record
    r = step(r, TokenExpired(), now=T0 + 4).record
    assert r.phase is Phase.STOPPED
    assert r.token_name is None


# --- sequence ids ---------------------------------------------------------------------


def test_step_sequence_ids_strictly_increase_even_after_failures() -> None:
    """Each update gets a fresh id, persisted before the request; failures never reuse one."""
    r = drive(
        v7_active(),
        [
            S(UpdateRequested(), T0 + 10, {"sequence_id": 1}, [SendUpdate("A1", 1, None)]),
            S(
                UpdateFailed(1, "timeout"),
                T0 + 11,
                {"last_error": "update 1 failed: timeout"},
            ),
            S(UpdateRequested(), T0 + 20, {"sequence_id": 2}, [SendUpdate("A1", 2, None)]),
            S(UpdateRequested(), T0 + 21, {"sequence_id": 3}, [SendUpdate("A1", 3, None)]),
            S(UpdateSucceeded(3), T0 + 22, None),
            S(UpdateSucceeded(4), T0 + 23, None, [Report(_any_text)]),  # never sent
            S(UpdateFailed(0, "x"), T0 + 23, None, [Report(_any_text)]),  # never sent
        ],
    )
    # survives a restart: the persisted record carries the counter
    restored = record_from_dict(json.loads(json.dumps(record_to_dict(r))))
    assert step(restored, UpdateRequested(), now=T0 + 30).actions[1] == SendUpdate("A1", 4, None)


# --- local misuse ---------------------------------------------------------------------


def _legacy_stopped() -> TaskRecord:
    r = step(legacy_active(), StopRequested(), now=T0 + 10).record
    return step(r, StopSucceeded(), now=T0 + 11).record


@pytest.mark.parametrize(
    ("make", "event", "match"),
    [
        pytest.param(v7_starting, StartRequested(), "already started", id="start-twice"),
        pytest.param(v7_stopped, StartRequested(), "already started", id="start-stopped"),
        pytest.param(v7_starting, UpdateRequested(), "cannot be updated", id="update-starting"),
        pytest.param(v7_stopped, UpdateRequested(), "cannot be updated", id="update-stopped"),
        pytest.param(
            legacy_active, StopRequested(token_name=OTHER_TOKEN), "builder token", id="wrong-token"
        ),
        pytest.param(
            _legacy_stopped,
            StopRequested(token_name=OTHER_TOKEN),
            "builder token",
            id="wrong-token-stopped",
        ),
        pytest.param(v7_active, StopRequested(token_name=TOKEN), "legacy-only", id="v7-stop-token"),
        pytest.param(v7_starting, TokenAcquired(TOKEN, T0), "legacy-only", id="v7-token"),
        pytest.param(v7_starting, TokenExpired(), "legacy-only", id="v7-expired"),
        pytest.param(legacy_starting, ReconcileFoundNothing(), "v7-only", id="legacy-nothing"),
        pytest.param(
            v7_active,
            StatusObserved(LegacyTaskStatus.IN_PROGRESS, T0 + 5),
            "takes AgentStatus",
            id="wrong-status-type",
        ),
        pytest.param(
            legacy_starting,
            StartSucceeded("T1", AgentStatus.RUNNING),
            "takes LegacyTaskStatus",
            id="wrong-start-status-type",
        ),
        pytest.param(
            lambda: step(legacy(), StartRequested(), now=T0).record,
            TokenAcquired(TOKEN, T0 + 100),
            "before the acquire",
            id="token-from-the-future",
        ),
        pytest.param(
            lambda: step(legacy(), StartRequested(), now=T0).record,
            TokenAcquired("", T0),
            "non-empty",
            id="empty-token",
        ),
    ],
)
def test_step_local_misuse_raises_and_leaves_record_unchanged(
    make: Callable[[], TaskRecord], event: AnyEvent, match: str
) -> None:
    """Local misuse is a UsageError; the record (and its stored form) is untouched."""
    record = make()
    before = record_to_dict(record)
    with pytest.raises(UsageError, match=match):
        step(record, event, now=T0 + 50)
    assert record_to_dict(record) == before


def test_step_rejects_non_finite_now() -> None:
    """Time must be a real number."""
    with pytest.raises(UsageError):
        step(v7(), StartRequested(), now=float("nan"))


def test_step_stop_is_idempotent_on_terminal_records() -> None:
    """Stopping a stopped task is not an error and does nothing."""
    r = v7_stopped()
    assert step(r, StopRequested(), now=T0 + 99).record is r
    assert step(r, StopRequested(), now=T0 + 99).actions == ()


# --- remote observations --------------------------------------------------------------


def test_step_status_backwards_is_reported_not_raised() -> None:
    """RUNNING after STOPPING and STARTING after RUNNING are reported; the record stays."""
    r = v7_active()
    r = step(r, StatusObserved(AgentStatus.STOPPING, T0 + 5), now=T0 + 5).record
    drive(
        r,
        [
            S(StatusObserved(AgentStatus.RUNNING, T0 + 6), T0 + 6, None, [Report(_any_text)]),
            S(StatusObserved(AgentStatus.STARTING, T0 + 7), T0 + 7, None, [Report(_any_text)]),
        ],
    )


def test_step_status_skipping_steps_is_legal() -> None:
    """Between two polls STARTING → STOPPED can happen: it is applied, not reported."""
    r = step(v7_starting(), StartSucceeded("A1", AgentStatus.STARTING), now=T0 + 2).record
    drive(
        r,
        [
            S(
                StatusObserved(AgentStatus.STOPPED, T0 + 60),
                T0 + 60,
                {
                    "phase": Phase.STOPPED,
                    "agent_status": AgentStatus.STOPPED,
                    "status_observed_at": T0 + 60,
                },
            )
        ],
    )


def test_step_stale_observation_is_ignored() -> None:
    """An observation older than the recorded one (webhooks reorder) changes nothing."""
    r = step(v7_active(), StatusObserved(AgentStatus.RECOVERING, T0 + 10), now=T0 + 10).record
    drive(r, [S(StatusObserved(AgentStatus.RUNNING, T0 + 9), T0 + 11, None)])


@pytest.mark.parametrize(
    ("status", "phase", "error"),
    [
        pytest.param(AgentStatus.STOPPED, Phase.STOPPED, None, id="stopped"),
        pytest.param(AgentStatus.FAILED, Phase.STOPPED, "the server reports FAILED", id="failed"),
    ],
)
def test_step_terminal_status_ends_the_task(
    status: AgentStatus, phase: Phase, error: str | None
) -> None:
    """A terminal server status moves an active task to STOPPED."""
    drive(
        v7_active(),
        [
            S(
                StatusObserved(status, T0 + 9),
                T0 + 9,
                {
                    "phase": phase,
                    "agent_status": status,
                    "status_observed_at": T0 + 9,
                    "last_error": error,
                },
            )
        ],
    )


def test_step_server_initiated_stopping_is_polled_until_confirmed() -> None:
    """The server stopping on its own → STOPPING + a timer; each tick queries."""
    wake1 = T0 + 5 + POLICY.retry_interval_s
    wake2 = wake1 + POLICY.retry_interval_s
    drive(
        v7_active(),
        [
            S(
                StatusObserved(AgentStatus.STOPPING, T0 + 5),
                T0 + 5,
                {
                    "phase": Phase.STOPPING,
                    "agent_status": AgentStatus.STOPPING,
                    "status_observed_at": T0 + 5,
                    "wake_at": wake1,
                },
                [WakeAt(wake1)],
            ),
            S(Tick(), wake1 - 0.5, None),
            S(Tick(), wake1, {"wake_at": wake2}, [SendQuery("A1", None), WakeAt(wake2)]),
            S(
                StatusObserved(AgentStatus.STOPPED, wake1 + 1),
                wake1 + 1,
                {
                    "phase": Phase.STOPPED,
                    "agent_status": AgentStatus.STOPPED,
                    "status_observed_at": wake1 + 1,
                    "wake_at": None,
                },
            ),
        ],
    )


def test_step_not_found_ends_an_active_task() -> None:
    """404 on an active task: it ended on the server."""
    drive(
        legacy_active(),
        [
            S(
                NotFoundObserved("The task is not found"),
                T0 + 9,
                {
                    "phase": Phase.STOPPED,
                    "last_error": "ended on the server: The task is not found",
                },
            )
        ],
    )


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(StatusObserved(AgentStatus.RUNNING, T0 + 50), id="running"),
        pytest.param(StartSucceeded("A-other"), id="another-agent"),
        pytest.param(StartConflicted("A-other"), id="conflict-other"),
        pytest.param(ReconcileFound("A-other", AgentStatus.RUNNING), id="found-other"),
    ],
)
def test_step_terminal_reports_contradicting_evidence(event: AnyEvent) -> None:
    """A live server task contradicting a terminal record is reported, never applied."""
    r = v7_stopped()
    result = step(r, event, now=T0 + 50)
    assert result.record is r
    assert [type(a) for a in result.actions] == [Report]


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(StatusObserved(AgentStatus.STOPPED, T0 + 50), id="stopped"),
        pytest.param(StatusObserved(AgentStatus.STOPPING, T0 + 50), id="stopping"),
        pytest.param(StatusObserved(AgentStatus.RUNNING, T0 + 3.5), id="stale-running"),
        pytest.param(NotFoundObserved(), id="not-found"),
        pytest.param(StopSucceeded(), id="stop-ok"),
        pytest.param(StopFailed("x", maybe_processed=True), id="stop-failed"),
        pytest.param(StartSucceeded("A1"), id="same-id"),
        pytest.param(StartRejected("BadRequestError", "x"), id="rejected"),
        pytest.param(StartOutcomeUnknown("x"), id="unknown"),
        pytest.param(UpdateSucceeded(1), id="update-ok"),
        pytest.param(UpdateFailed(1, "x"), id="update-failed"),
        pytest.param(ReconcileFailed("x"), id="reconcile-failed"),
        pytest.param(ReconcileFoundNothing(), id="nothing"),
        pytest.param(Tick(), id="tick"),
        pytest.param(Recovered(), id="recovered"),
    ],
)
def test_step_terminal_absorbs(event: AnyEvent) -> None:
    """Terminal phases absorb every remote event silently when it is consistent."""
    r = v7_stopped()
    result = step(r, event, now=T0 + 50)
    assert result.record is r
    assert result.actions == ()


def test_step_start_answer_with_terminal_status_fails_the_start() -> None:
    """A join answered FAILED: the start produced no running task."""
    drive(
        v7_starting(),
        [
            S(
                StartSucceeded("A1", AgentStatus.FAILED),
                T0 + 2,
                {
                    "phase": Phase.FAILED,
                    "agent_id": "A1",
                    "agent_status": AgentStatus.FAILED,
                    "status_observed_at": T0 + 2,
                    "last_error": "the server reports FAILED for the new task",
                },
            )
        ],
    )


def test_step_acquire_echo_mismatch_fails_with_report() -> None:
    """An acquire answered for another instanceId is remote misbehaviour: FAILED + Report."""
    r = step(legacy(), StartRequested(), now=T0).record
    result = step(r, TokenAcquired(TOKEN, T0, instance_id="elsewhere"), now=T0 + 1)
    assert result.record.phase is Phase.FAILED
    assert result.record.token_name is None
    assert [type(a) for a in result.actions] == [Persist, Report]


def test_step_second_task_while_active_is_reported() -> None:
    """A second id for an active record means a leak: reported, record unchanged."""
    r = v7_active()
    result = step(r, StartSucceeded("A2"), now=T0 + 9)
    assert result.record is r
    assert len(result.actions) == 1
    assert "A2" in result.actions[0].anomaly  # type: ignore[union-attr]


def test_step_answers_nobody_asked_for_are_reported() -> None:
    """A start answer before any start, or a stop answer with no stop, is a Report."""
    cases: list[tuple[TaskRecord, AnyEvent]] = [
        (v7(), StartSucceeded("A1")),
        (v7(), StartRejected("X", "y")),
        (v7_active(), StopSucceeded()),
        (v7_active(), StopFailed("x", maybe_processed=False)),
        (legacy_active(), TokenExpired()),
        (legacy_active(), TokenAcquired(TOKEN, T0)),
        (v7_starting(), StatusObserved(AgentStatus.RUNNING, T0 + 2)),
        (v7_starting(), NotFoundObserved()),
        (v7_starting(), ReconcileFoundNothing()),
        (v7_active(), ReconcileFailed("x")),
    ]
    for record, event in cases:
        result = step(record, event, now=T0 + 20)
        assert result.record is record, event
        assert [type(a) for a in result.actions] == [Report], event


# --- stop failures --------------------------------------------------------------------


def test_step_stop_maybe_processed_is_retried_on_tick() -> None:
    """A stop that may have been processed is sent again when the timer fires."""
    r = step(v7_active(), StopRequested(), now=T0 + 5).record
    wake = T0 + 6 + POLICY.retry_interval_s
    drive(
        r,
        [
            S(
                StopFailed("timeout", maybe_processed=True),
                T0 + 6,
                {"stop_sent_at": None, "last_error": "stop failed: timeout", "wake_at": wake},
                [WakeAt(wake)],
            ),
            S(Tick(), wake, {"stop_sent_at": wake, "wake_at": None}, [SendLeave("A1")]),
        ],
    )


def test_step_stop_refused_returns_to_active() -> None:
    """A definitive refusal leaves the task running; asking again sends a new stop."""
    r = step(legacy_active(), StopRequested(), now=T0 + 5).record
    drive(
        r,
        [
            S(
                StopFailed("HTTP 401", maybe_processed=False),
                T0 + 6,
                {
                    "phase": Phase.ACTIVE,
                    "stop_sent_at": None,
                    "stop_requested": False,
                    "last_error": "stop failed: HTTP 401",
                },
            ),
            S(
                StopRequested(token_name=TOKEN),
                T0 + 7,
                {"phase": Phase.STOPPING, "stop_requested": True, "stop_sent_at": T0 + 7},
                [SendStop("T1", TOKEN)],
            ),
        ],
    )


# --- recovery -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "changes", "actions"),
    [
        pytest.param(v7, None, (), id="pending"),
        pytest.param(
            lambda: step(legacy(), StartRequested(), now=T0).record,
            None,
            (AcquireToken("room"),),
            id="acquiring",
        ),
        pytest.param(
            v7_starting,
            {"phase": Phase.RECONCILING},
            (Reconcile("room", "agent-1", T0 + 1),),
            id="v7-starting",
        ),
        pytest.param(
            legacy_starting,
            {"phase": Phase.RECONCILING, "start_attempts": 2},
            (SendStart(TOKEN, "room", not_after=None, repeat=True),),
            id="legacy-starting",
        ),
        pytest.param(v7_active, None, (SendQuery("A1", None),), id="active"),
        pytest.param(legacy_active, None, (SendQuery("T1", TOKEN),), id="legacy-active"),
        pytest.param(
            lambda: step(v7_active(), StopRequested(), now=T0 + 5).record,
            {"stop_sent_at": T0 + 100},
            (SendLeave("A1"),),
            id="stopping",
        ),
        pytest.param(v7_stopped, None, (), id="stopped"),
    ],
)
def test_step_recovered_resumes_safely(
    make: Callable[[], TaskRecord],
    changes: Mapping[str, Any] | None,
    actions: tuple[AnyAction, ...],
) -> None:
    """After a restart each phase asks again in the way that is safe for it."""
    drive(make(), [S(Recovered(), T0 + 100, changes, actions)])


# --- tables ---------------------------------------------------------------------------


def test_tables_cover_every_state() -> None:
    """Every phase and status has a row; terminal rows are empty."""
    assert set(PHASE_TRANSITIONS) == set(Phase)
    assert set(V7_STATUS_EDGES) == set(AgentStatus)
    assert set(LEGACY_TASK_EDGES) == set(LegacyTaskStatus)
    for phase in Phase:
        assert (not PHASE_TRANSITIONS[phase]) == phase.is_terminal
    for status, targets in V7_STATUS_EDGES.items():
        assert (not targets) == status.is_terminal
    for legacy_status, legacy_targets in LEGACY_TASK_EDGES.items():
        assert (not legacy_targets) == legacy_status.is_terminal


def test_observable_is_the_closure() -> None:
    """What may be observed after a status includes itself and every later status."""
    assert V7_OBSERVABLE[AgentStatus.STARTING] == frozenset(AgentStatus) - {AgentStatus.IDLE}
    assert V7_OBSERVABLE[AgentStatus.STOPPED] == {AgentStatus.STOPPED}
    assert AgentStatus.RUNNING not in V7_OBSERVABLE[AgentStatus.STOPPING]
    assert AgentStatus.RUNNING in V7_OBSERVABLE[AgentStatus.RECOVERING]
    assert LegacyTaskStatus.STOPPED in LEGACY_OBSERVABLE[LegacyTaskStatus.PREPARING]
    assert LegacyTaskStatus.PREPARING not in LEGACY_OBSERVABLE[LegacyTaskStatus.IN_PROGRESS]


EXPECTED_PHASE_DIAGRAM = """\
stateDiagram-v2
    [*] --> PENDING: new_record
    PENDING --> ACQUIRING: StartRequested
    PENDING --> STARTING: StartRequested
    PENDING --> STOPPED: StopRequested
    ACQUIRING --> STARTING: TokenAcquired
    ACQUIRING --> STOPPED: StopRequested
    ACQUIRING --> FAILED: TokenAcquired, StartRejected
    STARTING --> ACQUIRING: TokenExpired
    STARTING --> RECONCILING: StartConflicted, StartOutcomeUnknown, Recovered
    STARTING --> ACTIVE: StartSucceeded, ReconcileFound, StartConflicted
    STARTING --> STOPPING: StartSucceeded, ReconcileFound, StartConflicted
    STARTING --> STOPPED: TokenExpired
    STARTING --> FAILED: StartSucceeded, ReconcileFound, StartRejected
    RECONCILING --> ACQUIRING: TokenExpired
    RECONCILING --> STARTING: ReconcileFoundNothing
    RECONCILING --> ACTIVE: StartSucceeded, ReconcileFound, StartConflicted
    RECONCILING --> STOPPING: StartSucceeded, ReconcileFound, StartConflicted
    RECONCILING --> STOPPED: TokenExpired, ReconcileFoundNothing
    RECONCILING --> FAILED: StartSucceeded, ReconcileFound, StartRejected, ReconcileFoundNothing
    ACTIVE --> STOPPING: StopRequested, StatusObserved, UpdateSucceeded
    ACTIVE --> STOPPED: StatusObserved, UpdateSucceeded, NotFoundObserved
    STOPPING --> ACTIVE: StopFailed
    STOPPING --> STOPPED: StopSucceeded, StatusObserved, UpdateSucceeded, NotFoundObserved
    STOPPED --> [*]
    FAILED --> [*]
"""


def test_mermaid_phase_diagram_is_stable() -> None:
    """The diagram is generated from the table; the README pastes this exact text."""
    assert mermaid() == EXPECTED_PHASE_DIAGRAM
    assert mermaid() == mermaid("phases")


def test_mermaid_phase_diagram_is_in_the_readme() -> None:
    """The README's task-state diagram is the one generated from the table, verbatim."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert f"```mermaid\n{mermaid('phases')}```" in readme


def test_mermaid_status_diagrams() -> None:
    """Status diagrams list every edge of their table."""
    v7_text = mermaid("v7")
    assert "    RUNNING --> RECOVERING\n" in v7_text
    assert "    RECOVERING --> RUNNING\n" in v7_text
    assert v7_text.count("-->") == sum(map(len, V7_STATUS_EDGES.values())) + 3
    legacy_text = mermaid("legacy")
    assert legacy_text.count("-->") == sum(map(len, LEGACY_TASK_EDGES.values())) + 3
    with pytest.raises(ValueError, match="table must be"):
        mermaid("nope")


# --- serialisation, repr, policy ------------------------------------------------------


def test_record_round_trip_is_exact_and_json_compatible() -> None:
    """Every field survives dict → JSON → dict → record; enums are stored as values."""
    r = attrs.evolve(
        legacy_active(),
        stop_requested=True,
        stop_sent_at=T0 + 7.25,
        wake_at=T0 + 9.5,
        sequence_id=7,
        last_error="boom",
    )
    data = record_to_dict(r)
    assert data["api"] == "legacy"
    assert data["phase"] == "ACTIVE"
    assert data["task_status"] == "IN_PROGRESS"
    assert data["agent_status"] is None
    text = json.dumps(data)
    assert record_from_dict(json.loads(text)) == r
    assert record_from_dict({**data, "from_the_future": 1}) == r


@pytest.mark.parametrize(
    "patch",
    [
        pytest.param({"phase": "NOPE"}, id="bad-enum"),
        pytest.param({"key": ""}, id="empty-key"),
        pytest.param({"sequence_id": -1}, id="negative-sequence"),
        pytest.param({"created_at": "yesterday"}, id="bad-float"),
    ],
)
def test_record_from_dict_rejects_garbage(patch: dict[str, object]) -> None:
    """A damaged stored record is a ValueError, not a half-built object."""
    data = {**record_to_dict(v7()), **patch}
    with pytest.raises(ValueError, match="not a valid task record"):
        record_from_dict(data)


def test_record_from_dict_needs_required_fields() -> None:
    """Missing required fields are refused."""
    data = record_to_dict(v7())
    del data["phase"]
    with pytest.raises(ValueError, match="not a valid task record"):
        record_from_dict(data)


def test_repr_masks_builder_tokens() -> None:
    """Tokens never show in the repr of records, events or actions."""
    r = legacy_active()
    texts = [
        repr(r),
        repr(TokenAcquired(TOKEN, T0)),
        repr(StopRequested(token_name=TOKEN)),
        repr(SendStart(TOKEN, "room", None, repeat=True)),
        repr(SendStop("T1", TOKEN)),
        repr(SendQuery("T1", TOKEN)),
        repr(SendUpdate("T1", 1, TOKEN)),
        repr(step(r, StopRequested(), now=T0 + 9)),
    ]
    for text in texts:
        assert TOKEN not in text
        assert "***" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"token_ttl_s": 0}, id="ttl-zero"),
        pytest.param({"token_safety_margin_s": 300.0}, id="margin-eats-window"),
        pytest.param({"token_safety_margin_s": -1.0}, id="negative-margin"),
        pytest.param({"max_start_attempts": 0}, id="no-attempts"),
        pytest.param({"retry_interval_s": float("inf")}, id="infinite-retry"),
    ],
)
def test_policy_validates(kwargs: dict[str, float]) -> None:
    """Policies that cannot work are refused when made."""
    with pytest.raises(ConfigurationError):
        MachinePolicy(**kwargs)  # type: ignore[arg-type]


def test_persist_expected_version() -> None:
    """Persist tells the store which version it replaces."""
    result = step(v7(), StartRequested(), now=T0)
    persist = result.actions[0]
    assert isinstance(persist, Persist)
    assert (persist.record.version, persist.expected_version) == (1, 0)
