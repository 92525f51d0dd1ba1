"""The emulator's callback disorder used by the webhook tests: holding a notice back
across several later ones (``reorder_depth``) and redundant copies under a new
noticeId (``redundant``, spec §8.1), both seeded apart from the older settings."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from agora_stt_async.emulator import EmulatorApp, EmulatorClock, EmulatorConfig, create_app
from tests.emulator.conftest import START, V7, join_body, make_client

pytestmark = pytest.mark.anyio

URL = "http://receiver.test/agora/ncs"


class Recorder:
    """An ASGI receiver that answers 200 and keeps each body it got."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(json.loads(body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def sender_app(recorder: Recorder, seed: int = 1, **settings: Any) -> EmulatorApp:
    config = EmulatorConfig(
        callback_url=URL, callback_retry_delay=0.0, join_status="RUNNING", **settings
    )
    return create_app(
        config,
        clock=EmulatorClock(START),
        seed=seed,
        callback_transport=httpx.ASGITransport(recorder),
    )


async def join_all(app: EmulatorApp, count: int) -> list[str]:
    """Join ``count`` agents (each makes its 101 at once); their IDs in joining order."""
    agents: list[str] = []
    async with make_client(app) as client:
        for i in range(count):
            response = await client.post(f"{V7}/join", json=join_body(f"a-{i}", f"ch-{i}"))
            assert response.status_code == 200
            agents.append(response.json()["agent_id"])
    return agents


def overtakers(made: list[str], sent: list[str]) -> list[int]:
    """For each notice sent, how many notices made after it were sent before it."""
    position = {sid: i for i, sid in enumerate(made)}
    return [
        sum(position[earlier] > position[sid] for earlier in sent[:index])
        for index, sid in enumerate(sent)
    ]


async def test_emulator_reorder_depth_holds_across_several_later_notices() -> None:
    """Deeper than 1, a held-back notice is overtaken by up to reorder_depth later ones
    (by more than one in a seeded run), and every notice is still sent once."""
    recorder = Recorder()
    app = sender_app(recorder, seed=4, callback_reorder=0.3)
    app.callbacks.reorder_depth = 6
    agents = await join_all(app, 60)
    await app.deliver_callbacks()
    sent = [body["sid"] for body in recorder.bodies]
    assert sorted(sent) == sorted(agents)
    passed = overtakers(agents, sent)
    assert max(passed) <= 6
    assert max(passed) >= 2
    assert app.callbacks.stats["reordered"] > 0


async def test_emulator_reorder_depth_one_keeps_the_next_one_rule() -> None:
    """At the default depth, each held notice is overtaken by exactly the next one."""
    recorder = Recorder()
    app = sender_app(recorder, callback_reorder=1.0)
    agents = await join_all(app, 4)
    await app.deliver_callbacks()
    assert [body["sid"] for body in recorder.bodies] == [
        agents[1],
        agents[0],
        agents[3],
        agents[2],
    ]


async def test_emulator_redundant_copies_have_a_new_notice_id() -> None:
    """A redundant copy carries a new noticeId and the same event and payload."""
    recorder = Recorder()
    app = sender_app(recorder)
    app.callbacks.redundant = 1.0
    [agent] = await join_all(app, 1)
    await app.deliver_callbacks()
    first, second = recorder.bodies
    assert first["noticeId"] != second["noticeId"]
    for body in (first, second):
        body.pop("noticeId")
        body.pop("notifyMs")
    assert first == second
    assert first["sid"] == agent
    assert app.callbacks.describe()["redundant"] == 1


async def test_emulator_new_settings_leave_the_seeded_stream_alone() -> None:
    """Turning on redundant copies and a deeper reorder changes neither the noticeIds nor
    the losses of a seeded run: they draw from a random stream of their own."""
    runs: list[tuple[set[str], set[int]]] = []
    redundant = 0
    for extras in (False, True):
        recorder = Recorder()
        app = sender_app(recorder, seed=9, callback_loss=0.5)
        if extras:
            app.callbacks.redundant = 0.5
            app.callbacks.reorder_depth = 4
        agents = await join_all(app, 20)
        await app.deliver_callbacks()
        notice_ids = {body["noticeId"] for body in recorder.bodies}
        heard = {agents.index(body["sid"]) for body in recorder.bodies}
        runs.append((notice_ids, heard))
        redundant = app.callbacks.stats["redundant"]
    (plain_ids, plain_heard), (ids, heard) = runs
    assert plain_ids < ids
    assert len(ids - plain_ids) == redundant > 0
    assert heard == plain_heard  # the same events were lost
    assert 0 < len(plain_heard) < 20


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "2"], ids=repr)
def test_emulator_reorder_depth_refuses_bad_values(value: Any) -> None:
    """reorder_depth is an int >= 1."""
    app = create_app(EmulatorConfig(callback_url=URL))
    with pytest.raises(ValueError, match="reorder_depth"):
        app.callbacks.reorder_depth = value


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")], ids=repr)
def test_emulator_redundant_refuses_bad_values(value: float) -> None:
    """redundant is a probability in 0..1."""
    app = create_app(EmulatorConfig(callback_url=URL))
    with pytest.raises(ValueError, match="redundant"):
        app.callbacks.redundant = value


async def test_emulator_run_flushes_deeply_held_notices_once_quiet() -> None:
    """With the sender running, notices held for overtakers that never come (every one
    is held) go out after a quiet interval; idle then says every notice was answered."""
    recorder = Recorder()
    app = sender_app(recorder, callback_reorder=1.0)
    app.callbacks.reorder_depth = 50
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(app.run_callbacks)
            agents = await join_all(app, 3)
            while not app.callbacks.idle:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert sorted(body["sid"] for body in recorder.bodies) == sorted(agents)
