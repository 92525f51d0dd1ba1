"""An ``httpx.AsyncBaseTransport`` over one ``aiohttp.ClientSession`` (asyncio only),
and the aiohttp pieces the SDK's own fast path (``direct.DirectClient``) shares with it:
the session as the SDK configures it (``open_session``), httpx's timeouts for aiohttp
(``client_timeout``) and aiohttp's errors as httpx's (``map_aiohttp_error``).

``AiohttpTransport`` is not used by the SDK: its requests go through ``DirectClient``,
because an ``httpx.AsyncClient`` over this transport, or over
``httpx_aiohttp.AiohttpTransport``, still costs about three times raw aiohttp's CPU per
request (httpx's own client layer; the two measured alike,
``httpx_ours_vs_httpx_aiohttp_cpu_ratio`` in ``benchmarks/RESULTS.md``). It is kept for
two users outside the package, and should go when they do: ``benchmarks/transport.py``
(the ``httpx_ours`` path, the measurement that justifies ``DirectClient``) and
``tests/test_transports.py``, whose transport-level cases run the aiohttp pieces
``DirectClient`` shares (``open_session``, ``client_timeout``, ``map_aiohttp_error``)
through httpx's interface, side by side with httpx's own transport.

What this adapter does, and why it is not ``httpx_aiohttp.AiohttpTransport`` as is:

- **Reads each body fully** and returns an ``httpx.Response`` holding the bytes: the
  API's bodies are small.
- **Maps aiohttp's exceptions to httpx's own**, as ``HttpCore`` expects them: "not
  sent" (``ConnectError``/``ConnectTimeout``) is kept apart from "sent, then lost"
  (``RemoteProtocolError``/``ReadError``), because a start must never be retried on a
  guess. httpx_aiohttp maps a dropped connection to ``ConnectTimeout``.
- **Leaves cookies, redirects and decompression to httpx**: the session has a
  ``DummyCookieJar``, never follows redirects and never decompresses.
- **Makes no attempt of its own**: aiohttp silently resends a GET or DELETE once when
  a kept-alive connection drops; that is switched off so that every attempt is the
  SDK's, counted, logged and charged to the retry budget.

The session is created lazily, inside the running event loop, on the first request;
``aclose()`` closes it. Timeouts come from ``request.extensions["timeout"]``:
``connect`` → ``sock_connect``, ``pool + connect`` → ``connect`` (aiohttp's name for
"get a connection, from the pool or new"), ``read`` → ``sock_read``. aiohttp has no
write timeout; the API's request bodies are a few hundred bytes.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Final, final

import aiohttp
import httpx
import yarl

from agora_stt_async._transports._tls import ssl_context

__all__ = ["AiohttpTransport", "client_timeout", "map_aiohttp_error", "open_session"]

KEEPALIVE_EXPIRY_S: Final = 5.0
"""httpx's default ``keepalive_expiry``, so both paths hold idle sockets alike."""
_HTTP11: Final = b"HTTP/1.1"


def map_aiohttp_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """aiohttp's exception → the httpx exception httpx's own transport would raise.

    The most specific class is tested first. "Not sent" comes out as ``ConnectError``,
    ``ConnectTimeout`` or ``PoolTimeout``; "sent, no (complete) answer" as
    ``ReadTimeout``, ``RemoteProtocolError`` or ``ReadError``. Anything unexpected is
    treated as "maybe sent" (``ReadError``), never as safe to resend.
    """
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        # aiohttp's `connect` covers waiting for a pooled connection and opening one:
        # either way nothing was sent.
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # DNS, refused, TLS handshake
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError)):
        return httpx.UnsupportedProtocol(message, request=request)
    if isinstance(exc, TimeoutError):  # SocketTimeoutError, ServerTimeoutError, total
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError)):
        # Closed, or answered with something that is not HTTP, after the request went.
        return httpx.RemoteProtocolError(message, request=request)
    return httpx.ReadError(message, request=request)  # payload, reset, broken pipe, ...


def client_timeout(timeout: Mapping[str, float | None] | None) -> aiohttp.ClientTimeout:
    """httpx's timeout (``Timeout.as_dict()`` or a request's extension) for aiohttp."""
    if not timeout:
        return aiohttp.ClientTimeout()
    connect = timeout.get("connect")
    pool = timeout.get("pool")
    acquire = None if connect is None or pool is None else connect + pool
    return aiohttp.ClientTimeout(
        total=None, connect=acquire, sock_connect=connect, sock_read=timeout.get("read")
    )


def open_session(
    *,
    max_connections: int,
    keepalive_expiry: float | None,
    verify: ssl.SSLContext | bool,
    trust_env: bool,
    decompress: bool,
) -> aiohttp.ClientSession:
    """An aiohttp session as the SDK uses it (call inside the running event loop).

    No cookies (httpx keeps them, and the API sets none), no redirects (per request),
    no hidden second attempt, at most ``max_connections`` connections across hosts.
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,  # the total is what the SDK sizes, across failover hosts
        keepalive_timeout=keepalive_expiry,
        ssl=ssl_context(verify),
    )
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=decompress,
        trust_env=trust_env,
        timeout=aiohttp.ClientTimeout(),
    )
    if "_retry_connection" in aiohttp.ClientSession.ATTRS:
        # No hidden second attempt for GET/DELETE on a dropped keep-alive socket.
        session._retry_connection = False
    return session


@final
class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests through one aiohttp session (asyncio only).

    Args:
        max_connections: connections open at once, in use or idle (aiohttp's
            ``limit``); the SDK sizes it to its own in-flight limiter.
        keepalive_expiry: seconds an idle connection is kept (httpx's default: 5).
        verify: ``True`` for httpx's default TLS context (certifi, ``SSL_CERT_FILE``),
            ``False`` to skip verification, or your own ``ssl.SSLContext``.
        trust_env: let aiohttp route through proxies named in the environment
            (``HTTPS_PROXY``, ``NO_PROXY``, ...). Off by default: an ``httpx.AsyncClient``
            over this transport does not do it either.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float | None = KEEPALIVE_EXPIRY_S,
        verify: ssl.SSLContext | bool = True,
        trust_env: bool = False,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.max_connections: Final = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._verify = verify
        self.trust_env: Final = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The aiohttp session, once the first request has opened it."""
        return self._session

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this transport is closed")
        self._session = open_session(
            max_connections=self.max_connections,
            keepalive_expiry=self._keepalive_expiry,
            verify=self._verify,
            trust_env=self.trust_env,
            decompress=False,  # httpx decodes Content-Encoding itself
        )
        return self._session

    def _timeout_for(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        spec = request.extensions.get("timeout")
        if not spec:
            return client_timeout(None)
        key = (spec.get("connect"), spec.get("read"), spec.get("write"), spec.get("pool"))
        cached = self._timeouts.get(key)
        if cached is None:
            if len(self._timeouts) > 64:  # per-call timeouts vary; keep the cache small
                self._timeouts.clear()
            cached = self._timeouts[key] = client_timeout(spec)
        return cached

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = await request.aread()
        try:
            async with session.request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout_for(request),
            ) as response:
                content = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise map_aiohttp_error(exc, request) from exc
        extensions: dict[str, object] = {"http_version": _HTTP11}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("ascii", "replace")
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            content=content,
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        """Close the session and its connections; later requests raise ``RuntimeError``."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
