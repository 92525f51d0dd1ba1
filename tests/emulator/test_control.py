"""The /_emulator/ control API (issue 3, point 6)."""

from __future__ import annotations

from typing import Any

import pytest

from agora_stt_async.emulator import EmulatorApp, EmulatorClock, create_app
from tests.emulator.conftest import (
    LEGACY,
    START,
    V7,
    ConformanceClient,
    join_body,
    make_client,
    start_body,
)

pytestmark = pytest.mark.anyio


async def test_clock_get_and_advance(client: ConformanceClient, clock: EmulatorClock) -> None:
    """GET shows now; POST {"advance": s} moves the emulator's clock and answers the new now."""
    assert (await client.get("/_emulator/clock")).json() == {"now": START}
    response = await client.post("/_emulator/clock", json={"advance": 90.5})
    assert response.json() == {"now": START + 90.5}
    assert clock.now() == START + 90.5


async def test_clock_advance_drives_transitions(client: ConformanceClient) -> None:
    """Advancing over HTTP runs the lifecycle, as the clock object does."""
    agent = (await client.post(f"{V7}/join", json=join_body())).json()
    await client.post("/_emulator/clock", json={"advance": 1})
    assert (await client.get(f"{V7}/agents/{agent['agent_id']}")).json()["status"] == "RUNNING"


@pytest.mark.parametrize("body", [{}, {"advance": -1}, {"advance": "5"}, {"advance": True}, [5]])
async def test_clock_refuses_bad_advances(client: ConformanceClient, body: Any) -> None:
    """advance must be a number of seconds >= 0."""
    response = await client.post("/_emulator/clock", json=body)
    assert response.status_code == 400
    assert (await client.get("/_emulator/clock")).json() == {"now": START}


async def test_clock_without_advance_is_409() -> None:
    """A user's own clock without advance() cannot be moved over HTTP."""

    class Fixed:
        def now(self) -> float:
            return 42.0

    app = create_app(clock=Fixed())
    async with make_client(app) as client:
        assert (await client.get("/_emulator/clock")).json() == {"now": 42.0}
        assert (await client.post("/_emulator/clock", json={"advance": 1})).status_code == 409


async def test_faults_get_set_clear(client: ConformanceClient) -> None:
    """POST /_emulator/faults sets the config, GET shows it, {} clears it."""
    config = {"rate": 0.25, "kinds": {"503": 1.0}, "schedule": [{"kind": "drop", "route": "join"}]}
    set_response = await client.post("/_emulator/faults", json=config)
    shown = (await client.get("/_emulator/faults")).json()
    assert set_response.json() == shown
    assert shown["rate"] == 0.25
    assert shown["schedule"] == [{"kind": "drop", "route": "join", "count": 1, "skip": 0}]
    state = (await client.get("/_emulator/state")).json()
    assert state["faults"]["pending"] == shown["schedule"]
    await client.post("/_emulator/faults", json={})
    cleared = (await client.get("/_emulator/faults")).json()
    assert cleared["rate"] == 0.0
    assert cleared["schedule"] == []


async def test_state_counts_and_lists(client: ConformanceClient, clock: EmulatorClock) -> None:
    """GET /_emulator/state counts agents and tasks by status; ?list=1 lists them."""
    ids = [
        (await client.post(f"{V7}/join", json=join_body(f"n{i}"))).json()["agent_id"]
        for i in range(3)
    ]
    clock.advance(1)
    await client.post(f"{V7}/agents/{ids[0]}/leave")
    token = (await client.post(f"{LEGACY}/builderTokens", json={"instanceId": "i"})).json()[
        "tokenName"
    ]
    await client.post(f"{LEGACY}/tasks", params={"builderToken": token}, json=start_body())
    state = (await client.get("/_emulator/state")).json()
    assert state["now"] == START + 1
    assert state["agents"]["total"] == 3
    assert state["agents"]["by_status"] == {"RUNNING": 2, "STOPPING": 1}
    assert state["agents"]["by_app"] == {
        "emulatorapp0000000000000000000000": {"RUNNING": 2, "STOPPING": 1}
    }
    assert state["tasks"]["by_status"] == {"IN_PROGRESS": 1}
    assert state["tokens"] == 1
    assert state["requests"] == {"join": 3, "leave": 1, "acquire": 1, "start": 1}
    assert "items" not in state["agents"]
    listed = (await client.get("/_emulator/state", params={"list": 1, "limit": 2})).json()
    assert [a["agent_id"] for a in listed["agents"]["items"]] == ids[:2]
    assert listed["agents"]["items"][0] == {
        "agent_id": ids[0],
        "app_id": "emulatorapp0000000000000000000000",
        "name": "n0",
        "channel": "channel-1",
        "status": "STOPPING",
        "create_ts": 1_750_000_000,
    }
    assert listed["tasks"]["items"][0]["status"] == "IN_PROGRESS"
    assert (
        await client.get("/_emulator/state", params={"list": 1, "limit": "x"})
    ).status_code == 400


async def test_channels_get_and_set(client: ConformanceClient) -> None:
    """POST /_emulator/channels/{name} {"hosts": n} sets presence; GET reads it (default 1)."""
    assert (await client.get("/_emulator/channels/room")).json() == {"channel": "room", "hosts": 1}
    response = await client.post("/_emulator/channels/room", json={"hosts": 0})
    assert response.json() == {"channel": "room", "hosts": 0}
    assert (await client.get("/_emulator/channels/room")).json()["hosts"] == 0
    for bad in ({"hosts": -1}, {"hosts": "0"}, {}, {"hosts": 1.5}):
        assert (await client.post("/_emulator/channels/room", json=bad)).status_code == 400
    state = (await client.get("/_emulator/state")).json()
    assert state["channels"] == {"room": 0}


async def test_agent_and_task_details(client: ConformanceClient) -> None:
    """GET /_emulator/agents/{id} and /tasks/{id} show the stored record; unknown ids 404."""
    agent = (await client.post(f"{V7}/join", json=join_body(maxIdleTime=45))).json()
    detail = (await client.get(f"/_emulator/agents/{agent['agent_id']}")).json()
    assert detail["max_idle_time"] == 45
    assert detail["config"] == join_body(maxIdleTime=45)
    assert detail["exit_message"] is None
    assert (await client.get("/_emulator/agents/none")).status_code == 404
    assert (await client.get("/_emulator/tasks/none")).status_code == 404


@pytest.mark.parametrize(
    "body", [{"status": "BORED"}, {"status": "STOPPING"}, {"status": "RUNNING", "message": 3}]
)
async def test_forcing_bad_status_is_400(client: ConformanceClient, body: dict[str, Any]) -> None:
    """Only RECOVERING, RUNNING, FAILED and STOPPED can be forced."""
    agent = (await client.post(f"{V7}/join", json=join_body())).json()
    assert (
        await client.post(f"/_emulator/agents/{agent['agent_id']}", json=body)
    ).status_code == 400


async def test_forcing_an_ended_agent_is_404(client: ConformanceClient) -> None:
    """A STOPPED agent cannot be forced again."""
    agent = (await client.post(f"{V7}/join", json=join_body())).json()
    url = f"/_emulator/agents/{agent['agent_id']}"
    assert (await client.post(url, json={"status": "STOPPED"})).status_code == 200
    assert (await client.post(url, json={"status": "FAILED"})).status_code == 404


@pytest.mark.parametrize("wanted", ["RUNNING", "RECOVERING"])
async def test_control_stopping_agent_cannot_be_revived(
    client: ConformanceClient, clock: EmulatorClock, wanted: str
) -> None:
    """A STOPPING agent (it was told to leave) can be forced to end, never back to life: 409."""
    agent = (await client.post(f"{V7}/join", json=join_body())).json()
    url = f"/_emulator/agents/{agent['agent_id']}"
    clock.advance(1)
    assert (await client.post(f"{V7}/agents/{agent['agent_id']}/leave")).status_code == 200
    refused = await client.post(url, json={"status": wanted})
    assert refused.status_code == 409
    assert refused.json() == {"error": f"cannot force STOPPING to {wanted}"}
    assert (await client.get(f"{V7}/agents/{agent['agent_id']}")).json()["status"] == "STOPPING"
    assert (await client.post(url, json={"status": "FAILED"})).status_code == 200
    assert (await client.get(f"{V7}/agents/{agent['agent_id']}")).json()["status"] == "FAILED"


async def test_control_first_running_after_recovering_emits_joined(
    client: ConformanceClient,
) -> None:
    """STARTING → RECOVERING → RUNNING emits the agent's 101 once, when it first runs."""
    agent = (await client.post(f"{V7}/join", json=join_body())).json()
    url = f"/_emulator/agents/{agent['agent_id']}"
    assert (await client.post(url, json={"status": "RECOVERING"})).status_code == 200
    assert (await client.get("/_emulator/events")).json()["events"] == []
    assert (await client.post(url, json={"status": "RUNNING"})).status_code == 200
    assert (await client.post(url, json={"status": "RECOVERING"})).status_code == 200
    assert (await client.post(url, json={"status": "RUNNING"})).status_code == 200
    events = (await client.get("/_emulator/events")).json()["events"]
    assert [(e["kind"], e["id"]) for e in events] == [("agent_joined", agent["agent_id"])]


async def test_events_record_joins_and_exits(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """GET /_emulator/events lists lifecycle events, the seam for NCS callbacks."""
    agent = (await client.post(f"{V7}/join", json=join_body(channel="ev"))).json()
    clock.advance(1)
    await client.post(f"{V7}/agents/{agent['agent_id']}/leave")
    clock.advance(1)
    events = (await client.get("/_emulator/events")).json()["events"]
    assert events == [
        {
            "kind": "agent_joined",
            "at": START + 1,
            "app_id": "emulatorapp0000000000000000000000",
            "id": agent["agent_id"],
            "channel": "ev",
            "start_ts": 1_750_000_000,
            "stop_ts": None,
            "status": None,
            "message": None,
        },
        {
            "kind": "agent_left",
            "at": START + 1.5,
            "app_id": "emulatorapp0000000000000000000000",
            "id": agent["agent_id"],
            "channel": "ev",
            "start_ts": 1_750_000_000,
            "stop_ts": 1_750_000_001,
            "status": "STOPPED",
            "message": "OK",
        },
    ]
    assert (await client.get("/_emulator/events", params={"limit": 1})).json()["events"] == events[
        1:
    ]


async def test_on_event_hook_sees_every_event(client: ConformanceClient, app: EmulatorApp) -> None:
    """world.on_event is called for each event, in order."""
    kinds: list[str] = []
    app.world.on_event = lambda event: kinds.append(event.kind)
    token = (await client.post(f"{LEGACY}/builderTokens", json={"instanceId": "i"})).json()[
        "tokenName"
    ]
    task = (
        await client.post(f"{LEGACY}/tasks", params={"builderToken": token}, json=start_body())
    ).json()
    await client.delete(f"{LEGACY}/tasks/{task['taskId']}", params={"builderToken": token})
    assert kinds == ["task_started", "task_stopped"]


async def test_reset_forgets_everything_but_the_clock(
    client: ConformanceClient, app: EmulatorApp, clock: EmulatorClock
) -> None:
    """POST /_emulator/reset clears agents, tasks, faults and counters; the ids replay."""
    first = (await client.post(f"{V7}/join", json=join_body())).json()
    await client.post("/_emulator/faults", json={"rate": 1})
    clock.advance(10)
    response = await client.post("/_emulator/reset")
    assert response.json()["agents"]["total"] == 0
    assert response.json()["now"] == START + 10
    assert app.faults.config.rate == 0
    assert sum(app.requests.values()) == 0
    again = (await client.post(f"{V7}/join", json=join_body())).json()
    assert again["agent_id"] == first["agent_id"]  # same seed, same ids


async def test_control_api_can_be_disabled(clock: EmulatorClock) -> None:
    """control_api=False: /_emulator/ answers the gateway's 404, the API still works."""
    app = create_app(clock=clock, control_api=False)
    async with make_client(app) as client:
        for method, url in [
            ("GET", "/_emulator/state"),
            ("POST", "/_emulator/reset"),
            ("POST", "/_emulator/clock"),
        ]:
            response = await client.request(method, url, json={"advance": 1})
            assert response.status_code == 404
            assert response.json() == {"message": "no Route matched with those values"}
        assert (await client.post(f"{V7}/join", json=join_body())).status_code == 200
    assert clock.now() == START


async def test_control_api_needs_no_credentials(app: EmulatorApp) -> None:
    """The control API is open; it is not part of Agora's API."""
    async with make_client(app, auth=None) as client:
        assert (await client.get("/_emulator/state")).status_code == 200


async def test_control_rejects_non_json(client: ConformanceClient) -> None:
    """A control body that is not a JSON object answers 400."""
    assert (await client.post("/_emulator/clock", content=b"{")).status_code == 400
    assert (await client.post("/_emulator/channels/x", content=b"[]")).status_code == 400
    assert (await client.put("/_emulator/clock")).status_code == 405
