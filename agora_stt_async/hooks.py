"""Typed event hooks: what the client and the session do, for your own code to watch.

Subscribe a plain function, no subclassing::

    def on_event(event: HookEvent) -> None:
        ...

    subscription = client.hooks.subscribe(on_event)  # every event
    client.hooks.subscribe(print, ResponseReceived, RetryScheduled)  # only these
    subscription.unsubscribe()  # or: with client.hooks.subscribe(...): ...

Callbacks run synchronously, in the task that made the event, in the order they were
subscribed. Keep them quick and non-blocking; for async work, hand the event over (for
example ``send_nowait`` on an anyio memory object stream). A callback that raises is
logged (logger ``agora_stt_async.hooks``) and the request goes on: a subscriber never
breaks a call.

Events carry no secret: no header, no body, no credential, and URLs with token-like
query values masked (``builderToken=***``). The SDK's own logging is one subscriber
(``log_event``), subscribed to every client's hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Final, Literal, TypeVar, final

import attrs

__all__ = [
    "CallCompleted",
    "HookEvent",
    "Hooks",
    "RateAdjusted",
    "RateLimitedWait",
    "ReconcileOutcome",
    "RequestSent",
    "ResponseReceived",
    "RetryBudgetExhausted",
    "RetryScheduled",
    "Subscription",
    "TaskStateChanged",
    "log_event",
]

logger: Final = logging.getLogger("agora_stt_async.hooks")
_http_logger: Final = logging.getLogger("agora_stt_async")
_session_logger: Final = logging.getLogger("agora_stt_async.session")


@attrs.frozen(kw_only=True)
class HookEvent:
    """The base of every event: subscribe to it to receive them all."""


@final
@attrs.frozen(kw_only=True)
class RequestSent(HookEvent):
    """An attempt is about to be sent (after any rate-limit wait).

    ``url`` has token-like query values masked; ``host`` is the base URL tried;
    ``attempt`` counts from 1; ``request_id`` is the same for every attempt of a call.
    """

    operation: str
    method: str
    url: str
    host: str
    request_id: str
    attempt: int


@final
@attrs.frozen(kw_only=True)
class ResponseReceived(HookEvent):
    """An attempt ended: the server answered (``status_code``) or the transport failed
    (``status_code`` ``None``, ``error`` the exception's class name).

    ``agora_code`` is the ``code`` of a failure body, when it has one; ``request_id`` is
    the one the server answered with (``X-Request-Id``), else the one sent.
    """

    operation: str
    method: str
    url: str
    host: str
    request_id: str
    attempt: int
    status_code: int | None
    agora_code: int | None
    elapsed_s: float
    error: str | None


@final
@attrs.frozen(kw_only=True)
class RetryScheduled(HookEvent):
    """A failed attempt will be repeated after ``delay_s`` seconds; ``reason`` says why."""

    operation: str
    method: str
    url: str
    request_id: str
    attempt: int
    delay_s: float
    reason: str


@final
@attrs.frozen(kw_only=True)
class RetryBudgetExhausted(HookEvent):
    """A retryable failure was not retried because the client's retry budget is empty
    (many calls are failing at once: retrying them all would only add load)."""

    operation: str
    request_id: str
    attempt: int


@final
@attrs.frozen(kw_only=True)
class RateLimitedWait(HookEvent):
    """A request waits ``wait_s`` seconds for a token of the client-side rate limiter
    (``group`` ``"query"`` or ``"control"``; ``rate``: the App ID's current rate)."""

    operation: str
    group: str
    request_id: str
    wait_s: float
    rate: float


@final
@attrs.frozen(kw_only=True)
class RateAdjusted(HookEvent):
    """The rate limiter changed the App ID's rate: ``"throttled"`` after a 429,
    ``"probe"`` when the ceiling learnt from one is lifted."""

    old_rate: float
    new_rate: float
    reason: str
    ceiling: float | None


@final
@attrs.frozen(kw_only=True)
class CallCompleted(HookEvent):
    """One API call ended, after all its attempts: ``error`` is ``None`` on success.

    ``request_id`` is the one sent (every attempt's, as in ``RequestSent``);
    ``server_request_id`` the one the server answered with, when known.
    ``duration_s`` covers every attempt and wait (rate limit and retries).
    """

    operation: str
    method: str
    request_id: str
    server_request_id: str | None
    attempts: int
    status_code: int | None
    agora_code: int | None
    error: str | None
    duration_s: float


@final
@attrs.frozen(kw_only=True)
class TaskStateChanged(HookEvent):
    """A session task moved from ``old_phase`` to ``new_phase`` (``state.Phase``
    values: ``"PENDING"``, ``"STARTING"``, ``"ACTIVE"``, ``"STOPPED"``...), as stored;
    ``server_status`` is the last status the server reported (``"RUNNING"``...), if any.
    ``new_phase`` is ``"DROPPED"`` when the session stopped driving the task because its
    lease on a shared store expired (another worker drives it now)."""

    key: str
    api: str
    old_phase: str
    new_phase: str
    server_id: str | None
    server_status: str | None


@final
@attrs.frozen(kw_only=True)
class ReconcileOutcome(HookEvent):
    """What reconciling an ambiguous v7 join found: ``outcome`` is ``"found"`` (the
    agent ``server_id`` is adopted), ``"nothing"`` (no agent was created) or
    ``"failed"`` (the lists could not be read; ``message`` says why)."""

    key: str
    channel: str
    outcome: Literal["found", "nothing", "failed"]
    server_id: str | None
    message: str | None


E = TypeVar("E", bound=HookEvent)
Callback = Callable[[E], object]


@final
class Subscription:
    """A subscribed callback: ``unsubscribe()`` (or leave the ``with`` block) to stop."""

    __slots__ = ("_hooks", "_wants", "callback", "event_types")

    def __init__(
        self,
        hooks: Hooks,
        callback: Callable[[HookEvent], object],
        event_types: tuple[type[HookEvent], ...],
        wants: Callable[[type[HookEvent]], bool] | None = None,
    ) -> None:
        self._hooks: Hooks | None = hooks
        self._wants = wants
        self.callback = callback
        self.event_types = event_types

    def wants(self, event_type: type[HookEvent]) -> bool:
        """Whether an event of ``event_type`` would reach the callback."""
        types = self.event_types
        if types and not issubclass(event_type, types):
            return False
        return self._wants is None or self._wants(event_type)

    @property
    def active(self) -> bool:
        return self._hooks is not None

    def unsubscribe(self) -> None:
        """Stop delivering events to the callback (idempotent)."""
        hooks, self._hooks = self._hooks, None
        if hooks is not None:
            hooks._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        names = ", ".join(t.__name__ for t in self.event_types) or "every event"
        return f"Subscription({self.callback!r}, {names}, active={self.active})"


@final
class Hooks:
    """The subscribers of one client (``client.hooks``).

    Args:
        log: subscribe the SDK's logging (``log_event``) first; its ``Subscription`` is
            ``hooks.logging`` (``hooks.logging.unsubscribe()`` silences the SDK's log
            lines for this client).
    """

    def __init__(self, *, log: bool = True) -> None:
        self._subscriptions: tuple[Subscription, ...] = ()
        self.logging: Subscription | None = self._subscribe_logging() if log else None

    def subscribe(self, callback: Callable[[E], object], *event_types: type[E]) -> Subscription:
        """Call ``callback(event)`` for every event, or only for ``event_types`` (and
        their subclasses). Returns the handle that unsubscribes it.

        Raises:
            TypeError: ``callback`` is not callable, or an event type is not a
                ``HookEvent`` class.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        for event_type in event_types:
            candidate: object = event_type
            if not (isinstance(candidate, type) and issubclass(candidate, HookEvent)):
                raise TypeError(f"event types must be HookEvent classes, got {event_type!r}")
        subscription = Subscription(self, callback, tuple(event_types))  # type: ignore[arg-type]
        self._subscriptions = (*self._subscriptions, subscription)
        return subscription

    def _subscribe_logging(self) -> Subscription:
        subscription = Subscription(self, log_event, (), _log_wants)
        self._subscriptions = (*self._subscriptions, subscription)
        return subscription

    def wants(self, event_type: type[HookEvent]) -> bool:
        """Whether anyone would receive an event of ``event_type``: the SDK builds an
        event (and masks its URL) only then, so an unwatched client pays nothing."""
        # A loop, not any() over a generator: asked several times per request.
        for subscription in self._subscriptions:  # noqa: SIM110 - see above
            if subscription.wants(event_type):
                return True
        return False

    def _remove(self, subscription: Subscription) -> None:
        self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return self._subscriptions

    def emit(self, event: HookEvent) -> None:
        """Deliver ``event`` to every matching subscriber; a failing one is logged."""
        for subscription in self._subscriptions:
            types = subscription.event_types
            if types and not isinstance(event, types):
                continue
            try:
                subscription.callback(event)
            except Exception:  # a subscriber never breaks a request
                logger.exception(
                    "hook subscriber %r failed on %s", subscription.callback, type(event).__name__
                )


def _log_wants(event_type: type[HookEvent]) -> bool:
    if event_type is ResponseReceived or event_type is RateLimitedWait:
        return _http_logger.isEnabledFor(logging.DEBUG)
    if event_type is TaskStateChanged:
        return _session_logger.isEnabledFor(logging.DEBUG)
    if event_type in (RetryScheduled, RateAdjusted, RetryBudgetExhausted):
        return _http_logger.isEnabledFor(logging.INFO)
    return False


def log_event(event: HookEvent) -> None:
    """The SDK's logging, as a subscriber: one DEBUG line per attempt (method, masked
    URL, status, elapsed time, request id), one INFO line per retry, and the rate
    limiter's and the session's news. Never a header or a body."""
    if isinstance(event, ResponseReceived):
        if not _http_logger.isEnabledFor(logging.DEBUG):
            return
        if event.status_code is None:
            _http_logger.debug(
                "%s %s -> %s [request id %s]",
                event.method,
                event.url,
                event.error,
                event.request_id,
            )
        else:
            _http_logger.debug(
                "%s %s -> %d in %.1fms [request id %s]",
                event.method,
                event.url,
                event.status_code,
                event.elapsed_s * 1000,
                event.request_id,
            )
    elif isinstance(event, RetryScheduled):
        _http_logger.info(
            "retrying %s %s in %.2fs (%s) [request id %s]",
            event.method,
            event.url,
            event.delay_s,
            event.reason,
            event.request_id,
        )
    elif isinstance(event, RateAdjusted):
        _http_logger.info(
            "rate limit %s: %.3g -> %.3g requests/s",
            event.reason,
            event.old_rate,
            event.new_rate,
        )
    elif isinstance(event, RateLimitedWait):
        _http_logger.debug(
            "%s waits %.3fs for the %s rate limit [request id %s]",
            event.operation,
            event.wait_s,
            event.group,
            event.request_id,
        )
    elif isinstance(event, RetryBudgetExhausted):
        _http_logger.info(
            "%s not retried: retry budget exhausted [request id %s]",
            event.operation,
            event.request_id,
        )
    elif isinstance(event, TaskStateChanged):
        _session_logger.debug("task %r: %s -> %s", event.key, event.old_phase, event.new_phase)
