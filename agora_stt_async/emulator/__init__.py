"""A faithful local emulator of Agora Real-Time STT, for tests, demos and benchmarks.

``create_app()`` returns an ASGI app that behaves like the documented service of both API
generations (the v7 agents API and the legacy v5/v6 builder-token API), with an
injectable clock, seeded randomness, seeded fault injection and a ``/_emulator/`` control
API. Serve it in process (``httpx.AsyncClient(transport=emulator.transport(app))``) or on
loopback (``with emulator.serve(app) as base_url: ...``).

The emulator is held to the spec, not to the SDK: it imports only ``_constants`` and
``_enums`` from the SDK, and validates requests with its own field tables. Where the spec
is silent it makes a choice and marks it ``# SPEC-SILENT:`` in its source.

Needs the ``emulator`` extra (``pip install 'agora-stt-async[emulator]'``).
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "agora_stt_async.emulator needs the 'emulator' extra: "
        "pip install 'agora-stt-async[emulator]'"
    ) from exc

from agora_stt_async.emulator._app import ConnectionDropped, EmulatorApp, create_app
from agora_stt_async.emulator._config import EmulatorClock, EmulatorConfig, SupportsNow
from agora_stt_async.emulator._faults import (
    FAULT_KINDS,
    ROUTES,
    FaultConfig,
    FaultKind,
    FaultPlan,
    ScheduledFault,
)
from agora_stt_async.emulator._records import WorldEvent
from agora_stt_async.emulator._server import EmulatorTransport, run, serve, transport

__all__ = [
    # building
    "create_app",
    "EmulatorApp",
    "EmulatorConfig",
    "EmulatorClock",
    "SupportsNow",
    # faults
    "FaultConfig",
    "ScheduledFault",
    "FaultKind",
    "FaultPlan",
    "FAULT_KINDS",
    "ROUTES",
    "ConnectionDropped",
    # serving
    "transport",
    "EmulatorTransport",
    "serve",
    "run",
    # NCS seam
    "WorldEvent",
]
