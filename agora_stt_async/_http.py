"""The one place that does HTTP: auth, request ids, timeouts, retries, failover, logging.

Endpoints in ``_client.py`` describe a call (``Endpoint``: name, method, idempotency)
and hand it to ``HttpCore.request``, which returns an ``Exchange`` for a 200 and raises
a typed error for anything else. httpx exceptions are translated here and nowhere else.

Logging (logger ``agora_stt_async``): one DEBUG line per attempt with method, path
(token-like query values masked), status, elapsed time and request id; one INFO line per
retry. Headers and bodies are never logged: they carry the credentials.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import uuid
from collections.abc import Mapping
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
    error_from_response,
)
from agora_stt_async._hosts import HostPool, counts_as_host_failure
from agora_stt_async._models.common import ResponseInfo
from agora_stt_async._retry import RetryPolicy, RetryState, decide
from agora_stt_async._secrets import Secret, redact_url
from agora_stt_async._stats import ClientStatistics, StatsRecorder
from agora_stt_async._transports import auto_transport

logger: Final = logging.getLogger("agora_stt_async")

REQUEST_ID_HEADER: Final = "X-Request-Id"


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


@final
class _BorrowedTransport(httpx.AsyncBaseTransport):
    """A caller's transport: used, never closed (the caller owns it)."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        pass


def _translate(exc: httpx.HTTPError, method: str, url: str) -> TransportError:
    """httpx's exception → ours, the most specific first."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return ConnectError(f"could not connect: {type(exc).__name__}", method=method, url=url)
    if isinstance(exc, httpx.PoolTimeout):
        # Never left this process: nothing was sent.
        return ConnectError("no free connection in the pool", method=method, url=url)
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(f"no answer in time: {type(exc).__name__}", method=method, url=url)
    return ConnectionLost(f"connection lost: {type(exc).__name__}", method=method, url=url)


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
    ) -> None:
        token = base64.b64encode(f"{customer_id}:{customer_secret.reveal()}".encode()).decode()
        self._auth = Secret(f"Basic {token}")
        logging.getLogger("httpx").addFilter(_HTTPX_LOG_FILTER)  # added once (a set)
        self._retry = retry
        self._clock = clock
        self._rng = rng or random.Random()
        self._hosts = HostPool(base_urls)
        self._budget = retry.new_budget()
        self._limiter = anyio.CapacityLimiter(max_in_flight)
        self.stats = StatsRecorder()
        self._closed = False
        if http_client is not None:
            self._client = http_client
            self._owns_client = False
        else:
            limits = httpx.Limits(
                max_connections=max_in_flight, max_keepalive_connections=max_in_flight
            )
            self._client = httpx.AsyncClient(
                transport=(
                    auto_transport(limits, fast=fast)
                    if transport is None
                    else _BorrowedTransport(transport)
                ),
                timeout=timeout,
                limits=limits,
            )
            self._owns_client = True
        self._timeout = timeout

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
            ResponseError: a 200 whose body is not JSON.
            UsageError: the client is closed.
        """
        if self._closed:
            raise UsageError("this AsyncClient is closed; create a new one")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {retry!r}")
        policy = retry or self._retry
        request_id = request_id or f"sdk_{uuid.uuid4().hex}"
        headers = {
            "Authorization": self._auth.reveal(),
            REQUEST_ID_HEADER: request_id,
            "Accept": "application/json",
        }
        content: bytes | None = None
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        state = RetryState.start(self._clock.monotonic())
        if self._budget is not None:
            self._budget.record_request(self._clock.monotonic())
        self.stats.record_call(endpoint.name)
        while True:
            base_url = self._hosts.current(self._clock.monotonic())
            url = base_url + path
            try:
                return await self._attempt(
                    endpoint, url, params, content, headers, request_id, base_url
                )
            except ResponseError:
                self.stats.record_error(endpoint.name)
                raise
            except (APIError, TransportError) as error:
                decision = decide(
                    policy,
                    state,
                    error,
                    idempotent=endpoint.idempotent,
                    now=self._clock.monotonic(),
                    rng=self._rng,
                    budget=self._budget,
                )
                if not decision.retry:
                    self.stats.record_error(endpoint.name)
                    raise
                self.stats.record_retry(endpoint.name)
                logger.info(
                    "retrying %s %s in %.2fs (%s) [request id %s]",
                    endpoint.method,
                    redact_url(path),
                    decision.delay,
                    decision.reason,
                    request_id,
                )
                state = state.increment(decision, error)
                if decision.delay > 0:
                    await self._clock.sleep(decision.delay)

    async def _attempt(
        self,
        endpoint: Endpoint,
        url: str,
        params: Mapping[str, str | int] | None,
        content: bytes | None,
        headers: dict[str, str],
        request_id: str,
        base_url: str,
    ) -> Exchange:
        started = self._clock.monotonic()
        async with self._limiter:
            try:
                response = await self._client.request(
                    endpoint.method, url, params=params, content=content, headers=headers
                )
            except httpx.HTTPError as exc:
                error = _translate(exc, endpoint.method, url)
                if counts_as_host_failure(error):
                    self._hosts.report_failure(base_url, self._clock.monotonic())
                self.stats.record_attempt(endpoint.name, None, self._clock.monotonic() - started)
                logger.debug(
                    "%s %s -> %s [request id %s]",
                    endpoint.method,
                    redact_url(url),
                    type(error).__name__,
                    request_id,
                )
                raise error from None
        elapsed = self._clock.monotonic() - started
        status = response.status_code
        answered_id = response.headers.get(REQUEST_ID_HEADER) or request_id
        self.stats.record_attempt(endpoint.name, status, elapsed)
        logger.debug(
            "%s %s -> %d in %.1fms [request id %s]",
            endpoint.method,
            redact_url(str(response.request.url)),
            status,
            elapsed * 1000,
            answered_id,
        )
        raw = response.content
        if status != 200:
            failure = error_from_response(
                status,
                raw,
                request_id=answered_id,
                retry_after=response.headers.get("Retry-After"),
                method=endpoint.method,
                url=url,
            )
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
        return Exchange(body=_decode(raw, info) if endpoint.expects_body else None, info=info)


def _decode(raw: bytes, info: ResponseInfo) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        text = raw[:200].decode("utf-8", errors="replace")
        raise ResponseError(
            "the server answered 200 with a body that is not JSON",
            request_id=info.request_id,
            body_excerpt=text,
        ) from exc
