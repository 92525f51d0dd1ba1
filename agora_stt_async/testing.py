"""Helpers for users' own test suites: pytest fixtures around the emulator.

Load the fixtures in a ``conftest.py``::

    pytest_plugins = ["agora_stt_async.testing"]

- ``emulator_app``: a fresh emulator per test (``agora_stt_async.emulator.create_app()``).
- ``emulator_transport``: an in-process httpx transport bound to ``emulator_app``.
- ``emulator_server``: ``emulator_app`` served by uvicorn on a free loopback port; the
  fixture's value is the base URL (``"http://127.0.0.1:<port>"``).

This module imports without pytest and without the ``emulator`` extra; the fixtures exist
only when pytest is installed, and need the extra (starlette, uvicorn) when used.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, final

import anyio.lowlevel

if TYPE_CHECKING:
    from agora_stt_async.emulator import EmulatorApp, EmulatorTransport

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is a test-time dependency only
    pytest = None  # type: ignore[assignment]

__all__ = ["FakeClock", "emulator_app", "emulator_server", "emulator_transport"]


@final
class FakeClock:
    """A clock for tests that only moves when told to, or when someone sleeps on it.

    ``sleep(s)`` advances the clock by ``s`` at once (and yields to the event loop),
    so a five-minute token window or a 5 s retry interval passes instantly on asyncio
    and trio alike. It starts at a large Unix time, so code that reads the real clock
    by mistake shows up. Share one instance between the SDK (``AsyncClient(clock=)``,
    ``Session(clock=)``) and the emulator (``create_app(clock=)``) to keep their times
    in step.
    """

    def __init__(self, start: float = 1_900_000_000.0) -> None:
        self._now = float(start)
        self._monotonic = 1000.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> float:
        """Move both clocks forward by ``seconds``; return the new ``now()``.

        Raises:
            ValueError: ``seconds`` is negative (a clock never goes backwards), NaN or
                infinite (either would poison every later reading).
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"advance takes a finite number of seconds >= 0, got {seconds!r}")
        self._now += seconds
        self._monotonic += seconds
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` at once (negative or NaN: by 0), then yield.

        ``sleep(math.inf)`` sleeps until cancelled, as on the real clock: jumping to
        infinity would break every deadline after it.
        """
        if seconds == math.inf:
            await anyio.sleep_forever()
        self.advance(max(0.0, seconds))
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now})"


def emulator_app() -> EmulatorApp:
    """A fresh emulator with its defaults: the emulator App ID and credentials, seed 0."""
    from agora_stt_async.emulator import create_app

    return create_app()


def emulator_transport(emulator_app: EmulatorApp) -> EmulatorTransport:
    """An httpx transport serving ``emulator_app`` in process."""
    return emulator_app.transport()


def emulator_server(emulator_app: EmulatorApp) -> Iterator[str]:
    """``emulator_app`` on a free loopback port; yields the base URL, stops it afterwards."""
    from agora_stt_async.emulator import serve

    with serve(emulator_app) as base_url:
        yield base_url


if pytest is not None:
    emulator_app = pytest.fixture(emulator_app)
    emulator_transport = pytest.fixture(emulator_transport)
    emulator_server = pytest.fixture(emulator_server)
