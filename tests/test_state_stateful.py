"""A hypothesis RuleBasedStateMachine over the task machine.

Rules are events (a cooperative server answering what was asked, and a hostile one
sending anything at any time) and clock jumps. Invariants are the promises of the
session issue: a known id is never forgotten until the task is confirmed stopped; no
start goes out with an expired token (except the documented same-token repeat);
terminal phases absorb; the record always round-trips; sequence ids never go back.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from agora_stt_async._enums import AgentStatus, ApiGeneration, LegacyTaskStatus
from agora_stt_async._errors import UsageError
from agora_stt_async.state import (
    LEGACY_OBSERVABLE,
    PHASE_TRANSITIONS,
    V7_OBSERVABLE,
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
    ServerStatus,
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
    new_record,
    record_from_dict,
    record_to_dict,
    step,
    token_deadline,
)

T0 = 1_700_000_000.0


def _may_follow(old: ServerStatus, new: ServerStatus) -> bool:
    if isinstance(old, AgentStatus) and isinstance(new, AgentStatus):
        return new in V7_OBSERVABLE[old]
    if isinstance(old, LegacyTaskStatus) and isinstance(new, LegacyTaskStatus):
        return new in LEGACY_OBSERVABLE[old]
    return False


def _backwards(record: TaskRecord) -> list[ServerStatus]:
    """The statuses that may not follow the record's server status (empty if none, or if
    no status or id is known yet)."""
    current = record.server_status
    if current is None or record.server_id is None or record.phase.is_terminal:
        return []
    choices: list[ServerStatus] = list(type(current))
    return [status for status in choices if not _may_follow(current, status)]


POLICY = MachinePolicy(max_start_attempts=3)
IDS = st.sampled_from(["id-1", "id-2", "id-3"])
TOKENS = st.sampled_from(["tok-x", "tok-y"])
PICK = st.integers(min_value=0, max_value=1 << 16)
FIXED_EVENTS: st.SearchStrategy[AnyEvent] = st.sampled_from(
    [
        StartOutcomeUnknown("x"),
        StartRejected("X", "y"),
        TokenExpired(),
        ReconcileFoundNothing(),
        ReconcileFailed("x"),
        NotFoundObserved(),
        StopSucceeded(),
        StopFailed("x", maybe_processed=True),
        StopFailed("x", maybe_processed=False),
        Tick(),
        Recovered(),
    ]
)
ANY_STATUS: st.SearchStrategy[ServerStatus] = st.one_of(
    st.sampled_from(AgentStatus), st.sampled_from(LegacyTaskStatus)
)
_SENDS = (AcquireToken, SendJoin, SendStart, Reconcile, SendQuery, SendUpdate, SendLeave, SendStop)


class TaskMachineTest(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.record: TaskRecord = new_record(
            "k", ApiGeneration.V7, channel="room", name="agent", now=T0
        )
        self.outstanding: list[AnyAction] = []  # requests and timers not answered yet
        self.last_start_token: str | None = None  # token of the latest fresh SendStart
        self.update_ids: list[int] = []
        self.tokens_minted = 0
        self.tasks = 0

    @initialize(api=st.sampled_from(ApiGeneration))
    def create(self, api: ApiGeneration) -> None:
        if api is ApiGeneration.LEGACY:
            self.record = new_record("k", api, channel="room", now=self.now)

    # --- the feeding and the per-step checks ------------------------------------------

    def feed(self, event: AnyEvent) -> None:
        before = self.record
        snapshot = record_to_dict(before)
        try:
            result = step(before, event, now=self.now, policy=POLICY)
        except UsageError:
            assert record_to_dict(before) == snapshot
            return
        after, actions = result.record, result.actions

        # terminal phases absorb: same record, nothing but reports
        if before.phase.is_terminal:
            assert after == before, event
            assert all(isinstance(a, Report) for a in actions), (event, actions)
        # a change is persisted first, with the next version; no change, no Persist
        if after != before:
            assert actions[0] == Persist(after)
            assert after.version == before.version + 1
            assert after.updated_at == self.now
            assert after.phase is before.phase or after.phase in PHASE_TRANSITIONS[
                before.phase
            ].get(type(event), frozenset())
        assert not any(isinstance(a, Persist) for a in actions[1 if after != before else 0 :])
        # a known id is never changed or forgotten (not even once STOPPED)
        for field in ("agent_id", "task_id"):
            if getattr(before, field) is not None:
                assert getattr(after, field) == getattr(before, field), field
        # sequence ids never go back
        assert after.sequence_id >= before.sequence_id
        # a stop wish is kept until the task is over or the stop was refused outright
        if isinstance(event, StopRequested):
            assert after.stop_requested or after.phase.is_terminal
        if before.stop_requested and not after.stop_requested:
            assert isinstance(event, StopFailed)
            assert not event.maybe_processed
        # the server status only moves along the observable edges
        old_status, new_status = before.server_status, after.server_status
        if old_status is not None and new_status != old_status:
            assert new_status is not None
            assert _may_follow(old_status, new_status), (old_status, new_status)
        # nothing is sent on behalf of a terminal record
        if after.phase.is_terminal:
            assert all(isinstance(a, (Persist, Report)) for a in actions), actions
        for action in actions:
            self.check_action(before, after, action)
        self.outstanding.extend(a for a in actions if isinstance(a, (*_SENDS, WakeAt)))
        self.record = after

    def check_action(self, before: TaskRecord, after: TaskRecord, action: AnyAction) -> None:
        if isinstance(action, SendStart):
            assert action.token_name == after.token_name
            if action.repeat:
                # The documented exception: the very token already sent, no deadline.
                assert action.not_after is None
                assert before.start_sent_at is not None
                assert action.token_name == self.last_start_token
            else:
                deadline = token_deadline(after, POLICY)
                assert deadline is not None
                assert self.now < deadline, "a start with an expired token"
                assert action.not_after == deadline
                self.last_start_token = action.token_name
        elif isinstance(action, SendStop):
            assert action.token_name == self.last_start_token, "stop with another token"
            assert action.task_id == after.task_id
        elif isinstance(action, SendLeave):
            assert action.agent_id == after.agent_id
        elif isinstance(action, SendUpdate):
            assert action.sequence_id == after.sequence_id
            assert all(action.sequence_id > seen for seen in self.update_ids)
            self.update_ids.append(action.sequence_id)
        elif isinstance(action, WakeAt):
            assert after.wake_at == action.deadline
            assert action.deadline > self.now

    @precondition(lambda self: self.record.phase.is_terminal)
    @rule(api=st.sampled_from(ApiGeneration))
    def next_task(self, api: ApiGeneration) -> None:
        """A terminal record absorbs everything: explore a new lifecycle instead."""
        self.tasks += 1
        key = f"k{self.tasks}"
        if api is ApiGeneration.V7:
            self.record = new_record(key, api, channel="room", name="agent", now=self.now)
        else:
            self.record = new_record(key, api, channel="room", now=self.now)
        self.outstanding.clear()
        self.last_start_token = None
        self.update_ids.clear()

    # --- clock --------------------------------------------------------------------------

    @rule(seconds=st.floats(min_value=0, max_value=400, allow_nan=False))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    # --- the user ----------------------------------------------------------------------

    @rule(
        choice=st.sampled_from(["start", "start", "stop", "stop-with-token", "update"]),
        token=TOKENS,
    )
    def user(self, choice: str, token: str) -> None:
        if choice == "start":
            self.feed(StartRequested())
        elif choice == "stop":
            self.feed(StopRequested())
        elif choice == "stop-with-token":
            current = self.record.token_name
            self.feed(StopRequested(token_name=current if token == "tok-x" and current else token))
        else:
            self.feed(UpdateRequested())

    # --- a cooperative server: answers what was asked (two rules: it is the usual case) ---
    # Rules take only prebuilt strategies (indices into per-state choices): building
    # strategies inside a rule makes hypothesis ten times slower.

    @precondition(lambda self: self.outstanding)
    @rule(pick=PICK, variant=PICK, server_id=IDS, status=PICK)
    def server_answers(self, pick: int, variant: int, server_id: str, status: int) -> None:
        self.answer(pick, variant, server_id, status)

    @precondition(lambda self: self.outstanding)
    @rule(pick=PICK, variant=PICK, server_id=IDS, status=PICK)
    def server_answers_again(self, pick: int, variant: int, server_id: str, status: int) -> None:
        self.answer(pick, variant, server_id, status)

    def own_status(self, index: int) -> ServerStatus:
        choices: list[ServerStatus] = list(
            AgentStatus if self.record.api is ApiGeneration.V7 else LegacyTaskStatus
        )
        return choices[index % len(choices)]

    def maybe_status(self, index: int) -> ServerStatus | None:
        return None if index % 4 == 0 else self.own_status(index // 4)

    def answer(self, pick: int, variant: int, server_id: str, status: int) -> None:
        action = self.outstanding.pop(pick % len(self.outstanding))
        answers: list[AnyEvent]
        if isinstance(action, AcquireToken):
            self.tokens_minted += 1
            age = (0.0, 100.0, 269.0, 271.0, 300.0)[variant % 5]
            answers = [TokenAcquired(f"minted-{self.tokens_minted}", self.now - age, "room")]
        elif isinstance(action, (SendJoin, SendStart)):
            answers = [
                StartSucceeded(server_id, self.maybe_status(status)),
                StartOutcomeUnknown("timeout"),
                StartConflicted(server_id),
                StartConflicted(None),
                StartRejected("BadRequestError", "no"),
            ]
            if isinstance(action, SendStart):
                answers.append(TokenExpired())
        elif isinstance(action, Reconcile):
            answers = [
                ReconcileFound(server_id, self.maybe_status(status)),
                ReconcileFoundNothing(),
                ReconcileFailed("503"),
            ]
        elif isinstance(action, SendQuery):
            answers = [StatusObserved(self.own_status(status), self.now), NotFoundObserved()]
        elif isinstance(action, SendUpdate):
            answers = [
                UpdateSucceeded(action.sequence_id, self.maybe_status(status)),
                UpdateFailed(action.sequence_id, "x"),
            ]
        elif isinstance(action, (SendLeave, SendStop)):
            answers = [
                StopSucceeded(),
                StopFailed("timeout", maybe_processed=True),
                StopFailed("401", maybe_processed=False),
                NotFoundObserved(),
            ]
        else:
            assert isinstance(action, WakeAt)
            self.now = max(self.now, action.deadline)
            answers = [Tick()]
        self.feed(answers[variant % len(answers)])

    # --- targeted: states that random rules reach too rarely ------------------------------
    # Random events seldom line up into "an update was allocated, then a new session
    # recovers the record" or "a status the record has moved past arrives", yet those are
    # where a sequence id could be reset or a status could move backwards.

    @precondition(lambda self: self.record.phase is Phase.ACTIVE)
    @rule(answered=st.booleans(), variant=PICK)
    def update_then_recover(self, answered: bool, variant: int) -> None:
        """Updates allocate sequence ids; a restart (Recovered) must keep them."""
        for _ in range(1 + variant % 3):
            if self.record.phase is not Phase.ACTIVE:
                break
            self.feed(UpdateRequested())
            sent = self.outstanding.pop() if self.outstanding else None
            if answered and isinstance(sent, SendUpdate):
                self.feed(UpdateSucceeded(sent.sequence_id, None))
        self.outstanding.clear()  # the old session's requests die with it
        self.feed(Recovered())

    @precondition(lambda self: bool(_backwards(self.record)))
    @rule(pick=PICK, late=st.booleans())
    def status_goes_backwards(self, pick: int, late: bool) -> None:
        """A status the record has moved past (newer than the one held, or older) must
        never be applied."""
        candidates = _backwards(self.record)
        status = candidates[pick % len(candidates)]
        observed_at = self.now if not late else self.now - 1.0
        self.feed(StatusObserved(status, observed_at))

    # --- a hostile server (and a buggy session): anything, any time ----------------------

    @rule(
        kind=st.integers(min_value=0, max_value=7),
        fixed=FIXED_EVENTS,
        token=TOKENS,
        server_id=IDS,
        status=PICK,
        foreign=st.sampled_from([False, False, False, True]),
        age=st.sampled_from([0.0, 0.5, 30.0, 600.0]),
        sequence_id=st.integers(min_value=-1, max_value=10),
    )
    def hostile(
        self,
        kind: int,
        fixed: AnyEvent,
        token: str,
        server_id: str,
        status: int,
        foreign: bool,
        age: float,
        sequence_id: int,
    ) -> None:
        own = self.own_status(status)
        if foreign:  # the other generation's enum: a session bug, a UsageError
            own = (LegacyTaskStatus if isinstance(own, AgentStatus) else AgentStatus).STOPPING
        maybe = None if status % 5 == 0 else own
        event: AnyEvent
        if kind == 0:
            event = TokenAcquired(token, self.now - age, "room" if status % 3 else "elsewhere")
        elif kind == 1:
            event = StartSucceeded(server_id, maybe)
        elif kind == 2:
            event = ReconcileFound(server_id, maybe)
        elif kind == 3:
            event = StartConflicted(server_id if status % 2 else None)
        elif kind == 4:
            event = StatusObserved(own, self.now - age)
        elif kind == 5:
            event = UpdateSucceeded(sequence_id, maybe)
        elif kind == 6:
            event = UpdateFailed(sequence_id, "x")
        else:
            event = fixed
        self.feed(event)

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def record_round_trips(self) -> None:
        text = json.dumps(record_to_dict(self.record), allow_nan=False)
        assert record_from_dict(json.loads(text)) == self.record

    @invariant()
    def phase_shape(self) -> None:
        r = self.record
        if r.phase in (Phase.ACTIVE, Phase.STOPPING):
            assert r.server_id is not None
            if r.api is ApiGeneration.LEGACY:
                assert r.token_name is not None  # the token that started it, for stop
        if r.api is ApiGeneration.LEGACY and r.phase in (Phase.STARTING, Phase.RECONCILING):
            assert r.token_name is not None
            assert r.start_sent_at is not None
        if r.api is ApiGeneration.V7:
            assert r.token_name is None
            assert r.task_id is None
        else:
            assert r.agent_id is None
        if r.phase is Phase.ACQUIRING:
            assert r.token_name is None
        if r.phase.is_terminal or r.phase in (Phase.PENDING, Phase.ACQUIRING, Phase.ACTIVE):
            assert r.wake_at is None


TaskMachineTest.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_task_machine = TaskMachineTest.TestCase
