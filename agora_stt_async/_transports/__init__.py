"""The transports the SDK ships, and the choice between them.

httpx is the SDK's HTTP interface everywhere. What moves bytes under it is chosen here:

- on **asyncio** with aiohttp installed (the ``fast`` extra), ``AiohttpTransport``, a
  few times cheaper in CPU per request than httpx's own socket transport, whose
  connection pool's cost grows with the number of requests in flight
  (``benchmarks/TRANSPORT.md`` has the numbers);
- on **trio**, without aiohttp, with ``fast=False``, or while respx (or anything
  else) has patched httpcore's pool to intercept requests, httpx's own
  ``AsyncHTTPTransport``, split into small pools (``ShardedTransport``) because the
  cost of httpcore's pool grows with the square of its size.

The running library is only known inside the event loop, and ``AsyncClient`` may be
built outside one, so ``AutoTransport`` decides on its first request. This package is
the only place the SDK imports asyncio or aiohttp.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
from typing import Final, final

import httpcore
import httpx

from agora_stt_async._errors import ConfigurationError
from agora_stt_async._transports._tls import default_ssl_context
from agora_stt_async._transports.sharded import ShardedTransport

__all__ = [
    "AutoTransport",
    "ShardedTransport",
    "aiohttp_available",
    "auto_transport",
    "current_async_library",
    "default_ssl_context",
    "default_transport",
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


def _httpcore_patched() -> bool:
    """Whether a mocking library (respx's default mode) has replaced httpcore's pool.

    Looks at where the pool's method was defined, so it does not matter whether the
    patch was applied before or after this module was imported.
    """
    method = httpcore.AsyncConnectionPool.handle_async_request
    return not getattr(method, "__module__", "").startswith("httpcore.")


def default_transport(
    max_connections: int, *, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncBaseTransport | None:
    """The aiohttp transport when running on asyncio with aiohttp installed, else ``None``.

    ``None`` means "httpx's own transport". Call it inside the event loop.
    """
    if current_async_library() != "asyncio" or not aiohttp_available():
        return None
    from agora_stt_async._transports.aiohttp import AiohttpTransport

    return AiohttpTransport(max_connections=max_connections, verify=verify)


def auto_transport(limits: httpx.Limits, *, fast: bool | None) -> httpx.AsyncBaseTransport:
    """The transport for a client the SDK creates: an ``AutoTransport`` (see there).

    Raises:
        ConfigurationError: ``fast=True`` without aiohttp, or inside a non-asyncio loop.
    """
    return AutoTransport(limits=limits, fast=fast)


@final
class AutoTransport(httpx.AsyncBaseTransport):
    """Picks aiohttp or httpx's own transport on the first request, then keeps it.

    Args:
        limits: the pool's size, applied to whichever transport is chosen.
        fast: ``None`` = aiohttp on asyncio when installed, else httpx; ``True`` =
            aiohttp, or ``ConfigurationError`` if it is missing or the loop is not
            asyncio; ``False`` = httpx (``ShardedTransport``).

    While httpcore's pool is patched (``respx.mock``), requests of an automatic choice
    go through httpx's transport, so the mock sees them.
    """

    def __init__(self, *, limits: httpx.Limits, fast: bool | None = None) -> None:
        if fast and not aiohttp_available():
            raise ConfigurationError(f"fast=True needs aiohttp; {INSTALL_HINT}")
        self._fast = fast
        self._limits = limits
        # Here, usually outside the loop, as httpx.AsyncClient() does: loading the CA
        # bundle takes tens of milliseconds that would otherwise block the loop.
        self._ssl = default_ssl_context()
        self._chosen: httpx.AsyncBaseTransport | None = None
        self._native: ShardedTransport | None = None
        self._closed = False
        if fast:
            self._check_library()

    @property
    def chosen(self) -> httpx.AsyncBaseTransport | None:
        """The transport in use, once the first request has chosen it."""
        return self._chosen

    def _check_library(self) -> None:
        library = current_async_library()
        if library not in (None, "asyncio"):
            raise ConfigurationError(
                f"fast=True needs asyncio, but this is {library}; "
                "use fast=None to choose automatically"
            )

    def _native_transport(self) -> ShardedTransport:
        if self._native is None:
            self._native = ShardedTransport(limits=self._limits, verify=self._ssl)
        return self._native

    def _choose(self) -> httpx.AsyncBaseTransport:
        if self._closed:
            raise RuntimeError("this transport is closed")
        if self._fast:
            self._check_library()
        fast: httpx.AsyncBaseTransport | None = None
        max_connections = self._limits.max_connections or 100
        if self._fast or (self._fast is None and not _httpcore_patched()):
            fast = default_transport(max_connections, verify=self._ssl)
        self._chosen = fast if fast is not None else self._native_transport()
        return self._chosen

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self._chosen or self._choose()
        if transport is not self._native and self._fast is None and _httpcore_patched():
            transport = self._native_transport()
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        self._closed = True
        chosen, native = self._chosen, self._native
        self._chosen = self._native = None
        if chosen is not None and chosen is not native:
            await chosen.aclose()
        if native is not None:
            await native.aclose()
