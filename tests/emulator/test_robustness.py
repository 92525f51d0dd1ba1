"""Hostile input and the emulator's own failures: every answer is documented and carries
X-Request-Id (spec §6, §12.3), and nothing escapes to the server."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from starlette.types import Message

from agora_stt_async.emulator import EmulatorApp
from tests.emulator.conftest import LEGACY, V7, ConformanceClient, join_body

pytestmark = pytest.mark.anyio

DEEP = b"[" * 100_000  # json.loads raises RecursionError, not ValueError, for this


def deep_keywords() -> bytes:
    """A join body whose ``keywords`` holds an array nested 100,000 deep."""
    head = b'{"name":"deep","languages":["en-US"],'
    rtc = b'"rtcConfig":{"channelName":"c","pubBotUid":"1"},'
    return head + rtc + b'"keywords":' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize(
    ("method", "url", "content", "status", "expected"),
    [
        (
            "POST",
            f"{V7}/join",
            DEEP,
            400,
            {"detail": "the request body is nested too deeply", "reason": "InvalidRequestBody"},
        ),
        (
            "POST",
            f"{V7}/join",
            deep_keywords(),
            400,
            {"detail": "the request body is nested too deeply", "reason": "InvalidRequestBody"},
        ),
        (
            "POST",
            f"{V7}/agents/X/update?sequenceId=1&updateMask=keywords",
            DEEP,
            400,
            {"detail": "the request body is nested too deeply", "reason": "InvalidRequestBody"},
        ),
        (
            "POST",
            f"{LEGACY}/builderTokens",
            DEEP,
            400,
            {
                "code": 2,
                "reason": "Acquire: invalid request body! the request body is nested too deeply",
            },
        ),
        (
            "POST",
            f"{LEGACY}/tasks?builderToken=x",
            DEEP,
            400,
            {"code": 1001, "message": "the product name does not match with builderToken"},
        ),
        (
            "POST",
            "/_emulator/faults",
            DEEP,
            400,
            {"error": "the body must be JSON (the request body is nested too deeply)"},
        ),
        (
            "POST",
            "/_emulator/channels/c",
            DEEP,
            400,
            {"error": "the body must be JSON (the request body is nested too deeply)"},
        ),
    ],
    ids=[
        "join",
        "join-keywords",
        "update",
        "acquire",
        "start",
        "control-faults",
        "control-channel",
    ],
)
async def test_deeply_nested_json_is_a_documented_400(
    client: ConformanceClient,
    method: str,
    url: str,
    content: bytes,
    status: int,
    expected: dict[str, Any],
) -> None:
    """A body nested deeper than json.loads can decode answers the route's documented 400
    (control API: its {"error"} 400), with X-Request-Id, instead of crashing the app."""
    response = await client.request(method, url, content=content)
    assert response.status_code == status
    assert response.json() == expected
    assert response.headers["x-request-id"].startswith("req_")


async def test_deep_legacy_start_body_is_code_2(client: ConformanceClient) -> None:
    """A deep start body with a valid token answers 400 code 2 "body schema check fail"."""
    acquired = await client.post(f"{LEGACY}/builderTokens", json={"instanceId": "deep"})
    token = acquired.json()["tokenName"]
    response = await client.post(f"{LEGACY}/tasks", params={"builderToken": token}, content=DEEP)
    assert response.status_code == 400
    assert response.json()["code"] == 2
    assert "x-request-id" in response.headers


async def test_unexpected_error_on_a_v7_route_is_the_documented_500(
    client: ConformanceClient,
    app: EmulatorApp,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in the world answers 500 {detail, reason: InternalError} with the caller's
    X-Request-Id, and is logged; the next request is served normally."""

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.world, "join", broken)
    with caplog.at_level(logging.ERROR, logger="agora_stt_async.emulator"):
        response = await client.post(
            f"{V7}/join", json=join_body(), headers={"X-Request-Id": "bug-1"}
        )
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error", "reason": "InternalError"}
    assert response.headers["x-request-id"] == "bug-1"
    assert any("join" in r.getMessage() and r.exc_info for r in caplog.records)
    monkeypatch.undo()
    assert (await client.post(f"{V7}/join", json=join_body())).status_code == 200


async def test_unexpected_error_on_a_legacy_route_is_the_documented_500(
    client: ConformanceClient, app: EmulatorApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug behind a legacy route answers the legacy 500 body (code 501) with a request id."""

    def broken(*args: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(app.world, "acquire", broken)
    response = await client.post(f"{LEGACY}/builderTokens", json={"instanceId": "x"})
    assert response.status_code == 500
    assert response.json() == {"code": 501, "message": "Internal server error"}
    assert response.headers["x-request-id"].startswith("req_")


async def test_unexpected_error_in_the_control_api_is_a_500_with_request_id(
    client: ConformanceClient, app: EmulatorApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug outside the documented routes answers the gateway's JSON 500 with a request id."""

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(app.world, "counts", broken)
    response = await client.get("/_emulator/state", headers={"X-Request-Id": "bug-2"})
    assert response.status_code == 500
    assert response.json() == {"message": "An unexpected error occurred"}
    assert response.headers["x-request-id"] == "bug-2"


@pytest.mark.parametrize("path", [f"{V7}/join", f"{LEGACY}/builderTokens", "/_emulator/faults"])
async def test_client_disconnect_mid_body_ends_quietly(
    app: EmulatorApp, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that leaves before its body arrives gets no answer, and nothing is raised
    or logged (the app returns; the server has no one to answer)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"authorization", b"Basic ZW11bGF0b3I6ZW11bGF0b3Itc2VjcmV0")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    with caplog.at_level(logging.ERROR), anyio.fail_after(5):
        await app(scope, receive, send)
    assert sent == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
