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

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agora_stt_async.emulator import EmulatorApp, EmulatorTransport

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is a test-time dependency only
    pytest = None  # type: ignore[assignment]

__all__ = ["emulator_app", "emulator_server", "emulator_transport"]


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
