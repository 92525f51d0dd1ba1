"""Proof that every v7 answer the emulator can give conforms: each (route, error status)
it can produce is provoked here and validated by the OpenAPI file plus the strict error
overlay (``tests/openapi.py``); and no conformance test saw a status this table lacks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from agora_stt_async.emulator import EmulatorApp, EmulatorClock, EmulatorConfig, create_app
from tests.emulator.conftest import (
    APP_ID,
    V7,
    VALIDATED,
    ConformanceClient,
    join_body,
    make_client,
)

pytestmark = pytest.mark.anyio

_PATHS: dict[str, tuple[str, str]] = {
    "join": ("POST", "/join"),
    "query": ("GET", "/agents/{}"),
    "leave": ("POST", "/agents/{}/leave"),
    "update": ("POST", "/agents/{}/update"),
    "list": ("GET", "/agents"),
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "join": {"json": join_body()},
    "update": {
        "params": {"sequenceId": 1, "updateMask": "languages"},
        "json": {"languages": ["fr-FR"]},
    },
}


async def send(
    client: ConformanceClient, op: str, agent_id: str = "NOPE", base: str = V7, **kwargs: Any
) -> httpx.Response:
    """One v7 request of operation ``op``, valid unless ``kwargs`` say otherwise."""
    method, path = _PATHS[op]
    return await client.request(
        method, base + path.format(agent_id), **{**_DEFAULTS.get(op, {}), **kwargs}
    )


Provoke = Callable[[ConformanceClient, EmulatorApp, str], Awaitable[httpx.Response]]


def fault(kind: str) -> Provoke:
    async def provoke(client: ConformanceClient, app: EmulatorApp, op: str) -> httpx.Response:
        await client.post("/_emulator/faults", json={"schedule": [{"kind": kind, "route": op}]})
        return await send(client, op)

    return provoke


async def bad_auth(client: ConformanceClient, app: EmulatorApp, op: str) -> httpx.Response:
    return await send(client, op, auth=("emulator", "wrong"))


async def disabled_app(client: ConformanceClient, app: EmulatorApp, op: str) -> httpx.Response:
    return await send(client, op, base=V7.replace(APP_ID, "disabledapp"))


async def bug(client: ConformanceClient, app: EmulatorApp, op: str) -> httpx.Response:
    def broken() -> float:
        raise RuntimeError("a bug in the emulator")

    app.world.advance = broken  # type: ignore[method-assign]
    return await send(client, op)


async def qps(client: ConformanceClient, app: EmulatorApp, op: str) -> httpx.Response:
    limited = create_app(EmulatorConfig(qps_limit=1), clock=app.clock, app_ids=[APP_ID])
    async with make_client(limited) as other:
        await send(other, op)
        response = await send(other, op)
    client.seen |= other.seen
    return response


async def bad_value(client: ConformanceClient, app: EmulatorApp, op: str) -> httpx.Response:
    if op == "join":
        return await send(client, op, json=join_body(languages=[]))
    if op == "list":
        return await send(client, op, params={"limit": 0})
    agent_id = (await send(client, "join")).json()["agent_id"]
    return await send(client, op, agent_id, params={"updateMask": "languages"})


async def not_json(client: ConformanceClient, app: EmulatorApp, op: str) -> httpx.Response:
    return await send(client, op, content=b"{")


async def unknown_agent(client: ConformanceClient, app: EmulatorApp, op: str) -> httpx.Response:
    return await send(client, op, "NOPE")


async def name_taken(client: ConformanceClient, app: EmulatorApp, op: str) -> httpx.Response:
    await send(client, "join")
    return await send(client, "join")


async def too_soon(client: ConformanceClient, app: EmulatorApp, op: str) -> httpx.Response:
    paced = create_app(EmulatorConfig(update_min_interval=5), clock=app.clock, app_ids=[APP_ID])
    async with make_client(paced) as other:
        agent_id = (await send(other, "join")).json()["agent_id"]
        response = await send(other, op, agent_id)
    client.seen |= other.seen
    return response


_EVERY_ROUTE: list[tuple[int, str, Provoke]] = [
    (401, "bad-auth", bad_auth),
    (403, "service-not-enabled", disabled_app),
    (429, "fault-429", fault("429")),
    (429, "qps-limit", qps),
    (500, "fault-500", fault("500")),
    (500, "fault-internal", fault("internal")),
    (500, "bug", bug),
    (502, "fault-502", fault("502")),
    (503, "fault-503", fault("503")),
    (504, "fault-504", fault("504")),
    (504, "fault-code20", fault("code20")),
]
_PER_ROUTE: dict[str, list[tuple[int, str, Provoke]]] = {
    "join": [(400, "bad-value", bad_value), (400, "not-json", not_json), (409, "name", name_taken)],
    "list": [(400, "bad-value", bad_value)],
    "query": [(404, "unknown", unknown_agent)],
    "leave": [(404, "unknown", unknown_agent)],
    "update": [
        (400, "bad-value", bad_value),
        (400, "not-json", not_json),
        (404, "unknown", unknown_agent),
        (429, "too-soon", too_soon),
    ],
}
MATRIX: list[tuple[str, int, str, Provoke]] = [
    (op, status, name, provoke)
    for op in _PATHS
    for status, name, provoke in [*_EVERY_ROUTE, *_PER_ROUTE[op]]
]
"""Every (operation, error status) the emulator can give, with a way to provoke it."""
DOCUMENTED: frozenset[tuple[str, int]] = frozenset(
    {(op, status) for op, status, _, _ in MATRIX} | {(op, 200) for op in _PATHS}
)


@pytest.mark.parametrize(
    ("op", "status", "provoke"),
    [
        pytest.param(op, status, provoke, id=f"{op}-{status}-{name}")
        for op, status, name, provoke in MATRIX
    ],
)
async def test_every_v7_error_status_is_validated(
    client: ConformanceClient, app: EmulatorApp, op: str, status: int, provoke: Provoke
) -> None:
    """Each (route, error status) the emulator can give is produced, and its body passed
    the OpenAPI file and the strict overlay, with an X-Request-Id."""
    response = await provoke(client, app, op)
    assert response.status_code == status
    assert (op, status) in client.seen
    assert response.headers["x-request-id"]


def test_no_conformance_test_saw_an_unlisted_status() -> None:
    """Every (route, status) validated in this run is in the table above, so the table,
    and therefore the proof, covers every answer the conformance run produced.

    ``conftest.pytest_collection_modifyitems`` runs this test last, after every other
    conformance test has added what it validated to ``VALIDATED``.
    """
    assert VALIDATED <= DOCUMENTED, sorted(VALIDATED - DOCUMENTED)


async def test_success_statuses_are_validated(clock: EmulatorClock) -> None:
    """The 200 of each route passes too (the other half of "every response conforms")."""
    app = create_app(clock=clock, app_ids=[APP_ID])
    async with make_client(app) as client:
        agent_id = (await send(client, "join")).json()["agent_id"]
        for op in ("query", "update", "list", "leave"):
            assert (await send(client, op, agent_id)).status_code == 200
    assert client.seen == {(op, 200) for op in _PATHS}
