"""Legacy v5/v6 builder-token API conformance (spec §5, §6.1)."""

from __future__ import annotations

from typing import Any

import pytest

from agora_stt_async.emulator import EmulatorApp, EmulatorClock, EmulatorConfig
from tests.emulator.conftest import APP_ID, LEGACY, OTHER_APP_ID, ConformanceClient, start_body

pytestmark = pytest.mark.anyio

OTHER_LEGACY = LEGACY.replace(APP_ID, OTHER_APP_ID)
NOT_FOUND = {"code": 404, "message": "The task is not found"}
MISMATCH = {"code": 53, "message": "The taskId does not match with builderToken."}
EXPIRED = {"message": "resourceId reaches out the limited time interval!"}


async def acquire(
    client: ConformanceClient, instance_id: str = "channel-1", base: str = LEGACY
) -> str:
    response = await client.post(f"{base}/builderTokens", json={"instanceId": instance_id})
    assert response.status_code == 200, response.text
    token: str = response.json()["tokenName"]
    return token


async def start(client: ConformanceClient, token: str, **kwargs: Any) -> dict[str, Any]:
    response = await client.post(
        f"{LEGACY}/tasks", params={"builderToken": token}, json=start_body(**kwargs)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_acquire_answers_token_name_create_ts_instance_id(client: ConformanceClient) -> None:
    """Acquire answers {tokenName, createTs, instanceId}; tokens are opaque and URL-safe."""
    response = await client.post(f"{LEGACY}/builderTokens", json={"instanceId": "room_7-a"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"tokenName", "createTs", "instanceId"}
    assert body["instanceId"] == "room_7-a"
    assert body["createTs"] == 1_750_000_000
    assert all(c.isalnum() or c in "-_." for c in body["tokenName"])
    assert await acquire(client, "room_7-a") != body["tokenName"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({}, "instanceId value! is required"),
        (None, "request body! the request body is not valid JSON"),
        ({"instanceId": ""}, "instanceId value!"),
        ({"instanceId": "a" * 65}, "instanceId value! must be at most 64 characters"),
        ({"instanceId": "has space"}, "instanceId value! must match"),
        ({"instanceId": "dot.ted"}, "instanceId value! must match"),
        ({"instanceId": 12}, "instanceId value! must be a string"),
        ([], "request body! the request body must be a JSON object"),
    ],
)
async def test_acquire_validates_instance_id(
    client: ConformanceClient, body: Any, why: str
) -> None:
    """A bad acquire body answers 400 in the spec §6.1 acquire shape
    {"code": 2, "reason": "Acquire: invalid <field> value! <why>"}, naming the field."""
    kwargs = {"json": body} if body is not None else {"content": b""}
    response = await client.post(f"{LEGACY}/builderTokens", **kwargs)
    assert response.status_code == 400
    assert set(response.json()) == {"code", "reason"}
    assert response.json()["code"] == 2
    assert response.json()["reason"].startswith(f"Acquire: invalid {why}")


async def test_start_query_update_stop_happy_path(client: ConformanceClient) -> None:
    """Start answers {taskId (32 hex), createTs, status IN_PROGRESS}; query/update echo it."""
    token = await acquire(client)
    task = await start(client, token)
    assert set(task) == {"taskId", "createTs", "status"}
    assert len(task["taskId"]) == 32
    assert int(task["taskId"], 16) >= 0
    assert task["status"] == "IN_PROGRESS"
    url = f"{LEGACY}/tasks/{task['taskId']}"
    query = await client.get(url, params={"builderToken": token})
    assert query.status_code == 200
    assert query.json() == task
    update = await client.patch(
        url,
        params={"builderToken": token, "sequenceId": 1, "updateMask": "languages"},
        json={"languages": ["fr-FR", "de-DE"]},
    )
    assert update.status_code == 200
    assert update.json() == task
    stop = await client.delete(url, params={"builderToken": token})
    assert stop.status_code == 200
    assert stop.content == b""


@pytest.mark.parametrize("config", [EmulatorConfig(repeat_stop_code=404)])
async def test_after_stop_query_and_stop_are_not_found(client: ConformanceClient) -> None:
    """After stop, query, update and stop answer 404 {code 404, "The task is not found"}
    (with ``repeat_stop_code=404``; by default a repeated stop is code 49)."""
    token = await acquire(client)
    task = await start(client, token)
    url = f"{LEGACY}/tasks/{task['taskId']}"
    await client.delete(url, params={"builderToken": token})
    calls: list[tuple[str, dict[str, Any]]] = [
        ("GET", {"builderToken": token}),
        ("DELETE", {"builderToken": token}),
        ("PATCH", {"builderToken": token, "sequenceId": 2, "updateMask": "languages"}),
    ]
    for method, params in calls:
        response = await client.request(method, url, params=params, json={"languages": ["en-US"]})
        assert response.status_code == 404
        assert response.json() == NOT_FOUND


async def test_unknown_task_is_not_found(client: ConformanceClient) -> None:
    """A taskId that never existed answers 404 code 404."""
    token = await acquire(client)
    response = await client.get(f"{LEGACY}/tasks/{'0' * 32}", params={"builderToken": token})
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


async def test_repeated_start_is_409_code_49_with_task_id(client: ConformanceClient) -> None:
    """A second start with the same token answers 409 code 49 and names the existing taskId."""
    token = await acquire(client)
    task = await start(client, token)
    again = await client.post(f"{LEGACY}/tasks", params={"builderToken": token}, json=start_body())
    assert again.status_code == 409
    assert again.json() == {
        "code": 49,
        "message": "The task has been started, current status is STARTED, "
        f"taskId is {task['taskId']}",
    }


@pytest.mark.parametrize("config", [EmulatorConfig(repeat_start_status=201)])
async def test_repeated_start_can_answer_201(client: ConformanceClient) -> None:
    """repeat_start_status=201: the common-errors page's "already running" status."""
    token = await acquire(client)
    await start(client, token)
    again = await client.post(f"{LEGACY}/tasks", params={"builderToken": token}, json=start_body())
    assert again.status_code == 201
    assert again.json()["code"] == 49


async def test_one_instance_id_many_tokens_one_task(client: ConformanceClient) -> None:
    """An instanceId mints many tokens; only one starts a task, the others get code 49."""
    first, second = await acquire(client, "room"), await acquire(client, "room")
    assert first != second
    task = await start(client, first)
    response = await client.post(
        f"{LEGACY}/tasks", params={"builderToken": second}, json=start_body()
    )
    assert response.status_code == 409
    assert response.json()["message"].endswith(f"taskId is {task['taskId']}")


async def test_after_stop_the_token_cannot_start_but_a_new_one_can(
    client: ConformanceClient,
) -> None:
    """A stopped task's token never starts again (code 49 with the documented literal
    "current status is STARTED", spec §6.1); a fresh token of the instanceId does."""
    token = await acquire(client, "room")
    task = await start(client, token)
    await client.delete(f"{LEGACY}/tasks/{task['taskId']}", params={"builderToken": token})
    again = await client.post(f"{LEGACY}/tasks", params={"builderToken": token}, json=start_body())
    assert again.status_code == 409
    assert again.json() == {
        "code": 49,
        "message": "The task has been started, current status is STARTED, "
        f"taskId is {task['taskId']}",
    }
    fresh = await start(client, await acquire(client, "room"))
    assert fresh["taskId"] != task["taskId"]


async def test_token_minted_before_the_first_task_never_starts_one(
    client: ConformanceClient,
) -> None:
    """Tokens of an instanceId minted before (or while) its task ran cannot start a task
    after that task stopped: 409 code 49 naming it (spec §5.1, §12.13/14); only a token
    minted after the stop can."""
    early = await acquire(client, "room")
    token = await acquire(client, "room")
    task = await start(client, token)
    during = await acquire(client, "room")
    await client.delete(f"{LEGACY}/tasks/{task['taskId']}", params={"builderToken": token})
    for stale in (early, during):
        response = await client.post(
            f"{LEGACY}/tasks", params={"builderToken": stale}, json=start_body()
        )
        assert response.status_code == 409
        assert response.json() == {
            "code": 49,
            "message": "The task has been started, current status is STARTED, "
            f"taskId is {task['taskId']}",
        }
    fresh = await start(client, await acquire(client, "room"))
    again = await client.post(f"{LEGACY}/tasks", params={"builderToken": early}, json=start_body())
    assert again.json()["message"].endswith(f"taskId is {fresh['taskId']}")


async def test_token_minted_before_an_idle_end_never_starts_one(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """The rule holds however the task ended (here the idle timeout), and per instanceId:
    another instanceId's tokens are not affected."""
    early, other = await acquire(client, "room"), await acquire(client, "elsewhere")
    task = await start(client, await acquire(client, "room"), channel="quiet", maxIdleTime=5)
    await client.post("/_emulator/channels/quiet", json={"hosts": 0})
    clock.advance(5)
    response = await client.post(
        f"{LEGACY}/tasks", params={"builderToken": early}, json=start_body()
    )
    assert response.status_code == 409
    assert response.json()["message"].endswith(f"taskId is {task['taskId']}")
    await start(client, other, channel="elsewhere")


async def test_expired_unused_token_is_expired_before_code_49(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """An unused token past the 5-minute window answers "resourceId reaches out …" even if
    its instanceId already had a task: acquiring again is the advice that works."""
    token, spare = await acquire(client, "room"), await acquire(client, "room")
    task = await start(client, token)
    await client.delete(f"{LEGACY}/tasks/{task['taskId']}", params={"builderToken": token})
    clock.advance(301)
    response = await client.post(
        f"{LEGACY}/tasks", params={"builderToken": spare}, json=start_body()
    )
    assert response.status_code == 400
    assert response.json() == EXPIRED


async def test_repeated_stop_is_409_code_49(client: ConformanceClient) -> None:
    """A second stop with the same token and taskId answers 409 code 49 (spec §5.5, §6.1);
    its message is not the repeated-start one clients match."""
    token = await acquire(client)
    task = await start(client, token)
    url = f"{LEGACY}/tasks/{task['taskId']}"
    assert (await client.delete(url, params={"builderToken": token})).status_code == 200
    again = await client.delete(url, params={"builderToken": token})
    assert again.status_code == 409
    assert again.json() == {
        "code": 49,
        "message": "The task has been stopped, current status is STOPPED, "
        f"taskId is {task['taskId']}",
    }
    query = await client.get(url, params={"builderToken": token})
    assert (query.status_code, query.json()) == (404, NOT_FOUND)


async def test_stop_of_a_task_that_ended_on_its_own_is_not_found(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """A stop of a task that ended without a stop request (the 24 h lifetime) answers
    404 "The task is not found" (spec §5.5: "stop … of a finished task")."""
    token = await acquire(client)
    task = await start(client, token)
    clock.advance(86_400)
    response = await client.delete(
        f"{LEGACY}/tasks/{task['taskId']}", params={"builderToken": token}
    )
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


async def test_repeated_stop_with_another_token_is_code_53(client: ConformanceClient) -> None:
    """The token check comes first: a stopped task's stop with another token is code 53."""
    token, other = await acquire(client, "a"), await acquire(client, "b")
    task = await start(client, token)
    url = f"{LEGACY}/tasks/{task['taskId']}"
    await client.delete(url, params={"builderToken": token})
    response = await client.delete(url, params={"builderToken": other})
    assert (response.status_code, response.json()) == (400, MISMATCH)


async def test_token_expires_five_minutes_after_acquire(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """Start more than 300 s after acquire answers 400 "resourceId reaches out …"."""
    late, in_time = await acquire(client, "a"), await acquire(client, "b")
    clock.advance(300)
    await start(client, in_time)
    clock.advance(0.01)
    response = await client.post(
        f"{LEGACY}/tasks", params={"builderToken": late}, json=start_body()
    )
    assert response.status_code == 400
    assert response.json() == EXPIRED


async def test_a_started_token_outlives_the_window(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """After a successful start the token stays valid for query/update/stop."""
    token = await acquire(client)
    task = await start(client, token)
    clock.advance(3600)
    response = await client.get(f"{LEGACY}/tasks/{task['taskId']}", params={"builderToken": token})
    assert response.status_code == 200


@pytest.mark.parametrize("token", [None, "", "garbage", "a.b", "eyJ4IjoxfQ.AAAA"])
async def test_unparsable_token_is_code_1001(client: ConformanceClient, token: str | None) -> None:
    """A missing or garbled builderToken answers 400 code 1001 on start and on task calls."""
    params = {"builderToken": token} if token is not None else {}
    started = await client.post(f"{LEGACY}/tasks", params=params, json=start_body())
    queried = await client.get(f"{LEGACY}/tasks/{'a' * 32}", params=params)
    for response in (started, queried):
        assert response.status_code == 400
        assert response.json() == {
            "code": 1001,
            "message": "the product name does not match with builderToken",
        }


async def test_tampered_token_is_code_1001(client: ConformanceClient) -> None:
    """Editing a real token breaks its signature: code 1001."""
    token = await acquire(client)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    response = await client.post(
        f"{LEGACY}/tasks", params={"builderToken": tampered}, json=start_body()
    )
    assert response.json()["code"] == 1001


async def test_token_of_another_app_is_code_1003(client: ConformanceClient) -> None:
    """A token acquired for another App ID answers 400 code 1003."""
    foreign = await acquire(client, base=OTHER_LEGACY)
    started = await client.post(
        f"{LEGACY}/tasks", params={"builderToken": foreign}, json=start_body()
    )
    assert started.status_code == 400
    assert started.json()["code"] == 1003
    token = await acquire(client)
    task = await start(client, token)
    queried = await client.get(f"{LEGACY}/tasks/{task['taskId']}", params={"builderToken": foreign})
    assert queried.status_code == 400
    assert queried.json() == {
        "code": 1003,
        "message": "The taskId does not match with builderToken.",
    }


async def test_token_of_another_task_is_code_53(client: ConformanceClient) -> None:
    """Query, update or stop with another task's token answers 400 code 53 and stops nothing."""
    token_a, token_b = await acquire(client, "a"), await acquire(client, "b")
    task_a = await start(client, token_a, channel="a")
    await start(client, token_b, channel="b")
    url = f"{LEGACY}/tasks/{task_a['taskId']}"
    calls: list[tuple[str, dict[str, Any]]] = [
        ("GET", {"builderToken": token_b}),
        ("DELETE", {"builderToken": token_b}),
        ("PATCH", {"builderToken": token_b, "sequenceId": 1, "updateMask": "languages"}),
    ]
    for method, params in calls:
        response = await client.request(method, url, params=params, json={"languages": ["en-US"]})
        assert response.status_code == 400
        assert response.json() == MISMATCH
    still = await client.get(url, params={"builderToken": token_a})
    assert still.json()["status"] == "IN_PROGRESS"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (
            {"rtcConfig": {"channelName": "c", "subBotUid": "1", "pubBotUid": "2"}},
            "languages: is required",
        ),
        (start_body(languages=["en-US"] * 5), "languages: must have at most 4 items"),
        (
            start_body(rtcConfig={"channelName": "c", "pubBotUid": "2"}),
            "rtcConfig.subBotUid: is required",
        ),
        (start_body(maxIdleTime=4), "maxIdleTime: must be between 5 and 2592000"),
        (
            start_body(
                translateConfig={"languages": [{"source": "en-US", "target": ["fr-FR"] * 6}]}
            ),
            "translateConfig.languages[0].target: must have at most 5 items",
        ),
        (
            start_body(
                languages=["en-US", "fr-FR"],
                translateConfig={"languages": [{"source": "en-US", "target": ["en-US"]}]},
            ),
            "translateConfig.languages[0].target: must not contain the source language",
        ),
        (start_body(translateConfig={}), "translateConfig.languages: is required"),
        (start_body(captionConfig={"sliceDuration": 60}), "captionConfig.storage: is required"),
        (
            start_body(
                rtcConfig={
                    "channelName": "c",
                    "subBotUid": "1",
                    "pubBotUid": "2",
                    "transferMode": ["RTP"],
                }
            ),
            "rtcConfig.transferMode[0]: must be one of",
        ),
    ],
)
async def test_start_body_schema_check(client: ConformanceClient, body: Any, why: str) -> None:
    """A bad start body answers 400 code 2 "body schema check fail, <field>: <why>"."""
    token = await acquire(client)
    response = await client.post(f"{LEGACY}/tasks", params={"builderToken": token}, json=body)
    assert response.status_code == 400
    assert response.json()["code"] == 2
    assert response.json()["message"].startswith(f"body schema check fail, {why}")


async def test_start_schema_failure_keeps_the_token_usable(client: ConformanceClient) -> None:
    """A refused start creates nothing; the same token then starts once."""
    token = await acquire(client)
    bad = await client.post(
        f"{LEGACY}/tasks", params={"builderToken": token}, json={"languages": []}
    )
    assert bad.status_code == 400
    await start(client, token)


async def test_legacy_update_validates_query_and_body(client: ConformanceClient) -> None:
    """PATCH needs sequenceId and updateMask; a bad body answers code 2."""
    token = await acquire(client)
    task = await start(client, token)
    url = f"{LEGACY}/tasks/{task['taskId']}"
    cases: list[tuple[dict[str, Any], dict[str, Any], str]] = [
        (
            {"builderToken": token, "updateMask": "languages"},
            {"languages": ["en-US"]},
            "sequenceId",
        ),
        ({"builderToken": token, "sequenceId": 1}, {"languages": ["en-US"]}, "updateMask"),
        (
            {"builderToken": token, "sequenceId": 1, "updateMask": "keywords"},
            {"keywords": []},
            "updateMask",
        ),
        (
            {"builderToken": token, "sequenceId": 1, "updateMask": "translateConfig.languages"},
            {"translateConfig": {"languages": [{"source": "en-US", "target": ["fr-FR"] * 6}]}},
            "translateConfig.languages[0].target",
        ),
    ]
    for params, body, field in cases:
        response = await client.patch(url, params=params, json=body)
        assert response.status_code == 400
        assert response.json()["code"] == 2
        assert response.json()["message"].startswith(f"body schema check fail, {field}:")


@pytest.mark.parametrize("config", [EmulatorConfig(legacy_version="v5")])
async def test_v5_limits(client: ConformanceClient) -> None:
    """legacy_version="v5": at most 2 languages and 3 subscribed UIDs."""
    token = await acquire(client)
    three = await client.post(
        f"{LEGACY}/tasks",
        params={"builderToken": token},
        json=start_body(languages=["en-US", "fr-FR", "de-DE"]),
    )
    assert three.json()["message"].startswith("body schema check fail, languages:")
    await start(client, token, languages=["en-US", "fr-FR"])


async def test_nested_v5_body_is_accepted(client: ConformanceClient, app: EmulatorApp) -> None:
    """The 2023 nested v5 body (audio/config) starts a task in its channel."""
    token = await acquire(client)
    body = {
        "audio": {
            "subscribeSource": "AGORARTC",
            "agoraRtcConfig": {
                "channelName": "nested",
                "uid": "1",
                "channelType": "LIVE_TYPE",
                "subscribeConfig": {"subscribeMode": "CHANNEL_MODE"},
                "maxIdleTime": 60,
            },
        },
        "config": {"features": ["RECOGNIZE"], "recognizeConfig": {"language": "en-US,fr-FR"}},
    }
    response = await client.post(f"{LEGACY}/tasks", params={"builderToken": token}, json=body)
    assert response.status_code == 200
    task = app.world.find_task(response.json()["taskId"])
    assert task is not None
    assert (task.channel, task.max_idle_time) == ("nested", 60)


async def test_legacy_idle_timeout_ends_the_task(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """With no host for maxIdleTime the task ends; query then answers "The task is not found"."""
    token = await acquire(client)
    task = await start(client, token, channel="lonely", maxIdleTime=60)
    await client.post("/_emulator/channels/lonely", json={"hosts": 0})
    url = f"{LEGACY}/tasks/{task['taskId']}"
    clock.advance(59)
    assert (await client.get(url, params={"builderToken": token})).status_code == 200
    clock.advance(1)
    response = await client.get(url, params={"builderToken": token})
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


async def test_legacy_task_ends_after_a_day(
    client: ConformanceClient, clock: EmulatorClock
) -> None:
    """A legacy session lasts 24 h (the 2024 quickstart's resource-ID validity)."""
    token = await acquire(client)
    task = await start(client, token)
    clock.advance(86_399)
    url = f"{LEGACY}/tasks/{task['taskId']}"
    assert (await client.get(url, params={"builderToken": token})).status_code == 200
    clock.advance(1)
    assert (await client.get(url, params={"builderToken": token})).status_code == 404


async def test_legacy_non_json_body_is_code_2(client: ConformanceClient) -> None:
    """A start body that is not JSON answers 400 code 2."""
    token = await acquire(client)
    response = await client.post(f"{LEGACY}/tasks", params={"builderToken": token}, content=b"{x")
    assert response.status_code == 400
    assert response.json()["code"] == 2
    assert response.json()["message"].startswith("body schema check fail")


async def test_start_null_max_idle_time_is_the_default(client: ConformanceClient) -> None:
    """``"maxIdleTime": null`` on a legacy start counts as absent (30 s)."""
    task = await start(client, await acquire(client), maxIdleTime=None)
    detail = await client.get(f"/_emulator/tasks/{task['taskId']}")
    assert detail.json()["max_idle_time"] == 30
