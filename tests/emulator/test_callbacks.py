"""NCS callbacks from the emulator (issue 9, point 4; spec §8, §12.12).

The receiver here is a small ASGI recorder that checks signatures with its own hmac code,
never the SDK's ``notifications``: the emulator is held to the spec, not to the SDK.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any

import anyio
import httpx
import pytest

from agora_stt_async.emulator import EmulatorApp, EmulatorClock, EmulatorConfig, create_app
from tests.emulator.conftest import START, V7, join_body, make_client

pytestmark = pytest.mark.anyio

SECRET = "ncs-test-secret"
URL = "http://receiver.test/agora/ncs"


class Recorder:
    """An ASGI receiver: answers the next status of ``statuses`` (then 200) and keeps
    every request it got, with its signatures checked."""

    def __init__(self, statuses: Iterable[int] = ()) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        key = SECRET.encode()
        self.requests.append(
            {
                "method": scope["method"],
                "path": scope["path"],
                "headers": headers,
                "body": json.loads(body),
                "sha1_ok": headers["agora-signature"]
                == hmac.new(key, body, hashlib.sha1).hexdigest(),
                "sha256_ok": headers["agora-signature-v2"]
                == hmac.new(key, body, hashlib.sha256).hexdigest(),
            }
        )
        status = self.statuses.pop(0) if self.statuses else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]


def callback_app(
    clock: EmulatorClock, recorder: Recorder, seed: int = 1, **settings: Any
) -> EmulatorApp:
    settings.setdefault("callback_retry_delay", 0.0)
    config = EmulatorConfig(callback_url=URL, callback_secret=SECRET, **settings)
    return create_app(
        config, clock=clock, seed=seed, callback_transport=httpx.ASGITransport(recorder)
    )


async def join(app: EmulatorApp, name: str = "agent-1", **extra: Any) -> str:
    async with make_client(app) as client:
        response = await client.post(f"{V7}/join", json=join_body(name, f"ch-{name}", **extra))
        assert response.status_code == 200
        agent_id: str = response.json()["agent_id"]
        return agent_id


async def test_callbacks_joined_and_left_signed_as_spec(clock: EmulatorClock) -> None:
    """101 when RUNNING and 102 STOPPED/OK after leave: the documented envelope, both
    signatures over the exact bytes, JSON content type, POST to the configured URL."""
    recorder = Recorder()
    app = callback_app(clock, recorder)
    agent_id = await join(app)
    assert await app.deliver_callbacks() == 0  # still STARTING: nothing yet
    clock.advance(1)
    assert await app.deliver_callbacks() == 1
    async with make_client(app) as client:
        assert (await client.post(f"{V7}/agents/{agent_id}/leave")).status_code == 200
    clock.advance(1)
    assert await app.deliver_callbacks() == 1
    joined, left = recorder.requests
    for request in recorder.requests:
        assert request["method"] == "POST"
        assert request["path"] == "/agora/ncs"
        assert request["headers"]["content-type"] == "application/json"
        assert request["sha1_ok"]
        assert request["sha256_ok"]
    assert joined["body"] == {
        "noticeId": joined["body"]["noticeId"],
        "productId": 20,
        "eventType": 101,
        "notifyMs": int((START + 1) * 1000),
        "sid": agent_id,
        "payload": {"agent_id": agent_id, "channel": "ch-agent-1", "start_ts": int(START)},
    }
    assert left["body"]["eventType"] == 102
    assert left["body"]["sid"] == agent_id
    assert left["body"]["payload"] == {
        "agent_id": agent_id,
        "channel": "ch-agent-1",
        "start_ts": int(START),
        "stop_ts": int(START + 1.5),  # leave at +1, STOPPED after stop_delay 0.5
        "status": "STOPPED",
        "message": "OK",
    }
    assert joined["body"]["noticeId"] != left["body"]["noticeId"]


async def test_callbacks_idle_timeout_message(clock: EmulatorClock) -> None:
    """An idle timeout ends with 102 STOPPED "Idle for too long" (spec §8.2)."""
    recorder = Recorder()
    app = callback_app(clock, recorder, default_hosts=0)
    await join(app, maxIdleTime=5)
    clock.advance(10)
    await app.deliver_callbacks()
    assert [b["eventType"] for b in recorder.bodies] == [101, 102]
    payload = recorder.bodies[1]["payload"]
    assert (payload["status"], payload["message"]) == ("STOPPED", "Idle for too long")


async def test_callbacks_injected_failure_message(clock: EmulatorClock) -> None:
    """A failure forced through the control API ends with 102 FAILED and its message."""
    recorder = Recorder()
    app = callback_app(clock, recorder, join_status="RUNNING")
    agent_id = await join(app)
    async with make_client(app) as client:
        forced = await client.post(f"/_emulator/agents/{agent_id}", json={"status": "FAILED"})
        assert forced.status_code == 200
    await app.deliver_callbacks()
    payload = recorder.bodies[-1]["payload"]
    assert (payload["status"], payload["message"]) == ("FAILED", "RTC connection error")
    assert recorder.bodies[0]["eventType"] == 101


async def test_callbacks_lifetime_end_is_ok(clock: EmulatorClock) -> None:
    """The hard lifetime ends the agent with 102 STOPPED "OK"."""
    recorder = Recorder()
    app = callback_app(clock, recorder, max_lifetime=60.0)
    await join(app)
    clock.advance(120)
    await app.deliver_callbacks()
    assert recorder.bodies[-1]["payload"]["message"] == "OK"


async def test_callbacks_resent_until_200(clock: EmulatorClock) -> None:
    """A non-200 answer is resent, signed again, with the same noticeId (spec §8.1)."""
    recorder = Recorder([500, 503])
    app = callback_app(clock, recorder, join_status="RUNNING", callback_retry_delay=0.01)
    await join(app)
    clock.advance(0.25)
    await app.deliver_callbacks()
    first, second, third = recorder.requests
    assert first["body"]["noticeId"] == second["body"]["noticeId"] == third["body"]["noticeId"]
    assert all(r["sha256_ok"] for r in recorder.requests)
    assert app.callbacks.sent[0].attempts == [500, 503, 200]
    stats = app.callbacks.describe()
    assert (stats["delivered"], stats["resent"], stats["failed"]) == (1, 2, 0)


async def test_callbacks_give_up_after_three_resends() -> None:
    """A receiver that never answers 200 gets the notice four times in all, then no more."""
    clock = EmulatorClock()  # real time, so notifyMs differs between resends
    recorder = Recorder([500] * 10)
    app = callback_app(clock, recorder, join_status="RUNNING", callback_retry_delay=0.002)
    await join(app)
    await app.deliver_callbacks()
    assert len(recorder.requests) == 4
    assert len({r["body"]["notifyMs"] for r in recorder.requests}) > 1
    assert app.callbacks.describe()["failed"] == 1


async def test_callbacks_time_out_and_resend(clock: EmulatorClock) -> None:
    """No answer within callback_timeout counts as a failed attempt."""

    class Silent:
        calls = 0

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            self.calls += 1
            await anyio.sleep(10)

    silent = Silent()
    config = EmulatorConfig(
        callback_url=URL,
        callback_secret=SECRET,
        callback_timeout=0.02,
        callback_retries=1,
        callback_retry_delay=0.0,
        join_status="RUNNING",
    )
    app = create_app(config, clock=clock, callback_transport=httpx.ASGITransport(silent))
    await join(app)
    with anyio.fail_after(5):
        await app.deliver_callbacks()
    assert silent.calls == 2
    assert app.callbacks.sent[0].attempts == [0, 0]


async def test_callbacks_loss_duplication_reordering(clock: EmulatorClock) -> None:
    """Loss drops, duplication sends the same noticeId twice, reordering sends an event
    after the next one."""
    lost = Recorder()
    app = callback_app(clock, lost, join_status="RUNNING", callback_loss=1.0)
    await join(app)
    await app.deliver_callbacks()
    assert lost.requests == []
    assert app.callbacks.describe()["lost"] == 1

    doubled = Recorder()
    app = callback_app(clock, doubled, join_status="RUNNING", callback_duplicate=1.0)
    await join(app)
    await app.deliver_callbacks()
    assert [b["noticeId"] for b in doubled.bodies] == [doubled.bodies[0]["noticeId"]] * 2

    swapped = Recorder()
    app = callback_app(clock, swapped, join_status="RUNNING", callback_reorder=1.0)
    agents = [await join(app, f"agent-{i}") for i in range(4)]
    await app.deliver_callbacks()
    # Every event is held back and overtaken by the next one: 2, 1, 4, 3.
    assert [b["sid"] for b in swapped.bodies] == [agents[1], agents[0], agents[3], agents[2]]
    assert app.callbacks.describe()["reordered"] == 2


async def test_callbacks_held_event_flushed(clock: EmulatorClock) -> None:
    """A held-back event that nothing overtakes is still sent by deliver()."""
    recorder = Recorder()
    app = callback_app(clock, recorder, join_status="RUNNING", callback_reorder=1.0)
    await join(app)
    assert app.callbacks.pending == 1
    await app.deliver_callbacks()
    assert len(recorder.requests) == 1


async def test_callbacks_seeded(clock: EmulatorClock) -> None:
    """The same seed gives the same notice ids and the same losses."""
    runs = []
    for _ in range(2):
        recorder = Recorder()
        app = callback_app(clock, recorder, join_status="RUNNING", callback_loss=0.5, seed=9)
        for i in range(20):
            await join(app, f"agent-{i}")
        await app.deliver_callbacks()
        runs.append([b["noticeId"] for b in recorder.bodies])
    assert runs[0] == runs[1]
    assert 0 < len(runs[0]) < 20


async def test_callbacks_off_by_default(clock: EmulatorClock) -> None:
    """Without callback_url nothing is generated or sent."""
    app = create_app(EmulatorConfig(join_status="RUNNING"), clock=clock)
    await join(app)
    assert await app.deliver_callbacks() == 0
    assert app.callbacks.describe()["generated"] == 0


@pytest.mark.parametrize(
    "setting", ["callback_loss", "callback_duplicate", "callback_reorder"], ids=str
)
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")], ids=str)
def test_callbacks_refuse_bad_probabilities(setting: str, value: float) -> None:
    """Probabilities outside 0..1 are refused when the app is built."""
    settings: dict[str, Any] = {setting: value}
    with pytest.raises(ValueError, match=setting):
        create_app(EmulatorConfig(**settings))


async def test_callbacks_run_sends_without_requests() -> None:
    """The running sender applies time itself: the 101 goes out when the agent starts,
    with no request to the emulator in between."""
    recorder = Recorder()
    app = callback_app(EmulatorClock(), recorder, start_delay=0.05)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(app.run_callbacks)
            await join(app)
            while not recorder.requests:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert recorder.bodies[0]["eventType"] == 101


async def test_callbacks_run_flushes_held_event() -> None:
    """With the sender running, a held-back event nothing overtakes goes out anyway."""
    recorder = Recorder()
    app = callback_app(EmulatorClock(), recorder, join_status="RUNNING", callback_reorder=1.0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(app.run_callbacks)
            await join(app)
            while not recorder.requests:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()


async def serve_lifespan(app: EmulatorApp, receive: Any, send: Any) -> None:
    await app({"type": "lifespan"}, receive, send)


async def test_callbacks_lifespan_runs_the_sender() -> None:
    """Served with a lifespan (uvicorn), the app starts the sender and stops it on shutdown."""
    recorder = Recorder()
    app = callback_app(EmulatorClock(), recorder, join_status="RUNNING")
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](4)
    app_outbox, from_app = anyio.create_memory_object_stream[dict[str, Any]](4)

    async def receive() -> dict[str, Any]:
        return await app_inbox.receive()

    async def send(message: dict[str, Any]) -> None:
        await app_outbox.send(message)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, to_app, app_inbox, app_outbox, from_app:
            tg.start_soon(serve_lifespan, app, receive, send)
            await to_app.send({"type": "lifespan.startup"})
            assert (await from_app.receive())["type"] == "lifespan.startup.complete"
            await join(app)
            while not recorder.requests:
                await anyio.sleep(0.01)
            await to_app.send({"type": "lifespan.shutdown"})
            assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"
    assert recorder.bodies[0]["eventType"] == 101


async def test_callbacks_control_api(clock: EmulatorClock) -> None:
    """GET /_emulator/callbacks shows the counters; POST sends what is pending."""
    recorder = Recorder()
    app = callback_app(clock, recorder, join_status="RUNNING")
    await join(app)
    async with make_client(app) as client:
        before = (await client.get("/_emulator/callbacks")).json()
        assert before["enabled"] is True
        assert before["url"] == URL
        assert (before["pending"], before["generated"], before["delivered"]) == (1, 1, 0)
        after = (await client.post("/_emulator/callbacks")).json()
        assert (after["sent"], after["pending"], after["delivered"]) == (1, 0, 1)
    assert len(recorder.requests) == 1


async def test_callbacks_reset_forgets_queue(clock: EmulatorClock) -> None:
    """reset() drops pending notices and counters, and re-seeds."""
    recorder = Recorder()
    app = callback_app(clock, recorder, join_status="RUNNING")
    await join(app)
    app.reset()
    assert app.callbacks.pending == 0
    assert app.callbacks.describe()["generated"] == 0
    assert await app.deliver_callbacks() == 0


def test_callbacks_config_is_data() -> None:
    """The callback settings are plain dataclass fields (picklable for a child server)."""
    config = EmulatorConfig(callback_url=URL, callback_loss=0.3)
    assert dataclasses.asdict(config)["callback_loss"] == 0.3
