"""v7 list conformance: filters, defaults, paging by cursor (spec §4.7)."""

from __future__ import annotations

from typing import Any

import pytest

from agora_stt_async.emulator import EmulatorClock, EmulatorConfig
from tests.emulator.conftest import APP_ID, OTHER_APP_ID, V7, ConformanceClient, join_body

pytestmark = pytest.mark.anyio


async def join_many(
    client: ConformanceClient, n: int, channel: str = "c", prefix: str = "a"
) -> list[str]:
    ids = []
    for i in range(n):
        response = await client.post(f"{V7}/join", json=join_body(f"{prefix}{i}", channel))
        assert response.status_code == 200
        ids.append(response.json()["agent_id"])
    return ids


async def list_agents(client: ConformanceClient, **params: Any) -> dict[str, Any]:
    response = await client.get(f"{V7}/agents", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_list_shape_and_default_state_running(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """A plain list shows RUNNING agents only, as {data{count,list}, meta{cursor,total}, status}."""
    ids = await join_many(client, 2)
    assert await list_agents(client) == {
        "data": {"count": 0, "list": []},
        "meta": {"cursor": "", "total": 0},
        "status": "ok",
    }
    clock.advance(1)
    body = await list_agents(client)
    assert body == {
        "data": {
            "count": 2,
            "list": [{"start_ts": 1_750_000_000, "status": "RUNNING", "agent_id": i} for i in ids],
        },
        "meta": {"cursor": "", "total": 2},
        "status": "ok",
    }


@pytest.mark.parametrize(
    ("state", "status"), [("1", "STARTING"), ("2", "RUNNING"), ("3", "STOPPING"), ("4", "STOPPED")]
)
async def test_state_filter(
    client: ConformanceClient, clock: EmulatorClock, state: str, status: str
) -> None:
    """state=<digit> lists the agents in that status only."""
    running = await join_many(client, 1, prefix="a")
    clock.advance(1)
    stopped, stopping, starting = await join_many(client, 3, prefix="b")
    await client.post(f"{V7}/agents/{stopped}/leave")
    clock.advance(0.5)
    await client.post(f"{V7}/agents/{stopping}/leave")
    expected = {
        "STARTING": starting,
        "RUNNING": running[0],
        "STOPPING": stopping,
        "STOPPED": stopped,
    }[status]
    body = await list_agents(client, state=state)
    assert body["data"]["list"] == [
        {"start_ts": 1_750_000_000 + (status != "RUNNING"), "status": status, "agent_id": expected}
    ]
    assert body["meta"] == {"cursor": "", "total": 1}
    assert (await list_agents(client, state="0"))["meta"]["total"] == 0


async def test_paging_follows_the_cursor(client: ConformanceClient, clock: EmulatorClock) -> None:
    """meta.cursor is the last agent_id while more follow, "" on the last page; total is all."""
    ids = await join_many(client, 7)
    clock.advance(1)
    seen: list[str] = []
    cursors = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = await list_agents(client, **params)
        assert body["meta"]["total"] == 7
        assert body["data"]["count"] == len(body["data"]["list"])
        page = [item["agent_id"] for item in body["data"]["list"]]
        seen += page
        cursor = body["meta"]["cursor"]
        cursors.append(cursor)
        if not cursor:
            break
        assert cursor == page[-1]
    assert seen == ids
    assert cursors == [ids[2], ids[5], ""]


async def test_exact_page_boundary_ends_with_empty_cursor(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """When the last page is full, meta.cursor is already ""."""
    await join_many(client, 4)
    clock.advance(1)
    first = await list_agents(client, limit=2)
    second = await list_agents(client, limit=2, cursor=first["meta"]["cursor"])
    assert second["data"]["count"] == 2
    assert second["meta"]["cursor"] == ""


async def test_cursor_survives_a_status_change(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """Paging continues after the cursor's agent left the filtered state."""
    ids = await join_many(client, 4)
    clock.advance(1)
    first = await list_agents(client, limit=2)
    await client.post(f"{V7}/agents/{ids[1]}/leave")
    second = await list_agents(client, limit=2, cursor=first["meta"]["cursor"])
    assert [item["agent_id"] for item in second["data"]["list"]] == ids[2:]
    assert second["meta"]["total"] == 3


async def test_channel_filter(client: ConformanceClient, clock: EmulatorClock) -> None:
    """channel=<name> lists that channel's agents, with the same paging."""
    a = await join_many(client, 3, channel="ch-a", prefix="a")
    await join_many(client, 2, channel="ch-b", prefix="b")
    a += await join_many(client, 2, channel="ch-a", prefix="x")
    clock.advance(1)
    first = await list_agents(client, channel="ch-a", limit=4)
    assert [i["agent_id"] for i in first["data"]["list"]] == a[:4]
    assert first["meta"] == {"cursor": a[3], "total": 5}
    second = await list_agents(client, channel="ch-a", limit=4, cursor=a[3])
    assert [i["agent_id"] for i in second["data"]["list"]] == a[4:]
    assert second["meta"] == {"cursor": "", "total": 5}
    assert (await list_agents(client, channel="nobody"))["meta"]["total"] == 0


async def test_time_window(client: ConformanceClient, clock: EmulatorClock) -> None:
    """from_time/to_time filter on creation time; the default window is the last day."""
    old = await join_many(client, 2, prefix="old")
    clock.advance(86_400)
    new = await join_many(client, 1, prefix="new")
    clock.advance(1)
    start = 1_750_000_000
    assert [i["agent_id"] for i in (await list_agents(client))["data"]["list"]] == new
    window = await list_agents(client, from_time=start, to_time=start)
    assert [i["agent_id"] for i in window["data"]["list"]] == old
    everything = await list_agents(client, from_time=0)
    assert everything["meta"]["total"] == 3
    empty = await list_agents(client, from_time=start + 10, to_time=start + 20)
    assert empty["meta"]["total"] == 0


async def test_list_is_per_app(client: ConformanceClient, clock: EmulatorClock) -> None:
    """Another App ID's agents never show up; its agent_id is an unknown cursor."""
    other = V7.replace(APP_ID, OTHER_APP_ID)
    response = await client.post(f"{other}/join", json=join_body())
    foreign = response.json()["agent_id"]
    await join_many(client, 1)
    clock.advance(1)
    assert (await list_agents(client))["meta"]["total"] == 1
    bad = await client.get(f"{V7}/agents", params={"cursor": foreign})
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "7"}, "state"),
        ({"state": "RUNNING"}, "state"),
        ({"state": "12"}, "state"),
        ({"state": ""}, "state"),
        ({"state": ["1", "2"]}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "2.5"}, "limit"),
        ({"from_time": "yesterday"}, "from_time"),
        ({"to_time": "1.5"}, "to_time"),
        ({"cursor": "NOSUCHAGENT"}, "cursor"),
    ],
)
async def test_bad_list_parameters_are_400(
    client: ConformanceClient, params: dict[str, Any], field: str
) -> None:
    """A bad filter answers 400 InvalidFieldValue naming the parameter."""
    response = await client.get(f"{V7}/agents", params=params)
    assert response.status_code == 400
    assert response.json()["reason"] == "InvalidFieldValue"
    assert response.json()["detail"].startswith(f"{field}:")


@pytest.mark.parametrize("config", [EmulatorConfig(list_max_limit=500)])
async def test_list_max_limit_is_configurable(client: ConformanceClient) -> None:
    """list_max_limit raises the page size cap."""
    assert (await client.get(f"{V7}/agents", params={"limit": 500})).status_code == 200
    assert (await client.get(f"{V7}/agents", params={"limit": 501})).status_code == 400


async def test_stopped_agents_stay_listable(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """Stopped agents stay in the list under state 4 (spec §12.7)."""
    ids = await join_many(client, 1)
    await client.post(f"{V7}/agents/{ids[0]}/leave")
    clock.advance(3600)
    body = await list_agents(client, state=4)
    assert body["data"]["list"] == [
        {"start_ts": 1_750_000_000, "status": "STOPPED", "agent_id": ids[0]}
    ]
