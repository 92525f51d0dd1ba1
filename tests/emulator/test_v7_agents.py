"""v7 agents API conformance: join, query, update, leave and the agent lifecycle (spec §4)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agora_stt_async.emulator import EmulatorApp, EmulatorClock, EmulatorConfig
from tests.emulator.conftest import V7, ConformanceClient, join_body

pytestmark = pytest.mark.anyio


async def join(client: ConformanceClient, **kwargs: Any) -> dict[str, Any]:
    response = await client.post(f"{V7}/join", json=join_body(**kwargs))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def status_of(client: ConformanceClient, agent_id: str) -> str:
    response = await client.get(f"{V7}/agents/{agent_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


async def test_join_answers_agent_id_create_ts_and_starting(client: ConformanceClient) -> None:
    """A join answers 200 with a fresh opaque agent_id, create_ts in seconds and STARTING."""
    first = await join(client, name="a")
    second = await join(client, name="b")
    assert set(first) == {"agent_id", "create_ts", "status"}
    assert first["status"] == "STARTING"
    assert first["create_ts"] == 1_750_000_000
    assert first["agent_id"] != second["agent_id"]
    assert len(first["agent_id"]) == 26
    assert first["agent_id"].isalnum()


async def test_agent_runs_after_start_delay(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """STARTING turns RUNNING once start_delay (1 s by default) has passed."""
    agent = await join(client)
    clock.advance(0.9)
    assert await status_of(client, agent["agent_id"]) == "STARTING"
    clock.advance(0.1)
    assert await status_of(client, agent["agent_id"]) == "RUNNING"


@pytest.mark.parametrize(
    "config",
    [EmulatorConfig(join_status="RUNNING"), EmulatorConfig(start_delay=0)],
    ids=["join_status", "zero-delay"],
)
async def test_join_can_answer_running(client: ConformanceClient) -> None:
    """join_status="RUNNING" or start_delay=0 gives a RUNNING agent at once."""
    assert (await join(client))["status"] == "RUNNING"


async def test_query_answers_message_and_status(client: ConformanceClient) -> None:
    """Query answers {message, agent_id, create_ts, status} (spec §4.5)."""
    agent = await join(client)
    response = await client.get(f"{V7}/agents/{agent['agent_id']}")
    assert response.json() == {
        "message": "ok",
        "agent_id": agent["agent_id"],
        "create_ts": agent["create_ts"],
        "status": "STARTING",
    }


async def test_unknown_agent_is_404_task_not_found(client: ConformanceClient) -> None:
    """Query, update and leave of an unknown agent answer 404 TaskNotFound."""
    cases: list[tuple[str, str, Any]] = [
        ("GET", "", None),
        ("POST", "/leave", None),
        ("POST", "/update?sequenceId=1&updateMask=languages", {"languages": ["en-US"]}),
    ]
    for method, suffix, body in cases:
        response = await client.request(method, f"{V7}/agents/NOPE{suffix}", json=body)
        assert response.status_code == 404
        assert response.json()["reason"] == "TaskNotFound"
        assert "NOPE" in response.json()["detail"]


async def test_agent_of_another_app_is_not_found(client: ConformanceClient) -> None:
    """An agent is visible only through the App ID that created it."""
    agent = await join(client)
    other = V7.replace("emulatorapp0000000000000000000000", "otherapp000000000000000000000000")
    response = await client.get(f"{other}/agents/{agent['agent_id']}")
    assert response.status_code == 404
    assert response.json()["reason"] == "TaskNotFound"


async def test_same_name_while_active_is_409_task_conflict(
    client: ConformanceClient, app: EmulatorApp
) -> None:
    """A second join with an active agent's name answers 409 TaskConflict and creates nothing."""
    await join(client, name="dup", channel="c1")
    response = await client.post(f"{V7}/join", json=join_body(name="dup", channel="c2"))
    assert response.status_code == 409
    assert response.json()["reason"] == "TaskConflict"
    assert app.world.counts()["agents"] == {
        "total": 1,
        "by_status": {"STARTING": 1},
        "by_app": {"emulatorapp0000000000000000000000": {"STARTING": 1}},
    }


async def test_name_is_scoped_to_the_app_id(client: ConformanceClient) -> None:
    """The same name in another App ID is a different agent."""
    await join(client, name="shared")
    other = V7.replace("emulatorapp0000000000000000000000", "otherapp000000000000000000000000")
    response = await client.post(f"{other}/join", json=join_body(name="shared"))
    assert response.status_code == 200


async def test_name_is_free_again_after_stop(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """Once its agent is STOPPED, a name can join again; while STOPPING it still conflicts."""
    agent = await join(client, name="again")
    assert (await client.post(f"{V7}/agents/{agent['agent_id']}/leave")).status_code == 200
    conflict = await client.post(f"{V7}/join", json=join_body(name="again"))
    assert conflict.status_code == 409
    clock.advance(0.5)
    assert await status_of(client, agent["agent_id"]) == "STOPPED"
    assert (await join(client, name="again"))["agent_id"] != agent["agent_id"]


async def test_leave_answers_200_with_empty_body_then_stops(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """Leave answers 200 with no body; the agent is STOPPING, then STOPPED after stop_delay."""
    agent = await join(client)
    response = await client.post(f"{V7}/agents/{agent['agent_id']}/leave", json={})
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "0"
    assert await status_of(client, agent["agent_id"]) == "STOPPING"
    clock.advance(0.49)
    assert await status_of(client, agent["agent_id"]) == "STOPPING"
    clock.advance(0.01)
    assert await status_of(client, agent["agent_id"]) == "STOPPED"


async def test_leave_twice_is_404_by_default(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """Leave of a stopping or stopped agent answers 404 TaskNotFound; it stays queryable."""
    agent = await join(client)
    url = f"{V7}/agents/{agent['agent_id']}/leave"
    assert (await client.post(url)).status_code == 200
    assert (await client.post(url)).status_code == 404
    clock.advance(10)
    again = await client.post(url)
    assert again.status_code == 404
    assert again.json()["reason"] == "TaskNotFound"
    assert await status_of(client, agent["agent_id"]) == "STOPPED"


@pytest.mark.parametrize("config", [EmulatorConfig(idempotent_leave=True)])
async def test_idempotent_leave_option(client: ConformanceClient, clock: EmulatorClock) -> None:
    """idempotent_leave=True answers 200 to a repeated leave."""
    agent = await join(client)
    url = f"{V7}/agents/{agent['agent_id']}/leave"
    assert (await client.post(url)).status_code == 200
    clock.advance(5)
    assert (await client.post(url)).status_code == 200


@pytest.mark.parametrize("config", [EmulatorConfig(stop_delay=0)])
async def test_zero_stop_delay_stops_at_once(client: ConformanceClient) -> None:
    """stop_delay=0: leave moves the agent straight to STOPPED."""
    agent = await join(client)
    await client.post(f"{V7}/agents/{agent['agent_id']}/leave")
    assert await status_of(client, agent["agent_id"]) == "STOPPED"


async def test_leave_of_a_starting_agent(client: ConformanceClient, clock: EmulatorClock) -> None:
    """A STARTING agent can leave; it never turns RUNNING afterwards."""
    agent = await join(client)
    await client.post(f"{V7}/agents/{agent['agent_id']}/leave")
    clock.advance(5)
    assert await status_of(client, agent["agent_id"]) == "STOPPED"
    assert [e.kind for e in client_app_events(client)] == ["agent_left"]


def client_app_events(client: ConformanceClient) -> list[Any]:
    transport = client._transport  # the in-process EmulatorTransport
    return list(transport.emulator.world.events)  # type: ignore[attr-defined]


async def test_idle_timeout_when_channel_has_no_host(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """With no host in the channel, the agent stops after maxIdleTime ("Idle for too long")."""
    agent = await join(client, channel="quiet", maxIdleTime=30)
    clock.advance(100)  # a host is present by default: no idle stop
    assert await status_of(client, agent["agent_id"]) == "RUNNING"
    await client.post("/_emulator/channels/quiet", json={"hosts": 0})
    clock.advance(29.9)
    assert await status_of(client, agent["agent_id"]) == "RUNNING"
    clock.advance(0.1)
    assert await status_of(client, agent["agent_id"]) == "STOPPING"
    clock.advance(0.5)
    assert await status_of(client, agent["agent_id"]) == "STOPPED"
    left = [e for e in client_app_events(client) if e.kind == "agent_left"]
    assert [(e.message, e.at) for e in left] == [("Idle for too long", 1_750_000_130.5)]


async def test_host_returning_cancels_idle_timer(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """A host coming back before maxIdleTime keeps the agent running; the timer restarts later."""
    agent = await join(client, channel="flaky", maxIdleTime=10)
    await client.post("/_emulator/channels/flaky", json={"hosts": 0})
    clock.advance(9)
    await client.post("/_emulator/channels/flaky", json={"hosts": 2})
    clock.advance(60)
    assert await status_of(client, agent["agent_id"]) == "RUNNING"
    await client.post("/_emulator/channels/flaky", json={"hosts": 0})
    clock.advance(10)
    assert await status_of(client, agent["agent_id"]) == "STOPPING"


async def test_idle_counts_from_creation_in_an_empty_channel(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """An agent joining an already-empty channel idles from its own creation."""
    await client.post("/_emulator/channels/empty", json={"hosts": 0})
    clock.advance(1000)
    agent = await join(client, channel="empty", maxIdleTime=5)
    clock.advance(4.9)
    assert await status_of(client, agent["agent_id"]) == "RUNNING"
    clock.advance(0.1)
    assert await status_of(client, agent["agent_id"]) == "STOPPING"


@pytest.mark.parametrize("config", [EmulatorConfig(default_hosts=0)])
async def test_default_hosts_zero_makes_every_channel_idle(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """default_hosts=0: agents idle out maxIdleTime after their creation unless a host comes."""
    quiet = await join(client, name="q", channel="quiet", maxIdleTime=5)
    busy = await join(client, name="b", channel="busy", maxIdleTime=5)
    await client.post("/_emulator/channels/busy", json={"hosts": 1})
    clock.advance(5)
    assert await status_of(client, quiet["agent_id"]) == "STOPPING"
    assert await status_of(client, busy["agent_id"]) == "RUNNING"


async def test_max_idle_time_zero_never_idles_but_lifetime_ends(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """maxIdleTime 0 never idle-stops; the 72 h lifetime still ends the agent."""
    agent = await join(client, channel="empty0", maxIdleTime=0)
    await client.post("/_emulator/channels/empty0", json={"hosts": 0})
    clock.advance(259_199)
    assert await status_of(client, agent["agent_id"]) == "RUNNING"
    clock.advance(1)
    assert await status_of(client, agent["agent_id"]) == "STOPPING"
    clock.advance(1)
    assert await status_of(client, agent["agent_id"]) == "STOPPED"


async def test_update_answers_agent_and_replaces_masked_fields(
    client: ConformanceClient, app: EmulatorApp
) -> None:
    """Update answers {agent_id, create_ts, status}; only masked fields change, each whole."""
    agent = await join(
        client,
        rtcConfig={"channelName": "c", "pubBotUid": "1", "subscribeAudioUids": ["100", "200"]},
    )
    response = await client.post(
        f"{V7}/agents/{agent['agent_id']}/update",
        params={"sequenceId": 1, "updateMask": "rtcConfig.subscribeAudioUids"},
        json={"rtcConfig": {"subscribeAudioUids": ["100", "300"]}, "languages": ["fr-FR"]},
    )
    assert response.status_code == 200
    assert response.json() == {
        "agent_id": agent["agent_id"],
        "create_ts": agent["create_ts"],
        "status": "STARTING",
    }
    state = await client.get(f"/_emulator/agents/{agent['agent_id']}")
    config = state.json()["config"]
    assert config["rtcConfig"] == {
        "channelName": "c",
        "pubBotUid": "1",
        "subscribeAudioUids": ["100", "300"],
    }
    assert config["languages"] == ["en-US"]  # not in the mask: unchanged
    assert state.json()["last_sequence_id"] == 1


@pytest.mark.parametrize(
    ("query", "body", "reason", "field"),
    [
        (
            {"updateMask": "languages"},
            {"languages": ["en-US"]},
            "MissingRequiredField",
            "sequenceId",
        ),
        ({"sequenceId": "1"}, {"languages": ["en-US"]}, "MissingRequiredField", "updateMask"),
        ({"sequenceId": "-1", "updateMask": "languages"}, {}, "InvalidFieldValue", "sequenceId"),
        ({"sequenceId": "x", "updateMask": "languages"}, {}, "InvalidFieldValue", "sequenceId"),
        (
            {"sequenceId": "1", "updateMask": "name"},
            {"name": "x"},
            "InvalidFieldValue",
            "updateMask",
        ),
        ({"sequenceId": "1", "updateMask": "languages"}, {}, "MissingRequiredField", "languages"),
        (
            {"sequenceId": "1", "updateMask": "languages"},
            {"languages": []},
            "InvalidFieldValue",
            "languages",
        ),
        (
            {"sequenceId": "1", "updateMask": "languages"},
            {"languages": ["xx-XX"]},
            "InvalidFieldValue",
            "languages[0]",
        ),
        (
            {"sequenceId": "1", "updateMask": "keywords"},
            {"keywords": ["k"] * 501},
            "InvalidFieldValue",
            "keywords",
        ),
        (
            {"sequenceId": "1", "updateMask": "translateConfig.enable"},
            {"translateConfig": {"enable": "yes"}},
            "InvalidFieldValue",
            "translateConfig.enable",
        ),
        (
            {"sequenceId": "1", "updateMask": "translateConfig.languages"},
            {"translateConfig": {"languages": [{"source": "en-US", "target": ["en-US"]}]}},
            "InvalidFieldValue",
            "translateConfig.languages[0].target",
        ),
        (
            {"sequenceId": "1", "updateMask": "rtcConfig.subscribeAudioUids"},
            {"rtcConfig": {"subscribeAudioUids": [str(i) for i in range(33)]}},
            "InvalidFieldValue",
            "rtcConfig.subscribeAudioUids",
        ),
    ],
)
async def test_update_rejects_bad_requests(
    client: ConformanceClient,
    query: dict[str, str],
    body: dict[str, Any],
    reason: str,
    field: str,
) -> None:
    """A bad update answers 400 {detail, reason} naming the field, and changes nothing."""
    agent = await join(client)
    response = await client.post(f"{V7}/agents/{agent['agent_id']}/update", params=query, json=body)
    assert response.status_code == 400
    assert response.json()["reason"] == reason
    assert response.json()["detail"].startswith(f"{field}:")
    state = await client.get(f"/_emulator/agents/{agent['agent_id']}")
    assert state.json()["last_sequence_id"] is None


async def test_update_with_non_json_body_is_invalid_request_body(client: ConformanceClient) -> None:
    """A body that is not JSON answers 400 InvalidRequestBody."""
    agent = await join(client)
    response = await client.post(
        f"{V7}/agents/{agent['agent_id']}/update?sequenceId=1&updateMask=languages",
        content=b"languages=en-US",
    )
    assert response.status_code == 400
    assert response.json()["reason"] == "InvalidRequestBody"


async def test_update_translation_rule_uses_join_languages(client: ConformanceClient) -> None:
    """With two transcription languages a target may equal a source (spec §4.1, v7.2.2)."""
    agent = await join(client, name="mixed", languages=["en-US", "fr-FR"])
    response = await client.post(
        f"{V7}/agents/{agent['agent_id']}/update",
        params={"sequenceId": 1, "updateMask": "translateConfig.languages"},
        json={
            "translateConfig": {"languages": [{"source": "en-US", "target": ["en-US", "ja-JP"]}]}
        },
    )
    assert response.status_code == 200


async def test_stale_sequence_is_applied_by_default(client: ConformanceClient) -> None:
    """A sequenceId not above the last one is applied (lenient default)."""
    agent = await join(client)
    url = f"{V7}/agents/{agent['agent_id']}/update"
    for seq, lang in [(5, "fr-FR"), (5, "de-DE"), (1, "ja-JP")]:
        response = await client.post(
            url, params={"sequenceId": seq, "updateMask": "languages"}, json={"languages": [lang]}
        )
        assert response.status_code == 200
    state = (await client.get(f"/_emulator/agents/{agent['agent_id']}")).json()
    assert state["config"]["languages"] == ["ja-JP"]
    assert state["last_sequence_id"] == 5


@pytest.mark.parametrize("config", [EmulatorConfig(strict_sequence=True)])
async def test_strict_sequence_rejects_stale_ids(client: ConformanceClient) -> None:
    """strict_sequence=True: a sequenceId that does not grow answers 400 InvalidFieldValue."""
    agent = await join(client)
    url = f"{V7}/agents/{agent['agent_id']}/update"
    body = {"languages": ["fr-FR"]}
    ok = await client.post(url, params={"sequenceId": 3, "updateMask": "languages"}, json=body)
    assert ok.status_code == 200
    for seq in (3, 2):
        stale = await client.post(
            url, params={"sequenceId": seq, "updateMask": "languages"}, json=body
        )
        assert stale.status_code == 400
        assert stale.json()["reason"] == "InvalidFieldValue"
        assert stale.json()["detail"].startswith("sequenceId:")
    ok = await client.post(url, params={"sequenceId": 4, "updateMask": "languages"}, json=body)
    assert ok.status_code == 200


@pytest.mark.parametrize("config", [EmulatorConfig(update_min_interval=5)])
async def test_update_pacing_option(client: ConformanceClient, clock: EmulatorClock) -> None:
    """update_min_interval=5: an update within 5 s of join or of the last update answers 429."""
    agent = await join(client)
    url = f"{V7}/agents/{agent['agent_id']}/update"
    params: dict[str, Any] = {"sequenceId": 1, "updateMask": "languages"}
    early = await client.post(url, params=params, json={"languages": ["fr-FR"]})
    assert early.status_code == 429
    assert early.headers["retry-after"] == "5"
    clock.advance(5)
    assert (await client.post(url, params=params, json={"languages": ["fr-FR"]})).status_code == 200


async def test_update_of_stopping_agent_is_404(client: ConformanceClient) -> None:
    """Update of an agent that is leaving answers 404 TaskNotFound."""
    agent = await join(client)
    await client.post(f"{V7}/agents/{agent['agent_id']}/leave")
    response = await client.post(
        f"{V7}/agents/{agent['agent_id']}/update",
        params={"sequenceId": 1, "updateMask": "languages"},
        json={"languages": ["fr-FR"]},
    )
    assert response.status_code == 404
    assert response.json()["reason"] == "TaskNotFound"


async def test_update_does_not_reset_idle_timer(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """The idle timer keeps counting through updates (newest OpenAPI)."""
    agent = await join(client, channel="idle-upd", maxIdleTime=10)
    await client.post("/_emulator/channels/idle-upd", json={"hosts": 0})
    clock.advance(8)
    response = await client.post(
        f"{V7}/agents/{agent['agent_id']}/update",
        params={"sequenceId": 1, "updateMask": "languages"},
        json={"languages": ["fr-FR"]},
    )
    assert response.status_code == 200
    clock.advance(2)
    assert await status_of(client, agent["agent_id"]) == "STOPPING"


async def test_forced_failure_is_visible_and_frees_the_name(client: ConformanceClient) -> None:
    """A FAILED agent answers query 200 with status FAILED and its exit message."""
    agent = await join(client, name="fragile")
    forced = await client.post(
        f"/_emulator/agents/{agent['agent_id']}",
        json={"status": "FAILED", "message": "Fatal ASR error"},
    )
    assert forced.status_code == 200
    response = await client.get(f"{V7}/agents/{agent['agent_id']}")
    assert response.json()["status"] == "FAILED"
    assert response.json()["message"] == "Fatal ASR error"
    assert (await join(client, name="fragile"))["status"] == "STARTING"


async def test_recovering_agent_can_be_updated_and_left(client: ConformanceClient) -> None:
    """RECOVERING is an active state: update applies, leave stops it."""
    agent = await join(client)
    await client.post(f"/_emulator/agents/{agent['agent_id']}", json={"status": "RECOVERING"})
    assert await status_of(client, agent["agent_id"]) == "RECOVERING"
    response = await client.post(
        f"{V7}/agents/{agent['agent_id']}/update",
        params={"sequenceId": 1, "updateMask": "languages"},
        json={"languages": ["fr-FR"]},
    )
    assert response.status_code == 200
    assert (await client.post(f"{V7}/agents/{agent['agent_id']}/leave")).status_code == 200


def test_config_is_frozen() -> None:
    """EmulatorConfig is an immutable value."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        EmulatorConfig().start_delay = 3  # type: ignore[misc]
