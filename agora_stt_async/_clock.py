"""Time, injected: the only module of the SDK that reads the real clock.

Deadlines that must survive a restart (the builder-token window) use wall-clock Unix
seconds (``now()``); timeouts use ``monotonic()``. Tests pass a ``FakeClock``
(``agora_stt_async.testing``) that jumps five minutes at once on asyncio and trio.
"""

from __future__ import annotations

import time
from typing import Protocol, final, runtime_checkable

import anyio


@runtime_checkable
class Clock(Protocol):
    """What the SDK needs from a clock."""

    def now(self) -> float:
        """Wall-clock Unix time in seconds."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (or return at once on a clock that jumps)."""
        ...


@final
class SystemClock:
    """The real clock: ``time.time``, ``time.monotonic`` and ``anyio.sleep``."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"
