"""Fault injection: seeded, reproducible, before or after processing (issue 3, point 5)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from agora_stt_async.emulator import (
    ConnectionDropped,
    EmulatorApp,
    EmulatorClock,
    FaultConfig,
    ScheduledFault,
    create_app,
)
from tests.emulator.conftest import (
    LEGACY,
    V7,
    ConformanceClient,
    join_body,
    make_client,
    start_body,
)

pytestmark = pytest.mark.anyio


async def set_faults(client: ConformanceClient, **config: Any) -> None:
    response = await client.post("/_emulator/faults", json=config)
    assert response.status_code == 200, response.text


def agents_total(app: EmulatorApp) -> int:
    agents = app.world.counts()["agents"]
    assert isinstance(agents, dict)
    total: int = agents["total"]
    return total


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        ("500", 500, {"detail": "internal error", "reason": "InternalError"}),
        ("502", 502, {"message": "An invalid response was received from the upstream server"}),
        ("503", 503, {"detail": "service unavailable", "reason": "ServiceUnavailable"}),
        ("504", 504, {"message": "The upstream server is timed out"}),
        ("code20", 504, {"detail": "task operation timed out", "reason": "TaskOperationTimeout"}),
        ("429", 429, {"message": "API rate limit exceeded"}),
    ],
)
async def test_v7_pre_processing_faults_change_nothing(
    client: ConformanceClient, app: EmulatorApp, kind: str, status: int, body: dict[str, Any]
) -> None:
    """5xx, 429 and code-20 faults answer before processing: no agent is created."""
    await set_faults(client, schedule=[{"kind": kind, "route": "join"}])
    response = await client.post(f"{V7}/join", json=join_body())
    assert response.status_code == status
    assert response.json() == body
    assert agents_total(app) == 0
    retried = await client.post(f"{V7}/join", json=join_body())
    assert retried.status_code == 200
    assert agents_total(app) == 1


async def test_429_carries_retry_after(client: ConformanceClient) -> None:
    """An injected 429 carries Retry-After with the configured seconds."""
    await set_faults(client, retry_after=7, schedule=[{"kind": "429"}])
    response = await client.get(f"{V7}/agents")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        ("code20", 504, {"code": 20, "message": "Processing timeout, please retry"}),
        ("500", 500, {"code": 501, "message": "Internal server error"}),
        ("503", 503, {"code": 501, "message": "Service unavailable"}),
        ("502", 502, {"message": "An invalid response was received from the upstream server"}),
        ("504", 504, {"message": "The upstream server is timed out"}),
    ],
)
async def test_legacy_faults_use_legacy_bodies(
    client: ConformanceClient, app: EmulatorApp, kind: str, status: int, body: dict[str, Any]
) -> None:
    """On legacy routes a code-20 fault answers {"code": 20, …}, a service-level 5xx carries
    the documented retryable code 501, the gateway's 502/504 its own body; no token is
    minted."""
    await set_faults(client, schedule=[{"kind": kind, "route": "acquire"}])
    response = await client.post(f"{LEGACY}/builderTokens", json={"instanceId": "x"})
    assert response.status_code == status
    assert response.json() == body
    assert app.world.counts()["tokens"] == 0


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        (1, 500, "Internal server error"),
        (6, 500, "Internal server error"),
        (23, 500, "Internal server error"),
        (501, 500, "Internal server error"),
        (502, 500, "Internal server error"),
        (504, 504, "Internal server error"),
        (62, 504, "The task was not started because of a network problem"),
    ],
)
async def test_internal_fault_carries_the_documented_start_code(
    client: ConformanceClient, app: EmulatorApp, code: int, status: int, message: str
) -> None:
    """An ``internal`` fault on start answers {"code": <internal_code>, "message"} (spec §6.1
    codes 1, 6, 23, 501, 502, 504 and 62); no task is started and the token still works."""
    token = (await client.post(f"{LEGACY}/builderTokens", json={"instanceId": "x"})).json()[
        "tokenName"
    ]
    await set_faults(client, internal_code=code, schedule=[{"kind": "internal", "route": "start"}])
    response = await client.post(
        f"{LEGACY}/tasks", params={"builderToken": token}, json=start_body()
    )
    assert response.status_code == status
    assert response.json() == {"code": code, "message": message}
    assert app.world.counts()["tasks"] == {"total": 0, "by_status": {}, "by_app": {}}
    retried = await client.post(
        f"{LEGACY}/tasks", params={"builderToken": token}, json=start_body()
    )
    assert retried.status_code == 200


async def test_internal_fault_on_v7_is_the_v7_500(client: ConformanceClient) -> None:
    """v7 has no codes: an ``internal`` fault there is 500 {detail, reason: InternalError}."""
    await set_faults(client, internal_code=23, schedule=[{"kind": "internal", "route": "join"}])
    response = await client.post(f"{V7}/join", json=join_body())
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "reason": "InternalError"}


async def test_drop_processes_the_request_but_sends_no_response(
    client: ConformanceClient, app: EmulatorApp
) -> None:
    """A dropped join creates the agent; the client sees RemoteProtocolError, a retry 409."""
    await set_faults(client, schedule=[{"kind": "drop", "route": "join"}])
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(f"{V7}/join", json=join_body(name="ghost"))
    assert agents_total(app) == 1
    retry = await client.post(f"{V7}/join", json=join_body(name="ghost"))
    assert retry.status_code == 409
    assert retry.json()["reason"] == "TaskConflict"


async def test_dropped_start_is_recoverable_from_code_49(client: ConformanceClient) -> None:
    """A dropped legacy start did start: retrying answers code 49 with the taskId."""
    token = (await client.post(f"{LEGACY}/builderTokens", json={"instanceId": "x"})).json()[
        "tokenName"
    ]
    await set_faults(client, schedule=[{"kind": "drop", "route": "start"}])
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(f"{LEGACY}/tasks", params={"builderToken": token}, json=start_body())
    retry = await client.post(f"{LEGACY}/tasks", params={"builderToken": token}, json=start_body())
    assert retry.status_code == 409
    task_id = retry.json()["message"].rsplit(" ", 1)[-1]
    query = await client.get(f"{LEGACY}/tasks/{task_id}", params={"builderToken": token})
    assert query.json()["status"] == "IN_PROGRESS"


async def test_bare_asgi_transport_sees_connection_dropped(clock: EmulatorClock) -> None:
    """Without EmulatorTransport, the drop surfaces as ConnectionDropped from the app."""
    app = create_app(clock=clock, faults=FaultConfig(schedule=(ScheduledFault("drop"),)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://e", auth=("emulator", "emulator-secret")
    ) as c:
        with anyio.fail_after(5), pytest.raises(ConnectionDropped):
            await c.get(f"{V7}/agents")


async def test_latency_fault_delays_then_processes(
    client: ConformanceClient, app: EmulatorApp
) -> None:
    """A latency fault waits `latency` seconds, then the request succeeds."""
    await set_faults(client, latency=0.05, schedule=[{"kind": "latency", "route": "join"}])
    started = anyio.current_time()
    response = await client.post(f"{V7}/join", json=join_body())
    assert anyio.current_time() - started >= 0.045
    assert response.status_code == 200
    assert app.faults.injected == {"join:latency": 1}


async def test_base_latency_applies_to_every_request(client: ConformanceClient) -> None:
    """base_latency slows every documented route, not the control API."""
    await set_faults(client, base_latency=0.03)
    started = anyio.current_time()
    await client.get("/_emulator/state")
    assert anyio.current_time() - started < 0.03
    started = anyio.current_time()
    await client.get(f"{V7}/agents")
    assert anyio.current_time() - started >= 0.025


async def test_schedule_count_and_skip(client: ConformanceClient) -> None:
    """A schedule entry skips `skip` matching requests, then faults the next `count`."""
    await set_faults(client, schedule=[{"kind": "503", "route": "list", "skip": 1, "count": 2}])
    statuses = [(await client.get(f"{V7}/agents")).status_code for _ in range(2)]
    pending = (await client.get("/_emulator/state")).json()["faults"]["pending"]
    assert pending == [{"kind": "503", "route": "list", "count": 1, "skip": 0}]
    statuses += [(await client.get(f"{V7}/agents")).status_code for _ in range(3)]
    assert statuses == [200, 503, 503, 200, 200]
    assert (await client.get("/_emulator/state")).json()["faults"]["pending"] == []
    # other routes are untouched by a route-bound entry
    assert (await client.get(f"{V7}/agents/x")).status_code == 404


async def test_schedule_without_route_matches_everything(client: ConformanceClient) -> None:
    """An entry without a route faults whichever route comes next."""
    await set_faults(client, schedule=[{"kind": "502", "count": 2}])
    first = await client.get(f"{V7}/agents")
    second = await client.post(f"{LEGACY}/builderTokens", json={"instanceId": "a"})
    third = await client.get(f"{V7}/agents")
    assert [first.status_code, second.status_code, third.status_code] == [502, 502, 200]


async def test_per_route_rate_overrides_global(client: ConformanceClient) -> None:
    """routes={"join": 1.0} faults every join and nothing else."""
    await set_faults(client, rate=0.0, routes={"join": 1.0}, kinds={"500": 1})
    for _ in range(5):
        assert (await client.post(f"{V7}/join", json=join_body())).status_code == 500
        assert (await client.get(f"{V7}/agents")).status_code == 200


async def test_control_api_is_never_faulted(client: ConformanceClient) -> None:
    """With a 100 % fault rate, /_emulator/ still answers."""
    await set_faults(client, rate=1.0)
    assert (await client.get(f"{V7}/agents")).status_code == 503
    assert (await client.get("/_emulator/state")).status_code == 200
    assert (await client.post("/_emulator/faults", json={})).status_code == 200
    assert (await client.get(f"{V7}/agents")).status_code == 200


async def run_mix(seed: int, clock: EmulatorClock) -> list[int | str]:
    faults = FaultConfig(rate=0.5, kinds={"500": 1, "503": 2, "429": 1, "drop": 1})
    app = create_app(clock=clock, seed=seed, faults=faults)
    outcomes: list[int | str] = []
    async with make_client(app) as client:
        for i in range(40):
            try:
                response = await client.post(f"{V7}/join", json=join_body(name=f"n{i}"))
                outcomes.append(response.status_code)
            except httpx.RemoteProtocolError:
                outcomes.append("drop")
    return outcomes


async def test_faults_are_reproducible_from_the_seed(clock: EmulatorClock) -> None:
    """The same seed and requests give the same faults; another seed gives others."""
    first, again, other = await run_mix(3, clock), await run_mix(3, clock), await run_mix(4, clock)
    assert first == again
    assert first != other
    assert {200, 500, 503, 429, "drop"} <= set(first)


@pytest.mark.parametrize(
    "fault_config",
    [
        {"rate": 2},
        {"routes": {"nope": 0.5}},
        {"kinds": {"418": 1}},
        {"rate": 0.5, "kinds": {"503": 0}},
        {"schedule": [{"kind": "503", "count": 0}]},
        {"schedule": [{"kind": "503", "colour": "red"}]},
        {"retry_after": -1},
        {"surprise": True},
        {"internal_code": 500},
        {"internal_code": "501"},
        {"internal_code": True},
        [1, 2],
    ],
)
async def test_bad_fault_configs_are_refused(client: ConformanceClient, fault_config: Any) -> None:
    """POST /_emulator/faults refuses bad configs with 400 and keeps the old one."""
    await set_faults(client, schedule=[{"kind": "503"}])
    response = await client.post("/_emulator/faults", json=fault_config)
    assert response.status_code == 400
    assert "error" in response.json()
    assert (await client.get(f"{V7}/agents")).status_code == 503


@pytest.mark.parametrize(
    "raw", [b'{"latency": NaN}', b'{"base_latency": Infinity}', b'{"latency": -Infinity}']
)
async def test_non_finite_fault_latencies_are_refused(
    client: ConformanceClient, raw: bytes
) -> None:
    """NaN or infinite latencies (JSON extensions json.loads accepts) are refused with 400:
    they would stall every request."""
    response = await client.post(
        "/_emulator/faults", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert (await client.get("/_emulator/faults")).json()["latency"] == 0.2


def test_fault_config_round_trips_through_json() -> None:
    """FaultConfig.from_json(config.to_json()) is the same config."""
    config = FaultConfig(
        rate=0.1,
        routes={"join": 0.5},
        kinds={"503": 1.0, "drop": 2.0},
        retry_after=3,
        latency=0.1,
        base_latency=0.01,
        schedule=(ScheduledFault("code20", "start", count=2, skip=1),),
        internal_code=62,
    )
    assert FaultConfig.from_json(config.to_json()) == config
    assert FaultConfig.from_json({}) == FaultConfig()
