"""Scale: 100,000 agents in one emulator; list, query, update stay O(page) / O(1) (issue 3 §8).

No timing asserts: the test must simply finish in a few seconds, which an O(n) list or
query over 100,000 agents would not.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from agora_stt_async._enums import AgentStatus
from agora_stt_async.emulator import EmulatorClock, create_app
from agora_stt_async.emulator._index import SeqIndex
from agora_stt_async.emulator._validate import JoinSpec, ListQuery
from tests.emulator.conftest import APP_ID, START, V7, join_body, make_client

N_AGENTS = 100_000
CHANNELS = 2_000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3000)), max_size=400), st.integers(0, 3000))
def test_seq_index_matches_a_sorted_set(ops: list[tuple[bool, int]], probe: int) -> None:
    """SeqIndex behaves like a sorted set under any mix of adds and discards."""
    index, model = SeqIndex(), set[int]()
    for add, value in ops:
        if add and value not in model:
            index.add(value)
            model.add(value)
        elif not add:
            index.discard(value)
            model.discard(value)
    ordered = sorted(model)
    assert list(index) == ordered
    assert len(index) == len(ordered)
    assert index.rank(probe) == sum(1 for v in ordered if v < probe)
    assert list(index.iter_from(probe)) == [v for v in ordered if v >= probe]
    assert index.count_between(probe, probe + 500) == sum(
        1 for v in ordered if probe <= v < probe + 500
    )
    assert (probe in index) == (probe in model)


def test_seq_index_splits_blocks() -> None:
    """Many inserts in any order keep the order across block splits."""
    index = SeqIndex()
    values = [(i * 7919) % 10_007 for i in range(10_007)]
    for v in values:
        index.add(v)
    assert list(index) == list(range(10_007))
    for v in range(0, 10_007, 2):
        index.discard(v)
    assert list(index.iter_from(5000))[:3] == [5001, 5003, 5005]
    assert index.rank(5001) == 2500


def test_100k_agents() -> None:
    """100,000 agents: full paging, per-channel paging, queries and updates over HTTP."""
    clock = EmulatorClock(start=START)
    app = create_app(clock=clock, seed=11)
    world = app.world
    raw = json.dumps(join_body()).encode()
    first_ids = []
    for i in range(N_AGENTS):
        spec = JoinSpec(
            channel=f"ch{i % CHANNELS}", max_idle_time=30, config={}, name=f"a{i}", raw=raw
        )
        agent = world.join(APP_ID, spec)
        if i < 3:
            first_ids.append(agent.agent_id)
        if i % 1000 == 999:
            clock.advance(1)  # a thousand joins a second
    clock.advance(2)  # every agent has turned RUNNING

    seen = 0
    previous = -1
    cursor = None
    while True:
        page = world.list_agents(
            APP_ID, ListQuery(AgentStatus.RUNNING, 0, 2**31, 100, None, cursor)
        )
        assert page.total == N_AGENTS
        assert all(a.seq > previous for a in page.items)
        previous = page.items[-1].seq
        seen += len(page.items)
        if not page.cursor:
            break
        cursor = page.cursor
    assert seen == N_AGENTS
    assert world.counts()["agents"] == {
        "total": N_AGENTS,
        "by_status": {"RUNNING": N_AGENTS},
        "by_app": {APP_ID: {"RUNNING": N_AGENTS}},
    }

    async def over_http() -> dict[str, Any]:
        async with make_client(app) as client:
            listed = (
                await client.get(f"{V7}/agents", params={"limit": 100, "cursor": first_ids[0]})
            ).json()
            middle = listed["data"]["list"][-1]["agent_id"]
            deeper = (
                await client.get(f"{V7}/agents", params={"limit": 100, "cursor": middle})
            ).json()
            channel = (await client.get(f"{V7}/agents", params={"channel": "ch7"})).json()
            window = (
                await client.get(
                    f"{V7}/agents",
                    params={"from_time": int(START) + 50, "to_time": int(START) + 50},
                )
            ).json()
            query = (await client.get(f"{V7}/agents/{first_ids[1]}")).json()
            update = await client.post(
                f"{V7}/agents/{first_ids[2]}/update",
                params={"sequenceId": 1, "updateMask": "languages"},
                json={"languages": ["fr-FR"]},
            )
            leave = await client.post(f"{V7}/agents/{first_ids[2]}/leave")
            total_after = (await client.get(f"{V7}/agents", params={"limit": 1})).json()["meta"][
                "total"
            ]
            return {
                "listed": listed,
                "deeper": deeper,
                "channel": channel,
                "window": window,
                "query": query,
                "update": update.status_code,
                "leave": leave.status_code,
                "total_after": total_after,
            }

    result = anyio.run(over_http)
    assert result["listed"]["meta"]["total"] == N_AGENTS
    assert result["listed"]["data"]["list"][0]["agent_id"] == first_ids[1]
    assert result["deeper"]["data"]["count"] == 100
    assert result["channel"]["meta"]["total"] == N_AGENTS // CHANNELS
    assert result["channel"]["data"]["count"] == 20
    assert result["window"]["meta"]["total"] == 1000  # the thousand created in second 50
    assert result["query"]["status"] == "RUNNING"
    assert (result["update"], result["leave"]) == (200, 200)
    assert result["total_after"] == N_AGENTS - 1


def test_channel_emptied_under_load() -> None:
    """Emptying a channel among 20,000 agents stops only its agents, at maxIdleTime."""
    clock = EmulatorClock(start=START)
    world = create_app(clock=clock).world
    for i in range(20_000):
        world.join(
            APP_ID,
            JoinSpec(channel=f"ch{i % 100}", max_idle_time=10 + i % 3, config={}, name=f"a{i}"),
        )
    clock.advance(1)
    world.set_hosts("ch5", 0)
    clock.advance(11)
    by_status = world.counts()["agents"]["by_status"]  # type: ignore[index]
    # ch5's 200 agents idle out after 10, 11 or 12 s (67, 66 and 67 of them)
    assert by_status == {"RUNNING": 19_800 + 67, "STOPPED": 67, "STOPPING": 66}
    clock.advance(1)
    by_status = world.counts()["agents"]["by_status"]  # type: ignore[index]
    assert by_status == {"RUNNING": 19_800, "STOPPED": 133, "STOPPING": 67}


def _brute_force(world: Any, app_id: str, query: ListQuery) -> list[str]:
    world.advance()  # apply due status changes, as list_agents does first
    return [
        a.agent_id
        for a in world._index.by_seq
        if a.app_id == app_id
        and a.status is query.status
        and a.channel == query.channel
        and query.from_ts <= a.create_ts <= query.to_ts
    ]


def _pages(world: Any, app_id: str, query: ListQuery) -> tuple[list[str], set[int]]:
    ids: list[str] = []
    totals: set[int] = set()
    cursor = None
    while True:
        page = world.list_agents(
            app_id,
            ListQuery(query.status, query.from_ts, query.to_ts, query.limit, query.channel, cursor),
        )
        totals.add(page.total)
        ids += [a.agent_id for a in page.items]
        if not page.cursor:
            return ids, totals
        cursor = page.cursor


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 700),
    st.integers(1, 60),
    st.sets(st.integers(0, 699), max_size=200),
    st.integers(0, 40),
)
def test_channel_list_matches_brute_force(
    n: int, limit: int, to_stop: set[int], window_start: int
) -> None:
    """A channel-filtered list (small channels and ones past the big-channel threshold,
    two App IDs, mixed statuses, a time window) pages exactly like a brute-force filter."""
    clock = EmulatorClock(start=START)
    world = create_app(clock=clock, app_ids=[APP_ID, "other"]).world
    agents = []
    for i in range(n):
        app_id = "other" if i % 5 == 0 else APP_ID
        channel = "big" if i % 3 else f"small{i % 7}"
        spec = JoinSpec(channel=channel, max_idle_time=30, config={}, name=f"a{i}")
        agents.append(world.join(app_id, spec))
        if i % 10 == 9:
            clock.advance(1)
    clock.advance(2)
    for i in to_stop:
        if i < n:
            world.leave(agents[i].app_id, agents[i].agent_id)
    clock.advance(1)
    lo = int(START) + window_start
    for channel in ("big", "small3"):
        for status in (AgentStatus.RUNNING, AgentStatus.STOPPED):
            for app_id in (APP_ID, "other"):
                query = ListQuery(status, lo, lo + 30, limit, channel, None)
                expected = _brute_force(world, app_id, query)
                ids, totals = _pages(world, app_id, query)
                assert ids == expected
                assert totals == {len(expected)}


def test_100k_agents_in_one_channel() -> None:
    """100,000 agents in one channel: paging it by channel finishes (O(page) per page)."""
    clock = EmulatorClock(start=START)
    world = create_app(clock=clock).world
    for i in range(N_AGENTS):
        world.join(APP_ID, JoinSpec(channel="crowd", max_idle_time=30, config={}, name=f"a{i}"))
    clock.advance(2)
    query = ListQuery(AgentStatus.RUNNING, 0, 2**31, 100, "crowd", None)
    page = world.list_agents(APP_ID, query)
    assert page.total == N_AGENTS
    seen = len(page.items)
    for _ in range(999):  # a thousand pages, each from its cursor
        page = world.list_agents(
            APP_ID, ListQuery(AgentStatus.RUNNING, 0, 2**31, 100, "crowd", page.cursor)
        )
        seen += len(page.items)
    assert seen == N_AGENTS
    assert page.cursor == ""
