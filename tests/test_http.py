"""``HttpCore`` through ``AsyncClient``: retries, idempotency, ownership, configuration."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx

from agora_stt_async import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ConnectError,
    ConnectionLost,
    JoinRequest,
    LegacyStartRequest,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeout,
    ResponseError,
    RetryBudgetConfig,
    RetryPolicy,
    RtcConfig,
    ServerError,
    UsageError,
    ValidationError,
)
from agora_stt_async.hooks import CallCompleted, HookEvent

pytestmark = pytest.mark.anyio

BASE = "https://api.agora.io"
APP = "app0"
V7 = f"/api/speech-to-text/v1/projects/{APP}"
LEGACY = f"/v1/projects/{APP}/rtsc/speech-to-text"
AGENT = {"agent_id": "a1", "create_ts": 1, "status": "RUNNING"}
TASK = {"taskId": "t1", "createTs": 1, "status": "IN_PROGRESS"}
TOKEN = {"tokenName": "tok", "createTs": 1, "instanceId": "room"}
JOIN = JoinRequest(
    name="n", languages=["en-US"], rtc_config=RtcConfig(channel_name="c", pub_bot_uid="1")
)
START = LegacyStartRequest(
    languages=["en-US"],
    rtc_config=RtcConfig(channel_name="c", pub_bot_uid="1", sub_bot_uid="2"),
)


class FakeClock:
    """Monotonic time that only moves when the SDK sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.t = 1_000_000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return 1_700_000_000.0 + self.t

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await anyio.lowlevel.checkpoint()


# One TLS context for every client of this module: building one per client (certifi's
# bundle) would dominate the run time. respx still intercepts below this transport.
_TLS = ssl.create_default_context()


def make_client(**kw: Any) -> AsyncClient:
    options: dict[str, Any] = {
        "transport": httpx.AsyncHTTPTransport(verify=_TLS),
        "app_id": APP,
        "customer_id": "cid",
        "customer_secret": "secret",
        "retry": RetryPolicy.testing(),
        **kw,
    }
    return AsyncClient(**options)


def mock(base: str = BASE) -> respx.MockRouter:
    return respx.mock(base_url=base, assert_all_called=True, assert_all_mocked=True)


# --- retries ----------------------------------------------------------------------------


async def test_http_retries_503_on_idempotent_call():
    """A 503 on an idempotent call is retried until it succeeds, with the same request id."""
    async with make_client() as client:
        with mock() as router:
            route = router.get(f"{V7}/agents/a1").mock(
                side_effect=[
                    httpx.Response(503),
                    httpx.Response(503),
                    httpx.Response(200, json=AGENT),
                ]
            )
            with anyio.fail_after(5):
                agent = await client.agents.get("a1", request_id="rid-1")
        stats = client.statistics()
    assert agent.agent_id == "a1"
    assert route.call_count == 3
    assert {call.request.headers["X-Request-Id"] for call in route.calls} == {"rid-1"}
    assert (stats.requests, stats.retries, stats.errors) == (3, 2, 0)
    op = stats.by_operation["query"]
    assert (op.calls, op.attempts, op.retries, op.errors) == (1, 3, 2, 0)


async def test_http_retry_after_honoured():
    """A 429's Retry-After is the wait before the retry, even on a non-idempotent join."""
    clock = FakeClock()
    async with make_client(retry=RetryPolicy(jitter="none"), clock=clock) as client:
        with mock() as router:
            route = router.post(f"{V7}/join").mock(
                side_effect=[
                    httpx.Response(429, headers={"Retry-After": "7"}),
                    httpx.Response(200, json=AGENT),
                ]
            )
            with anyio.fail_after(5):
                await client.agents.join(JOIN)
    assert route.call_count == 2
    assert clock.sleeps == [7.0]


async def test_http_retry_after_above_cap_not_retried():
    """A Retry-After longer than the policy's cap ends the call with RateLimitError."""
    async with make_client(retry=RetryPolicy(retry_after_cap=5.0), clock=FakeClock()) as client:
        with mock() as router:
            route = router.get(f"{V7}/agents/a1").respond(429, headers={"Retry-After": "60"})
            with anyio.fail_after(5), pytest.raises(RateLimitError) as info:
                await client.agents.get("a1")
    assert route.call_count == 1
    assert info.value.retry_after == 60.0


async def test_http_code_20_documented_schedule():
    """Legacy code 20 is retried after 3 s and then 6 s, as documented."""
    clock = FakeClock()
    async with make_client(retry=RetryPolicy(jitter="none"), clock=clock) as client:
        with mock() as router:
            route = router.get(f"{LEGACY}/tasks/t1").mock(
                side_effect=[
                    httpx.Response(400, json={"code": 20, "message": "timeout"}),
                    httpx.Response(400, json={"code": 20, "message": "timeout"}),
                    httpx.Response(200, json=TASK),
                ]
            )
            with anyio.fail_after(5):
                task = await client.legacy.query("t1", "tok")
    assert task.task_id == "t1"
    assert route.call_count == 3
    assert clock.sleeps == [3.0, 6.0]


async def test_http_no_wait_policy_never_sleeps():
    """RetryPolicy(no_wait=True) retries without waiting at all."""
    clock = FakeClock()
    async with make_client(retry=RetryPolicy(no_wait=True), clock=clock) as client:
        with mock() as router:
            router.get(f"{LEGACY}/tasks/t1").mock(
                side_effect=[
                    httpx.Response(400, json={"code": 20}),
                    httpx.Response(503),
                    httpx.Response(200, json=TASK),
                ]
            )
            with anyio.fail_after(5):
                await client.legacy.query("t1", "tok")
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.Response(503), id="503"),
        pytest.param(httpx.Response(500, json={"reason": "InternalError"}), id="500"),
        pytest.param(httpx.RemoteProtocolError("dropped"), id="connection-dropped"),
        pytest.param(httpx.ReadTimeout("slow"), id="read-timeout"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        pytest.param("POST", f"{V7}/join", lambda c: c.agents.join(JOIN), id="join"),
        pytest.param(
            "POST", f"{LEGACY}/builderTokens", lambda c: c.legacy.acquire("room"), id="acquire"
        ),
        pytest.param("POST", f"{LEGACY}/tasks", lambda c: c.legacy.start("tok", START), id="start"),
    ],
)
async def test_http_non_idempotent_not_retried(method, path, call, failure):
    """join, acquire and start are never repeated once the request may have arrived."""
    async with make_client() as client:
        with mock() as router:
            route = router.route(method=method, path=path).mock(side_effect=[failure])
            with anyio.fail_after(5), pytest.raises((ServerError, ConnectionLost, RequestTimeout)):
                await call(client)
        stats = client.statistics()
    assert route.call_count == 1
    assert (stats.requests, stats.retries, stats.errors) == (1, 0, 1)


@pytest.mark.parametrize(
    ("method", "path", "call", "body"),
    [
        pytest.param("POST", f"{V7}/join", lambda c: c.agents.join(JOIN), AGENT, id="join"),
        pytest.param(
            "POST",
            f"{LEGACY}/builderTokens",
            lambda c: c.legacy.acquire("room"),
            TOKEN,
            id="acquire",
        ),
        pytest.param(
            "POST", f"{LEGACY}/tasks", lambda c: c.legacy.start("tok", START), TASK, id="start"
        ),
    ],
)
async def test_http_non_idempotent_retried_on_connect_error(method, path, call, body):
    """A connection that never opened is retried even for join, acquire and start."""
    async with make_client() as client:
        with mock() as router:
            route = router.route(method=method, path=path).mock(
                side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=body)]
            )
            with anyio.fail_after(5):
                await call(client)
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        pytest.param(httpx.RemoteProtocolError("dropped"), ConnectionLost, id="dropped"),
        pytest.param(httpx.ReadTimeout("slow"), RequestTimeout, id="timeout"),
        pytest.param(httpx.ConnectTimeout("slow"), ConnectError, id="connect-timeout"),
    ],
)
async def test_http_idempotent_retried_on_transport_errors(failure, error):
    """Idempotent calls are retried after any transport failure; the last one is typed."""
    async with make_client(retry=RetryPolicy(attempts=3, no_wait=True)) as client:
        with mock() as router:
            route = router.post(f"{V7}/agents/a1/leave").mock(side_effect=[failure] * 3)
            with anyio.fail_after(5), pytest.raises(error) as info:
                await client.agents.leave("a1")
    assert route.call_count == 3
    assert info.value.method == "POST"
    assert info.value.url == f"{BASE}{V7}/agents/a1/leave"
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        pytest.param(
            400, {"detail": "bad", "reason": "InvalidFieldValue"}, BadRequestError, id="400"
        ),
        pytest.param(
            401, {"message": "Invalid authentication credentials"}, AuthenticationError, id="401"
        ),
        pytest.param(404, {"reason": "TaskNotFound"}, NotFoundError, id="404"),
        pytest.param(409, {"reason": "TaskConflict"}, ConflictError, id="409"),
        pytest.param(422, {"reason": "ConcurrencyLimitExceeded"}, QuotaExceededError, id="422"),
        pytest.param(500, {"code": 1}, ServerError, id="code-1-contact-support"),
    ],
)
async def test_http_4xx_never_retried(status, body, error):
    """Client errors (and "contact support" codes) are not retried, even when idempotent."""
    async with make_client() as client:
        with mock() as router:
            route = router.get(f"{V7}/agents/a1").respond(status, json=body)
            with anyio.fail_after(5), pytest.raises(error):
                await client.agents.get("a1")
    assert route.call_count == 1


async def test_http_attempts_honoured():
    """The policy's attempts bound the number of requests; the last error is raised."""
    async with make_client(retry=RetryPolicy(attempts=2, no_wait=True)) as client:
        with mock() as router:
            route = router.get(f"{V7}/agents/a1").mock(
                side_effect=[httpx.Response(503), httpx.Response(502, text="<html>")]
            )
            with anyio.fail_after(5), pytest.raises(ServerError) as info:
                await client.agents.get("a1")
        stats = client.statistics()
    assert route.call_count == 2
    assert info.value.status_code == 502
    assert (stats.requests, stats.retries, stats.errors) == (2, 1, 1)


async def test_http_deadline_honoured():
    """A retry whose wait would pass the policy's total deadline is not made."""
    clock = FakeClock()
    policy = RetryPolicy(timeout=5.0, jitter="none", attempts=10)
    async with make_client(retry=policy, clock=clock) as client:
        with mock() as router:
            route = router.get(f"{LEGACY}/tasks/t1").mock(
                side_effect=[httpx.Response(400, json={"code": 20})] * 2
            )
            with anyio.fail_after(5), pytest.raises(ServerError):
                await client.legacy.query("t1", "tok")
    assert route.call_count == 2  # 3 s fits in 5 s, 3 + 6 s does not
    assert clock.sleeps == [3.0]


async def test_http_per_call_policy_overrides_client():
    """``retry=`` on a call replaces the client's policy for that call."""
    async with make_client(retry=RetryPolicy.none()) as client:
        with mock() as router:
            route = router.get(f"{V7}/agents/a1").mock(
                side_effect=[httpx.Response(503), httpx.Response(200, json=AGENT)]
            )
            with anyio.fail_after(5):
                await client.agents.get("a1", retry=RetryPolicy.testing())
            route.side_effect = [httpx.Response(503)]
            with anyio.fail_after(5), pytest.raises(ServerError):
                await client.agents.get("a1")
    assert route.call_count == 3


@pytest.mark.parametrize("bad", [3, "none", RetryPolicy])
async def test_http_per_call_policy_type_checked(bad):
    """A per-call ``retry=`` that is not a RetryPolicy is refused before sending."""
    async with make_client() as client:
        with no_requests(), pytest.raises(ConfigurationError, match="RetryPolicy"):
            await client.agents.get("a1", retry=bad)


async def test_http_failover_to_next_host():
    """With several base URLs, a host that cannot be reached is left for the next one."""
    async with make_client(base_urls=["https://a.example", "https://b.example"]) as client:
        with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
            first = router.get(f"https://a.example{V7}/agents/a1").mock(
                side_effect=httpx.ConnectError("refused")
            )
            second = router.get(f"https://b.example{V7}/agents/a1").respond(200, json=AGENT)
            with anyio.fail_after(5):
                agent = await client.agents.get("a1")
    assert agent.agent_id == "a1"
    assert (first.call_count, second.call_count) == (1, 1)


async def test_http_logging_lines(caplog):
    """One DEBUG line per attempt and one INFO line per retry, naming the request id."""
    caplog.set_level(logging.DEBUG, logger="agora_stt_async")
    async with make_client() as client:
        with mock() as router:
            router.get(f"{V7}/agents/a1").mock(
                side_effect=[httpx.Response(503), httpx.Response(200, json=AGENT)]
            )
            with anyio.fail_after(5):
                await client.agents.get("a1", request_id="log-1")
    ours = [r for r in caplog.records if r.name == "agora_stt_async"]
    assert [r.levelno for r in ours] == [logging.DEBUG, logging.INFO, logging.DEBUG]
    assert all("log-1" in r.getMessage() for r in ours)
    assert "-> 503" in ours[0].getMessage()
    assert "retrying GET" in ours[1].getMessage()


# --- responses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [b"<html>oops</html>", b"{not json", b"\xff\xfe"], ids=["html", "broken", "bytes"]
)
async def test_http_200_non_json_is_response_error(content):
    """A 200 whose body is not JSON raises ResponseError with the request id and an excerpt."""
    async with make_client() as client:
        with mock() as router:
            route = router.get(f"{V7}/agents/a1").respond(
                200, content=content, headers={"X-Request-Id": "srv-1"}
            )
            with anyio.fail_after(5), pytest.raises(ResponseError) as info:
                await client.agents.get("a1")
        stats = client.statistics()
    assert route.call_count == 1  # never retried
    assert (stats.requests, stats.retries, stats.errors) == (1, 0, 1)
    assert info.value.request_id == "srv-1"
    assert info.value.body_excerpt
    assert "srv-1" in str(info.value)


async def test_http_200_empty_body_is_response_error_for_results():
    """An empty 200 where a result is documented raises ResponseError."""
    async with make_client() as client:
        with mock() as router:
            router.post(f"{V7}/join").respond(200)
            with anyio.fail_after(5), pytest.raises(ResponseError):
                await client.agents.join(JOIN)


# --- ownership --------------------------------------------------------------------------


class RecordingTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.closed = False
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=AGENT)

    async def aclose(self) -> None:
        self.closed = True


async def test_http_caller_transport_not_closed():
    """A transport passed in is used, and left open when the client closes."""
    transport = RecordingTransport()
    async with make_client(transport=transport) as client:
        with anyio.fail_after(5):
            await client.agents.get("a1")
    assert len(transport.requests) == 1
    assert transport.requests[0].url == f"{BASE}{V7}/agents/a1"
    assert transport.closed is False


async def test_http_caller_http_client_not_closed():
    """An httpx.AsyncClient passed in is used, and left open when the client closes."""
    transport = RecordingTransport()
    async with httpx.AsyncClient(transport=transport) as http_client:
        async with make_client(http_client=http_client, transport=None) as client:
            with anyio.fail_after(5):
                await client.agents.get("a1")
        assert not http_client.is_closed
        assert transport.closed is False
        assert len(transport.requests) == 1


async def test_http_own_client_closed():
    """The pool the client created is closed by aclose(), and the client refuses calls."""
    client = make_client(transport=None)  # the transport the SDK makes itself
    pool = client._http._client
    await client.aclose()
    assert pool.is_closed
    with no_requests(), pytest.raises(UsageError):
        await client.agents.get("a1")
    with no_requests(), pytest.raises(UsageError):
        await client.legacy.query("t1", "tok")
    with no_requests(), pytest.raises(UsageError):
        await client.agents.list().__anext__()
    await client.aclose()  # closing twice is harmless


def no_requests() -> respx.MockRouter:
    return respx.mock(assert_all_called=False, assert_all_mocked=True)


async def test_http_closed_http_client_is_usage_error():
    """A caller's http_client closed by its owner: UsageError, not httpx's RuntimeError."""
    http_client = httpx.AsyncClient(transport=RecordingTransport())
    await http_client.aclose()
    async with make_client(http_client=http_client, transport=None) as client:
        with anyio.fail_after(5), pytest.raises(UsageError, match="http_client"):
            await client.agents.get("a1")


class GateClock(FakeClock):
    """Like FakeClock, but a sleep lasts until ``gate`` is set (forever if it never is)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()
        self.waiting = anyio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.waiting.set()
        await self.gate.wait()
        self.t += seconds


async def test_http_close_during_a_retry_wait_is_usage_error():
    """aclose() while a call waits to retry ends that call with UsageError (never a bare
    RuntimeError from the closed pool), and CallCompleted reports it."""
    clock = GateClock()
    client = make_client(transport=None, clock=clock, retry=RetryPolicy(jitter="none"))
    events: list[HookEvent] = []
    client.hooks.subscribe(events.append, CallCompleted)
    raised: list[BaseException] = []

    async def call() -> None:
        try:
            await client.agents.get("a1")
        except RuntimeError as exc:  # UsageError is one; so was the bug
            raised.append(exc)

    with mock() as router:
        router.get(f"{V7}/agents/a1").respond(503, json={"message": "busy"})
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await clock.waiting.wait()
                await client.aclose()
                clock.gate.set()
    assert len(raised) == 1
    assert isinstance(raised[0], UsageError)
    assert [(e.error, e.attempts) for e in events if isinstance(e, CallCompleted)] == [
        ("UsageError", 2)
    ]


async def test_http_cancelled_retry_wait_gives_the_budget_token_back():
    """A call cancelled while it waits to retry gives its retry-budget token back: the
    retry it paid for was never sent."""
    clock = GateClock()
    one_token = RetryBudgetConfig(ratio=0.0, min_per_s=0.1, window_s=10.0)
    policy = RetryPolicy(jitter="none", budget=one_token)
    async with make_client(clock=clock, retry=policy) as client:
        with mock() as router:
            busy = httpx.Response(503, json={"message": "busy"})
            router.get(f"{V7}/agents/a1").mock(
                side_effect=[busy, busy, httpx.Response(200, json=AGENT)]
            )
            with anyio.fail_after(5):
                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(client.agents.get, "a1")
                        await clock.waiting.wait()
                        scope.cancel()  # the only token was taken for this retry
                clock.gate.set()
                agent = await client.agents.get("a1")  # 503, then retried with the token
    assert agent.agent_id == "a1"
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param("a\nb", id="newline"),
        pytest.param("r\u00e9", id="non-ascii"),
        pytest.param("two words", id="space"),
        pytest.param("x" * 257, id="too-long"),
        pytest.param(7, id="not-a-string"),
    ],
)
async def test_http_request_id_refused_before_sending(request_id):
    """A request id that cannot travel as a header is a ValidationError; nothing is sent."""
    async with make_client() as client:
        with no_requests(), pytest.raises(ValidationError, match="request_id"):
            await client.agents.get("a1", request_id=request_id)


# --- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "missing", ["app_id", "customer_id", "customer_secret"], ids=lambda name: f"no-{name}"
)
def test_http_missing_credential(missing):
    """A missing credential is a ConfigurationError at construction, naming it."""
    options: dict[str, Any] = {"app_id": "a", "customer_id": "b", "customer_secret": "c"}
    options[missing] = None
    with pytest.raises(ConfigurationError) as info:
        AsyncClient(**options)
    assert missing in str(info.value)


def test_http_empty_credential():
    """An empty string counts as missing."""
    with pytest.raises(ConfigurationError, match="customer_secret"):
        AsyncClient(app_id="a", customer_id="b", customer_secret="")


def test_http_credentials_from_environment(monkeypatch):
    """Credentials and the base URL come from the AGORA_* variables."""
    monkeypatch.setenv("AGORA_APP_ID", "env-app")
    monkeypatch.setenv("AGORA_CUSTOMER_ID", "env-id")
    monkeypatch.setenv("AGORA_CUSTOMER_SECRET", "env-secret")
    monkeypatch.setenv("AGORA_STT_BASE_URL", "https://stt.example/")
    client = AsyncClient()
    assert client.app_id == "env-app"
    assert client.base_urls == ("https://stt.example",)
    assert "env-secret" not in repr(client)


async def test_http_environment_credentials_are_sent(monkeypatch):
    """Credentials read from the environment make the Authorization header."""
    import base64

    monkeypatch.setenv("AGORA_APP_ID", "env-app")
    monkeypatch.setenv("AGORA_CUSTOMER_ID", "env-id")
    monkeypatch.setenv("AGORA_CUSTOMER_SECRET", "env-secret")
    async with AsyncClient() as client:
        with mock() as router:
            route = router.get("/api/speech-to-text/v1/projects/env-app/agents/a1").respond(
                200, json=AGENT
            )
            with anyio.fail_after(5):
                await client.agents.get("a1")
    expected = "Basic " + base64.b64encode(b"env-id:env-secret").decode()
    assert route.calls.last.request.headers["Authorization"] == expected


def test_http_explicit_arguments_win_over_environment(monkeypatch):
    """An argument given explicitly is used instead of the variable."""
    monkeypatch.setenv("AGORA_APP_ID", "env-app")
    monkeypatch.setenv("AGORA_STT_BASE_URL", "https://env.example")
    client = AsyncClient(
        app_id="arg-app", customer_id="b", customer_secret="c", base_url="https://arg.example"
    )
    assert client.app_id == "arg-app"
    assert client.base_urls == ("https://arg.example",)


def test_http_default_base_url():
    """Without configuration the client talks to https://api.agora.io."""
    client = AsyncClient(app_id="a", customer_id="b", customer_secret="c")
    assert client.base_urls == ("https://api.agora.io",)


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8000", "http://127.0.0.1:9000", "http://[::1]:9000", "https://h.example"],
)
def test_http_secure_or_loopback_accepted(url):
    """https:// and plain http:// to a loopback address are accepted."""
    client = AsyncClient(app_id="a", customer_id="b", customer_secret="c", base_url=url)
    assert client.base_urls == (url,)


@pytest.mark.parametrize("url", ["http://api.agora.io", "http://10.0.0.5:8000"])
def test_http_insecure_refused(url, monkeypatch):
    """Plain http:// to another host is refused unless allow_insecure=True."""
    with pytest.raises(ConfigurationError, match="allow_insecure"):
        AsyncClient(app_id="a", customer_id="b", customer_secret="c", base_url=url)
    monkeypatch.setenv("AGORA_STT_BASE_URL", url)
    with pytest.raises(ConfigurationError):
        AsyncClient(app_id="a", customer_id="b", customer_secret="c")
    client = AsyncClient(
        app_id="a", customer_id="b", customer_secret="c", base_url=url, allow_insecure=True
    )
    assert client.base_urls == (url,)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"base_url": "ftp://h"}, id="scheme"),
        pytest.param({"base_url": "https://"}, id="no-host"),
        pytest.param({"base_url": "http://[::1"}, id="unparsable"),
        pytest.param({"base_url": "https://api.agora.io:99999"}, id="port-out-of-range"),
        pytest.param({"base_url": "https://api.agora.io?x=1"}, id="query"),
        pytest.param({"base_urls": [5]}, id="not-a-string"),
        pytest.param({"base_url": "https://a", "area": "us"}, id="url-and-area"),
        pytest.param({"area": "mars"}, id="unknown-area"),
        pytest.param({"base_urls": []}, id="empty-urls"),
        pytest.param({"base_urls": "https://a"}, id="urls-string"),
        pytest.param({"max_in_flight": 0}, id="in-flight-0"),
        pytest.param({"max_in_flight": True}, id="in-flight-bool"),
        pytest.param({"retry": 3}, id="retry-int"),
    ],
)
def test_http_bad_configuration(kwargs):
    """Unusable options are ConfigurationErrors at construction."""
    with pytest.raises(ConfigurationError):
        AsyncClient(app_id="a", customer_id="b", customer_secret="c", **kwargs)


def test_http_base_url_with_credentials_refused_without_echo():
    """A base URL carrying user:password is refused, and the password is not repeated
    (it would otherwise sit in repr(client), hook events, spans and errors)."""
    with pytest.raises(ConfigurationError) as info:
        AsyncClient(
            app_id="a",
            customer_id="b",
            customer_secret="c",
            base_url="https://user:hunter2@api.agora.io",
        )
    assert "hunter2" not in str(info.value)
    assert "credentials" in str(info.value)


async def test_http_client_and_transport_refused():
    """http_client and transport are alternatives."""
    async with httpx.AsyncClient() as http_client:
        with pytest.raises(ConfigurationError):
            AsyncClient(
                app_id="a",
                customer_id="b",
                customer_secret="c",
                http_client=http_client,
                transport=RecordingTransport(),
            )


def test_http_area_hosts():
    """An area selects its regional hosts in the documented order."""
    client = AsyncClient(app_id="a", customer_id="b", customer_secret="c", area="EU")
    assert client.base_urls[0] == "https://api-eu-west-1.agora.io"
    assert len(client.base_urls) == 4


# --- the call's total deadline bounds attempts and waits --------------------------------


def _hang_after(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that gives ``answers`` in turn, then never answers."""
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= len(answers):
            return answers[len(seen) - 1]
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    return httpx.MockTransport(handler), seen


async def test_http_deadline_bounds_a_hanging_attempt():
    """An attempt that never answers ends at the policy's total deadline with a
    RequestTimeout that may have been processed and names the request id sent."""
    transport, seen = _hang_after()
    async with make_client(transport=transport, retry=RetryPolicy(timeout=0.3)) as client:
        with anyio.fail_after(5), pytest.raises(RequestTimeout) as info:
            await client.agents.get("a1", request_id="rid-d")
    assert len(seen) == 1
    assert info.value.maybe_processed is True
    assert info.value.request_id == "rid-d"
    assert "deadline" in str(info.value)
    assert client.statistics().errors == 1


async def test_http_deadline_bounds_the_attempt_after_a_retry():
    """After a 503 and its wait, the next attempt gets only what is left of the deadline
    (it once ran for as long as the server kept it waiting)."""
    transport, seen = _hang_after(httpx.Response(503))
    policy = RetryPolicy(timeout=0.5, wait_initial=0.05, jitter="none")
    async with make_client(transport=transport, retry=policy) as client:
        with anyio.fail_after(5), pytest.raises(RequestTimeout, match="deadline"):
            await client.agents.get("a1")
    assert len(seen) == 2


async def test_http_deadline_on_a_join_is_not_retried():
    """A join cut off by the deadline may have happened: one attempt, maybe processed."""
    transport, seen = _hang_after()
    async with make_client(transport=transport, retry=RetryPolicy(timeout=0.2)) as client:
        with anyio.fail_after(5), pytest.raises(RequestTimeout) as info:
            await client.agents.join(JOIN)
    assert len(seen) == 1
    assert info.value.maybe_processed is True


async def test_http_deadline_bounds_the_rate_limit_wait():
    """A rate-limit wait that would end past the deadline is not made: the call ends at
    once with a ConnectError (nothing sent), and the fake clock did not move."""
    from agora_stt_async import RateLimit

    clock = FakeClock()
    limit = RateLimit(rate=0.5, burst=1, query=None, min_rate=0.5)
    async with make_client(retry=RetryPolicy(timeout=1.0), clock=clock, rate_limit=limit) as client:
        with mock() as router:
            route = router.get(f"{V7}/agents/a1").mock(return_value=httpx.Response(200, json=AGENT))
            with anyio.fail_after(5):
                await client.agents.get("a1")
                with pytest.raises(ConnectError, match="rate limiter") as info:
                    await client.agents.get("a1", request_id="rid-r")
    assert route.call_count == 1
    assert clock.sleeps == []
    assert info.value.maybe_processed is False
    assert info.value.request_id == "rid-r"


async def test_http_deadline_bounds_the_wait_for_a_slot_in_flight():
    """With max_in_flight=1 taken, a call waits for a slot only until its deadline, then
    ends with a ConnectError: it was never sent."""
    release = anyio.Event()
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        await release.wait()
        return httpx.Response(200, json=AGENT)

    async with make_client(transport=httpx.MockTransport(handler), max_in_flight=1) as client:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.agents.get, "a1")
                while not seen:
                    await anyio.sleep(0.001)
                with pytest.raises(ConnectError, match="max_in_flight"):
                    await client.agents.get("a2", retry=RetryPolicy(timeout=0.2))
                release.set()
    assert [request.url.path for request in seen] == [f"{V7}/agents/a1"]


async def test_http_transport_error_names_the_request_id():
    """A transport failure carries the X-Request-Id that was sent (support needs it to
    tell whether a timed-out join happened)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    transport = httpx.MockTransport(handler)
    async with make_client(transport=transport, retry=RetryPolicy.none()) as client:
        with anyio.fail_after(5), pytest.raises(RequestTimeout) as info:
            await client.agents.join(JOIN, request_id="my-req-1")
    assert info.value.request_id == "my-req-1"
    assert "[request id my-req-1]" in str(info.value)


# --- the body cap --------------------------------------------------------------------------


async def _chunks(size: int) -> Any:
    for _ in range(size // 65536 + 1):
        yield b" " * 65536


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_http_200_body_over_the_cap_is_a_response_error(declared):
    """A 200 body over MAX_BODY_BYTES is not read whole: a ResponseError, not retried
    (with or without a Content-Length)."""
    from agora_stt_async._transports import MAX_BODY_BYTES

    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if declared:
            return httpx.Response(200, content=b" " * (MAX_BODY_BYTES + 1))
        return httpx.Response(200, content=_chunks(MAX_BODY_BYTES + 1))

    transport = httpx.MockTransport(handler)
    async with make_client(transport=transport) as client:
        with anyio.fail_after(10), pytest.raises(ResponseError, match="over"):
            await client.agents.get("a1")
    assert calls == 1


async def test_http_failure_body_over_the_cap_keeps_its_status():
    """A failure with a body over the cap is still classified by its status."""
    from agora_stt_async._transports import MAX_BODY_BYTES

    body = b"<html>" + b"x" * MAX_BODY_BYTES
    transport = httpx.MockTransport(lambda request: httpx.Response(404, content=body))
    async with make_client(transport=transport) as client:
        with anyio.fail_after(10), pytest.raises(NotFoundError):
            await client.agents.get("a1")
