"""The emulator over real sockets: uvicorn on loopback, driven by raw httpx (issue 3, point 7)."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import anyio
import httpx
import pytest

from agora_stt_async.emulator import (
    EmulatorApp,
    EmulatorClock,
    FaultConfig,
    ScheduledFault,
    create_app,
    serve,
)
from tests.emulator.conftest import LEGACY, START, V7, join_body, make_client, start_body

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(app: EmulatorApp) -> Iterator[str]:
    """``app`` on a free loopback port; the base URL."""
    with serve(app) as base_url:
        yield base_url


async def test_v7_flow_over_loopback(server: str, clock: EmulatorClock) -> None:
    """join → query → list → update → leave over TCP, each answer valid by the OpenAPI file."""
    assert server.startswith("http://127.0.0.1:")
    async with make_client(base_url=server) as client:
        agent = (await client.post(f"{V7}/join", json=join_body())).json()
        clock.advance(1)
        query = await client.get(f"{V7}/agents/{agent['agent_id']}")
        assert query.json()["status"] == "RUNNING"
        listed = await client.get(f"{V7}/agents")
        assert listed.json()["meta"]["total"] == 1
        update = await client.post(
            f"{V7}/agents/{agent['agent_id']}/update",
            params={"sequenceId": 1, "updateMask": "languages"},
            json={"languages": ["fr-FR"]},
        )
        assert update.status_code == 200
        leave = await client.post(f"{V7}/agents/{agent['agent_id']}/leave")
        assert (leave.status_code, leave.content) == (200, b"")
        assert client.validated == 5


async def test_legacy_flow_over_loopback(server: str) -> None:
    """acquire → start → query → stop over TCP."""
    async with make_client(base_url=server) as client:
        token = (await client.post(f"{LEGACY}/builderTokens", json={"instanceId": "x"})).json()[
            "tokenName"
        ]
        task = (
            await client.post(f"{LEGACY}/tasks", params={"builderToken": token}, json=start_body())
        ).json()
        url = f"{LEGACY}/tasks/{task['taskId']}"
        assert (await client.get(url, params={"builderToken": token})).json() == task
        assert (await client.delete(url, params={"builderToken": token})).status_code == 200
        assert (await client.get(url, params={"builderToken": token})).status_code == 404


async def test_drop_closes_the_connection(server: str, app: EmulatorApp) -> None:
    """A dropped response is a closed connection for a real client; the state changed anyway."""
    async with make_client(base_url=server) as client:
        await client.post(
            "/_emulator/faults", json={"schedule": [{"kind": "drop", "route": "join"}]}
        )
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"{V7}/join", json=join_body(name="dropped"))
        # the client reconnects; the agent exists
        retry = await client.post(f"{V7}/join", json=join_body(name="dropped"))
        assert retry.status_code == 409
        state = (await client.get("/_emulator/state")).json()
        assert state["agents"]["total"] == 1
        assert state["faults"]["injected"] == {"join:drop": 1}


def test_drop_over_loopback_sends_no_byte(app: EmulatorApp, server: str) -> None:
    """Served by serve(), a dropped response is a closed connection with not one byte of
    response (no status line, no headers), yet the request was processed."""
    app.faults.configure(FaultConfig(schedule=(ScheduledFault("drop", "list"),)))
    host, port = server.removeprefix("http://").rsplit(":", 1)
    auth = base64.b64encode(b"emulator:emulator-secret").decode()
    request = f"GET {V7}/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\r\n"
    received = b""
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request.encode())
        while chunk := sock.recv(4096):
            received += chunk
    assert received == b""
    assert app.requests["list"] == 1
    assert app.faults.injected == {"list:drop": 1}
    assert app.responses[200] == 1  # processed and counted, never sent


async def test_request_id_over_loopback(server: str) -> None:
    """X-Request-Id is echoed or generated over TCP too."""
    async with make_client(base_url=server) as client:
        echoed = await client.get(f"{V7}/agents", headers={"X-Request-Id": "abc"})
        generated = await client.get(f"{V7}/agents")
        assert echoed.headers["x-request-id"] == "abc"
        assert generated.headers["x-request-id"].startswith("req_")


async def test_concurrent_joins(server: str, app: EmulatorApp) -> None:
    """Fifty concurrent joins create fifty distinct agents."""
    ids: list[str] = []
    async with make_client(base_url=server) as client:

        async def one(i: int) -> None:
            response = await client.post(f"{V7}/join", json=join_body(name=f"c{i}"))
            ids.append(response.json()["agent_id"])

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(one, i)
    assert len(set(ids)) == 50


async def test_server_stops_on_exit(clock: EmulatorClock) -> None:
    """Leaving serve() stops the server: the port refuses connections."""
    app = create_app(clock=clock)
    with serve(app) as base_url:
        async with make_client(base_url=base_url) as client:
            assert (await client.get("/_emulator/clock")).json() == {"now": START}
    async with make_client(base_url=base_url) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/_emulator/clock")


def test_serve_without_an_app_uses_defaults() -> None:
    """serve() with no app serves a fresh default emulator."""
    with (
        serve() as base_url,
        httpx.Client(base_url=base_url, auth=("emulator", "emulator-secret")) as c,
    ):
        assert c.get(f"{V7}/agents").json()["status"] == "ok"
