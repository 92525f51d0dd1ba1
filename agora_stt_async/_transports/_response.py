"""What ``HttpCore`` reads of a response, on either path, and the cap on its body.

Both paths (aiohttp directly, ``DirectClient``; httpx, ``read_httpx``) hand back a
``ReadResponse``: status, headers, the body read in full (or up to ``MAX_BODY_BYTES``)
and the URL. Nothing here imports aiohttp, so the httpx path works without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, final

import anyio
import httpx

__all__ = [
    "MAX_BODY_BYTES",
    "REQUEST_ID_HEADER",
    "RETRY_AFTER_HEADER",
    "LazyHeaders",
    "ReadResponse",
    "content_length",
    "declared_too_large",
    "read_httpx",
]

MAX_BODY_BYTES: Final = 4 * 1024 * 1024
"""The largest response body the SDK reads (after ``Content-Encoding`` is decoded).

Why 4 MiB: the API's largest answer is a list page; at about 110 bytes per agent, even a
page of 10,000 agents (the emulator serves at most 100 per page, Agora's maximum is
undocumented) is about 1.1 MB. A body past 4 MiB is not an answer of this API: a gateway
gone wrong, or a hostile server. Reading it whole would cost memory per request in
flight (64 by default) and, for a body trickled byte by byte, time; a cap bounds both.
"""

_READ: Final = httpx.ByteStream(b"")
"""What an httpx response's ``stream`` becomes once its body has been read."""


REQUEST_ID_HEADER: Final = "X-Request-Id"
RETRY_AFTER_HEADER: Final = "Retry-After"


@final
class ReadResponse:
    """A response read in full: status, headers, body, URL.

    ``truncated`` is ``True`` when the body was larger than ``MAX_BODY_BYTES``: then
    ``content`` holds at most that many of its first bytes (none when the declared
    ``Content-Length`` already said so), and the rest is dropped with the connection
    (unless it had already arrived whole, leaving the connection clean).

    ``request_id`` and ``retry_after`` are the two headers ``HttpCore`` reads on every
    response, looked up by the transport in its own header type (cheaply, without
    building ``headers`` on the aiohttp path; see ``LazyHeaders``).
    """

    __slots__ = (
        "content",
        "headers",
        "request_id",
        "retry_after",
        "status_code",
        "truncated",
        "url",
    )

    def __init__(
        self,
        status_code: int,
        headers: Mapping[str, str],
        content: bytes,
        url: str,
        truncated: bool = False,
        *,
        request_id: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        """An ``httpx.Headers``, as on an ``httpx.Response``."""
        self.content = content
        self.url = url
        self.truncated = truncated
        self.request_id = request_id
        self.retry_after = retry_after

    @property
    def request(self) -> ReadResponse:
        """``response.request.url``, as on an ``httpx.Response``."""
        return self

    def __repr__(self) -> str:
        return f"<ReadResponse [{self.status_code}]>"


def content_length(header: str | None) -> int | None:
    """A ``Content-Length`` header's value; ``None`` if missing or not a number."""
    if header is None:
        return None
    text = header.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 20 else None


def declared_too_large(length: int | None) -> bool:
    """Whether a declared body length is more than ``MAX_BODY_BYTES``."""
    return length is not None and length > MAX_BODY_BYTES


async def read_httpx(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    params: Mapping[str, str | int] | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> ReadResponse:
    """Send one request through ``client`` and read its body, at most ``MAX_BODY_BYTES``
    of it (decoded); raise httpx's exceptions as ``client.request`` would.

    What ``client.request`` does (build, send, read), with the read capped and the whole
    exchange bounded by ``timeout_s`` seconds (``None``: only the client's own timeouts,
    which apply to each step and so cannot stop a body trickled byte by byte). Running
    out raises ``httpx.ReadTimeout``: by then the request may have been sent.
    """
    request = client.build_request(method, url, params=params, content=content, headers=headers)
    with anyio.move_on_after(timeout_s) as scope:
        response = await client.send(request, stream=True)
        try:
            body, truncated = await _read_capped(response)
        except BaseException:
            with anyio.CancelScope(shield=True):  # closed even when the time ran out
                await response.aclose()
            raise
        if truncated:  # the rest is not read: the connection goes with it
            with anyio.CancelScope(shield=True):
                await response.aclose()
    if scope.cancelled_caught:
        raise httpx.ReadTimeout("no complete answer within the time left", request=request)
    # Drop the body stream, which points back at the response (httpx's
    # BoundAsyncStream), so the response, its request and the pool's bookkeeping are
    # freed at once by reference counting rather than left for the cyclic GC (whose
    # oldest generation runs rarely: a long listing's memory would climb with it).
    response.stream = _READ
    headers = response.headers
    return ReadResponse(
        response.status_code,
        headers,
        body,
        str(request.url),
        truncated,
        request_id=headers.get(REQUEST_ID_HEADER),
        retry_after=headers.get(RETRY_AFTER_HEADER),
    )


class LazyHeaders(httpx.Headers):
    """An ``httpx.Headers`` built from raw ``(name, value)`` byte pairs when first used.

    Building an ``httpx.Headers`` costs about as much as a tenth of an aiohttp request,
    and most results' headers are never read: the aiohttp path hands this out instead,
    and ``HttpCore`` reads the two headers it needs from ``ReadResponse``. Whatever
    ``httpx.Headers`` keeps is set by its own ``__init__``, on the first access to an
    attribute the instance lacks (no private name of httpx's is relied on). Pickles and
    compares as the headers it stands for.
    """

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        self.__dict__["_pending_raw"] = raw  # not httpx's __init__: that is deferred

    def __getattr__(self, name: str) -> Any:
        raw = self.__dict__.pop("_pending_raw", None)
        if raw is None:  # built already (or being unpickled): a real miss
            raise AttributeError(name)
        httpx.Headers.__init__(self, list(raw))
        return getattr(self, name)

    def __reduce__(self) -> tuple[type[httpx.Headers], tuple[list[tuple[str, str]]]]:
        return httpx.Headers, (list(self.multi_items()),)


async def _read_capped(response: httpx.Response) -> tuple[bytes, bool]:
    """The body (decoded), and whether it passed ``MAX_BODY_BYTES`` (then cut there, the
    rest unread; the caller closes the response)."""
    length = content_length(response.headers.get("Content-Length"))
    if declared_too_large(length):
        return b"", True
    if length is not None and "Content-Encoding" not in response.headers:
        # Bounded by its Content-Length (the HTTP parser reads no more): httpx's own read,
        # which also closes the response. The common case, and the cheapest.
        return await response.aread(), False
    chunks: list[bytes] = []
    size = 0
    truncated = False
    # Past the cap the read is stopped by cancelling it, not by leaving the loop: httpx
    # reads through a chain of async generators, and leaving it early would strand the
    # inner ones (trio warns, and they would be finalized later); a cancellation at the
    # next read unwinds them all.
    with anyio.CancelScope() as stop:
        async for chunk in response.aiter_bytes():
            if truncated:
                continue  # until the cancellation lands
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                chunks.append(chunk[: len(chunk) - (size - MAX_BODY_BYTES)])
                truncated = True
                stop.cancel()
                continue
            chunks.append(chunk)
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), truncated
