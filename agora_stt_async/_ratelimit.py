"""Client-side rate limiting: token buckets per App ID and endpoint group, adaptive on 429.

Rule: pure logic (layer L2), like ``_retry``. No I/O, no ``await``, no clock reads: time
arrives as ``now`` (monotonic seconds of the injected ``Clock``). ``_http.py`` does the
waiting; ``_session.py`` asks ``plan_refresh`` how much polling fits the budget.

Theory of operation. Every request takes a token from the App ID's bucket (``rate``
per second, at most ``burst`` saved up) and from its endpoint group's bucket, when the
group has one. A token may be *reserved* ahead (the bucket goes into debt): the caller
is told how long to wait for its turn and sleeps once, so waiters are served in order
without a lock. A caller cancelled while waiting gives its token back (``cancel``):
a cancelled wait costs nothing.

Adaptation (AIMD, as AWS's "adaptive" retry mode): a 429 divides the App ID's rate by
two (multiplicative decrease; at most once per second, since one overshoot answers many
requests with 429), caps it at 80 % of what the server accepted in the second before
(so the rate returns below the server's real limit, not to the one that failed), and
shrinks the burst to one token (a throttled client sends evenly). ``Retry-After`` stops
the bucket until then. Every later success raises the rate additively
(``increase_per_s`` per second) up to that cap; after ``probe_after_s`` without a 429
the cap is lifted and the rate climbs back towards the configured one. Waiters that
reserved a slot before a 429 queue again on the new schedule (``epoch``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Literal, final

import attrs

from agora_stt_async._errors import ConfigurationError

__all__ = [
    "EndpointGroup",
    "GroupLimit",
    "RateChange",
    "RateLimit",
    "RateLimiter",
    "RefreshPlan",
    "Reservation",
    "TokenBucket",
    "plan_refresh",
    "rotate",
]

EndpointGroup = Literal["query", "control"]
"""``"query"``: status queries and list pages (v7 get/list, legacy query). ``"control"``:
everything that changes something (join, leave, update, acquire, start, stop)."""

GROUPS: Final[tuple[EndpointGroup, ...]] = ("query", "control")

_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _positive(*, strict: bool = True, maximum: float | None = None) -> _Validator:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            number = float(value)  # type: ignore[arg-type]
            ok = math.isfinite(number) and (number > 0 if strict else number >= 0)
            ok = ok and (maximum is None or number <= maximum)
        if not ok:
            bound = "> 0" if strict else ">= 0"
            if maximum is not None:
                bound += f" and <= {maximum:g}"
            raise ConfigurationError(f"{attribute.name} must be a finite number {bound}")

    return check


def _burst(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be an integer >= 1, got {value!r}")


def _group_limit(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, GroupLimit):
        raise ConfigurationError(f"{attribute.name} must be a GroupLimit or None")


def _flag(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{attribute.name} must be a bool, got {value!r}")


@final
@attrs.frozen
class GroupLimit:
    """A cap for one endpoint group, inside the App ID's budget.

    Args:
        rate: requests per second.
        burst: requests that may go at once after a quiet spell (tokens saved up).
    """

    rate: float = attrs.field(validator=_positive())
    burst: int = attrs.field(validator=_burst)


@final
@attrs.frozen
class RateLimit:
    """How fast one App ID's requests may go: an immutable value (``attrs.evolve``).

    Every default, and why:

    Args:
        rate: requests per second for the whole App ID: 10. The STT docs publish no
            number but warn that query is QPS-limited; Agora's sibling REST APIs
            (Cloud Recording, Conversational AI) publish about 10 requests/s per App ID.
        burst: requests that may go at once after a quiet spell: 10, one second's worth
            (AWS's adaptive mode also caps its bucket at one second of its rate).
        query: the cap of the ``"query"`` group (queries, list pages): 5/s, burst 5,
            so status polling can never use more than half of the budget and starts
            and stops, which a user is waiting on, always find tokens.
        control: the cap of the ``"control"`` group (join, leave, update, acquire,
            start, stop): none by default, the App ID's budget is theirs.
        adaptive: adapt to 429 answers (below); ``False`` keeps the rate fixed (but
            ``Retry-After`` is always honoured).
        min_rate: the rate never falls below this: 0.5/s, one request every 2 s.
        decrease_factor: a 429 multiplies the rate by this: 0.5, TCP's and AWS's
            choice of multiplicative decrease.
        increase_per_s: every second of success adds this much rate back: 0.5/s, so
            a halved 10/s budget is back in 10 s.
        ceiling_fraction: after a 429 the rate stays below this fraction of the
            requests the server accepted in the second before it: 0.8, so the
            recovered rate sits under the server's limit rather than at it.
        probe_after_s: after this long without a 429 the ceiling is lifted and the
            rate climbs towards ``rate`` again: 300 s. Agora's limits change only when
            support raises them; probing every five minutes costs at most one 429 per
            five minutes (about 0.03 % of requests at 10/s).

    Raises:
        ConfigurationError: a value out of range.
    """

    rate: float = attrs.field(default=10.0, validator=_positive())
    burst: int = attrs.field(default=10, validator=_burst)
    query: GroupLimit | None = attrs.field(
        factory=lambda: GroupLimit(rate=5.0, burst=5), validator=_group_limit
    )
    control: GroupLimit | None = attrs.field(default=None, validator=_group_limit)
    adaptive: bool = attrs.field(default=True, validator=_flag)
    min_rate: float = attrs.field(default=0.5, validator=_positive())
    decrease_factor: float = attrs.field(default=0.5, validator=_positive(maximum=1.0))
    increase_per_s: float = attrs.field(default=0.5, validator=_positive(strict=False))
    ceiling_fraction: float = attrs.field(default=0.8, validator=_positive(maximum=1.0))
    probe_after_s: float = attrs.field(default=300.0, validator=_positive())

    def group(self, name: EndpointGroup) -> GroupLimit | None:
        """The cap of the group ``name``."""
        return self.query if name == "query" else self.control


@final
class TokenBucket:
    """A token bucket that lends: ``reserve`` always takes a token and says how long to
    wait for it. ``rate`` tokens per second, at most ``capacity`` kept."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def reserve(self, now: float) -> float:
        """Take a token; return the seconds until it is due (0: at once)."""
        self._refill(now)
        self.tokens -= 1.0
        ahead = max(0.0, self.updated - now)  # the bucket is stopped until then
        return ahead + max(0.0, -self.tokens) / self.rate

    def refund(self, now: float) -> None:
        """Give back a token whose request was never sent."""
        self._refill(now)
        self.tokens = min(self.capacity, self.tokens + 1.0)

    def reshape(self, now: float, *, rate: float, capacity: float) -> None:
        self._refill(now)
        self.rate = rate
        self.capacity = capacity
        self.tokens = min(self.tokens, capacity)

    def stop_until(self, now: float, until: float) -> None:
        """No token before ``until``; then one, then ``rate`` per second."""
        self._refill(now)
        if until > self.updated:
            self.tokens = min(self.tokens, 1.0)
            self.updated = until


@attrs.frozen
class Reservation:
    """A token taken ahead: wait ``wait`` seconds, then send (or ``cancel`` it)."""

    group: EndpointGroup
    wait: float
    epoch: int


@attrs.frozen
class RateChange:
    """The App ID's rate changed: ``reason`` is ``"throttled"`` (a 429) or ``"probe"``
    (the ceiling learnt from a 429 was lifted after ``probe_after_s``)."""

    old_rate: float
    new_rate: float
    reason: Literal["throttled", "probe"]
    ceiling: float | None


_ACCEPTED_WINDOW_S: Final = 1.0


@final
class RateLimiter:
    """The buckets of one App ID: shared by every request of the clients that use it.

    An ``AsyncClient`` makes one from its ``RateLimit``; pass the same ``RateLimiter``
    to several clients of one App ID (``AsyncClient(rate_limit=limiter)``) to make them
    share the budget. Not thread-safe: use it from one event loop.
    """

    def __init__(self, config: RateLimit | None = None) -> None:
        if config is not None and not isinstance(config, RateLimit):
            raise ConfigurationError(f"config must be a RateLimit, got {config!r}")
        self.config: Final = config or RateLimit()
        self.rate = self.config.rate
        """The App ID's current rate (requests per second)."""
        self.ceiling: float | None = None
        """The cap learnt from the last 429, until ``probe_after_s`` passes."""
        self.epoch = 0
        """Bumped whenever a 429 changes the schedule: older reservations queue again."""
        self.throttles = 0
        self._app: TokenBucket | None = None
        self._groups: dict[EndpointGroup, TokenBucket] = {}
        self._accepted: deque[float] = deque()
        self._cooldown_until = -math.inf
        self._last_throttle: float | None = None
        self._last_increase = 0.0

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:.3g}/s, ceiling={self.ceiling!r})"

    # --- buckets ----------------------------------------------------------------------

    def _app_bucket(self, now: float) -> TokenBucket:
        if self._app is None:
            self._app = TokenBucket(self.rate, float(self.config.burst), now)
            self._last_increase = now
        return self._app

    def _group_bucket(self, group: EndpointGroup, now: float) -> TokenBucket | None:
        bucket = self._groups.get(group)
        if bucket is None:
            limit = self.config.group(group)
            if limit is None:
                return None
            bucket = self._groups[group] = TokenBucket(limit.rate, float(limit.burst), now)
        return bucket

    def group_rate(self, group: EndpointGroup) -> float:
        """Requests per second the group may send now (its cap and the App ID's rate)."""
        limit = self.config.group(group)
        return self.rate if limit is None else min(self.rate, limit.rate)

    # --- requests ---------------------------------------------------------------------

    def reserve(self, group: EndpointGroup, now: float) -> Reservation:
        """Take a token of ``group`` and of the App ID; say how long to wait for both."""
        wait = self._app_bucket(now).reserve(now)
        bucket = self._group_bucket(group, now)
        if bucket is not None:
            wait = max(wait, bucket.reserve(now))
        return Reservation(group=group, wait=wait, epoch=self.epoch)

    def cancel(self, reservation: Reservation, now: float) -> None:
        """Give back the tokens of a reservation whose request is not sent."""
        self._app_bucket(now).refund(now)
        bucket = self._group_bucket(reservation.group, now)
        if bucket is not None:
            bucket.refund(now)

    def still_valid(self, reservation: Reservation) -> bool:
        """``False`` if a 429 rescheduled everything since ``reservation`` was made."""
        return reservation.epoch == self.epoch

    # --- feedback ---------------------------------------------------------------------

    def record_accepted(self, now: float) -> RateChange | None:
        """The server answered (anything but 429): additive increase, maybe a probe."""
        accepted = self._accepted
        accepted.append(now)
        while accepted and accepted[0] <= now - _ACCEPTED_WINDOW_S:
            accepted.popleft()
        if not self.config.adaptive:
            return None
        bucket = self._app_bucket(now)
        change = None
        if (
            self.ceiling is not None
            and self._last_throttle is not None
            and now - self._last_throttle >= self.config.probe_after_s
        ):
            change = RateChange(self.rate, self.rate, "probe", None)
            self.ceiling = None
            bucket.reshape(now, rate=self.rate, capacity=float(self.config.burst))
        cap = self.config.rate if self.ceiling is None else self.ceiling
        if self.rate < cap and now > self._last_increase:
            self.rate = min(
                cap, self.rate + self.config.increase_per_s * (now - self._last_increase)
            )
            bucket.reshape(now, rate=self.rate, capacity=bucket.capacity)
        self._last_increase = max(self._last_increase, now)
        return change

    def record_throttled(self, now: float, retry_after: float | None) -> RateChange | None:
        """The server answered 429: honour ``Retry-After``; decrease multiplicatively."""
        bucket = self._app_bucket(now)
        rescheduled = False
        if retry_after is not None and retry_after > 0:
            bucket.stop_until(now, now + retry_after)
            rescheduled = True
        change = None
        if self.config.adaptive and now >= self._cooldown_until:
            self.throttles += 1
            old = self.rate
            accepted = sum(1 for t in self._accepted if t > now - _ACCEPTED_WINDOW_S)
            learnt = self.config.ceiling_fraction * accepted if accepted else old
            ceiling = max(self.config.min_rate, learnt)
            if self.ceiling is not None:
                ceiling = min(ceiling, self.ceiling)
            self.ceiling = ceiling
            self.rate = max(self.config.min_rate, min(old * self.config.decrease_factor, ceiling))
            bucket.reshape(now, rate=self.rate, capacity=1.0)
            self._cooldown_until = now + max(_ACCEPTED_WINDOW_S, retry_after or 0.0)
            self._last_throttle = now
            self._last_increase = max(now, bucket.updated)
            change = RateChange(old, self.rate, "throttled", ceiling)
            rescheduled = True
        if rescheduled:
            self.epoch += 1
        return change


# --- the session's refresh planning ----------------------------------------------------


@attrs.frozen
class RefreshPlan:
    """How a status sweep fits the query budget.

    ``queries``: single queries this sweep sends (the rest wait for a later sweep, in
    rotation, so every task is refreshed, just less often when there are many).
    ``pace``: seconds between two of them, so the sweep never queues in front of the
    user's own queries.
    """

    queries: int
    pace: float


REFRESH_SHARE: Final = 0.5
"""The share of the query budget the background refresh plans to use; the rest is left
to the user's own queries and to reconciles."""


def plan_refresh(
    *,
    list_pages: int,
    single: int,
    query_rate: float,
    interval: float,
    share: float = REFRESH_SHARE,
) -> RefreshPlan:
    """Fit one sweep into ``share`` of ``query_rate`` over ``interval`` seconds.

    List pages come first (one page answers up to a hundred agents); single queries
    (legacy tasks, agents the lists missed) get what is left of the sweep's budget,
    at least one per sweep, sent ``pace`` seconds apart.
    """
    per_s = max(query_rate * share, 1e-9)
    left = math.floor(per_s * interval) - list_pages
    return RefreshPlan(queries=min(single, max(1, left)), pace=1.0 / per_s)


def rotate(count: int, start: int, take: int) -> tuple[list[int], int]:
    """Indexes ``take`` of ``count`` items from ``start`` on, wrapping; and the next start."""
    if count <= 0:
        return [], 0
    start %= count
    take = min(take, count)
    return [(start + i) % count for i in range(take)], (start + take) % count
