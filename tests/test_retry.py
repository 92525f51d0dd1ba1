"""Retry decisions, backoff, retry state and the retry budget (``agora_stt_async._retry``)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora_stt_async._errors import (
    APIError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    PaginationError,
    RequestTimeout,
    ResponseError,
    StopIncompleteError,
    UsageError,
    ValidationError,
    error_from_response,
)
from agora_stt_async._retry import (
    DOCUMENTED_JITTER,
    RetryBudget,
    RetryBudgetConfig,
    RetryDecision,
    RetryPolicy,
    RetryState,
    backoff_cap,
    compute_backoff,
    decide,
    documented_delay,
)

ErrorFactory = Callable[[], BaseException]


def api(status: int, body: bytes = b"", retry_after: str | None = None) -> APIError:
    return error_from_response(status, body, retry_after=retry_after)


def code(number: int, status: int = 400) -> APIError:
    return api(status, b'{"code":%d,"message":"x"}' % number)


def run(
    error: BaseException,
    *,
    idempotent: bool = True,
    policy: RetryPolicy | None = None,
    state: RetryState | None = None,
    now: float = 0.0,
    seed: int = 1,
    budget: RetryBudget | None = None,
) -> RetryDecision:
    return decide(
        policy or RetryPolicy(),
        state or RetryState.start(0.0),
        error,
        idempotent=idempotent,
        now=now,
        rng=random.Random(seed),
        budget=budget,
    )


def at_attempt(attempt: int, started_at: float = 0.0) -> RetryState:
    return RetryState(started_at=started_at, attempt=attempt)


# --- the decision table ----------------------------------------------------------------

DECISIONS = [
    # ConnectError never reached the server: every endpoint.
    pytest.param(lambda: ConnectError("x"), True, True, id="connect-idempotent"),
    pytest.param(lambda: ConnectError("x"), False, True, id="connect-not-idempotent"),
    # Timeouts and dropped connections may have been processed.
    pytest.param(lambda: RequestTimeout("x"), True, True, id="timeout-idempotent"),
    pytest.param(lambda: RequestTimeout("x"), False, False, id="timeout-not-idempotent"),
    pytest.param(lambda: ConnectionLost("x"), True, True, id="lost-idempotent"),
    pytest.param(lambda: ConnectionLost("x"), False, False, id="lost-not-idempotent"),
    # Retryable server errors: idempotent endpoints only.
    pytest.param(lambda: api(500), True, True, id="500-idempotent"),
    pytest.param(lambda: api(500), False, False, id="500-not-idempotent"),
    pytest.param(lambda: api(502, b"<html>bad gateway</html>"), True, True, id="502-html"),
    pytest.param(lambda: api(503), True, True, id="503-idempotent"),
    pytest.param(lambda: api(503), False, False, id="503-not-idempotent"),
    pytest.param(lambda: api(504), True, True, id="504-idempotent"),
    pytest.param(lambda: code(20), True, True, id="legacy-code-20-idempotent"),
    pytest.param(lambda: code(20), False, False, id="legacy-code-20-not-idempotent"),
    pytest.param(lambda: code(501), True, True, id="legacy-code-501"),
    pytest.param(lambda: code(502, 500), True, True, id="legacy-code-502"),
    pytest.param(lambda: code(504), False, False, id="legacy-code-504-not-idempotent"),
    # 429: refused before processing, so every endpoint.
    pytest.param(lambda: api(429), True, True, id="429-idempotent"),
    pytest.param(lambda: api(429), False, True, id="429-not-idempotent"),
    # Never: the same request cannot succeed.
    pytest.param(lambda: api(400, b'{"code":2,"message":"body schema check fail, x"}'), True,
                 False, id="400-schema"),
    pytest.param(lambda: api(401, b'{"message":"Invalid authentication credentials"}'), True,
                 False, id="401"),
    pytest.param(lambda: api(403, b'{"reason":"ServiceNotEnabled"}'), True, False, id="403"),
    pytest.param(lambda: api(404, b'{"message":"The task is not found"}'), True, False, id="404"),
    pytest.param(lambda: api(409, b'{"code":49}'), True, False, id="409-code-49"),
    pytest.param(lambda: api(422, b'{"reason":"ConcurrencyLimitExceeded"}'), True, False,
                 id="422"),
    pytest.param(lambda: code(1, 500), True, False, id="legacy-code-1"),
    pytest.param(lambda: code(6), True, False, id="legacy-code-6"),
    pytest.param(lambda: code(23, 503), True, False, id="legacy-code-23"),
    pytest.param(lambda: code(1001), True, False, id="legacy-code-1001"),
    # Local errors, bad answers and bugs.
    pytest.param(lambda: ValidationError("name", "at most 64 characters"), True, False,
                 id="validation"),
    pytest.param(lambda: ConfigurationError("x"), True, False, id="configuration"),
    pytest.param(lambda: UsageError("closed"), True, False, id="usage"),
    pytest.param(lambda: ResponseError("bad body"), True, False, id="response"),
    pytest.param(lambda: PaginationError("loop"), True, False, id="pagination"),
    pytest.param(lambda: StopIncompleteError(("k",)), True, False, id="session"),
    pytest.param(lambda: ValueError("bug"), True, False, id="bug"),
    pytest.param(lambda: KeyboardInterrupt(), True, False, id="keyboard-interrupt"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "idempotent", "expected"), DECISIONS)
def test_decide_table(make: ErrorFactory, idempotent: bool, expected: bool) -> None:
    """Each error class and idempotency gives the documented decision, on a fresh call."""
    decision = run(make(), idempotent=idempotent)
    assert decision.retry is expected, decision.reason
    if not expected:
        assert decision.delay == 0.0
    assert decision.reason


@pytest.mark.parametrize(("make", "idempotent", "expected"), DECISIONS)
def test_decide_table_without_jitter_or_budget(
    make: ErrorFactory, idempotent: bool, expected: bool
) -> None:
    """The decision depends on neither the jitter mode nor a budget with tokens left."""
    policy = RetryPolicy(jitter="none")
    decision = run(make(), idempotent=idempotent, policy=policy, budget=policy.new_budget())
    assert decision.retry is expected


REASONS = [
    pytest.param(ConnectError("x"), False, "never reached the server", id="connect"),
    pytest.param(RequestTimeout("x"), False, "not idempotent", id="timeout"),
    pytest.param(api(503), False, "not idempotent", id="503"),
    pytest.param(api(429), False, "refused without processing", id="429"),
    pytest.param(api(401), True, "AuthenticationError (HTTP 401) is not retryable", id="401"),
    pytest.param(code(20), True, "code 20", id="code-20"),
    pytest.param(ValueError("x"), True, "a bug is not retried", id="bug"),
    pytest.param(ValidationError("f", "l"), True, "before sending", id="validation"),
    pytest.param(ResponseError("x"), True, "breaks the spec", id="response"),
]


@pytest.mark.parametrize(("error", "idempotent", "text"), REASONS)
def test_decide_reason_says_why(error: BaseException, idempotent: bool, text: str) -> None:
    """The reason names the error and why it was (not) retried."""
    assert text in run(error, idempotent=idempotent).reason


# --- waits -----------------------------------------------------------------------------

NO_JITTER = RetryPolicy(attempts=10, jitter="none", timeout=math.inf)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(lambda: ConnectError("x"), [0.5, 1, 2, 4, 8, 10, 10], id="exponential"),
        pytest.param(lambda: api(503), [0.5, 1, 2, 4, 8, 10, 10], id="503-exponential"),
        pytest.param(lambda: code(20), [3, 6, 6, 6], id="code-20-schedule"),
        pytest.param(lambda: code(501), [1, 3, 6, 6], id="code-501-schedule"),
        pytest.param(lambda: code(502, 502), [1, 3, 6, 6], id="code-502-schedule"),
        pytest.param(lambda: code(504, 504), [1, 3, 6, 6], id="code-504-schedule"),
        pytest.param(lambda: api(429, retry_after="2"), [2, 2, 2], id="retry-after"),
        pytest.param(lambda: api(503, retry_after="7.5"), [7.5, 7.5], id="retry-after-503"),
        pytest.param(lambda: api(400, b'{"code":20}', "1"), [1, 1], id="retry-after-beats-code"),
        pytest.param(lambda: api(429, retry_after="30"), [30], id="retry-after-at-cap"),
    ],
)
def test_decide_waits_without_jitter(make: ErrorFactory, expected: list[float]) -> None:
    """Retry-After wins, then the documented schedule (last entry repeats), then backoff."""
    delays = [
        run(make(), policy=NO_JITTER, state=at_attempt(n)).delay for n in (1, 2, 3, 4, 5, 6, 7)
    ]
    assert delays[: len(expected)] == expected


@pytest.mark.parametrize("seed", range(50))
def test_decide_documented_schedule_jitter_only_adds(seed: int) -> None:
    """With full jitter a documented wait is never below the documented value."""
    policy = RetryPolicy(timeout=math.inf)
    for attempt, base in ((1, 3.0), (2, 6.0), (3, 6.0)):
        delay = run(code(20), policy=policy, state=at_attempt(attempt), seed=seed).delay
        assert base <= delay <= base * (1 + DOCUMENTED_JITTER)


@pytest.mark.parametrize("seed", range(50))
def test_decide_retry_after_is_exact_with_full_jitter(seed: int) -> None:
    """A server Retry-After is waited exactly, jitter or not."""
    assert run(api(429, retry_after="2.5"), seed=seed).delay == 2.5


def test_decide_retry_after_above_cap_gives_up() -> None:
    """A Retry-After longer than retry_after_cap ends the retries instead of waiting."""
    decision = run(api(429, retry_after="31"), policy=RetryPolicy(retry_after_cap=30))
    assert decision == RetryDecision(retry=False, delay=0.0, reason=decision.reason)
    assert "Retry-After" in decision.reason
    assert run(api(429, retry_after="31"), policy=RetryPolicy(retry_after_cap=31)).retry


def test_compute_backoff_full_jitter_is_seeded_and_bounded() -> None:
    """Full jitter draws in [0, cap] and the same seed gives the same waits."""
    policy = RetryPolicy()
    first = [compute_backoff(policy, n, random.Random(7)) for n in range(1, 8)]
    again = [compute_backoff(policy, n, random.Random(7)) for n in range(1, 8)]
    assert first == again
    caps = [0.5, 1, 2, 4, 8, 10, 10]
    assert all(0 <= d <= c for d, c in zip(first, caps, strict=True))
    draws = {compute_backoff(policy, 3, random.Random(s)) for s in range(20)}
    assert len(draws) > 1  # really random, not the cap


def test_backoff_cap_huge_retry_number_is_wait_max() -> None:
    """The cap saturates at wait_max instead of overflowing."""
    assert backoff_cap(RetryPolicy(wait_exp_base=10.0), 10_000) == 10.0


def test_documented_delay_clamps_to_last_entry() -> None:
    """Retries past the schedule repeat its last entry."""
    rng = random.Random(0)
    assert [documented_delay((1.0, 3.0, 6.0), n, "none", rng) for n in (1, 2, 3, 9)] == [
        1.0,
        3.0,
        6.0,
        6.0,
    ]


# --- attempts, deadline, budget, no_wait ----------------------------------------------


def test_decide_stops_when_attempts_are_used_up() -> None:
    """With attempts=4, the 4th failure is final."""
    assert run(ConnectError("x"), state=at_attempt(3)).retry
    decision = run(ConnectError("x"), state=at_attempt(4))
    assert not decision.retry
    assert "attempts used up (4 of 4)" in decision.reason


def test_policy_none_never_retries() -> None:
    """RetryPolicy.none() makes the first failure final, even for a ConnectError."""
    assert not run(ConnectError("x"), policy=RetryPolicy.none()).retry


def test_decide_stops_before_the_deadline() -> None:
    """A wait that would end past started_at + timeout is not made; ending on it is."""
    policy = RetryPolicy(timeout=10.0, jitter="none")
    state = RetryState.start(100.0)
    assert run(ConnectError("x"), policy=policy, state=state, now=109.5).retry
    late = run(ConnectError("x"), policy=policy, state=state, now=109.6)
    assert not late.retry
    assert "deadline" in late.reason
    # A documented 3 s wait does not fit after 8 s either.
    assert not run(code(20), policy=policy, state=state, now=108.0).retry


def test_decide_no_retry_once_the_deadline_has_passed() -> None:
    """At or past the deadline nothing is retried, even with no wait (Retry-After: 0)."""
    policy = RetryPolicy(timeout=10.0, jitter="none")
    state = RetryState.start(100.0)
    zero = api(429, retry_after="0")
    assert run(zero, policy=policy, state=state, now=109.9).retry
    late = run(zero, policy=policy, state=state, now=110.0)
    assert not late.retry
    assert "deadline" in late.reason


def test_decide_budget_exhausted() -> None:
    """When the shared budget has no token left the error goes to the caller."""
    budget = RetryBudget(RetryBudgetConfig(ratio=0.0, min_per_s=0.1, window_s=10.0))
    assert run(ConnectError("x"), budget=budget).retry
    decision = run(ConnectError("x"), budget=budget)
    assert decision == RetryDecision(retry=False, delay=0.0, reason="retry budget exhausted")


def test_decide_budget_not_spent_on_refusals() -> None:
    """Only a retry that is really made withdraws a token."""
    budget = RetryBudget()
    before = budget.available(0.0)
    run(api(400), budget=budget)
    run(ConnectError("x"), state=at_attempt(4), budget=budget)
    run(ConnectError("x"), policy=RetryPolicy(timeout=0.1, jitter="none"), budget=budget)
    assert budget.available(0.0) == before
    run(ConnectError("x"), budget=budget)
    assert budget.available(0.0) == before - 1


def test_decide_policy_without_budget_ignores_the_budget() -> None:
    """budget=None on the policy means the client's budget is not consulted."""
    budget = RetryBudget(RetryBudgetConfig(ratio=0.0, min_per_s=0.0))
    assert not run(ConnectError("x"), budget=budget).retry
    assert run(ConnectError("x"), policy=RetryPolicy(budget=None), budget=budget).retry


def test_decide_no_wait_removes_waits_only() -> None:
    """The testing switch zeroes the wait and keeps decision and reason."""
    for error in (ConnectError("x"), code(20), api(429, retry_after="3")):
        real = run(error)
        fast = run(error, policy=RetryPolicy.testing())
        assert real.delay > 0
        assert fast == attrs.evolve(real, delay=0.0)


# --- RetryState ------------------------------------------------------------------------


def test_retry_state_increment_returns_a_new_state() -> None:
    """increment() records the failure and leaves the old state untouched."""
    state = RetryState.start(5.0)
    error = ConnectError("refused")
    decision = run(error, state=state)
    nxt = state.increment(decision, error)
    assert (state.attempt, state.retries, state.last_delay, state.history) == (1, 0, 0.0, ())
    assert (nxt.attempt, nxt.retries, nxt.started_at) == (2, 1, 5.0)
    assert nxt.last_delay == decision.delay
    (record,) = nxt.history
    assert record.attempt == 1
    assert record.error == "ConnectError: refused"
    assert record.reason == decision.reason
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        state.attempt = 3  # type: ignore[misc]


def test_retry_state_increment_refuses_a_final_decision() -> None:
    """A decision not to retry ends the sequence; advancing it is a bug."""
    with pytest.raises(UsageError, match="ended"):
        RetryState.start(0).increment(RetryDecision(False, 0.0, "no"), ValueError())


# --- RetryPolicy -----------------------------------------------------------------------


def test_policy_defaults() -> None:
    """Defaults are the documented ones, with a budget."""
    p = RetryPolicy()
    assert (p.attempts, p.timeout, p.wait_initial, p.wait_max, p.wait_exp_base) == (
        4,
        60.0,
        0.5,
        10.0,
        2.0,
    )
    assert (p.jitter, p.retry_after_cap, p.no_wait) == ("full", 30.0, False)
    assert p.budget == RetryBudgetConfig(ratio=0.1, min_per_s=1.0, window_s=10.0)
    assert isinstance(p.new_budget(), RetryBudget)
    assert RetryPolicy(budget=None).new_budget() is None


def test_policy_named_constructors() -> None:
    """none(), testing() and without_waits() change only what they say."""
    assert RetryPolicy.none() == RetryPolicy(attempts=1)
    assert RetryPolicy.testing() == RetryPolicy(no_wait=True)
    custom = RetryPolicy(attempts=7, wait_max=3.0)
    assert custom.without_waits() == attrs.evolve(custom, no_wait=True)
    assert RetryPolicy(timeout=math.inf).timeout == math.inf


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"attempts": 0}, id="attempts-0"),
        pytest.param({"attempts": -1}, id="attempts-negative"),
        pytest.param({"attempts": 1.5}, id="attempts-float"),
        pytest.param({"attempts": True}, id="attempts-bool"),
        pytest.param({"attempts": "3"}, id="attempts-str"),
        pytest.param({"timeout": 0}, id="timeout-0"),
        pytest.param({"timeout": -1.0}, id="timeout-negative"),
        pytest.param({"timeout": math.nan}, id="timeout-nan"),
        pytest.param({"wait_initial": -0.1}, id="wait-initial-negative"),
        pytest.param({"wait_initial": math.inf}, id="wait-initial-inf"),
        pytest.param({"wait_max": math.nan}, id="wait-max-nan"),
        pytest.param({"wait_exp_base": 0.5}, id="base-below-1"),
        pytest.param({"jitter": "equal"}, id="jitter-unknown"),
        pytest.param({"retry_after_cap": -1}, id="retry-after-cap-negative"),
        pytest.param({"budget": RetryBudget()}, id="budget-not-config"),
        pytest.param({"no_wait": 1}, id="no-wait-int"),
    ],
)
def test_policy_validation(kwargs: dict[str, object]) -> None:
    """Bad values raise ConfigurationError (a ValueError) naming the field."""
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))) as info:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"ratio": -0.1}, id="ratio-negative"),
        pytest.param({"min_per_s": math.nan}, id="min-per-s-nan"),
        pytest.param({"window_s": 0}, id="window-0"),
        pytest.param({"window_s": math.inf}, id="window-inf"),
        # absurd but finite: the budget's arithmetic overflowed (OverflowError at
        # AsyncClient(...)) or divided by a zero-length slice
        pytest.param({"ratio": 1e303}, id="ratio-1e303"),
        pytest.param({"min_per_s": 1e300, "window_s": 1e10}, id="reserve-overflow"),
        pytest.param({"min_per_s": 10**400}, id="min-per-s-huge-int"),
        pytest.param({"window_s": 5e-324}, id="window-denormal"),
    ],
)
def test_budget_config_validation(kwargs: dict[str, float]) -> None:
    """Bad budget settings raise ConfigurationError."""
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        RetryBudgetConfig(**kwargs)


@pytest.mark.parametrize(
    "config",
    [
        RetryBudgetConfig(ratio=1e3, min_per_s=1e6, window_s=1e6),
        RetryBudgetConfig(ratio=0.0, min_per_s=0.0, window_s=1e-3),
    ],
    ids=["largest", "smallest"],
)
def test_budget_config_bounds_keep_the_arithmetic_finite(config: RetryBudgetConfig) -> None:
    """The extreme accepted settings make a working budget at any monotonic time."""
    budget = RetryBudget(config)
    for now in (0.0, 1e6, 1e9):
        budget.record_request(now)
        budget.try_spend(now)
        assert budget.available(now) >= 0


# --- RetryBudget -----------------------------------------------------------------------


def test_budget_quiet_client_gets_the_floor() -> None:
    """With no traffic, min_per_s * window_s retries are allowed, then no more."""
    budget = RetryBudget()
    assert budget.available(0.0) == 10.0
    assert [budget.try_spend(0.5) for _ in range(11)] == [True] * 10 + [False]
    assert budget.available(0.5) == 0.0


def test_budget_requests_deposit_ratio() -> None:
    """Ten requests pay for one more retry at ratio 0.1."""
    budget = RetryBudget()
    for _ in range(10):
        assert budget.try_spend(0.0)
    assert not budget.try_spend(0.0)
    for _ in range(10):
        budget.record_request(0.0)
    assert budget.available(0.0) == pytest.approx(1.0)
    assert budget.try_spend(0.0)
    assert not budget.try_spend(0.0)


def test_budget_withdrawals_expire_after_the_window() -> None:
    """Spent floor tokens come back once their slice leaves the window."""
    budget = RetryBudget()
    for _ in range(10):
        assert budget.try_spend(0.0)
    assert not budget.try_spend(9.99)
    assert budget.try_spend(10.0)


def test_budget_deposits_expire_after_the_window() -> None:
    """Tokens earned before an outage do not pay for retries during it."""
    budget = RetryBudget(RetryBudgetConfig(ratio=0.5, min_per_s=0.0, window_s=10.0))
    for _ in range(4):
        budget.record_request(0.0)
    assert budget.available(9.9) == 2.0
    assert budget.available(10.0) == 0.0
    assert not budget.try_spend(10.0)


def test_budget_available_never_negative() -> None:
    """When a deposit expires before the retry it paid for, the balance shows 0."""
    budget = RetryBudget(RetryBudgetConfig(ratio=1.0, min_per_s=0.0, window_s=10.0))
    budget.record_request(0.0)
    assert budget.try_spend(5.0)
    assert budget.available(10.0) == 0.0
    assert not budget.try_spend(10.0)
    assert budget.available(15.0) == 0.0  # both expired
    budget.record_request(15.0)
    assert budget.try_spend(15.0)


def test_budget_clock_going_back_counts_in_the_newest_slice() -> None:
    """An earlier ``now`` does not resurrect expired slices or crash."""
    budget = RetryBudget(RetryBudgetConfig(ratio=1.0, min_per_s=0.0, window_s=10.0))
    budget.record_request(100.0)
    budget.record_request(50.0)
    assert budget.available(100.0) == 2.0
    assert budget.available(110.0) == 0.0


def test_budget_long_idle_gap_resets() -> None:
    """A gap far longer than the window clears everything in one step."""
    budget = RetryBudget()
    for _ in range(10):
        budget.try_spend(0.0)
    assert budget.available(1e9) == 10.0


def test_budget_refund_gives_an_unused_token_back() -> None:
    """A token refunded within the window is available again, in the slice it left."""
    budget = RetryBudget(RetryBudgetConfig(ratio=0.0, min_per_s=0.1, window_s=10.0))
    assert budget.try_spend(0.0)
    assert not budget.try_spend(3.0)
    budget.refund(0.0, 3.0)
    assert budget.available(3.0) == 1.0
    assert budget.try_spend(3.0)
    assert budget.available(9.99) == 0.0
    assert budget.available(10.0) == 0.0  # the refund left with its slice; the 3.0 spend stays
    assert budget.available(13.0) == 1.0


def test_budget_refund_after_expiry_adds_nothing() -> None:
    """A withdrawal that already left the window is not refunded a second time."""
    budget = RetryBudget(RetryBudgetConfig(ratio=0.0, min_per_s=0.1, window_s=10.0))
    assert budget.try_spend(0.0)
    budget.refund(0.0, 12.0)
    assert budget.available(12.0) == 1.0


def test_budget_rejects_bad_slices() -> None:
    """The ring needs at least one slice, and not a billion (one list holds them)."""
    with pytest.raises(ConfigurationError, match="slices"):
        RetryBudget(slices=0)
    with pytest.raises(ConfigurationError, match="slices"):
        RetryBudget(slices=10**9)
    assert "ratio=0.1" in repr(RetryBudget())


# --- properties ------------------------------------------------------------------------

seconds = st.floats(min_value=0.0, max_value=60.0, allow_nan=False)
policies = st.builds(
    RetryPolicy,
    attempts=st.integers(1, 12),
    timeout=st.one_of(st.just(math.inf), st.floats(0.1, 120.0)),
    wait_initial=st.floats(0.0, 5.0),
    wait_max=seconds,
    wait_exp_base=st.floats(1.0, 4.0),
    jitter=st.sampled_from(["full", "none"]),
    retry_after_cap=seconds,
    budget=st.none(),
)
retryable_errors: st.SearchStrategy[BaseException] = st.one_of(
    st.builds(ConnectError, st.just("x")),
    st.builds(RequestTimeout, st.just("x")),
    st.just(None).map(lambda _: api(503)),
    st.sampled_from([20, 501, 502, 504]).map(code),
    st.floats(0.0, 100.0).map(lambda s: api(429, retry_after=repr(s))),
)


def expected_bounds(
    policy: RetryPolicy, error: BaseException, retry_no: int
) -> tuple[float, float]:
    """The wait allowed before retry ``retry_no``, computed independently of the module."""
    if isinstance(error, APIError) and error.retry_after is not None:
        return error.retry_after, error.retry_after
    if isinstance(error, APIError) and error.backoff:
        base = error.backoff[min(retry_no, len(error.backoff)) - 1]
        return base, base * (1 + DOCUMENTED_JITTER)
    cap = min(policy.wait_max, policy.wait_initial * policy.wait_exp_base ** (retry_no - 1))
    return (cap if policy.jitter == "none" else 0.0), cap


@settings(max_examples=300)
@given(policy=policies, error=retryable_errors, attempt=st.integers(1, 12), seed=st.integers())
def test_property_delays_within_bounds(
    policy: RetryPolicy, error: BaseException, attempt: int, seed: int
) -> None:
    """Every wait lies within its documented bounds, and within [0, retry_after_cap]."""
    decision = run(error, policy=policy, state=at_attempt(attempt), seed=seed)
    if not decision.retry:
        return
    low, high = expected_bounds(policy, error, attempt)
    assert 0.0 <= low <= decision.delay <= high
    if isinstance(error, APIError) and error.retry_after is not None:
        assert decision.delay <= policy.retry_after_cap


@settings(max_examples=150)
@given(
    policy=policies,
    steps=st.lists(st.tuples(retryable_errors, seconds), min_size=1, max_size=15),
    seed=st.integers(),
    start=st.floats(-1e6, 1e6),
)
def test_property_never_past_attempts_or_deadline(
    policy: RetryPolicy,
    steps: list[tuple[BaseException, float]],
    seed: int,
    start: float,
) -> None:
    """A simulated call never makes more than ``attempts`` tries nor waits past the deadline."""
    rng = random.Random(seed)
    state, now, tries = RetryState.start(start), start, 0
    for error, duration in steps:
        tries += 1
        now += duration
        decision = decide(policy, state, error, idempotent=True, now=now, rng=rng)
        if not decision.retry:
            break
        assert state.attempt < policy.attempts
        assert now + decision.delay <= state.started_at + policy.timeout
        now += decision.delay
        state = state.increment(decision, error)
    assert tries <= policy.attempts
    assert state.attempt == len(state.history) + 1 <= policy.attempts


@settings(max_examples=150)
@given(
    policy=policies.map(lambda p: attrs.evolve(p, budget=RetryBudgetConfig(min_per_s=0.2))),
    steps=st.lists(st.tuples(retryable_errors, seconds, st.booleans()), min_size=1, max_size=30),
    seed=st.integers(),
)
def test_property_no_wait_changes_delays_never_decisions(
    policy: RetryPolicy, steps: list[tuple[BaseException, float, bool]], seed: int
) -> None:
    """Given the same inputs, no_wait gives the same decisions and reasons with zero waits."""
    fast = policy.without_waits()
    rng_real, rng_fast = random.Random(seed), random.Random(seed)
    budget_real, budget_fast = policy.new_budget(), fast.new_budget()
    state, now = RetryState.start(0.0), 0.0
    for error, duration, idempotent in steps:
        now += duration
        real = decide(
            policy, state, error, idempotent=idempotent, now=now, rng=rng_real, budget=budget_real
        )
        quick = decide(
            fast, state, error, idempotent=idempotent, now=now, rng=rng_fast, budget=budget_fast
        )
        assert quick == attrs.evolve(real, delay=0.0)
        if real.retry:
            state = state.increment(real, error)
            now += real.delay
        else:
            state = RetryState.start(now)


@settings(max_examples=150)
@given(
    ratio=st.integers(0, 1000).map(lambda n: n / 1000),
    min_per_s=st.floats(0.0, 3.0),
    window=st.integers(1, 20),
    events=st.lists(
        st.tuples(st.integers(0, 12).map(lambda q: q / 4), st.booleans()), max_size=200
    ),
)
def test_property_budget_bounds_retries(
    ratio: float, min_per_s: float, window: int, events: list[tuple[float, bool]]
) -> None:
    """Retries in any window stay within ratio * requests + min_per_s * window.

    With ``slices == window`` each slice is 1 s, so a retry at ``t`` still sees every
    retry since ``t - window + 1`` and no request older than ``t - window``.
    """
    budget = RetryBudget(
        RetryBudgetConfig(ratio=ratio, min_per_s=min_per_s, window_s=float(window)),
        slices=window,
    )
    now = 1000.0
    requests: list[float] = []
    retries: list[float] = []
    for step, is_retry in events:
        now += step
        if not is_retry:
            budget.record_request(now)
            requests.append(now)
        elif budget.try_spend(now):
            retries.append(now)
            recent_retries = sum(1 for t in retries if t >= now - window + 1)
            recent_requests = sum(1 for t in requests if t >= now - window)
            assert recent_retries <= ratio * recent_requests + min_per_s * window + 1e-9
        assert budget.available(now) >= 0.0


def test_budget_quiet_client_retries_once_per_second_forever() -> None:
    """The floor is a rate: a retry every second is never refused, even with no requests."""
    budget = RetryBudget(RetryBudgetConfig(ratio=0.0, min_per_s=1.0, window_s=10.0))
    assert all(budget.try_spend(float(second)) for second in range(1000))
    assert not budget.try_spend(999.5)  # ten in the last ten slices: the floor is used
    assert budget.try_spend(1000.0)
