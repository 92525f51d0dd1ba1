"""The ``otel`` extra: spans and metrics from hook events, with the SDK's in-memory
exporters; and ``import agora_stt_async`` never imports OpenTelemetry."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agora_stt_async import (
    AsyncClient,
    JoinRequest,
    NotFoundError,
    RateLimit,
    RetryPolicy,
    RtcConfig,
    Session,
)
from agora_stt_async._constants import (
    EMULATOR_APP_ID,
    EMULATOR_CUSTOMER_ID,
    EMULATOR_CUSTOMER_SECRET,
)
from agora_stt_async.emulator import EmulatorConfig, create_app
from agora_stt_async.otel import instrument
from agora_stt_async.stores import LeasingMemoryStore
from agora_stt_async.testing import FakeClock

pytestmark = pytest.mark.anyio

SECRET = "otel-secret-value"
AGENT = {"agent_id": "a1", "create_ts": 1, "status": "RUNNING"}


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = list(metric.data.data_points)
        return found

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def telemetry():
    t = Telemetry()
    yield t
    t.shutdown()


def scripted(statuses: list[int]) -> httpx.MockTransport:
    queue = list(statuses)

    def handle(request: httpx.Request) -> httpx.Response:
        status = queue.pop(0) if queue else 200
        if status == 404:
            return httpx.Response(404, json={"message": "gone", "code": 404})
        if status != 200:
            return httpx.Response(status, json={"message": "busy"}, headers={"Retry-After": "1"})
        return httpx.Response(200, json=AGENT, headers={"X-Request-Id": "srv-1"})

    return httpx.MockTransport(handle)


def make_client(statuses: list[int], **kw: Any) -> AsyncClient:
    return AsyncClient(
        app_id="app0",
        customer_id="cid",
        customer_secret=SECRET,
        transport=scripted(statuses),
        retry=RetryPolicy.testing(),
        **kw,
    )


async def test_otel_span_per_call_with_attributes(telemetry: Telemetry):
    """One CLIENT span per call (not per attempt), with the documented attributes."""
    async with make_client([503]) as client:
        instrument(
            client,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
        )
        with anyio.fail_after(5):
            await client.agents.get("a1", request_id="rid-1")
    spans = telemetry.spans.get_finished_spans()
    assert len(spans) == 1
    span = spans[0]
    assert span.name == "agora_stt query"
    assert span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["agora_stt.operation"] == "query"
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.response.status_code"] == 200
    assert attributes["agora_stt.attempts"] == 2
    assert attributes["server.address"] == "api.agora.io"  # the host name, not a URL
    assert attributes["server.port"] == 443
    assert attributes["agora_stt.request_id"] == "srv-1"
    assert span.status.status_code is StatusCode.UNSET
    assert SECRET not in repr(attributes)


async def test_otel_failed_call_span_is_error(telemetry: Telemetry):
    """A failed call's span has status ERROR, the error type and Agora's code."""
    async with make_client([404]) as client:
        instrument(
            client,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
        )
        with pytest.raises(NotFoundError):
            await client.agents.get("a1")
    (span,) = telemetry.spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert attributes["error.type"] == "NotFoundError"
    assert attributes["http.response.status_code"] == 404
    assert attributes["agora_stt.code"] == 404


async def test_otel_metrics_latency_retries_and_rate_limit(telemetry: Telemetry):
    """Attempt latency, retries and rate-limit waits are recorded as metrics."""

    class Clock:
        def __init__(self) -> None:
            self.t = 0.0

        def now(self) -> float:
            return 1_700_000_000.0 + self.t

        def monotonic(self) -> float:
            return self.t

        async def sleep(self, seconds: float) -> None:
            self.t += seconds
            await anyio.sleep(0)

    limit = RateLimit(rate=1.0, burst=1, query=None)
    async with make_client([503], rate_limit=limit, clock=Clock()) as client:
        instrument(
            client,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
        )
        for _ in range(2):
            await client.agents.get("a1")
    metrics = telemetry.metrics()
    (latency,) = [
        p
        for p in metrics["agora_stt.client.request.duration"]
        if p.attributes.get("http.response.status_code") == 200
    ]
    assert latency.count == 2
    (retries,) = metrics["agora_stt.client.retries"]
    assert retries.value == 1
    (waits,) = metrics["agora_stt.client.rate_limit.waits"]
    assert waits.value == 2  # the retry and the second call waited for a token
    assert waits.attributes == {"agora_stt.group": "query"}
    (rate,) = metrics["agora_stt.client.rate_limit.rate"]
    assert rate.value == 1.0
    assert len(telemetry.spans.get_finished_spans()) == 2


async def test_otel_tasks_by_state(telemetry: Telemetry):
    """A session's live tasks are counted by phase; ended ones by how they ended."""
    app = create_app(EmulatorConfig(start_delay=0.0, stop_delay=0.0))
    async with AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=app.transport(),
        retry=RetryPolicy.testing(),
    ) as client:
        instrument(
            client,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
        )
        with anyio.fail_after(20):
            async with Session(client) as session:
                for i in range(3):
                    await session.start(
                        f"k{i}",
                        JoinRequest(
                            name=f"n{i}",
                            languages=["en-US"],
                            rtc_config=RtcConfig(channel_name=f"c{i}", pub_bot_uid="1"),
                        ),
                    )
                live = telemetry.metrics()["agora_stt.session.tasks"]
                assert {p.attributes["agora_stt.phase"]: p.value for p in live} == {"ACTIVE": 3}
                await session.stop("k0")
    metrics = telemetry.metrics()
    (ended,) = metrics["agora_stt.session.tasks.ended"]
    assert ended.value == 3
    assert ended.attributes == {"agora_stt.phase": "STOPPED", "agora_stt.api": "v7"}
    operations = {
        (s.attributes or {}).get("agora_stt.operation")
        for s in telemetry.spans.get_finished_spans()
    }
    assert {"join", "leave"} <= operations


async def test_otel_server_address_and_port_of_a_base_url(telemetry: Telemetry):
    """``server.address`` is the host of the base URL tried and ``server.port`` its port,
    explicit or the scheme's default (OpenTelemetry's semantic conventions)."""
    async with make_client([], base_url="https://stt.example.test:8443/v") as client:
        instrument(
            client,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
        )
        with anyio.fail_after(5):
            await client.agents.get("a1")
    (span,) = telemetry.spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["server.address"] == "stt.example.test"
    assert attributes["server.port"] == 8443


async def test_otel_tasks_gauge_forgets_tasks_whose_lease_was_lost(telemetry: Telemetry):
    """A task this session stops driving (its lease expired; another worker drives it
    now) leaves the live-tasks gauge, without counting as ended."""
    app = create_app(EmulatorConfig(start_delay=0.0, stop_delay=0.0))
    clock = FakeClock()
    store = LeasingMemoryStore(lease_ttl=30.0, clock=clock)
    async with AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=app.transport(),
        retry=RetryPolicy.testing(),
    ) as client:
        instrument(
            client,
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
        )
        with anyio.fail_after(20):
            async with Session(client, store=store, clock=clock) as session:
                for i in range(2):
                    await session.start(
                        f"k{i}",
                        JoinRequest(
                            name=f"n{i}",
                            languages=["en-US"],
                            rtc_config=RtcConfig(channel_name=f"c{i}", pub_bot_uid="1"),
                        ),
                    )
                live = telemetry.metrics()["agora_stt.session.tasks"]
                assert {p.attributes["agora_stt.phase"]: p.value for p in live} == {"ACTIVE": 2}
                clock.advance(31.0)  # both leases expire; another worker takes k0's
                assert await store.acquire_lease("k0", "another-worker", 30.0)
                assert session._leases is not None
                await session._leases.renew()
                assert session.handles() == []
                live = telemetry.metrics().get("agora_stt.session.tasks", [])
                assert {p.attributes["agora_stt.phase"]: p.value for p in live} == {}
    assert "agora_stt.session.tasks.ended" not in telemetry.metrics()


def test_otel_core_import_stays_light():
    """``import agora_stt_async`` (and a client) never imports OpenTelemetry."""
    code = (
        "import sys, agora_stt_async, agora_stt_async.hooks;"
        "agora_stt_async.AsyncClient(app_id='a', customer_id='b', customer_secret='c');"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
