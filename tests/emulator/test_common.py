"""What both generations share: Basic auth, App IDs, request ids, unknown routes (spec §3, §12)."""

from __future__ import annotations

import pytest

from agora_stt_async.emulator import EmulatorApp, EmulatorClock, create_app
from tests.emulator.conftest import (
    APP_ID,
    LEGACY,
    V7,
    ConformanceClient,
    basic,
    join_body,
    make_client,
    start_body,
)

pytestmark = pytest.mark.anyio

AUTH_FAILED = {"message": "Invalid authentication credentials"}
ENDPOINTS = [
    ("POST", f"{V7}/join"),
    ("GET", f"{V7}/agents"),
    ("GET", f"{V7}/agents/X"),
    ("POST", f"{V7}/agents/X/leave"),
    ("POST", f"{V7}/agents/X/update"),
    ("POST", f"{LEGACY}/builderTokens"),
    ("POST", f"{LEGACY}/tasks"),
    ("GET", f"{LEGACY}/tasks/X"),
    ("PATCH", f"{LEGACY}/tasks/X"),
    ("DELETE", f"{LEGACY}/tasks/X"),
]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("emulator", "wrong"),
        basic("nobody", "emulator-secret"),
        basic("emulator", "emulator-secret", scheme="Bearer"),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Basic " + "ZW11bGF0b3I="},  # "emulator", no colon
        {"Authorization": 'agora token="abc"'},
    ],
    ids=["none", "bad-secret", "bad-id", "bearer", "garbled", "no-colon", "rtc-token"],
)
async def test_bad_credentials_are_401_everywhere(
    app: EmulatorApp, headers: dict[str, str]
) -> None:
    """Every documented route answers 401 {"message": "Invalid authentication credentials"}."""
    async with make_client(app, auth=None, headers=headers) as client:
        for method, url in ENDPOINTS:
            response = await client.request(method, url, json={})
            assert response.status_code == 401, (method, url)
            assert response.json() == AUTH_FAILED
    assert app.world.counts()["tokens"] == 0


async def test_scheme_is_case_insensitive(app: EmulatorApp) -> None:
    """ "basic" (Agora's own Python sample) works as well as "Basic" (spec §3.1)."""
    headers = basic("emulator", "emulator-secret", scheme="basic")
    async with make_client(app, auth=None, headers=headers) as client:
        response = await client.post(f"{V7}/join", json=join_body())
        assert response.status_code == 200


async def test_custom_credentials(clock: EmulatorClock) -> None:
    """create_app(credentials=…) replaces the default pair."""
    app = create_app(clock=clock, credentials={"me": "s3cret"})
    async with make_client(app, auth=("me", "s3cret")) as client:
        assert (await client.get(f"{V7}/agents")).status_code == 200
    async with make_client(app) as client:
        assert (await client.get(f"{V7}/agents")).status_code == 401


async def test_environment_credentials_and_app_id(
    clock: EmulatorClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AGORA_APP_ID / AGORA_CUSTOMER_ID / AGORA_CUSTOMER_SECRET are accepted when set."""
    monkeypatch.setenv("AGORA_APP_ID", "envapp")
    monkeypatch.setenv("AGORA_CUSTOMER_ID", "env-id")
    monkeypatch.setenv("AGORA_CUSTOMER_SECRET", "env-secret")
    app = create_app(clock=clock)
    env_v7 = V7.replace(APP_ID, "envapp")
    async with make_client(app, auth=("env-id", "env-secret")) as client:
        assert (await client.post(f"{env_v7}/join", json=join_body())).status_code == 200
        assert (await client.post(f"{V7}/join", json=join_body())).status_code == 200
    async with make_client(app, auth=("env-id", "emulator-secret")) as client:
        assert (await client.get(f"{env_v7}/agents")).status_code == 401


async def test_unknown_app_id_v7_is_403_service_not_enabled(client: ConformanceClient) -> None:
    """A v7 call for an App ID without STT answers 403 ServiceNotEnabled."""
    other = V7.replace(APP_ID, "disabledapp")
    for method, url in [
        ("POST", f"{other}/join"),
        ("GET", f"{other}/agents"),
        ("GET", f"{other}/agents/X"),
    ]:
        response = await client.request(method, url, json=join_body())
        assert response.status_code == 403
        assert response.json()["reason"] == "ServiceNotEnabled"


async def test_unknown_app_id_legacy_is_invalid_appid(client: ConformanceClient) -> None:
    """A legacy call for an App ID without STT answers 400 invalid_appid! / code 62."""
    other = LEGACY.replace(APP_ID, "disabledapp")
    for method, url in [
        ("POST", f"{other}/builderTokens"),
        ("POST", f"{other}/tasks"),
        ("GET", f"{other}/tasks/X"),
    ]:
        response = await client.request(method, url, json={"instanceId": "x"})
        assert response.status_code == 400
        assert response.json() == {"message": "invalid_appid!", "code": 62}


async def test_request_id_is_echoed(client: ConformanceClient) -> None:
    """A caller's X-Request-Id comes back unchanged, on success and on failure."""
    for url in (f"{V7}/agents", f"{V7}/agents/nope", "/nowhere"):
        response = await client.get(url, headers={"x-REQUEST-id": "my-id-42"})
        assert response.headers["X-Request-Id"] == "my-id-42"


async def test_request_id_is_generated_and_seeded(clock: EmulatorClock) -> None:
    """Without one, each response carries a fresh req_<16 hex>, the same sequence per seed."""
    seen: list[list[str]] = []
    for _ in range(2):
        app = create_app(clock=clock, seed=7)
        async with make_client(app, auth=None) as client:
            ids = [
                (await client.get(url)).headers["x-request-id"]
                for url in (f"{V7}/agents", f"{LEGACY}/tasks/x", "/nowhere", "/_emulator/clock")
            ]
        seen.append(ids)
    assert seen[0] == seen[1]
    assert len(set(seen[0])) == 4
    assert all(i.startswith("req_") and len(i) == 20 and int(i[4:], 16) >= 0 for i in seen[0])


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/"),
        ("GET", f"{V7}/join"),
        ("PUT", f"{V7}/agents/X"),
        ("DELETE", f"{V7}/agents/X"),
        ("POST", f"{V7}/join/"),
        ("GET", f"{LEGACY}/builderTokens"),
        ("POST", f"{LEGACY}/tasks/X"),
        ("GET", "/api/speech-to-text/v2/projects/x/join"),
    ],
)
async def test_unknown_routes_are_the_gateway_404(
    client: ConformanceClient, app: EmulatorApp, method: str, url: str
) -> None:
    """Paths or methods the API lacks answer 404 {"message": "no Route matched …"}, uncounted."""
    response = await client.request(method, url)
    assert response.status_code == 404
    assert response.json() == {"message": "no Route matched with those values"}
    assert sum(app.requests.values()) == 0


async def test_any_host_header_is_accepted(app: EmulatorApp) -> None:
    """The emulator answers whatever host the client thinks it talks to (spec §12.1)."""
    async with make_client(app) as client:
        for host in ("https://api.agora.io", "http://api-us-west-1.sd-rtn.com"):
            response = await client.get(f"{host}{V7}/agents")
            assert response.status_code == 200


async def test_requests_are_counted_per_route(client: ConformanceClient, app: EmulatorApp) -> None:
    """app.requests counts documented routes by name; responses counts statuses."""
    await client.post(f"{V7}/join", json=join_body())
    await client.get(f"{V7}/agents")
    await client.get(f"{V7}/agents/none")
    await client.post(f"{LEGACY}/tasks", json=start_body())
    assert dict(app.requests) == {"join": 1, "list": 1, "query": 1, "start": 1}
    assert dict(app.responses) == {200: 2, 404: 1, 400: 1}


async def test_ids_are_reproducible_from_the_seed(clock: EmulatorClock) -> None:
    """agent_id, tokenName and taskId come from the seed: same seed, same ids."""

    async def ids(seed: int) -> list[str]:
        async with make_client(create_app(clock=clock, seed=seed)) as client:
            agent = (await client.post(f"{V7}/join", json=join_body())).json()["agent_id"]
            acquire = await client.post(f"{LEGACY}/builderTokens", json={"instanceId": "i"})
            token = acquire.json()["tokenName"]
            start = await client.post(
                f"{LEGACY}/tasks", params={"builderToken": token}, json=start_body()
            )
            return [agent, token, start.json()["taskId"]]

    first, again, other = await ids(5), await ids(5), await ids(6)
    assert first == again
    assert all(a != b for a, b in zip(first, other, strict=True))


async def test_qps_limit_counts_only_enabled_app_ids(clock: EmulatorClock) -> None:
    """With qps_limit on, requests for App IDs without STT are refused as usual (403),
    never rate limited, and leave no per-App-ID window behind (memory stays bounded);
    the enabled App ID keeps its whole quota."""
    from agora_stt_async.emulator import EmulatorConfig

    app = create_app(EmulatorConfig(qps_limit=2), clock=clock)
    async with make_client(app) as client:
        for i in range(50):
            other = f"/api/speech-to-text/v1/projects/madeup{i:026d}/agents"
            assert (await client.get(other)).status_code == 403
        assert len(app.qps.windows) == 0
        statuses = [(await client.get(f"{V7}/agents")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert set(app.qps.windows) == {APP_ID}


@pytest.mark.parametrize(
    ("header", "status", "body"),
    [
        ('agora token="007valid"', 200, None),
        ('AGORA token="007valid"', 200, None),
        ('agora token="007expired"', 401, {"message": "Token is expired"}),
        ('agora token="007unknown"', 401, {"message": "Invalid token"}),
        ("agora token=007valid", 401, {"message": "Invalid token"}),
        ('agora token=""', 401, {"message": "Invalid token"}),
        ("agora", 401, {"message": "Invalid token"}),
    ],
    ids=["valid", "scheme-case", "expired", "unknown", "unquoted", "empty", "bare"],
)
async def test_rtc_token_auth(
    clock: EmulatorClock, header: str, status: int, body: dict[str, str] | None
) -> None:
    """With rtc_tokens set, ``Authorization: agora token="…"`` is accepted while the token is
    unexpired; expired → 401 "Token is expired", malformed or unknown → 401 "Invalid token"
    (spec §3.2), on both generations; Basic auth still works."""
    from agora_stt_async.emulator import EmulatorConfig

    tokens = {"007valid": clock.now() + 60, "007expired": clock.now()}
    app = create_app(EmulatorConfig(rtc_tokens=tokens), clock=clock)
    async with make_client(app, auth=None, headers={"Authorization": header}) as client:
        for response in (
            await client.post(f"{V7}/join", json=join_body()),
            await client.post(f"{LEGACY}/builderTokens", json={"instanceId": "i"}),
        ):
            assert response.status_code == status
            if body is not None:
                assert response.json() == body
    async with make_client(app) as client:
        assert (await client.get(f"{V7}/agents")).status_code == 200


async def test_rtc_token_auth_still_checks_the_app_id(clock: EmulatorClock) -> None:
    """A valid RTC token for an App ID without STT answers 403 ServiceNotEnabled."""
    from agora_stt_async.emulator import EmulatorConfig

    app = create_app(EmulatorConfig(rtc_tokens={"t": clock.now() + 60}), clock=clock)
    other = V7.replace(APP_ID, "disabledapp")
    async with make_client(app, auth=None, headers={"Authorization": 'agora token="t"'}) as c:
        response = await c.get(f"{other}/agents")
    assert response.status_code == 403
    assert response.json()["reason"] == "ServiceNotEnabled"
