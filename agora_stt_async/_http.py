"""The one place that does HTTP: auth, request ids, timeouts, retries, failover, logging.

Endpoints in ``_client.py`` describe a call (``Endpoint``: name, method, idempotency)
and hand it to ``HttpCore.request``, which returns an ``Exchange`` for a 200 and raises
a typed error for anything else. httpx exceptions are translated here and nowhere else.

Every step is a typed hook event (``agora_stt_async.hooks``: request sent, response
received, retry scheduled, rate-limited wait...), built only when a subscriber wants it.
Logging (logger ``agora_stt_async``) is one subscriber: one DEBUG line per attempt with
method, path (token-like query values masked), status, elapsed time and request id; one
INFO line per retry. Headers and bodies are never logged: they carry the credentials.
The client-side rate limiter (``_ratelimit``) is consulted before every attempt.

The call's total deadline (``RetryPolicy.timeout``) bounds everything: the retry waits
(``decide``), the waits for a rate-limit token and for a slot in flight, and each
attempt, whose transport gets what is left of it (``AutoClient.request`` and
``read_httpx``: ``timeout_s``). Waits are measured on the injected ``Clock``; an attempt
runs on the network's real time, so with a ``FakeClock`` only the waits are fake.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final, final

import anyio
import attrs
import httpx

from agora_stt_async._clock import Clock
from agora_stt_async._errors import (
    APIError,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    RequestTimeout,
    ResponseError,
    TransportError,
    UsageError,
    ValidationError,
    error_from_response,
)
from agora_stt_async._hosts import HostPool, counts_as_host_failure
from agora_stt_async._models.common import ResponseInfo
from agora_stt_async._ratelimit import EndpointGroup, RateLimiter, Reservation
from agora_stt_async._retry import RetryPolicy, RetryState, decide
from agora_stt_async._secrets import Secret, redact_text, redact_url
from agora_stt_async._stats import ClientStatistics, StatsRecorder
from agora_stt_async._transports import (
    MAX_BODY_BYTES,
    REQUEST_ID_HEADER,
    AutoClient,
    ReadResponse,
    auto_client,
    read_httpx,
)
from agora_stt_async._version import __version__
from agora_stt_async.hooks import (
    CallCompleted,
    Hooks,
    RateAdjusted,
    RateLimitedWait,
    RequestSent,
    ResponseReceived,
    RetryBudgetExhausted,
    RetryScheduled,
)

logger: Final = logging.getLogger("agora_stt_async")

USER_AGENT: Final = f"agora-stt-async/{__version__}"
"""Sent by the clients the SDK creates, so both paths (aiohttp, httpx) say the same;
a caller's ``http_client`` keeps its own."""


@attrs.frozen
class Endpoint:
    """One API operation: its name (for logs and statistics), method and idempotency.

    ``idempotent`` decides what may be retried after the request may have reached the
    server: join, start and acquire are not (the session reconciles them instead).
    """

    name: str
    method: str
    idempotent: bool
    expects_body: bool = True
    """``False`` where no 200 body is documented (leave, stop): any body is ignored."""
    group: EndpointGroup = "control"
    """The rate limiter's endpoint group: ``"query"`` for queries and list pages."""


@attrs.frozen
class Exchange:
    """A successful (200) exchange: the parsed JSON body (``None`` if empty) and its info."""

    body: object
    info: ResponseInfo


class _RedactingFilter(logging.Filter):
    """Masks token-like query values in httpx's own "HTTP Request: ..." log lines.

    httpx logs every request URL at INFO, and a legacy URL carries the builder token.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(str(arg)) if isinstance(arg, (httpx.URL, str)) else arg
                for arg in record.args
            )
        return True


_HTTPX_LOG_FILTER: Final = _RedactingFilter()

_NO_BOUND_S: Final = 1e9
"""A remaining deadline longer than this (about 31 years; ``math.inf`` included) is
no bound at all: the transports are then given none."""


@final
class _InFlight:
    """The SDK's bound on requests in flight (``max_in_flight``): a semaphore taken
    without a trip through the event loop while a slot is free.

    An ``async with`` on anyio's primitives yields to the loop on every entry, which on
    asyncio costs about 0.1 ms of CPU per request (a whole loop iteration); the request
    that follows is a checkpoint anyway. A semaphore rather than a ``CapacityLimiter``:
    the slot needs no owner task, and its bookkeeping costs a sixth. Waiters keep their
    FIFO order: a released slot goes to the first waiter, so ``acquire_nowait`` refuses
    while anyone is queued. ``HttpCore._admit`` takes a slot and ``HttpCore._attempt``
    gives it back once the response is read.
    """

    __slots__ = ("_limiter",)

    def __init__(self, total: int) -> None:
        self._limiter = anyio.Semaphore(total)

    async def acquire(self, timeout_s: float | None) -> bool:
        """Take a slot; wait at most ``timeout_s`` seconds (``None``: no bound) for one.

        Returns ``False`` (and holds nothing) when the wait ran out.
        """
        try:
            self._limiter.acquire_nowait()
        except anyio.WouldBlock:
            with anyio.move_on_after(timeout_s):  # only when waiting: no cost otherwise
                await self._limiter.acquire()
                return True
            return False
        return True

    def release(self) -> None:
        self._limiter.release()


_CAPTURE: ContextVar[list[ResponseInfo] | None] = ContextVar(
    "agora_stt_async_capture", default=None
)


@contextmanager
def capture_responses() -> Iterator[list[ResponseInfo]]:
    """Collect the ``ResponseInfo`` of every successful call made in this context (the
    current task and what it awaits): ``client.with_raw_response`` reads it."""
    found: list[ResponseInfo] = []
    token = _CAPTURE.set(found)
    try:
        yield found
    finally:
        _CAPTURE.reset(token)


@final
class _BorrowedTransport(httpx.AsyncBaseTransport):
    """A caller's transport: used, never closed (the caller owns it)."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        pass


_CLOSED: Final = "this AsyncClient is closed; create a new one"

# SPEC-SILENT: the docs say nothing of X-Request-Id's form. Accepted: what both paths
# (httpx, aiohttp) send unchanged as a header value: 1 to 256 visible ASCII characters.
# Anything else would fail inside the HTTP library with an untyped error (a newline, a
# non-ASCII letter) or be sent mangled.
_REQUEST_ID: Final = re.compile(r"[\x21-\x7e]{1,256}")


def _check_request_id(value: object) -> str | None:
    """``value`` if it can be sent as ``X-Request-Id``; ``None``/``""``: generate one.

    Raises:
        ValidationError: not a string of 1 to 256 visible ASCII characters.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        raise ValidationError(
            "request_id", "must be 1 to 256 visible ASCII characters (no space)", value
        )
    return value


def _translate(
    exc: httpx.HTTPError, method: str, url: str, request_id: str | None = None
) -> TransportError:
    """httpx's exception → ours, the most specific first; ``request_id`` is the one sent."""
    cls: type[TransportError]
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        cls, what = ConnectError, f"could not connect: {type(exc).__name__}"
    elif isinstance(exc, httpx.PoolTimeout):
        # Never left this process: nothing was sent.
        cls, what = ConnectError, "no free connection in the pool"
    elif isinstance(exc, httpx.TimeoutException):
        cls, what = RequestTimeout, f"no answer in time: {type(exc).__name__}"
    else:
        cls, what = ConnectionLost, f"connection lost: {type(exc).__name__}"
    return cls(what, method=method, url=url, request_id=request_id)


class _Expired(Exception):
    """The call's total deadline passed: raise ``error`` and retry nothing."""

    def __init__(self, error: TransportError) -> None:
        super().__init__(str(error))
        self.error = error


class _NotSent(Exception):
    """The deadline passed before the request was sent (raised by ``_admit``)."""


@final
class HttpCore:
    """Sends requests for one App ID through one connection pool.

    It owns the ``httpx.AsyncClient`` only when it created it.
    """

    def __init__(
        self,
        *,
        customer_id: str,
        customer_secret: Secret,
        base_urls: tuple[str, ...],
        timeout: httpx.Timeout,
        retry: RetryPolicy,
        clock: Clock,
        max_in_flight: int,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        fast: bool | None = None,
        rate_limiter: RateLimiter | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        token = base64.b64encode(f"{customer_id}:{customer_secret.reveal()}".encode()).decode()
        self._auth = Secret(f"Basic {token}")
        logging.getLogger("httpx").addFilter(_HTTPX_LOG_FILTER)  # added once (a set)
        self._retry = retry
        self._clock = clock
        self._rng = rng or random.Random()
        self._hosts = HostPool(base_urls)
        self._budget = retry.new_budget()
        self._limiter = _InFlight(max_in_flight)
        self.stats = StatsRecorder()
        self.rate_limiter = rate_limiter
        self.hooks = hooks if hooks is not None else Hooks()
        self._closed = False
        self._client: httpx.AsyncClient | AutoClient
        if http_client is not None:
            self._client = http_client
            self._owns_client = False
        else:
            limits = httpx.Limits(
                max_connections=max_in_flight, max_keepalive_connections=max_in_flight
            )
            if transport is None:  # aiohttp directly on asyncio, else httpx (_transports)
                self._client = auto_client(limits, timeout=timeout, fast=fast)
            else:
                self._client = httpx.AsyncClient(
                    transport=_BorrowedTransport(transport), timeout=timeout, limits=limits
                )
            self._owns_client = True

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def base_urls(self) -> tuple[str, ...]:
        return self._hosts.urls

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry

    def statistics(self) -> ClientStatistics:
        return self.stats.snapshot()

    async def aclose(self) -> None:
        self._closed = True
        if self._owns_client:
            await self._client.aclose()

    async def request(
        self,
        endpoint: Endpoint,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: object = None,
        request_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Exchange:
        """Send one API call, retrying what the policy allows.

        Raises:
            APIError: the server answered with a failure (after any retries).
            TransportError: no answer (after any retries); see ``maybe_processed``.
                The policy's total deadline passing ends the call with one too:
                ``RequestTimeout`` while an attempt was under way, ``ConnectError``
                while waiting to send (nothing was sent).
            ResponseError: a 200 whose body is not JSON, or a body over
                ``MAX_BODY_BYTES``.
            UsageError: the client (or the ``http_client`` passed in) is closed, also
                when that happens while the call waits.
            ValidationError: ``request_id`` cannot be sent as a header.
        """
        if self._closed:
            raise UsageError(_CLOSED)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {retry!r}")
        policy = retry or self._retry
        # 128 random bits, as a uuid4 has, for an eighth of uuid4()'s cost.
        request_id = _check_request_id(request_id) or f"sdk_{os.urandom(16).hex()}"
        headers = {
            "Authorization": self._auth.reveal(),
            REQUEST_ID_HEADER: request_id,
            "Accept": "application/json",
        }
        if self._owns_client:
            headers["User-Agent"] = USER_AGENT
        content: bytes | None = None
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        state = RetryState.start(self._clock.monotonic())
        deadline = state.started_at + policy.timeout
        if self._budget is not None:
            self._budget.record_request(self._clock.monotonic())
        self.stats.record_call(endpoint.name)
        hooks = self.hooks
        delay = 0.0
        spent_at: float | None = None  # when the pending retry took a retry-budget token
        try:
            while True:
                try:
                    if delay > 0:
                        await self._clock.sleep(delay)
                    await self._admit(endpoint, request_id, deadline)
                except BaseException as exc:
                    # The retry is never sent (cancelled, the client closed meanwhile, the
                    # deadline passed): its retry-budget token goes back.
                    if spent_at is not None and self._budget is not None:
                        self._budget.refund(spent_at, self._clock.monotonic())
                    if isinstance(exc, _NotSent):
                        url = self._hosts.current(self._clock.monotonic()) + path
                        raise _not_sent(exc, policy, endpoint, url, request_id) from None
                    raise
                spent_at = None
                base_url = self._hosts.current(self._clock.monotonic())
                url = base_url + path
                try:
                    exchange = await self._attempt(
                        endpoint,
                        url,
                        params,
                        content,
                        headers,
                        request_id,
                        base_url,
                        state.attempt,
                        deadline,
                    )
                except _NotSent as exc:
                    raise _not_sent(exc, policy, endpoint, url, request_id) from None
                except ResponseError as error:
                    self.stats.record_error(endpoint.name)
                    self._completed(endpoint, request_id, state, error)
                    raise
                except (APIError, TransportError) as error:
                    now = self._clock.monotonic()
                    if isinstance(error, RequestTimeout) and now >= deadline:
                        # The deadline itself ended the attempt (or fell due with it).
                        raise _Expired(
                            RequestTimeout(
                                "no answer within the call's deadline "
                                f"({policy.timeout:g} s, attempts and waits together)",
                                method=endpoint.method,
                                url=url,
                                request_id=request_id,
                            )
                        ) from None
                    decision = decide(
                        policy,
                        state,
                        error,
                        idempotent=endpoint.idempotent,
                        now=now,
                        rng=self._rng,
                        budget=self._budget,
                    )
                    if not decision.retry:
                        self.stats.record_error(endpoint.name)
                        if decision.reason == "retry budget exhausted" and hooks.wants(
                            RetryBudgetExhausted
                        ):
                            hooks.emit(
                                RetryBudgetExhausted(
                                    operation=endpoint.name,
                                    request_id=request_id,
                                    attempt=state.attempt,
                                )
                            )
                        self._completed(endpoint, request_id, state, error)
                        raise
                    self.stats.record_retry(endpoint.name)
                    if hooks.wants(RetryScheduled):
                        hooks.emit(
                            RetryScheduled(
                                operation=endpoint.name,
                                method=endpoint.method,
                                url=redact_url(path),
                                request_id=request_id,
                                attempt=state.attempt,
                                delay_s=decision.delay,
                                reason=decision.reason,
                            )
                        )
                    state = state.increment(decision, error)
                    delay = decision.delay
                    if self._budget is not None and policy.budget is not None:
                        spent_at = now  # decide() took a token at that time
                else:
                    captured = _CAPTURE.get()
                    if captured is not None:
                        captured.append(exchange.info)
                    self._completed(endpoint, request_id, state, None, exchange.info)
                    return exchange
        except _Expired as expired:
            self.stats.record_error(endpoint.name)
            self._completed(endpoint, request_id, state, expired.error)
            raise expired.error from None
        except BaseException as exc:
            # Failures of an attempt were reported above; anything else (a cancellation,
            # the client closed during a wait) is reported here, then raised.
            if not isinstance(exc, (APIError, TransportError, ResponseError)):
                self._completed(endpoint, request_id, state, exc)
            raise

    def _completed(
        self,
        endpoint: Endpoint,
        request_id: str,
        state: RetryState,
        error: BaseException | None,
        info: ResponseInfo | None = None,
    ) -> None:
        if not self.hooks.wants(CallCompleted):
            return
        status = info.status_code if info is not None else getattr(error, "status_code", None)
        self.hooks.emit(
            CallCompleted(
                operation=endpoint.name,
                method=endpoint.method,
                request_id=request_id,
                server_request_id=(
                    info.request_id if info is not None else getattr(error, "request_id", None)
                ),
                attempts=state.attempt,
                status_code=status if isinstance(status, int) else None,
                agora_code=error.code if isinstance(error, APIError) else None,
                error=None if error is None else type(error).__name__,
                duration_s=self._clock.monotonic() - state.started_at,
            )
        )

    async def _admit(self, endpoint: Endpoint, request_id: str, deadline: float) -> None:
        """Wait for a rate-limit token, then for a slot in flight (held on return; the
        attempt releases it), both within the call's ``deadline`` (``_NotSent`` past it).
        A wait that ends without sending (cancelled, the client closed meanwhile, the
        deadline) gives back what it took: nothing is charged for it."""
        limiter = self.rate_limiter
        reservation = None
        if limiter is not None:
            reservation = await self._take_token(limiter, endpoint, request_id, deadline)
        try:
            if not await self._limiter.acquire(_bound(deadline - self._clock.monotonic())):
                raise _NotSent("no slot in flight (max_in_flight) came free")
            if self._closed or self._client.is_closed:
                self._limiter.release()
                raise UsageError(_CLOSED if self._closed else "the http_client passed in is closed")
        except BaseException:
            if limiter is not None and reservation is not None:
                limiter.cancel(reservation, self._clock.monotonic())
            raise

    async def _take_token(
        self, limiter: RateLimiter, endpoint: Endpoint, request_id: str, deadline: float
    ) -> Reservation:
        """Wait for the rate limiter's token and return it. A cancelled wait gives the
        token back; a 429 that reschedules everything (``epoch``) sends the waiter to
        queue again. A wait that would end past ``deadline`` is not made (``_NotSent``):
        the token goes back at once."""
        clock = self._clock
        while True:
            now = clock.monotonic()
            reservation = limiter.reserve(endpoint.group, now)
            if reservation.wait <= 0:
                return reservation
            if now + reservation.wait >= deadline:
                limiter.cancel(reservation, now)
                raise _NotSent(f"the rate limiter's wait of {reservation.wait:.3g} s does not fit")
            if self.hooks.wants(RateLimitedWait):
                self.hooks.emit(
                    RateLimitedWait(
                        operation=endpoint.name,
                        group=endpoint.group,
                        request_id=request_id,
                        wait_s=reservation.wait,
                        rate=limiter.rate,
                    )
                )
            try:
                await clock.sleep(reservation.wait)
            except BaseException:
                limiter.cancel(reservation, clock.monotonic())
                raise
            if limiter.still_valid(reservation):
                return reservation
            limiter.cancel(reservation, clock.monotonic())

    def _rate_feedback(self, status: int, retry_after: float | None) -> None:
        limiter = self.rate_limiter
        if limiter is None:
            return
        now = self._clock.monotonic()
        if status == 429:
            change = limiter.record_throttled(now, retry_after)
        else:
            change = limiter.record_accepted(now)
        if change is not None and self.hooks.wants(RateAdjusted):
            self.hooks.emit(
                RateAdjusted(
                    old_rate=change.old_rate,
                    new_rate=change.new_rate,
                    reason=change.reason,
                    ceiling=change.ceiling,
                )
            )

    async def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str | int] | None,
        content: bytes | None,
        headers: dict[str, str],
        timeout_s: float | None,
    ) -> ReadResponse:
        """One request on the client in use, its body read (at most ``MAX_BODY_BYTES``)
        within ``timeout_s`` seconds; httpx's exceptions on failure."""
        client = self._client
        if isinstance(client, AutoClient):
            return await client.request(
                method, url, params=params, content=content, headers=headers, timeout_s=timeout_s
            )
        return await read_httpx(
            client,
            method,
            url,
            params=params,
            content=content,
            headers=headers,
            timeout_s=timeout_s,
        )

    async def _attempt(
        self,
        endpoint: Endpoint,
        url: str,
        params: Mapping[str, str | int] | None,
        content: bytes | None,
        headers: dict[str, str],
        request_id: str,
        base_url: str,
        attempt: int,
        deadline: float,
    ) -> Exchange:
        remaining = deadline - self._clock.monotonic()
        if remaining <= 0:
            self._limiter.release()  # taken by _admit
            raise _NotSent("the deadline fell due as the attempt was to begin")
        hooks = self.hooks
        if hooks.wants(RequestSent):
            hooks.emit(
                RequestSent(
                    operation=endpoint.name,
                    method=endpoint.method,
                    url=redact_url(url),
                    host=base_url,
                    request_id=request_id,
                    attempt=attempt,
                )
            )
        started = self._clock.monotonic()
        try:  # the slot in flight was taken by _admit
            try:
                response = await self._send(
                    endpoint.method, url, params, content, headers, _bound(remaining)
                )
            except httpx.HTTPError as exc:
                error = _translate(exc, endpoint.method, url, request_id)
                if counts_as_host_failure(error):
                    self._hosts.report_failure(base_url, self._clock.monotonic())
                elapsed = self._clock.monotonic() - started
                self.stats.record_attempt(endpoint.name, None, elapsed)
                if hooks.wants(ResponseReceived):
                    hooks.emit(
                        ResponseReceived(
                            operation=endpoint.name,
                            method=endpoint.method,
                            url=redact_url(url),
                            host=base_url,
                            request_id=request_id,
                            attempt=attempt,
                            status_code=None,
                            agora_code=None,
                            elapsed_s=elapsed,
                            error=type(error).__name__,
                        )
                    )
                raise error from None
        finally:
            self._limiter.release()
        elapsed = self._clock.monotonic() - started
        status = response.status_code
        answered_id = response.request_id or request_id
        self.stats.record_attempt(endpoint.name, status, elapsed)
        raw = response.content
        failure: APIError | None = None
        if status != 200:
            # A body over the cap still gives its status: its class, from the first bytes.
            failure = error_from_response(
                status,
                raw,
                request_id=answered_id,
                retry_after=response.retry_after,
                method=endpoint.method,
                url=url,
                operation=endpoint.name,
            )
        if self.rate_limiter is not None:
            self._rate_feedback(status, None if failure is None else failure.retry_after)
        if hooks.wants(ResponseReceived):  # the URL's str() and redaction cost ~20 us
            hooks.emit(
                ResponseReceived(
                    operation=endpoint.name,
                    method=endpoint.method,
                    url=redact_url(str(response.request.url)),
                    host=base_url,
                    request_id=answered_id,
                    attempt=attempt,
                    status_code=status,
                    agora_code=None if failure is None else failure.code,
                    elapsed_s=elapsed,
                    error=None if failure is None else type(failure).__name__,
                )
            )
        if failure is not None:
            if counts_as_host_failure(failure):
                self._hosts.report_failure(base_url, self._clock.monotonic())
            raise failure
        self._hosts.report_success(base_url, self._clock.monotonic())
        info = ResponseInfo(
            status_code=status,
            request_id=answered_id,
            headers=response.headers,
            elapsed_s=elapsed,
        )
        if response.truncated:
            raise ResponseError(
                f"the server answered 200 with a body over {MAX_BODY_BYTES} bytes; "
                "no answer of this API is that large, so it was not read",
                request_id=answered_id,
                body_excerpt=_excerpt(raw),
            )
        return Exchange(body=_decode(raw, info) if endpoint.expects_body else None, info=info)


def _not_sent(
    exc: _NotSent, policy: RetryPolicy, endpoint: Endpoint, url: str, request_id: str
) -> _Expired:
    return _Expired(
        ConnectError(
            f"nothing was sent: {exc} within the call's deadline ({policy.timeout:g} s)",
            method=endpoint.method,
            url=url,
            request_id=request_id,
        )
    )


def _bound(remaining: float) -> float | None:
    """What is left of a deadline as a timeout for the transport (``None``: unbounded)."""
    return None if remaining > _NO_BOUND_S else max(0.0, remaining)


def _excerpt(raw: bytes) -> str:
    """The first 200 characters of a body, credential-like values masked."""
    return redact_text(raw[:800].decode("utf-8", errors="replace"))[:200]


def _decode(raw: bytes, info: ResponseInfo) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ResponseError(
            "the server answered 200 with a body that is not JSON",
            request_id=info.request_id,
            body_excerpt=_excerpt(raw),
        ) from exc
