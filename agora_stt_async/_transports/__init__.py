"""What sends the SDK's requests, and the choice between the paths.

httpx is the SDK's HTTP interface wherever a user sees it (``http_client=``,
``transport=``, respx). When the SDK makes its own client, ``AutoClient`` picks, on the
first request (the running library is only known inside the event loop):

- on **asyncio** with aiohttp installed (a default dependency): ``DirectClient``,
  ``HttpCore``'s requests sent by aiohttp directly, without httpx's request/response
  layer, which alone costs more CPU than aiohttp's whole request
  (``benchmarks/RESULTS.md``);
- on **trio**, without aiohttp, with ``fast=False``, or while respx (or anything else)
  has patched httpx (respx's ``using="httpx"`` mode) or httpcore's pool (its default
  mode): an ``httpx.AsyncClient`` over httpx's own transport, split into small pools
  (``ShardedTransport``) because the cost of httpcore's pool grows with the square of
  its size.

Either way the body is read up to ``MAX_BODY_BYTES`` and handed back as a
``ReadResponse`` (``_response``).

Proxies from the environment (``HTTPS_PROXY``, ...) are honoured as before: httpx
routes them only for a client built without a transport, so with proxies configured
the automatic choice is httpx's default client (``fast=True`` lets aiohttp read them).

This package is the only place the SDK imports asyncio or aiohttp.
"""

from __future__ import annotations

import asyncio
import importlib.util
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, final

import httpcore
import httpx

from agora_stt_async._errors import ConfigurationError
from agora_stt_async._transports._response import (
    MAX_BODY_BYTES,
    REQUEST_ID_HEADER,
    ReadResponse,
    read_httpx,
)
from agora_stt_async._transports._tls import default_ssl_context
from agora_stt_async._transports.sharded import ShardedTransport

if TYPE_CHECKING:
    from agora_stt_async._transports.direct import DirectClient

__all__ = [
    "MAX_BODY_BYTES",
    "REQUEST_ID_HEADER",
    "AutoClient",
    "ReadResponse",
    "ShardedTransport",
    "aiohttp_available",
    "auto_client",
    "current_async_library",
    "default_ssl_context",
    "environment_proxies",
    "read_httpx",
]

INSTALL_HINT: Final = "install it with: pip install 'agora-stt-async[fast]'"


def aiohttp_available() -> bool:
    """Whether aiohttp can be imported (without importing it)."""
    return importlib.util.find_spec("aiohttp") is not None


def current_async_library() -> str | None:
    """``"asyncio"``, ``"trio"``, ... or ``None`` outside an event loop (as sniffio says).

    Without sniffio there is no trio either (trio depends on it), so a running asyncio
    loop is the only one to look for.
    """
    try:
        import sniffio
    except ImportError:  # pragma: no cover - sniffio comes with trio and most installs
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        return "asyncio"
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None


def _patched(method: object, package: str) -> bool:
    return not getattr(method, "__module__", "").startswith(package)


def _httpx_mocked() -> bool:
    """Whether a mocking library has patched httpx for this process: respx's default
    mode replaces httpcore's pool, its ``using="httpx"`` mode replaces how
    ``httpx.AsyncClient`` picks a transport.

    Looks at where those methods were defined, so it does not matter whether the patch
    was applied before or after this module was imported.
    """
    return _patched(httpcore.AsyncConnectionPool.handle_async_request, "httpcore.") or _patched(
        httpx.AsyncClient._transport_for_url, "httpx."
    )


def environment_proxies() -> bool:
    """Whether the environment names an HTTP(S) proxy, read as httpx reads it."""
    found = urllib.request.getproxies()
    return any(found.get(scheme) for scheme in ("http", "https", "all"))


def auto_client(
    limits: httpx.Limits, *, timeout: httpx.Timeout, fast: bool | None
) -> httpx.AsyncClient | AutoClient:
    """The client ``HttpCore`` sends through when the user gave it neither a client nor
    a transport: an ``AutoClient`` (see there).

    With a proxy named in the environment and ``fast`` not ``True``, httpx's default
    client instead, which routes proxies from the environment as before.

    Raises:
        ConfigurationError: ``fast=True`` without aiohttp, or inside a non-asyncio loop.
    """
    proxies = environment_proxies()
    if proxies and not fast:
        return httpx.AsyncClient(timeout=timeout, limits=limits)
    return AutoClient(limits=limits, timeout=timeout, fast=fast, trust_env=proxies)


@final
class AutoClient:
    """Sends ``HttpCore``'s requests by aiohttp directly (``DirectClient``) on asyncio
    when aiohttp is installed, else through an ``httpx.AsyncClient`` over
    ``ShardedTransport``; chosen on the first request (inside the loop), then kept.

    Args:
        limits: the pool's size, whichever path is chosen.
        timeout: httpx's timeout, applied on either path.
        fast: ``None`` = aiohttp on asyncio when installed, else httpx; ``True`` =
            aiohttp, or ``ConfigurationError`` if it is missing or the loop is not
            asyncio; ``False`` = httpx.
        trust_env: let aiohttp route through proxies named in the environment.

    While httpx or httpcore is patched (``respx.mock``, either mode), requests of an
    automatic choice go through httpx, so the mock sees them.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        timeout: httpx.Timeout,
        fast: bool | None = None,
        trust_env: bool = False,
    ) -> None:
        if fast and not aiohttp_available():
            raise ConfigurationError(f"fast=True needs aiohttp; {INSTALL_HINT}")
        self._fast = fast
        self._limits = limits
        self._timeout = timeout
        self._trust_env = trust_env
        self._ssl = default_ssl_context()  # here, outside the loop: loading it blocks
        self._direct: DirectClient | None = None
        self._httpx: httpx.AsyncClient | None = None
        self._closed = False
        if fast:
            _check_asyncio()

    @property
    def chosen(self) -> DirectClient | httpx.AsyncClient | None:
        """What the first request chose (``None`` before it)."""
        return self._direct or self._httpx

    @property
    def is_closed(self) -> bool:
        return self._closed

    def _httpx_client(self) -> httpx.AsyncClient:
        if self._httpx is None:
            self._httpx = httpx.AsyncClient(
                transport=ShardedTransport(limits=self._limits, verify=self._ssl),
                timeout=self._timeout,
                limits=self._limits,
            )
        return self._httpx

    def _choose(self) -> None:
        if self._closed:
            raise RuntimeError("this client is closed")
        if self._fast:
            _check_asyncio()
        wanted = self._fast or (self._fast is None and not _httpx_mocked())
        if wanted and current_async_library() == "asyncio" and aiohttp_available():
            from agora_stt_async._transports.direct import DirectClient

            self._direct = DirectClient(
                max_connections=self._limits.max_connections or 100,
                timeout=self._timeout,
                verify=self._ssl,
                trust_env=self._trust_env,
            )
        else:
            self._httpx_client()

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
        """Send one request on the chosen path and read its body (at most
        ``MAX_BODY_BYTES``), all within ``timeout_s`` seconds (``None``: no overall
        bound); raise httpx's exceptions on failure."""
        if self._direct is None and self._httpx is None:
            self._choose()
        direct = self._direct
        if direct is not None and (self._fast or not _httpx_mocked()):
            return await direct.request(
                method, url, params=params, content=content, headers=headers, timeout_s=timeout_s
            )
        return await read_httpx(
            self._httpx_client(),
            method,
            url,
            params=params,
            content=content,
            headers=headers,
            timeout_s=timeout_s,
        )

    async def aclose(self) -> None:
        self._closed = True
        direct, client = self._direct, self._httpx
        self._direct = self._httpx = None
        if direct is not None:
            await direct.aclose()
        if client is not None:
            await client.aclose()


def _check_asyncio() -> None:
    library = current_async_library()
    if library not in (None, "asyncio"):
        raise ConfigurationError(
            f"fast=True needs asyncio, but this is {library}; use fast=None to choose automatically"
        )
