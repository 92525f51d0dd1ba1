"""The transports under the SDK: aiohttp (asyncio) and httpx's own (sharded), on loopback.

A threaded stdlib HTTP/1.1 server stands in for the API: it echoes what it received,
answers agent queries, and can be slow, drop the connection after reading a request,
or answer with any status. Transport-level behaviour is checked through an
``httpx.AsyncClient`` over each transport; SDK-level behaviour through
``AsyncClient(fast=True/False)``; the emulator (uvicorn on loopback) through the SDK.

Every behaviour runs on each path that exists: aiohttp and httpx's own transport on
asyncio, httpx's own on trio (``@both_paths`` parametrizes the backend and the path
together, so no aiohttp case is ever generated for trio). Tests that only make sense on
one event loop are parametrized with that backend alone.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import json
import pickle
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import httpx
import pytest
import respx

from agora_stt_async import AgoraSTTError, AsyncClient
from agora_stt_async._errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    NotFoundError,
    RequestTimeout,
    ResponseError,
    ServerError,
    UsageError,
    ValidationError,
)
from agora_stt_async._http import USER_AGENT, _translate
from agora_stt_async._retry import RetryPolicy
from agora_stt_async._transports import (
    MAX_BODY_BYTES,
    AutoClient,
    ShardedTransport,
    default_ssl_context,
)
from agora_stt_async._transports._response import LazyHeaders
from agora_stt_async._transports.aiohttp import AiohttpTransport, map_aiohttp_error
from agora_stt_async._transports.direct import DirectClient

pytestmark = pytest.mark.anyio

APP_ID = "app-1"
AGENTS = f"/api/speech-to-text/v1/projects/{APP_ID}/agents/"
WAIT_S = 5.0


# --- the loopback server -----------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.requests: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0
        self.open_connections = 0
        self.peers: set[tuple[str, int]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r["path"] == path)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and left: nothing to report


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.open_connections += 1
            self.server.peers.add(self.client_address)

    def finish(self) -> None:
        with self.server.lock:
            self.server.open_connections -= 1
        super().finish()

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = self.path
        proxied = target.startswith("http://")  # absolute form: we are the proxy
        if proxied:
            target = "/" + target.removeprefix("http://").partition("/")[2]
        path, _, query = target.partition("?")
        seen = {
            "proxied": proxied,
            "method": self.command,
            "path": path,
            "query": query,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body": body.decode(),
            "peer": list(self.client_address),
        }
        with server.lock:
            server.requests.append(seen)
            server.active += 1
            server.max_active = max(server.max_active, server.active)
        try:
            self._respond(path, seen)
        finally:
            with server.lock:
                server.active -= 1

    def _trickle(self) -> None:
        """Promise a 100 kB body, then send a byte every 20 ms until the client leaves."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"{")
        self.close_connection = True
        try:
            while not self.server.release.wait(0.02):
                self.wfile.write(b" ")
                self.wfile.flush()
        except OSError:
            pass  # the client gave up: what the test wants

    def _huge(self, name: str) -> None:
        """A body over the SDK's cap: declared, chunked, or small but gzip-encoded."""
        status = 502 if "502" in name else 200
        size = MAX_BODY_BYTES + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if "gzip" in name:
            body = gzip.compress(b" " * size)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if "chunked" in name:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(size // len(chunk) + 1):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                self.close_connection = True  # the client stopped reading: expected
            return
        self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            self.wfile.write(b" " * size)
        except OSError:
            self.close_connection = True

    def _respond(self, path: str, seen: dict[str, Any]) -> None:
        name = path.rsplit("/", 1)[-1]
        if "drop" in name:
            self.close_connection = True  # read the request, close, answer nothing
            return None
        if "trickle" in name:
            return self._trickle()
        if "huge" in name:
            return self._huge(name)
        if name == "redirect":
            return self._reply(302, b"", {"Location": "/echo"})
        if "slow" in name:
            self.server.release.wait(WAIT_S)
        request_id = self.headers.get("X-Request-Id", "")
        headers = {"Content-Type": "application/json", "X-Request-Id": f"srv-{request_id}"}
        if path.startswith(AGENTS):
            if "missing" in name:
                body = {"message": "agent not found", "reason": "TaskNotFound"}
                return self._reply(404, json.dumps(body).encode(), headers)
            agent = {"agent_id": name, "status": "RUNNING", "create_ts": 1_700_000_000}
            if "gzip" in name:
                headers["Content-Encoding"] = "gzip"
                return self._reply(200, gzip.compress(json.dumps(agent).encode()), headers)
            return self._reply(200, json.dumps(agent).encode(), headers)
        if name.startswith("status-"):
            status = int(name[7:])
            return self._reply(status, b"" if status == 204 else json.dumps(seen).encode(), headers)
        if name == "gzip":
            headers["Content-Encoding"] = "gzip"
            return self._reply(200, gzip.compress(json.dumps(seen).encode()), headers)
        if name == "cookie":
            headers["Set-Cookie"] = "session=abc; Path=/"
        return self._reply(200, json.dumps(seen).encode(), headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(WAIT_S)


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's proxy settings never reach these tests."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- the paths ---------------------------------------------------------------------------


ASYNCIO = pytest.param(("asyncio", {"debug": True}), id="asyncio")
TRIO = pytest.param(("trio", {}), id="trio")

both_paths = pytest.mark.parametrize(
    ("anyio_backend", "path"),
    [
        pytest.param(("asyncio", {"debug": True}), "aiohttp", id="asyncio-aiohttp"),
        pytest.param(("asyncio", {"debug": True}), "httpx", id="asyncio-httpx"),
        pytest.param(("trio", {}), "httpx", id="trio-httpx"),
    ],
)
"""Both paths: the aiohttp transport (asyncio only) and httpx's own (asyncio and trio)."""
asyncio_only = pytest.mark.parametrize("anyio_backend", [ASYNCIO])
trio_only = pytest.mark.parametrize("anyio_backend", [TRIO])


def make_transport(path: str, max_connections: int = 10) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=10)
    if path == "aiohttp":
        return AiohttpTransport(max_connections=max_connections, verify=default_ssl_context())
    return ShardedTransport(limits=limits, shard_size=4, verify=default_ssl_context())


@pytest.fixture
async def http(path: str) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client over the path's transport."""
    async with httpx.AsyncClient(transport=make_transport(path), timeout=WAIT_S) as client:
        yield client


def sdk(base_url: str, path: str, **kwargs: Any) -> AsyncClient:
    return AsyncClient(
        app_id=APP_ID,
        customer_id="cid",
        customer_secret="secret",
        base_url=base_url,
        fast=path == "aiohttp",
        **kwargs,
    )


def headers_of(seen: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in seen["headers"] if k == name]


async def wait_until(predicate: Any, what: str) -> None:
    with anyio.fail_after(WAIT_S):
        while not predicate():
            await anyio.sleep(0.005)


# --- transport level ---------------------------------------------------------------------


@both_paths
@pytest.mark.parametrize(
    ("method", "content"),
    [("GET", None), ("POST", b'{"a":1}'), ("PATCH", b"patched"), ("DELETE", None)],
)
async def test_transport_sends_method_body_and_headers(
    server: _Server, http: httpx.AsyncClient, method: str, content: bytes | None
) -> None:
    """Method, body, Content-Length and every header (repeated ones too) arrive intact."""
    response = await http.request(
        method,
        server.url + "/echo",
        content=content,
        headers=[("X-Custom", "v1"), ("X-Multi", "a"), ("X-Multi", "b")],
    )
    seen = response.json()
    assert response.status_code == 200
    assert seen["method"] == method
    assert seen["body"] == (content or b"").decode()
    assert headers_of(seen, "x-custom") == ["v1"]
    assert headers_of(seen, "x-multi") == ["a", "b"]
    assert headers_of(seen, "host") == [server.url.removeprefix("http://")]
    if content:
        assert headers_of(seen, "content-length") == [str(len(content))]


@both_paths
async def test_transport_keeps_the_query_string_as_httpx_encoded_it(
    server: _Server, http: httpx.AsyncClient
) -> None:
    """The query reaches the server byte for byte as httpx encoded it (no re-quoting)."""
    params = {"a": "1 2", "b": "x/y", "c": "ü&=", "updateMask": "languages,keywords"}
    response = await http.get(server.url + "/echo", params=params)
    assert response.json()["query"] == response.request.url.query.decode()
    assert response.json()["path"] == "/echo"


@both_paths
@pytest.mark.parametrize("status", [201, 204, 404, 429, 500, 503])
async def test_transport_passes_statuses_and_headers_through(
    server: _Server, http: httpx.AsyncClient, status: int
) -> None:
    """Any status comes back as is, with its headers and body; nothing raises."""
    response = await http.get(server.url + f"/status-{status}", headers={"X-Request-Id": "r1"})
    assert response.status_code == status
    assert response.headers["X-Request-Id"] == "srv-r1"
    assert response.reason_phrase
    if status != 204:
        assert response.json()["path"] == f"/status-{status}"


@both_paths
async def test_transport_leaves_decompression_to_httpx(
    server: _Server, http: httpx.AsyncClient
) -> None:
    """A gzip body is decoded once, by httpx."""
    response = await http.get(server.url + "/gzip")
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.json()["path"] == "/gzip"


@both_paths
async def test_transport_leaves_cookies_to_httpx(server: _Server, http: httpx.AsyncClient) -> None:
    """A cookie set by the server goes back once (httpx's jar), never twice."""
    await http.get(server.url + "/cookie")
    seen = (await http.get(server.url + "/echo")).json()
    assert headers_of(seen, "cookie") == ["session=abc"]


@both_paths
async def test_transport_reuses_connections(server: _Server, http: httpx.AsyncClient) -> None:
    """Sequential requests share one kept-alive connection."""
    for _ in range(5):
        await http.get(server.url + "/echo")
    assert len(server.peers) == 1


@both_paths
async def test_transport_read_timeout(server: _Server, path: str) -> None:
    """No answer within the read timeout → httpx.ReadTimeout."""
    async with httpx.AsyncClient(transport=make_transport(path), timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url + "/slow")


@both_paths
async def test_transport_refused_connection(refused_url: str, http: httpx.AsyncClient) -> None:
    """Nothing listening → httpx.ConnectError, which the SDK reads as "not sent"."""
    with pytest.raises(httpx.ConnectError) as info:
        await http.get(refused_url + "/echo")
    assert isinstance(_translate(info.value, "GET", refused_url), ConnectError)


@both_paths
async def test_transport_dropped_connection(server: _Server, http: httpx.AsyncClient) -> None:
    """Read, then closed without an answer → a "maybe sent" error, and no second attempt."""
    with pytest.raises(httpx.TransportError) as info:
        await http.get(server.url + "/drop")
    assert isinstance(info.value, (httpx.RemoteProtocolError, httpx.ReadError))
    assert isinstance(_translate(info.value, "GET", server.url), ConnectionLost)
    assert server.count("/drop") == 1


@both_paths
async def test_transport_honours_the_connection_limit(server: _Server, path: str) -> None:
    """With max_connections=2, at most two requests reach the server at once."""
    transport = make_transport(path, max_connections=2)
    async with (
        httpx.AsyncClient(transport=transport, timeout=WAIT_S) as client,
        anyio.create_task_group() as tg,
    ):
        for _ in range(6):
            tg.start_soon(client.get, server.url + "/slow")
        await wait_until(lambda: server.active == 2, "two requests at the server")
        await anyio.sleep(0.05)
        assert server.active == 2
        server.release.set()
    assert server.max_active == 2
    assert len(server.peers) == 2
    assert server.count("/slow") == 6


@both_paths
async def test_transport_pool_timeout_is_not_sent(server: _Server, path: str) -> None:
    """Waiting too long for a pooled connection → an error the SDK reads as "not sent"."""
    transport = make_transport(path, max_connections=1)
    # aiohttp has one budget for "get a connection": pool + connect.
    timeout = httpx.Timeout(WAIT_S, connect=0.1, pool=0.1)
    async with (
        httpx.AsyncClient(transport=transport, timeout=timeout) as client,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(client.get, server.url + "/slow")
        await wait_until(lambda: server.active == 1, "the first request at the server")
        with pytest.raises((httpx.PoolTimeout, httpx.ConnectTimeout)) as info:
            await client.get(server.url + "/echo")
        server.release.set()
    assert isinstance(_translate(info.value, "GET", server.url), ConnectError)
    assert server.count("/echo") == 0


@both_paths
async def test_transport_aclose_closes_connections(server: _Server, path: str) -> None:
    """aclose() closes every pooled connection; the transport refuses further use."""
    transport = make_transport(path)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get(server.url + "/echo")
        assert server.open_connections == 1
    await wait_until(lambda: server.open_connections == 0, "connections closed")
    if isinstance(transport, AiohttpTransport):
        assert transport.session is None
        with pytest.raises(RuntimeError, match="closed"):
            await transport.handle_async_request(httpx.Request("GET", server.url))


@asyncio_only
async def test_direct_client_sends_and_closes(server: _Server) -> None:
    """The SDK's direct aiohttp client: one request, its connection closed by aclose(),
    refused afterwards (it is asyncio's alone: aiohttp has no trio support)."""
    direct = DirectClient(max_connections=2, timeout=httpx.Timeout(WAIT_S))
    response = await direct.request(
        "POST", server.url + "/echo", params={"a": "1"}, content=b"{}", headers={"X-A": "b"}
    )
    seen = json.loads(response.content)
    assert (response.status_code, seen["method"], seen["query"], seen["body"]) == (
        200,
        "POST",
        "a=1",
        "{}",
    )
    assert headers_of(seen, "x-a") == ["b"]
    assert response.request.url == server.url + "/echo?a=1"
    await direct.aclose()
    assert direct.is_closed
    await wait_until(lambda: server.open_connections == 0, "connections closed")
    with pytest.raises(RuntimeError, match="closed"):
        await direct.request("GET", server.url + "/echo")


@asyncio_only
async def test_direct_client_pool_timeout_is_not_sent(server: _Server) -> None:
    """Waiting too long for a pooled connection (aiohttp's ``connect`` budget) comes out
    as an error the SDK reads as "not sent", and the request never reaches the server."""
    timeout = httpx.Timeout(WAIT_S, connect=0.1, pool=0.1)
    direct = DirectClient(max_connections=1, timeout=timeout)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(direct.request, "GET", server.url + "/slow")
            await wait_until(lambda: server.active == 1, "the first request at the server")
            with pytest.raises((httpx.PoolTimeout, httpx.ConnectTimeout)) as info:
                await direct.request("GET", server.url + "/echo")
            server.release.set()
    finally:
        await direct.aclose()
    error = _translate(info.value, "GET", server.url)
    assert isinstance(error, ConnectError)
    assert error.maybe_processed is False
    assert server.count("/echo") == 0


@asyncio_only
async def test_direct_client_reuses_kept_alive_connections(server: _Server) -> None:
    """Sequential requests share one kept-alive connection."""
    direct = DirectClient(max_connections=4, timeout=httpx.Timeout(WAIT_S))
    try:
        for _ in range(5):
            response = await direct.request("GET", server.url + "/echo")
            assert response.status_code == 200
    finally:
        await direct.aclose()
    assert len(server.peers) == 1
    assert server.count("/echo") == 5


@asyncio_only
async def test_direct_client_ignores_cookies(server: _Server) -> None:
    """A cookie set by the server is never sent back (the API sets none; keeping one
    would tie requests together)."""
    direct = DirectClient(max_connections=2, timeout=httpx.Timeout(WAIT_S))
    try:
        first = await direct.request("GET", server.url + "/cookie")
        assert "session=abc" in first.headers["Set-Cookie"]
        seen = json.loads((await direct.request("GET", server.url + "/echo")).content)
    finally:
        await direct.aclose()
    assert headers_of(seen, "cookie") == []


@asyncio_only
async def test_direct_client_does_not_follow_redirects(server: _Server) -> None:
    """A redirect comes back as it is: the request is not sent again elsewhere."""
    direct = DirectClient(max_connections=2, timeout=httpx.Timeout(WAIT_S))
    try:
        response = await direct.request("POST", server.url + "/redirect", content=b"{}")
    finally:
        await direct.aclose()
    assert response.status_code == 302
    assert response.headers["Location"] == "/echo"
    assert server.count("/echo") == 0


@asyncio_only
async def test_direct_client_bounds_the_whole_exchange(server: _Server) -> None:
    """``timeout_s`` bounds the whole request, body included: a body trickled a byte at
    a time (which resets every per-read timeout) ends in a ReadTimeout."""
    direct = DirectClient(max_connections=2, timeout=httpx.Timeout(WAIT_S))
    try:
        with anyio.fail_after(WAIT_S), pytest.raises(httpx.ReadTimeout):
            await direct.request("GET", server.url + "/trickle", timeout_s=0.3)
    finally:
        await direct.aclose()


@asyncio_only
@pytest.mark.parametrize("name", ["huge", "huge-chunked", "huge-gzip"])
async def test_direct_client_caps_the_body(server: _Server, name: str) -> None:
    """A body over MAX_BODY_BYTES (declared, chunked, or decoded from gzip) is cut
    there and flagged; the client goes on working."""
    direct = DirectClient(max_connections=2, timeout=httpx.Timeout(WAIT_S))
    try:
        response = await direct.request("GET", server.url + "/" + name)
        assert response.truncated is True
        assert len(response.content) <= MAX_BODY_BYTES
        after = await direct.request("GET", server.url + "/echo")
        assert (after.status_code, after.truncated) == (200, False)
    finally:
        await direct.aclose()
    if name == "huge":  # refused on its Content-Length: that connection was dropped
        assert len(server.peers) == 2


@asyncio_only
async def test_sdk_fast_client_is_usage_error_after_close(server: _Server) -> None:
    """Once closed, the aiohttp path's client refuses calls with a UsageError (not
    aiohttp's RuntimeError), also after it has sent requests."""
    client = sdk(server.url, "aiohttp")
    await client.agents.get("a1")
    await client.aclose()
    with pytest.raises(UsageError, match="closed"):
        await client.agents.get("a1")
    assert server.count(AGENTS + "a1") == 1


# --- the call's deadline and the body cap, on both paths ---------------------------------


@both_paths
async def test_sdk_deadline_bounds_a_trickled_body(server: _Server, path: str) -> None:
    """A body trickled byte by byte (each byte resets the read timeout) ends at the
    policy's total deadline: RequestTimeout, once (it once hung for about 27 h)."""
    policy = RetryPolicy(timeout=0.5)
    async with sdk(server.url, path, timeout=WAIT_S, retry=policy) as client:
        with anyio.fail_after(WAIT_S), pytest.raises(RequestTimeout, match="deadline") as info:
            await client.agents.get("trickle", request_id="t-1")
    assert info.value.request_id == "t-1"
    assert server.count(AGENTS + "trickle") == 1


@both_paths
@pytest.mark.parametrize("name", ["huge", "huge-chunked", "huge-gzip"])
async def test_sdk_200_body_over_the_cap_is_a_response_error(
    server: _Server, path: str, name: str
) -> None:
    """A 200 body over MAX_BODY_BYTES is a ResponseError on either path, never retried."""
    async with sdk(server.url, path, retry=RetryPolicy.testing()) as client:
        with anyio.fail_after(WAIT_S), pytest.raises(ResponseError, match="over"):
            await client.agents.get(name)
    assert server.count(AGENTS + name) == 1


@both_paths
async def test_sdk_failure_body_over_the_cap_keeps_its_status(server: _Server, path: str) -> None:
    """A 502 whose body is over the cap is still a ServerError (its status decides)."""
    async with sdk(server.url, path, retry=RetryPolicy.none()) as client:
        with anyio.fail_after(WAIT_S), pytest.raises(ServerError) as info:
            await client.agents.get("huge-502")
    assert info.value.status_code == 502


# --- the mapping of aiohttp's errors -----------------------------------------------------


def test_map_aiohttp_error_keeps_sent_apart_from_not_sent() -> None:
    """Each aiohttp failure becomes the httpx error httpx's own transport would raise."""
    import aiohttp

    request = httpx.Request("GET", "http://127.0.0.1/x")
    cases: list[tuple[BaseException, type[httpx.TransportError], type[Exception]]] = [
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout, ConnectError),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout, RequestTimeout),
        (aiohttp.ServerTimeoutError(), httpx.ReadTimeout, RequestTimeout),
        (TimeoutError(), httpx.ReadTimeout, RequestTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError, ConnectionLost),
        (aiohttp.ClientPayloadError("cut"), httpx.ReadError, ConnectionLost),
        (aiohttp.ClientOSError(32, "broken pipe"), httpx.ReadError, ConnectionLost),
        (ConnectionResetError(), httpx.ReadError, ConnectionLost),
        (aiohttp.InvalidURL("x"), httpx.UnsupportedProtocol, ConnectionLost),
    ]
    for exc, expected, ours in cases:
        mapped = map_aiohttp_error(exc, request)
        assert type(mapped) is expected, exc
        assert mapped.request is request
        assert isinstance(_translate(mapped, "GET", "http://127.0.0.1/x"), ours), exc


def test_aiohttp_floor_has_the_mapped_error_classes() -> None:
    """The declared aiohttp floor has every class map_aiohttp_error names: they came in
    aiohttp 3.10, and on 3.9 the first failed request raised a bare AttributeError."""
    import re
    from pathlib import Path

    import aiohttp

    for name in ("ConnectionTimeoutError", "SocketTimeoutError", "NonHttpUrlClientError"):
        assert hasattr(aiohttp, name), name  # the installed version has them
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    floors = re.findall(r'"aiohttp>=(\d+)\.(\d+)', text)
    assert floors
    assert all((int(major), int(minor)) >= (3, 10) for major, minor in floors), floors


# --- the SDK on both paths ---------------------------------------------------------------


@both_paths
async def test_sdk_get_and_request_id(server: _Server, path: str) -> None:
    """A query goes through the path; the server's request id comes back on the result."""
    async with sdk(server.url, path) as client:
        agent = await client.agents.get("a1", request_id="req-1")
    assert agent.agent_id == "a1"
    assert agent.response is not None
    assert agent.response.request_id == "srv-req-1"
    seen = server.requests[-1]
    assert headers_of(seen, "x-request-id") == ["req-1"]
    assert headers_of(seen, "authorization")[0].startswith("Basic ")


@both_paths
async def test_sdk_api_error(server: _Server, path: str) -> None:
    """A 404 with a body becomes NotFoundError carrying the request id."""
    async with sdk(server.url, path, retry=RetryPolicy.none()) as client:
        with pytest.raises(NotFoundError) as info:
            await client.agents.get("missing", request_id="req-2")
    assert info.value.request_id == "srv-req-2"


@both_paths
async def test_sdk_timeout(server: _Server, path: str) -> None:
    """No answer within the timeout → RequestTimeout (may have been processed)."""
    async with sdk(server.url, path, timeout=0.2, retry=RetryPolicy.none()) as client:
        with pytest.raises(RequestTimeout):
            await client.agents.get("slow")


@both_paths
async def test_sdk_connection_refused(refused_url: str, path: str) -> None:
    """Nothing listening → ConnectError, surely not processed."""
    async with sdk(refused_url, path, retry=RetryPolicy.none()) as client:
        with pytest.raises(ConnectError) as info:
            await client.agents.get("a1")
    assert info.value.maybe_processed is False


@both_paths
async def test_sdk_dropped_connection(server: _Server, path: str) -> None:
    """Read, then dropped → ConnectionLost; the transport made exactly one attempt."""
    async with sdk(server.url, path, retry=RetryPolicy.none()) as client:
        with pytest.raises(ConnectionLost):
            await client.agents.get("drop")
    assert server.count(AGENTS + "drop") == 1


@both_paths
async def test_sdk_retries_are_the_sdks_own(server: _Server, path: str) -> None:
    """With 3 attempts allowed, a dropped GET reaches the server exactly 3 times."""
    policy = RetryPolicy(attempts=3, no_wait=True, budget=None)
    async with sdk(server.url, path, retry=policy) as client:
        with pytest.raises(ConnectionLost):
            await client.agents.get("drop")
        assert client.statistics().requests == 3
    assert server.count(AGENTS + "drop") == 3


@both_paths
async def test_sdk_bounds_requests_in_flight(server: _Server, path: str) -> None:
    """max_in_flight=2: the server never sees more than two requests at once."""
    async with sdk(server.url, path, max_in_flight=2) as client, anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(client.agents.get, "slow")
        await wait_until(lambda: server.active == 2, "two requests at the server")
        await anyio.sleep(0.05)
        server.release.set()
    assert server.max_active == 2
    assert len(server.peers) <= 2


@both_paths
async def test_sdk_gzip_body(server: _Server, path: str) -> None:
    """A gzip-encoded answer is decoded before it is parsed."""
    async with sdk(server.url, path) as client:
        agent = await client.agents.get("gzip-1")
    assert agent.agent_id == "gzip-1"
    assert headers_of(server.requests[-1], "accept-encoding")


@both_paths
async def test_sdk_query_string_is_httpx_encoded(server: _Server, path: str) -> None:
    """Query values reach the server exactly as httpx encodes them, on either path."""
    token = "a+b/c=d e~%é&x"
    async with sdk(server.url, path, retry=RetryPolicy.none()) as client:
        with contextlib.suppress(AgoraSTTError):  # the echo is not a task: only the query counts
            await client.legacy.query("t1", token)
    assert server.requests[-1]["query"] == str(httpx.QueryParams({"builderToken": token}))


@both_paths
async def test_sdk_aclose_closes_connections(server: _Server, path: str) -> None:
    """Closing the client closes its pooled connections."""
    client = sdk(server.url, path)
    await client.agents.get("a1")
    assert server.open_connections == 1
    await client.aclose()
    await wait_until(lambda: server.open_connections == 0, "connections closed")


@both_paths
async def test_sdk_sends_the_same_user_agent(server: _Server, path: str) -> None:
    """Both paths identify the SDK alike (not "python-httpx/..." on one, "aiohttp/..." on
    the other)."""
    async with sdk(server.url, path) as client:
        await client.agents.get("a1")
    assert headers_of(server.requests[-1], "user-agent") == [USER_AGENT]


@both_paths
async def test_sdk_result_pickles_with_its_headers(server: _Server, path: str) -> None:
    """A result and its response headers pickle on both paths (aiohttp's own header
    type does not), and the headers stay case-insensitive."""
    async with sdk(server.url, path) as client:
        agent = await client.agents.get("a1", request_id="p-1")
    copy = pickle.loads(pickle.dumps(agent))
    assert copy.response is not None
    assert copy.response.headers["x-request-id"] == "srv-p-1"
    assert isinstance(copy.response.headers, httpx.Headers)


@both_paths
async def test_sdk_request_id_that_cannot_be_a_header(server: _Server, path: str) -> None:
    """A request id with a newline is a ValidationError on both paths, before sending
    (aiohttp raised a bare ValueError, httpx a ConnectionLost that was retried)."""
    async with sdk(server.url, path) as client:
        with pytest.raises(ValidationError, match="request_id"):
            await client.agents.get("a1", request_id="a\r\nX-Injected: 1")
    assert server.requests == []


# --- the choice ----------------------------------------------------------------------------


async def test_sdk_automatic_choice(server: _Server, anyio_backend_name: str) -> None:
    """fast=None: aiohttp on asyncio, sharded httpx on trio; both work."""
    client = AsyncClient(
        app_id=APP_ID, customer_id="cid", customer_secret="secret", base_url=server.url
    )
    async with client:
        await client.agents.get("a1")
        auto = client._http._client
        assert isinstance(auto, AutoClient)
        if anyio_backend_name == "asyncio":
            assert isinstance(auto.chosen, DirectClient)
        else:
            assert isinstance(auto.chosen, httpx.AsyncClient)
            assert isinstance(auto.chosen._transport, ShardedTransport)
    assert auto.is_closed


@pytest.mark.parametrize("using", ["httpcore", "httpx"])
async def test_sdk_automatic_choice_yields_to_respx(anyio_backend_name: str, using: str) -> None:
    """While respx patches httpcore (its default) or httpx (``using="httpx"``), automatic
    clients go through httpx, so mocks see them (the httpx mode was bypassed on asyncio:
    requests went to aiohttp and the network)."""
    url = "https://api.agora.io" + AGENTS + "a1"
    async with respx.mock(assert_all_called=True, using=using) as mock:
        route = mock.get(url).respond(json={"agent_id": "a1", "status": "RUNNING"})
        async with AsyncClient(
            app_id=APP_ID, customer_id="cid", customer_secret="secret"
        ) as client:
            agent = await client.agents.get("a1")
    assert agent.agent_id == "a1"
    assert route.call_count == 1


@trio_only
async def test_sdk_fast_true_needs_asyncio() -> None:
    """fast=True inside a trio loop is a configuration error, said up front."""
    with pytest.raises(ConfigurationError, match="asyncio"):
        AsyncClient(app_id=APP_ID, customer_id="cid", customer_secret="secret", fast=True)


def test_sdk_fast_true_excludes_own_transport() -> None:
    """fast=True says nothing about a caller's transport: combining them is refused."""
    with pytest.raises(ConfigurationError, match="fast=True"):
        AsyncClient(
            app_id=APP_ID,
            customer_id="cid",
            customer_secret="secret",
            transport=httpx.MockTransport(lambda r: httpx.Response(200)),
            fast=True,
        )


@asyncio_only
async def test_sdk_automatic_choice_without_aiohttp(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without aiohttp importable, the automatic choice on asyncio is httpx's transport,
    and it works."""
    import sys

    monkeypatch.setitem(sys.modules, "aiohttp", None)  # `import aiohttp` now fails
    client = AsyncClient(
        app_id=APP_ID, customer_id="cid", customer_secret="secret", base_url=server.url
    )
    async with client:
        agent = await client.agents.get("a1")
        auto = client._http._client
        assert isinstance(auto, AutoClient)
        assert isinstance(auto.chosen, httpx.AsyncClient)
        assert isinstance(auto.chosen._transport, ShardedTransport)
    assert agent.agent_id == "a1"


def test_sdk_fast_true_without_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    """fast=True without aiohttp installed says how to install it."""
    import agora_stt_async._transports as transports

    monkeypatch.setattr(transports, "aiohttp_available", lambda: False)
    with pytest.raises(ConfigurationError, match=r"agora-stt-async\[fast\]"):
        AsyncClient(app_id=APP_ID, customer_id="cid", customer_secret="secret", fast=True)


@pytest.mark.parametrize(
    ("anyio_backend", "fast"),
    [
        pytest.param(("asyncio", {"debug": True}), None, id="asyncio-auto"),
        pytest.param(("trio", {}), None, id="trio-auto"),
        pytest.param(("asyncio", {"debug": True}), True, id="asyncio-fast"),
    ],
)
async def test_sdk_honours_proxies_from_the_environment(
    server: _Server, monkeypatch: pytest.MonkeyPatch, fast: bool | None
) -> None:
    """HTTP_PROXY is honoured as before: by httpx's default client, or by aiohttp (fast=True)."""
    monkeypatch.setenv("HTTP_PROXY", server.url)
    client = AsyncClient(
        app_id=APP_ID,
        customer_id="cid",
        customer_secret="secret",
        base_url="http://agora.invalid",
        allow_insecure=True,
        fast=fast,
    )
    async with client:
        agent = await client.agents.get("a1")
        used = client._http._client
        if fast:
            assert isinstance(used, AutoClient)
            assert isinstance(used.chosen, DirectClient)
        else:
            assert isinstance(used, httpx.AsyncClient)
            assert isinstance(used._transport, httpx.AsyncHTTPTransport)
    assert agent.agent_id == "a1"
    assert server.requests[-1]["proxied"] is True


# --- the emulator over loopback, through the SDK, on both paths -------------------------


@pytest.fixture
def emulator_url() -> Iterator[str]:
    """The emulator (uvicorn, in a thread) on a free loopback port, quick state changes."""
    from agora_stt_async.emulator import (
        EmulatorConfig,
        FaultConfig,
        ScheduledFault,
        create_app,
        serve,
    )

    config = EmulatorConfig(start_delay=0.05, stop_delay=0.05)
    faults = FaultConfig(
        schedule=(
            ScheduledFault("503", route="query", count=1),
            ScheduledFault("drop", route="query", count=1, skip=1),
        )
    )
    with serve(create_app(config, faults=faults, seed=8)) as base_url:
        yield base_url


def emulator_client(base_url: str, path: str, **kwargs: Any) -> AsyncClient:
    from agora_stt_async import _constants as C

    return AsyncClient(
        app_id=C.EMULATOR_APP_ID,
        customer_id=C.EMULATOR_CUSTOMER_ID,
        customer_secret=C.EMULATOR_CUSTOMER_SECRET,
        base_url=base_url,
        fast=path == "aiohttp",
        **kwargs,
    )


async def emulator_requests(base_url: str) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=base_url) as control:
        state = (await control.get("/_emulator/state")).json()
    return {route: int(n) for route, n in state["requests"].items()}


@both_paths
async def test_emulator_v7_lifecycle_through_session(emulator_url: str, path: str) -> None:
    """Session start → RUNNING → update → stop against the emulator; the scheduled 503 and
    dropped connection on the first queries are retried by the SDK, once each."""
    from agora_stt_async import AgentStatus, JoinRequest, RtcConfig, Session

    policy = RetryPolicy(attempts=3, no_wait=True, budget=None)
    with anyio.fail_after(20):
        async with (
            emulator_client(emulator_url, path, retry=policy) as client,
            Session(client) as session,
        ):
            join = JoinRequest(
                name="t-1", languages=["en-US"], rtc_config=RtcConfig("room-1", pub_bot_uid="1")
            )
            handle = await session.start("room-1", join)
            agent_id = handle.agent_id
            assert agent_id
            queried = await client.agents.get(agent_id)  # 503, dropped, then answered
            assert queried.agent_id == agent_id
            assert await handle.wait_for(AgentStatus.RUNNING, timeout=10) is AgentStatus.RUNNING
            await handle.update(languages=["en-US", "es-ES"])
            listed = [agent async for agent in client.agents.list()]
            await handle.stop(wait=True, timeout=10)
            stats = client.statistics()
    assert [a.status for a in listed if a.agent_id == agent_id] == [AgentStatus.RUNNING]
    assert stats.retries >= 2
    requests = await emulator_requests(emulator_url)
    assert requests["join"] == 1
    assert requests["update"] == 1
    assert requests["leave"] == 1


@both_paths
async def test_emulator_legacy_flow(emulator_url: str, path: str) -> None:
    """acquire → start → query → stop over the legacy API against the emulator."""
    from agora_stt_async import LegacyStartRequest, RtcConfig

    request = LegacyStartRequest(
        languages=["en-US"], rtc_config=RtcConfig("room-2", sub_bot_uid="1", pub_bot_uid="2")
    )
    with anyio.fail_after(20):
        async with emulator_client(emulator_url, path) as client:
            token = await client.legacy.acquire("instance-1")
            task = await client.legacy.start(token, request)
            queried = await client.legacy.query(task.task_id, token)
            await client.legacy.stop(task.task_id, token)
    assert queried.task_id == task.task_id
    requests = await emulator_requests(emulator_url)
    assert (requests["acquire"], requests["start"], requests["stop"]) == (1, 1, 1)


def test_lazy_headers_are_httpx_headers_built_on_first_use() -> None:
    """The aiohttp path's LazyHeaders defer httpx.Headers' work until read, then behave
    (lookups, repeated names, equality, pickling, copying) as the httpx.Headers they
    stand for."""
    raw = ((b"Content-Type", b"application/json"), (b"Set", b"a"), (b"set", b"b"))
    lazy = LazyHeaders(raw)
    assert set(vars(lazy)) == {"_pending_raw"}  # nothing built yet
    assert isinstance(lazy, httpx.Headers)
    assert lazy["content-type"] == "application/json"
    assert "_pending_raw" not in vars(lazy)  # built on that first read
    assert lazy["SET"] == "a, b"
    assert lazy == httpx.Headers(list(raw))
    unpickled = pickle.loads(pickle.dumps(LazyHeaders(raw)))
    assert type(unpickled) is httpx.Headers
    assert unpickled.get_list("set") == ["a", "b"]
    assert copy.copy(LazyHeaders(raw))["set"] == "a, b"
    with pytest.raises(AttributeError):
        _ = lazy.no_such_attribute
