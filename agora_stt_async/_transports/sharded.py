"""httpx's own transport, as several small connection pools instead of one large one.

httpcore's pool re-examines every connection each time a request arrives or a
response closes: ``has_expired()`` (a ``poll()`` of the socket through anyio's
``extra_attributes``, ~10 µs) for each connection, plus ``is_idle()`` of every
connection *for each idle one* (httpcore 1.0.9 ``_assign_requests_to_connections``).
The work per request therefore grows with the square of the pool size: measured here,
2 ms of client CPU per request at 10 connections and 4 to 9 ms at 50 to 200
(``benchmarks/RESULTS.md``). No httpx setting avoids it.

``ShardedTransport`` splits the pool into shards of at most ``shard_size``
connections and sends each request to the shard with the fewest requests in flight.
The total stays ``limits.max_connections``; with the SDK's limiter holding the number
in flight to that total, the least loaded shard always has a free connection, so no
request queues behind a busy shard while another is idle. It is still httpx's
transport (respx, proxies from the environment and HTTP/1.1 behave the same).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Final, final

import httpx

from agora_stt_async._transports._tls import ssl_context

__all__ = ["DEFAULT_SHARD_SIZE", "ShardedTransport"]

DEFAULT_SHARD_SIZE: Final = 8
"""Connections per shard: 4 and 8 measured alike, 16 already slower."""


@final
class _CountedStream(httpx.AsyncByteStream):
    """A response body that gives its shard's slot back when closed."""

    __slots__ = ("_index", "_load", "_open", "_stream")

    def __init__(self, stream: httpx.AsyncByteStream, load: list[int], index: int) -> None:
        self._stream = stream
        self._load = load
        self._index = index
        self._open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            self._load[self._index] -= 1
        await self._stream.aclose()


@final
class ShardedTransport(httpx.AsyncBaseTransport):
    """Several ``httpx.AsyncHTTPTransport`` pools, least loaded first.

    Args:
        limits: the total; ``max_connections`` is split into shards of at most
            ``shard_size`` (``None`` = one shard, httpx's own behaviour).
        shard_size: connections per shard.
        verify: as for ``httpx.AsyncHTTPTransport``; one TLS context serves all shards.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        shard_size: int = DEFAULT_SHARD_SIZE,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        total = limits.max_connections
        count = 1 if total is None else max(1, -(-total // shard_size))
        per = None if total is None else -(-total // count)
        keepalive = limits.max_keepalive_connections
        shard_limits = httpx.Limits(
            max_connections=per,
            max_keepalive_connections=(
                per if keepalive is None or per is None else min(per, -(-keepalive // count))
            ),
            keepalive_expiry=limits.keepalive_expiry,
        )
        context = ssl_context(verify)
        self._shards: Final = tuple(
            httpx.AsyncHTTPTransport(verify=context, limits=shard_limits) for _ in range(count)
        )
        self._load: Final = [0] * count

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    def in_flight(self) -> tuple[int, ...]:
        """Requests in flight per shard (sent, body not yet closed)."""
        return tuple(self._load)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        load = self._load
        index = load.index(min(load)) if len(load) > 1 else 0
        load[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            load[index] -= 1
            raise
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _CountedStream(stream, load, index)
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()
