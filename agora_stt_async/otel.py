"""OpenTelemetry for the client and the session (the ``otel`` extra): a hooks subscriber.

::

    from agora_stt_async.otel import instrument

    subscription = instrument(client)  # global tracer and meter providers
    instrument(client, tracer_provider=tp, meter_provider=mp)  # or your own

Traces: one ``CLIENT`` span per API call (``agora_stt <operation>``), from its first
rate-limit wait or attempt to its end, with the attributes ``agora_stt.operation``,
``http.request.method``, ``server.address`` and ``server.port`` (the host name and
port of the last attempt's base URL),
``http.response.status_code``, ``agora_stt.code`` (Agora's failure code),
``agora_stt.request_id`` and ``agora_stt.attempts``; a failed call's span has status
ERROR and ``error.type``. Never a header, a body, a credential or a token.

Metrics (instrument names):

- ``agora_stt.client.request.duration`` (histogram, s): each attempt; attributes
  operation, status code or error type.
- ``agora_stt.client.call.duration`` (histogram, s): each call, waits and retries
  included.
- ``agora_stt.client.retries`` (counter): retries scheduled, by operation.
- ``agora_stt.client.rate_limit.waits`` (counter) and
  ``agora_stt.client.rate_limit.wait_duration`` (histogram, s): waits for a token of the
  client-side rate limiter, by endpoint group.
- ``agora_stt.client.rate_limit.rate`` (gauge, requests/s): the App ID's current rate.
- ``agora_stt.session.tasks`` (gauge): the session's live tasks, by phase (a task
  another worker drives now, after this session's lease on it expired, is no longer
  counted); ``agora_stt.session.tasks.ended`` (counter): tasks that reached STOPPED or
  FAILED.

This module alone imports ``opentelemetry``; ``import agora_stt_async`` never does.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Final, final
from urllib.parse import urlsplit

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from agora_stt_async._client import AsyncClient
from agora_stt_async._leases import DROPPED
from agora_stt_async._version import __version__
from agora_stt_async.hooks import (
    CallCompleted,
    HookEvent,
    RateAdjusted,
    RateLimitedWait,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
    Subscription,
    TaskStateChanged,
)

__all__ = ["OpenTelemetrySubscriber", "instrument"]

INSTRUMENTATION_NAME: Final = "agora_stt_async"
MAX_OPEN_SPANS: Final = 10_000
"""Spans of calls still running are kept at most this many; past it the oldest is ended
(marked ``agora_stt.abandoned``), so a leak of unfinished calls stays bounded."""
_TERMINAL: Final = frozenset({"STOPPED", "FAILED"})
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}


@final
class OpenTelemetrySubscriber:
    """Turns hook events into spans and metrics; subscribe it with ``instrument``."""

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(
            INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider
        )
        meter = metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider=meter_provider)
        self._attempt_duration = meter.create_histogram(
            "agora_stt.client.request.duration", unit="s", description="One attempt"
        )
        self._call_duration = meter.create_histogram(
            "agora_stt.client.call.duration", unit="s", description="One call, all attempts"
        )
        self._retries = meter.create_counter(
            "agora_stt.client.retries", description="Retries scheduled"
        )
        self._waits = meter.create_counter(
            "agora_stt.client.rate_limit.waits", description="Waits for a rate-limit token"
        )
        self._wait_duration = meter.create_histogram(
            "agora_stt.client.rate_limit.wait_duration", unit="s", description="Token waits"
        )
        self._ended = meter.create_counter(
            "agora_stt.session.tasks.ended", description="Tasks that reached STOPPED/FAILED"
        )
        meter.create_observable_gauge(
            "agora_stt.session.tasks",
            callbacks=[self._observe_tasks],
            description="Live session tasks by phase",
        )
        meter.create_observable_gauge(
            "agora_stt.client.rate_limit.rate",
            callbacks=[self._observe_rate],
            unit="{request}/s",
            description="The App ID's current client-side rate",
        )
        self._spans: OrderedDict[str, Span] = OrderedDict()
        self._phases: dict[str, str] = {}
        self._rate: float | None = None

    # --- the subscriber -----------------------------------------------------------------

    def __call__(self, event: HookEvent) -> None:
        if isinstance(event, RequestSent):
            span = self._span(event.request_id, event.operation, event.method)
            span.set_attribute("agora_stt.attempts", event.attempt)
            address, port = _server(event.host)
            if address:
                span.set_attribute("server.address", address)
            if port is not None:
                span.set_attribute("server.port", port)
        elif isinstance(event, ResponseReceived):
            attributes: dict[str, str | int] = {"agora_stt.operation": event.operation}
            if event.status_code is not None:
                attributes["http.response.status_code"] = event.status_code
            if event.error is not None:
                attributes["error.type"] = event.error
            self._attempt_duration.record(event.elapsed_s, attributes)
        elif isinstance(event, RetryScheduled):
            self._retries.add(1, {"agora_stt.operation": event.operation})
        elif isinstance(event, RateLimitedWait):
            self._span(event.request_id, event.operation, None)
            self._waits.add(1, {"agora_stt.group": event.group})
            self._wait_duration.record(event.wait_s, {"agora_stt.group": event.group})
            self._rate = event.rate
        elif isinstance(event, RateAdjusted):
            self._rate = event.new_rate
        elif isinstance(event, CallCompleted):
            self._complete(event)
        elif isinstance(event, TaskStateChanged):
            if event.new_phase == DROPPED:  # driven by another worker now: not ours
                self._phases.pop(event.key, None)
            elif event.new_phase in _TERMINAL:
                self._phases.pop(event.key, None)
                self._ended.add(1, {"agora_stt.phase": event.new_phase, "agora_stt.api": event.api})
            else:
                self._phases[event.key] = event.new_phase

    def _span(self, request_id: str, operation: str, method: str | None) -> Span:
        span = self._spans.get(request_id)
        if span is None:
            attributes: dict[str, str] = {
                "agora_stt.operation": operation,
                "agora_stt.request_id": request_id,
            }
            if method is not None:
                attributes["http.request.method"] = method
            span = self._tracer.start_span(
                f"agora_stt {operation}", kind=SpanKind.CLIENT, attributes=attributes
            )
            self._spans[request_id] = span
            while len(self._spans) > MAX_OPEN_SPANS:
                _, oldest = self._spans.popitem(last=False)
                oldest.set_attribute("agora_stt.abandoned", True)
                oldest.end()
        elif method is not None:
            span.set_attribute("http.request.method", method)
        return span

    def _complete(self, event: CallCompleted) -> None:
        span = self._spans.pop(event.request_id, None)
        if span is None:  # the call's first event came before the subscription
            span = self._tracer.start_span(f"agora_stt {event.operation}", kind=SpanKind.CLIENT)
        span.set_attribute("agora_stt.operation", event.operation)
        span.set_attribute("http.request.method", event.method)
        span.set_attribute("agora_stt.request_id", event.server_request_id or event.request_id)
        span.set_attribute("agora_stt.attempts", event.attempts)
        if event.status_code is not None:
            span.set_attribute("http.response.status_code", event.status_code)
        if event.agora_code is not None:
            span.set_attribute("agora_stt.code", event.agora_code)
        if event.error is not None:
            span.set_attribute("error.type", event.error)
            span.set_status(Status(StatusCode.ERROR, event.error))
        span.end()
        attributes: dict[str, str | int] = {"agora_stt.operation": event.operation}
        if event.status_code is not None:
            attributes["http.response.status_code"] = event.status_code
        if event.error is not None:
            attributes["error.type"] = event.error
        self._call_duration.record(event.duration_s, attributes)

    # --- observable instruments -------------------------------------------------------

    def _observe_tasks(self, _options: CallbackOptions) -> Iterable[Observation]:
        counts = Counter(self._phases.values())
        return [Observation(n, {"agora_stt.phase": phase}) for phase, n in sorted(counts.items())]

    def _observe_rate(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [] if self._rate is None else [Observation(self._rate)]


def _server(base_url: str) -> tuple[str | None, int | None]:
    """OpenTelemetry's ``server.address`` (the host name) and ``server.port`` (explicit,
    or the scheme's default) of a base URL."""
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError:  # not a URL we can read: say nothing rather than something wrong
        return None, None
    return parts.hostname, port if port is not None else _DEFAULT_PORTS.get(parts.scheme)


def instrument(
    client: AsyncClient,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> Subscription:
    """Subscribe an ``OpenTelemetrySubscriber`` to ``client.hooks`` (a ``Session`` on
    this client reports its tasks through it too); ``unsubscribe()`` to stop.

    Without providers, OpenTelemetry's global ones are used (set by your SDK setup).
    """
    subscriber = OpenTelemetrySubscriber(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )
    if client.rate_limiter is not None:
        subscriber._rate = client.rate_limiter.rate
    return client.hooks.subscribe(subscriber)
