"""Retry decisions: what is retried, how long to wait, and the client's retry budget.

Rule 1: this module is pure logic (layer L2). It imports the stdlib, attrs, ``_errors``
and ``_constants``; never httpx, anyio or ``_clock``. Rule 2: no I/O, no ``await``, no
clock reads. Time arrives as ``now`` (monotonic seconds from the injected ``Clock``) and
randomness as an injected ``random.Random``, so every decision can be replayed in a test.

Theory of operation. ``_http.py`` runs the loop; this module only answers "again, and
after how long?". One call's progress is a frozen ``RetryState``, advanced by returning
a new one (urllib3's ``Retry.increment()``). ``decide()`` reads the policy, the state,
the error and the endpoint's idempotency, and returns a ``RetryDecision``. Its one side
effect is spending a token of the shared ``RetryBudget`` when it says yes.

The decision table, checked in this order (the first matching row wins):

=====================================================  =========================
error                                                  retried?
=====================================================  =========================
not an ``AgoraSTTError`` (a bug, a cancellation)       never
``ValidationError``, ``ConfigurationError``,           never: nothing was sent,
``UsageError``                                         repeating cannot help
``ResponseError`` (incl. ``PaginationError``)          never
``ConnectError`` (``maybe_processed`` False)           every endpoint
other ``TransportError`` (timeout, connection lost)    idempotent endpoints only
``APIError`` with ``retryable`` False                  never (400, 401, 403, 404,
                                                       409, 422, codes 1/6/23, ...)
``RateLimitError`` (429)                               every endpoint: refused
                                                       before processing
other retryable ``APIError`` (5xx, codes 20/501/...)   idempotent endpoints only
any other ``AgoraSTTError`` (``SessionError``)         never
=====================================================  =========================

A retryable error is then still refused when the attempts are used up, when the
server's ``Retry-After`` is above ``retry_after_cap``, when the wait would end past the
total deadline (``started_at + timeout``), or when the retry budget is empty — in that
order. A non-idempotent call (v7 join, legacy acquire and start) whose outcome is
unknown is reconciled by the session, never blindly repeated (spec §6.3).

The wait, most specific first: the server's ``Retry-After`` (capped), then the
documented schedule of the error (``APIError.backoff``: code 20 → 3 s, 6 s; codes
501/502/504 → 1 s, 3 s, 6 s; spec §6.1), then exponential backoff with full jitter.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, Final, Literal, final

import attrs

from agora_stt_async._errors import (
    AgoraSTTError,
    APIError,
    ConfigurationError,
    RateLimitError,
    ResponseError,
    TransportError,
    UsageError,
    ValidationError,
)

__all__ = [
    "DOCUMENTED_JITTER",
    "Jitter",
    "RetryBudget",
    "RetryBudgetConfig",
    "RetryDecision",
    "RetryPolicy",
    "RetryRecord",
    "RetryState",
    "backoff_cap",
    "compute_backoff",
    "decide",
    "documented_delay",
]

Jitter = Literal["full", "none"]
"""``"full"``: a uniform draw in ``[0, cap]`` (AWS "full jitter"); ``"none"``: the cap."""

DOCUMENTED_JITTER: Final = 0.1
"""Documented waits get up to +10 % on top, never less: the docs say "after 3 s", and a
fleet of clients told "exactly 3 s" by the same outage would retry in lockstep."""

_LOCAL_ERRORS: Final = (ValidationError, ConfigurationError, UsageError)
_MAX_SLICES: Final = 10_000
"""A ring of buckets is one list: beyond this, memory for no finer expiry."""


# --- validators: bad policy values are a ConfigurationError ---------------------------


_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _number(
    *,
    minimum: float,
    allow_inf: bool = False,
    strict: bool = False,
    maximum: float | None = None,
) -> _Validator:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        ok = False
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int too large for a float
                number = math.nan
            ok = not math.isnan(number) and (allow_inf or not math.isinf(number))
            ok = ok and (number > minimum if strict else number >= minimum)
            ok = ok and (maximum is None or number <= maximum)
        if not ok:
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            if maximum is not None:
                bound += f" and <= {maximum:g}"
            kind = "a number" if allow_inf else "a finite number"
            raise ConfigurationError(f"{attribute.name} must be {kind} {bound}, got {value!r}")

    return check


def _attempts(_inst: object, _attribute: object, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(
            f"attempts must be an int >= 1 (the first try counts), got {value!r}"
        )


def _jitter(_inst: object, _attribute: object, value: object) -> None:
    if value not in ("full", "none"):
        raise ConfigurationError(f"jitter must be 'full' or 'none', got {value!r}")


def _budget_config(_inst: object, _attribute: object, value: object) -> None:
    if value is not None and not isinstance(value, RetryBudgetConfig):
        raise ConfigurationError(f"budget must be a RetryBudgetConfig or None, got {value!r}")


def _flag(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{attribute.name} must be a bool, got {value!r}")


# --- configuration values ------------------------------------------------------------


@final
@attrs.frozen
class RetryBudgetConfig:
    """Settings of a ``RetryBudget`` (Finagle's ``RetryBudget``; defaults are Finagle's).

    Args:
        ratio: tokens each request deposits; retries may add about ``ratio`` (10 %) to
            the request rate.
        min_per_s: retries per second always allowed, so a quiet client can still
            retry; ``min_per_s * window_s`` of them may come at once.
        window_s: seconds a deposit (and a withdrawal) counts before it expires.

    Raises:
        ConfigurationError: a negative, NaN or infinite value, or one past its bound:
            ``ratio`` up to 1000, ``min_per_s`` up to 1,000,000, ``window_s`` from 0.001
            to 1,000,000 s.
    """

    # The bounds keep the budget's arithmetic finite (it counts millionths of a token,
    # and slices of window_s / slices seconds), and are far past any useful setting:
    # a ratio of 1000 already means "retry everything", a window under a millisecond
    # or past 11 days means no budget at all.
    ratio: float = attrs.field(default=0.1, validator=_number(minimum=0.0, maximum=1e3))
    min_per_s: float = attrs.field(default=1.0, validator=_number(minimum=0.0, maximum=1e6))
    window_s: float = attrs.field(default=10.0, validator=_number(minimum=1e-3, maximum=1e6))


@final
@attrs.frozen
class RetryPolicy:
    """How one call is retried: an immutable value, changed with ``attrs.evolve``.

    Args:
        attempts: total tries, the first one included (``1`` never retries).
        timeout: total deadline in seconds for every attempt and wait of one call; a
            retry whose wait would end after it is not made, and each attempt (and its
            waits for a rate-limit token or a slot in flight) gets only what is left
            (the client then raises ``RequestTimeout``, or ``ConnectError`` when nothing
            was sent). ``math.inf`` for none.
        wait_initial: cap of the first exponential wait, in seconds.
        wait_max: cap of any exponential wait, in seconds.
        wait_exp_base: growth of the cap per retry.
        jitter: ``"full"`` draws each exponential wait uniformly in ``[0, cap]`` and
            adds up to ``DOCUMENTED_JITTER`` to documented waits; ``"none"`` waits the
            cap (and the documented values) exactly.
        retry_after_cap: seconds of a server ``Retry-After`` honoured; a longer one
            ends the retries instead (urllib3 has the same cap idea).
        budget: settings of the client's ``RetryBudget``, or ``None`` to retry
            without consulting it (e.g. for one call that must get through).
        no_wait: the testing switch: every wait becomes 0, every decision stays the
            same (the deadline is still judged with the wait that would have been).

    Raises:
        ConfigurationError: a value out of range.
    """

    attempts: int = attrs.field(default=4, validator=_attempts)
    timeout: float = attrs.field(
        default=60.0,
        validator=_number(minimum=0.0, allow_inf=True, strict=True),
    )
    wait_initial: float = attrs.field(default=0.5, validator=_number(minimum=0.0))
    wait_max: float = attrs.field(default=10.0, validator=_number(minimum=0.0))
    wait_exp_base: float = attrs.field(default=2.0, validator=_number(minimum=1.0))
    jitter: Jitter = attrs.field(default="full", validator=_jitter)
    retry_after_cap: float = attrs.field(default=30.0, validator=_number(minimum=0.0))
    budget: RetryBudgetConfig | None = attrs.field(
        factory=RetryBudgetConfig, validator=_budget_config
    )
    no_wait: bool = attrs.field(default=False, validator=_flag)

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries (``attempts=1``)."""
        return cls(attempts=1)

    @classmethod
    def testing(cls) -> RetryPolicy:
        """The default policy with every wait removed (``no_wait=True``)."""
        return cls(no_wait=True)

    def without_waits(self) -> RetryPolicy:
        """This policy with every wait removed; the decisions stay the same."""
        return attrs.evolve(self, no_wait=True)

    def new_budget(self) -> RetryBudget | None:
        """A fresh ``RetryBudget`` for one client, or ``None`` when ``budget`` is ``None``."""
        return None if self.budget is None else RetryBudget(self.budget)


# --- backoff: pure functions -----------------------------------------------------------


def backoff_cap(policy: RetryPolicy, retry_no: int) -> float:
    """The upper bound of the exponential wait before retry number ``retry_no`` (1-based).

    ``cap = min(wait_max, wait_initial * wait_exp_base ** (retry_no - 1))``
    """
    try:
        grown = policy.wait_initial * policy.wait_exp_base ** (retry_no - 1)
    except OverflowError:  # a huge retry_no: the cap is wait_max anyway
        grown = math.inf
    return min(policy.wait_max, grown)


def compute_backoff(policy: RetryPolicy, retry_no: int, rng: random.Random) -> float:
    """Seconds to wait before retry number ``retry_no`` (1-based), for errors without a
    documented schedule (stamina's ``_compute_backoff``, with AWS's "full jitter")::

        cap   = min(wait_max, wait_initial * wait_exp_base ** (retry_no - 1))
        delay = rng.uniform(0, cap)    if jitter == "full"
        delay = cap                    if jitter == "none"

    Defaults give caps of 0.5, 1, 2, 4, 8, 10, 10, ... seconds. Full jitter spreads a
    fleet of clients over the whole interval, which sheds load fastest after an outage.
    """
    cap = backoff_cap(policy, retry_no)
    if policy.jitter == "none":
        return cap
    return min(cap, rng.uniform(0.0, cap))  # uniform() may round a hair past cap


def documented_delay(
    schedule: tuple[float, ...], retry_no: int, jitter: Jitter, rng: random.Random
) -> float:
    """Seconds to wait before retry number ``retry_no`` on a documented schedule::

        base  = schedule[min(retry_no, len(schedule)) - 1]     # the last entry repeats
        delay = base + rng.uniform(0, DOCUMENTED_JITTER * base)    if jitter == "full"
        delay = base                                                if jitter == "none"

    Never less than the documented value (spec §6.1: code 20 → "after 3 s, then 6 s").
    """
    base = float(schedule[min(retry_no, len(schedule)) - 1])
    if jitter == "none":
        return base
    extra = rng.uniform(0.0, DOCUMENTED_JITTER * base)
    return min(base * (1 + DOCUMENTED_JITTER), base + extra)


# --- one call's progress ---------------------------------------------------------------


@final
@attrs.frozen
class RetryDecision:
    """The answer of ``decide()``.

    Attributes:
        retry: whether to try again.
        delay: seconds to wait first (0 when ``retry`` is False or the policy has
            ``no_wait``).
        reason: why, in words, for logs and for the error raised to the caller.
    """

    retry: bool
    delay: float
    reason: str


@final
@attrs.frozen
class RetryRecord:
    """One failed attempt that was retried: ``error`` is ``"ClassName: message"``."""

    attempt: int
    error: str
    delay: float
    reason: str


@final
@attrs.frozen
class RetryState:
    """Progress of one call's retries; immutable, advanced by ``increment()``.

    Attributes:
        started_at: monotonic seconds when the first attempt began; the deadline is
            ``started_at + policy.timeout``.
        attempt: number of the attempt running or just failed (1-based).
        last_delay: the wait before the current attempt (0 for the first).
        history: the retried failures, oldest first.
    """

    started_at: float
    attempt: int = 1
    last_delay: float = 0.0
    history: tuple[RetryRecord, ...] = ()

    @classmethod
    def start(cls, now: float) -> RetryState:
        """The state of a call whose first attempt begins at ``now`` (monotonic seconds)."""
        return cls(started_at=now)

    @property
    def retries(self) -> int:
        """How many retries have been made so far."""
        return self.attempt - 1

    def increment(self, decision: RetryDecision, error: BaseException) -> RetryState:
        """The state of the next attempt, after ``error`` and a decision to retry.

        Raises:
            UsageError: ``decision.retry`` is False (that decision ends the call).
        """
        if not decision.retry:
            raise UsageError(f"cannot advance a retry sequence that ended: {decision.reason}")
        record = RetryRecord(
            attempt=self.attempt,
            error=f"{type(error).__name__}: {error}",
            delay=decision.delay,
            reason=decision.reason,
        )
        return attrs.evolve(
            self,
            attempt=self.attempt + 1,
            last_delay=decision.delay,
            history=(*self.history, record),
        )


# --- the decision ----------------------------------------------------------------------


def _describe(error: BaseException) -> str:
    name = type(error).__name__
    if isinstance(error, APIError):
        code = "" if error.code is None else f", code {error.code}"
        return f"{name} (HTTP {error.status_code}{code})"
    return name


def _refusal(error: BaseException, idempotent: bool) -> str | None:
    """Why ``error`` is never retried on this endpoint; ``None`` when it may be."""
    what = _describe(error)
    if not isinstance(error, AgoraSTTError):
        return f"{what} is not an SDK error: a bug is not retried"
    if isinstance(error, _LOCAL_ERRORS):
        return f"{what} was raised before sending: repeating cannot help"
    if isinstance(error, ResponseError):
        return f"{what}: the server's answer breaks the spec; repeating will not fix it"
    if isinstance(error, TransportError):
        if not error.maybe_processed or idempotent:
            return None
        return (
            f"{what}: the request may have been processed and the call is not "
            "idempotent; the session reconciles it instead"
        )
    if isinstance(error, APIError):
        if not error.retryable:
            return f"{what} is not retryable"
        if isinstance(error, RateLimitError) or idempotent:
            return None
        return (
            f"{what} on a call that is not idempotent: it may have taken effect; "
            "the session reconciles it instead"
        )
    return f"{what} is not a request failure"


def _why_retryable(error: BaseException) -> str:
    if isinstance(error, TransportError):
        if not error.maybe_processed:
            return "the request never reached the server"
        return "the call is idempotent"
    if isinstance(error, RateLimitError):
        return "the server refused without processing"
    return "retryable, and the call is idempotent"


def decide(
    policy: RetryPolicy,
    state: RetryState,
    error: BaseException,
    *,
    idempotent: bool,
    now: float,
    rng: random.Random,
    budget: RetryBudget | None = None,
) -> RetryDecision:
    """Whether to retry after ``error`` ended attempt ``state.attempt``, and the wait.

    Args:
        policy: the call's policy.
        state: the call's progress; ``state.attempt`` is the attempt that failed.
        error: what that attempt raised (any exception: non-SDK ones are bugs).
        idempotent: whether the endpoint may be repeated without a second effect.
        now: monotonic seconds, on the clock of ``state.started_at``.
        rng: the source of jitter.
        budget: the client's shared budget; consulted (and spent from) only when
            every other rule says "retry" and ``policy.budget`` is not ``None``.

    Returns:
        The decision. The only side effect is the budget withdrawal on a retry.
    """
    refusal = _refusal(error, idempotent)
    if refusal is not None:
        return RetryDecision(retry=False, delay=0.0, reason=refusal)
    what = _describe(error)
    if state.attempt >= policy.attempts:
        return _stop(f"{what}: attempts used up ({state.attempt} of {policy.attempts})")

    retry_no = state.attempt
    retry_after = error.retry_after if isinstance(error, APIError) else None
    if retry_after is not None:
        if retry_after > policy.retry_after_cap:
            return _stop(
                f"{what}: the server asked to wait {retry_after:g} s (Retry-After), "
                f"more than retry_after_cap {policy.retry_after_cap:g} s"
            )
        delay, source = float(retry_after), "Retry-After"
    elif isinstance(error, APIError) and error.backoff:
        delay = documented_delay(error.backoff, retry_no, policy.jitter, rng)
        source = "documented schedule"
    else:
        delay, source = compute_backoff(policy, retry_no, rng), "exponential backoff"

    # Judged with the real wait even under no_wait, so the switch never changes a decision.
    # A wait that ends on the deadline is made (the attempt then gets what is left); none
    # is made once the deadline has passed.
    deadline = state.started_at + policy.timeout
    if now + delay > deadline or now >= deadline:
        return _stop(
            f"{what}: waiting {delay:.3g} s would pass the {policy.timeout:g} s deadline "
            f"({now - state.started_at:.3g} s elapsed)"
        )
    if budget is not None and policy.budget is not None and not budget.try_spend(now):
        return _stop("retry budget exhausted")

    reason = (
        f"{what}: {_why_retryable(error)}; retry {retry_no} of {policy.attempts - 1} "
        f"after {delay:.3g} s ({source})"
    )
    return RetryDecision(retry=True, delay=0.0 if policy.no_wait else delay, reason=reason)


def _stop(reason: str) -> RetryDecision:
    return RetryDecision(retry=False, delay=0.0, reason=reason)


# --- the budget ------------------------------------------------------------------------


@final
class RetryBudget:
    """A token bucket shared by one client's calls: retries stay a fraction of requests.

    Finagle's ``TokenRetryBudget`` over a ``WindowedAdder``:

    1. each request (a call's first attempt) deposits ``ratio`` tokens, each retry
       withdraws 1, into a ring of ``slices`` buckets covering ``window_s`` seconds;
    2. a bucket older than the window is zeroed, so deposits (and withdrawals) expire:
       healthy traffic from before an outage cannot pay for a retry storm during it;
    3. a retry is allowed while ``sum(buckets) + min_per_s * window_s >= 1``.

    So in any ``window_s - window_s / slices`` seconds, retries stay at most
    ``ratio * (requests of the last window_s) + min_per_s * window_s``. Amounts are
    integers in millionths of a token (no float drift), rounded down (never above the
    ratio). Each call is O(1): at most ``slices`` buckets are cleared. Not thread-safe;
    one event loop owns it and no method awaits.

    ``now`` is monotonic seconds (finite). A ``now`` earlier than one seen before
    counts in the newest bucket; time never runs backwards here.
    """

    __slots__ = ("_buckets", "_deposit", "_head", "_reserve", "_slice_s", "_sum", "config")

    _SCALE: Final = 1_000_000
    _WITHDRAWAL: Final = 1_000_000

    def __init__(self, config: RetryBudgetConfig | None = None, *, slices: int = 10) -> None:
        """Args:
            config: the settings (``RetryBudgetConfig()`` when ``None``).
            slices: buckets in the ring; more is finer expiry, same O(1).

        Raises:
            ConfigurationError: ``slices`` below 1 or above 10,000.
        """
        if type(slices) is not int or not 1 <= slices <= _MAX_SLICES:
            raise ConfigurationError(f"slices must be an int in 1..{_MAX_SLICES}, got {slices!r}")
        self.config = RetryBudgetConfig() if config is None else config
        self._slice_s = self.config.window_s / slices
        self._buckets = [0] * slices
        self._head: int | None = None  # absolute index of the newest slice
        self._sum = 0
        self._deposit = math.floor(self.config.ratio * self._SCALE)
        self._reserve = math.floor(self.config.min_per_s * self.config.window_s * self._SCALE)

    def _advance(self, now: float) -> int:
        """Expire the slices that left the window; return the bucket index for ``now``."""
        n = len(self._buckets)
        k = math.floor(now / self._slice_s)
        if self._head is None:
            self._head = k
        elif k > self._head:
            if k - self._head >= n:
                self._buckets = [0] * n
                self._sum = 0
            else:
                for absolute in range(self._head + 1, k + 1):
                    index = absolute % n
                    self._sum -= self._buckets[index]
                    self._buckets[index] = 0
            self._head = k
        return self._head % n

    def record_request(self, now: float) -> None:
        """A call began its first attempt at ``now``: deposit ``ratio`` tokens."""
        index = self._advance(now)
        self._buckets[index] += self._deposit
        self._sum += self._deposit

    def try_spend(self, now: float) -> bool:
        """Withdraw one token for a retry at ``now``; ``False`` (and no change) if empty."""
        index = self._advance(now)
        if self._sum + self._reserve < self._WITHDRAWAL:
            return False
        self._buckets[index] -= self._WITHDRAWAL
        self._sum -= self._WITHDRAWAL
        return True

    def refund(self, spent_at: float, now: float) -> None:
        """Give back the token a retry took at ``spent_at`` but never used (the call was
        cancelled before that retry was sent). A withdrawal that has already expired
        from the window is not given back: the window no longer counts it."""
        index = self._advance(now)
        assert self._head is not None  # set by _advance
        age = self._head - math.floor(spent_at / self._slice_s)
        if age >= len(self._buckets):
            return
        if age > 0:
            index = (self._head - age) % len(self._buckets)
        self._buckets[index] += self._WITHDRAWAL
        self._sum += self._WITHDRAWAL

    def available(self, now: float) -> float:
        """Tokens available at ``now`` (retries that would be allowed), never negative."""
        self._advance(now)
        return max(0, self._sum + self._reserve) / self._SCALE

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.config.ratio!r}, min_per_s={self.config.min_per_s!r}, "
            f"window_s={self.config.window_s!r})"
        )
