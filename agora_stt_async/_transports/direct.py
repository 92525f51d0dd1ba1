"""The SDK's fast path on asyncio: ``HttpCore``'s requests sent by aiohttp directly.

An ``httpx.AsyncClient`` over an aiohttp transport still costs about three times raw
aiohttp's CPU per request: httpx's own request and response layer (URL parsing and
merging, header models, the cookie jar, the body stream) costs more than aiohttp's
whole request (``benchmarks/RESULTS.md``). ``HttpCore`` needs very little of it: send
a method, an absolute URL, query parameters, headers and a body; read back the status,
the headers and the body. ``DirectClient`` does exactly that on one aiohttp session.

httpx is still the interface wherever a user sees it: a client passed with
``http_client=`` or a ``transport=`` goes through httpx as before, and while respx (or
anything else) has patched httpcore, an automatic client sends through httpx so the
mock sees the requests (``AutoClient``).

Behaviour matches httpx's own path: the query string is encoded by httpx
(``httpx.QueryParams``), errors are mapped to httpx's exceptions (``map_aiohttp_error``:
"not sent" apart from "maybe sent"), no redirects, no cookies, no hidden second
attempt, ``Content-Encoding`` decoded, httpx's ``Timeout`` applied to every request, and
the body read up to ``MAX_BODY_BYTES`` (decoded) like ``read_httpx`` does.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from typing import Final, final

import aiohttp
import httpx
import yarl

from agora_stt_async._transports._response import (
    MAX_BODY_BYTES,
    REQUEST_ID_HEADER,
    RETRY_AFTER_HEADER,
    LazyHeaders,
    ReadResponse,
    declared_too_large,
)
from agora_stt_async._transports.aiohttp import (
    KEEPALIVE_EXPIRY_S,
    client_timeout,
    map_aiohttp_error,
    open_session,
)

__all__ = ["DirectClient", "DirectResponse"]

_ENCODED: Final = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
"""A URL made only of these characters is sent as is (httpx would not change it)."""

DirectResponse: Final = ReadResponse
"""What ``DirectClient.request`` returns (the same type as the httpx path's)."""


async def _read_capped(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The body (decoded) and whether it passed ``MAX_BODY_BYTES`` (then cut there, and
    the connection closed instead of going back to the pool)."""
    if declared_too_large(response.content_length):
        response.close()
        return b"", True
    if response.content_length is not None and "Content-Encoding" not in response.headers:
        return await response.read(), False  # bounded by Content-Length: the fast path
    body = bytearray()
    async for chunk in response.content.iter_any():  # chunked, or decoded: count it
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            response.close()
            return bytes(body[:MAX_BODY_BYTES]), True
    return bytes(body), False


def _url(target: str) -> yarl.URL:
    # Already encoded (the SDK's paths, httpx's query string): no second quoting pass.
    return yarl.URL(target, encoded=_ENCODED.fullmatch(target) is not None)


@final
class DirectClient:
    """``HttpCore``'s requests on one aiohttp session (asyncio only; made in the loop).

    Args:
        max_connections: connections open at once (the SDK's ``max_in_flight``).
        timeout: httpx's timeout, applied to every request as httpx would.
        verify: TLS verification (``True``, ``False`` or an ``ssl.SSLContext``).
        trust_env: route through proxies named in the environment.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        timeout: httpx.Timeout,
        verify: ssl.SSLContext | bool = True,
        trust_env: bool = False,
    ) -> None:
        self._max_connections = max_connections
        self._timeout = client_timeout(timeout.as_dict())
        self._verify = verify
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def is_closed(self) -> bool:
        return self._closed

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this client is closed")
        self._session = open_session(
            max_connections=self._max_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
            verify=self._verify,
            trust_env=self._trust_env,
            decompress=True,
        )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> ReadResponse:
        """Send one request and read its body (at most ``MAX_BODY_BYTES``), all within
        ``timeout_s`` seconds (``None``: only httpx's per-step timeouts, which cannot stop
        a body trickled byte by byte); raise httpx's ``TransportError`` subclasses on
        failure (running out of ``timeout_s`` is a ``ReadTimeout``)."""
        session = self._session or self._open()
        target = f"{url}?{httpx.QueryParams(params)}" if params else url
        timeout = self._timeout
        if timeout_s is not None:
            # aiohttp's own ``total`` (one timer handle), rather than an anyio cancel
            # scope around the call: the same bound for a fraction of the CPU, which
            # this path exists to save (about 10 us a request, 5 % of the SDK's cost).
            timeout = aiohttp.ClientTimeout(
                total=timeout_s,
                connect=timeout.connect,
                sock_connect=timeout.sock_connect,
                sock_read=timeout.sock_read,
            )
        try:
            async with session.request(
                method,
                _url(target),
                headers=headers,
                data=content,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                body, truncated = await _read_capped(response)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise map_aiohttp_error(exc, httpx.Request(method, target)) from exc
        # httpx.Headers, as on the httpx path: case-insensitive, repeated headers
        # joined alike, and picklable (aiohttp's CIMultiDictProxy is not, and the
        # headers end up on every result's ``response``); built only if read.
        native = response.headers
        return ReadResponse(
            response.status,
            LazyHeaders(response.raw_headers),
            body,
            target,
            truncated,
            request_id=native.get(REQUEST_ID_HEADER),
            retry_after=native.get(RETRY_AFTER_HEADER),
        )

    async def aclose(self) -> None:
        """Close the session and its connections; later requests raise ``RuntimeError``."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
