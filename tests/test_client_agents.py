"""``client.agents``: the exact v7 requests sent and the results parsed (respx)."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from agora_stt_async import (
    Agent,
    AgentStatus,
    AsyncClient,
    AuthenticationError,
    CaptionConfig,
    ConfigurationError,
    ConflictError,
    ExtensionParams,
    JoinRequest,
    LanguagePair,
    NotFoundError,
    ResponseError,
    RetryPolicy,
    RtcConfig,
    StorageConfig,
    TranslateConfig,
    UidLanguages,
    UpdateRequest,
    UpdateRtcConfig,
    ValidationError,
)
from tests.openapi import operation, validate_request

pytestmark = pytest.mark.anyio

BASE = "https://api.agora.io"
APP = "0123456789abcdef0123456789abcdef"
PREFIX = f"/api/speech-to-text/v1/projects/{APP}"
CUSTOMER_ID = "customer-id"
CUSTOMER_SECRET = "customer-secret-value"
AUTH = "Basic " + base64.b64encode(f"{CUSTOMER_ID}:{CUSTOMER_SECRET}".encode()).decode()
AGENT_ID = "1NT29X11GQSxxxxx80BEIN56XF"


def example(operation_id: str, status: str | None = None) -> Any:
    """A documented example of the OpenAPI file: the request body, or a response's."""
    op = operation(operation_id)
    where = op["requestBody"] if status is None else op["responses"][status]
    return where["content"]["application/json"]["example"]


# One TLS context for every client of this module: building one per client (certifi's
# bundle) would dominate the run time. respx still intercepts below this transport.
_TLS = ssl.create_default_context()


def make_client(**kw: Any) -> AsyncClient:
    options: dict[str, Any] = {
        "transport": httpx.AsyncHTTPTransport(verify=_TLS),
        "app_id": APP,
        "customer_id": CUSTOMER_ID,
        "customer_secret": CUSTOMER_SECRET,
        "retry": RetryPolicy.none(),
        **kw,
    }
    return AsyncClient(**options)


@pytest.fixture
async def client() -> AsyncIterator[AsyncClient]:
    async with make_client() as c:
        yield c


def mock() -> respx.MockRouter:
    return respx.mock(base_url=BASE + PREFIX, assert_all_called=True, assert_all_mocked=True)


def no_requests() -> respx.MockRouter:
    """A router with no routes: any request sent fails the test."""
    return respx.mock(assert_all_called=False, assert_all_mocked=True)


def sent_json(request: httpx.Request) -> Any:
    assert request.headers["Content-Type"] == "application/json"
    return json.loads(request.content)


def assert_common_headers(request: httpx.Request, request_id: str | None = None) -> None:
    assert request.headers["Authorization"] == AUTH
    assert request.headers["Accept"] == "application/json"
    sent_id = request.headers["X-Request-Id"]
    if request_id is None:
        assert sent_id.startswith("sdk_")
        assert len(sent_id) > 20
    else:
        assert sent_id == request_id


FULL_JOIN = JoinRequest(
    name="agent-7",
    languages=["en-US", "zh-CN"],
    rtc_config=RtcConfig(
        channel_name="room-1",
        pub_bot_uid="88222",
        pub_bot_token="pub-token",
        unsubscribe_audio_uids=["7", "8"],
        cryption_mode=8,
        secret="enc-secret",
        salt=base64.b64encode(bytes(32)).decode(),
        enable_json_protocol=True,
    ),
    max_idle_time=120,
    uid_languages_config=[UidLanguages(uid="7", languages=["ja-JP"])],
    translate_config=TranslateConfig(
        languages=[LanguagePair(source="en-US", target=["fr-FR", "zh-CN"])], enable=True
    ),
    caption_config=CaptionConfig(
        slice_duration=60,
        storage=StorageConfig(
            access_key="storage-ak",
            secret_key="storage-sk",
            bucket="captions",
            vendor=11,
            region=0,
            file_name_prefix=["stt", "room1"],
        ),
    ),
    extension_params=ExtensionParams(endpoint="http://minio:9002", type="s3", provider="Minio"),
    keywords=["Agora", "STT"],
)

FULL_JOIN_BODY = {
    "name": "agent-7",
    "languages": ["en-US", "zh-CN"],
    "rtcConfig": {
        "channelName": "room-1",
        "pubBotUid": "88222",
        "pubBotToken": "pub-token",
        "unSubscribeAudioUids": ["7", "8"],
        "cryptionMode": 8,
        "secret": "enc-secret",
        "salt": base64.b64encode(bytes(32)).decode(),
        "enableJsonProtocol": True,
    },
    "maxIdleTime": 120,
    "uidLanguagesConfig": [{"uid": "7", "languages": ["ja-JP"]}],
    "translateConfig": {
        "languages": [{"source": "en-US", "target": ["fr-FR", "zh-CN"]}],
        "enable": True,
    },
    "captionConfig": {
        "sliceDuration": 60,
        "storage": {
            "accessKey": "storage-ak",
            "secretKey": "storage-sk",
            "bucket": "captions",
            "vendor": 11,
            "region": 0,
            "fileNamePrefix": ["stt", "room1"],
        },
    },
    "extensionParams": {"endpoint": "http://minio:9002", "type": "s3", "provider": "Minio"},
    "keywords": ["Agora", "STT"],
}


# --- join -------------------------------------------------------------------------------


async def test_agents_join_sends_exact_request(client):
    """join POSTs the camelCase body (None fields omitted) to /join with auth and a request id."""
    with mock() as router:
        route = router.post("/join").respond(
            200,
            json={"agent_id": AGENT_ID, "create_ts": 1735035893, "status": "STARTING"},
            headers={"X-Request-Id": "req-from-server"},
        )
        with anyio.fail_after(5):
            agent = await client.agents.join(FULL_JOIN)
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.raw_path == f"{PREFIX}/join".encode()
    assert request.url.query == b""
    body = sent_json(request)
    assert body == FULL_JOIN_BODY
    validate_request("JoinRequest", body)
    assert_common_headers(request)
    assert agent == Agent(agent_id=AGENT_ID, status=AgentStatus.STARTING, create_ts=1735035893)
    assert agent.response is not None
    assert agent.response.request_id == "req-from-server"
    assert agent.response.status_code == 200
    assert agent.raw == {"agent_id": AGENT_ID, "create_ts": 1735035893, "status": "STARTING"}


async def test_agents_join_minimal_body(client):
    """A minimal join sends only the three required fields."""
    request = JoinRequest(
        name="n", languages=["en-US"], rtc_config=RtcConfig(channel_name="c", pub_bot_uid="1")
    )
    with mock() as router:
        route = router.post("/join").respond(
            200, json={"agent_id": "a", "create_ts": None, "status": "RUNNING"}
        )
        with anyio.fail_after(5):
            await client.agents.join(request)
    body = sent_json(route.calls.last.request)
    assert body == {
        "name": "n",
        "languages": ["en-US"],
        "rtcConfig": {"channelName": "c", "pubBotUid": "1"},
    }
    validate_request("JoinRequest", body)


async def test_agents_join_subscribe_and_legacy_fields(client):
    """subscribeAudioUids, subBotUid/subBotToken and cryptionMode 0 go out as given."""
    request = JoinRequest(
        name="n",
        languages=["en-US"],
        rtc_config=RtcConfig(
            channel_name="c",
            pub_bot_uid="1",
            sub_bot_uid="2",
            sub_bot_token="sub-token",
            subscribe_audio_uids=["all"],
            cryption_mode=0,
        ),
        translate_config=TranslateConfig(
            languages=[LanguagePair(source="en-US", target=["de-DE"])]
        ),
        caption_config=CaptionConfig(
            storage=StorageConfig(access_key="a", secret_key="s", bucket="b", vendor=2, region=3)
        ),
    )
    with mock() as router:
        route = router.post("/join").respond(
            200, json={"agent_id": "a", "create_ts": 1, "status": "RUNNING"}
        )
        with anyio.fail_after(5):
            await client.agents.join(request)
    body = sent_json(route.calls.last.request)
    assert body["rtcConfig"] == {
        "channelName": "c",
        "pubBotUid": "1",
        "subBotUid": "2",
        "subBotToken": "sub-token",
        "subscribeAudioUids": ["all"],
        "cryptionMode": 0,
    }
    assert body["translateConfig"] == {"languages": [{"source": "en-US", "target": ["de-DE"]}]}
    assert body["captionConfig"] == {
        "storage": {"accessKey": "a", "secretKey": "s", "bucket": "b", "vendor": 2, "region": 3}
    }
    validate_request("JoinRequest", body)


async def test_agents_join_openapi_example_body(client):
    """The OpenAPI join example, built from models, is sent byte-for-byte as documented."""
    request = JoinRequest(
        languages=["en-US"],
        keywords=["Agora", "STT"],
        name="agora-test",
        max_idle_time=50,
        rtc_config=RtcConfig(channel_name="agora-test", pub_bot_uid="88222"),
        translate_config=TranslateConfig(
            languages=[LanguagePair(source="en-US", target=["ar-SA", "id-ID", "fr-FR", "ja-JP"])]
        ),
        caption_config=CaptionConfig(
            slice_duration=60,
            storage=StorageConfig(
                access_key="test-oss",
                secret_key="test-oss",
                bucket="test-oss",
                vendor=2,
                region=3,
            ),
        ),
    )
    documented = example("join")
    with mock() as router:
        route = router.post("/join").respond(
            200, json={"agent_id": "Agent ID.", "create_ts": None, "status": "RUNNING"}
        )
        with anyio.fail_after(5):
            await client.agents.join(request)
    assert sent_json(route.calls.last.request) == documented
    validate_request("JoinRequest", documented)


DOCUMENTED_JOIN_RESPONSES = [
    pytest.param(
        example("join", "200"),
        Agent(agent_id="Agent ID.", status=AgentStatus.RUNNING, create_ts=None),
        id="en-openapi-example",
    ),
    pytest.param(
        {"agent_id": AGENT_ID, "create_ts": None, "status": "RUNNING"},
        Agent(agent_id=AGENT_ID, status=AgentStatus.RUNNING, create_ts=None),
        id="en-reference-example",
    ),
    pytest.param(
        {
            "agent_id": "4xxxxx8f21486930fcb77a805af20752",
            "create_ts": 1735035893,
            "status": "STARTING",
        },
        Agent(
            agent_id="4xxxxx8f21486930fcb77a805af20752",
            status=AgentStatus.STARTING,
            create_ts=1735035893,
        ),
        id="zh-openapi-example",
    ),
]


@pytest.mark.parametrize(("body", "expected"), DOCUMENTED_JOIN_RESPONSES)
async def test_agents_join_parses_documented_responses(client, body, expected):
    """Every documented join 200 body parses into the Agent it describes."""
    with mock() as router:
        router.post("/join").respond(200, json=body)
        with anyio.fail_after(5):
            agent = await client.agents.join(FULL_JOIN)
    assert agent == expected
    assert agent.raw == body


async def test_agents_join_request_id_honoured(client):
    """A caller's request id is sent, and kept when the server echoes none."""
    with mock() as router:
        route = router.post("/join").respond(
            200, json={"agent_id": "a", "create_ts": 1, "status": "RUNNING"}
        )
        with anyio.fail_after(5):
            agent = await client.agents.join(FULL_JOIN, request_id="my-req-1")
    assert_common_headers(route.calls.last.request, "my-req-1")
    assert agent.response is not None
    assert agent.response.request_id == "my-req-1"


async def test_agents_join_request_ids_are_unique(client):
    """Each call gets a fresh generated request id."""
    with mock() as router:
        route = router.post("/join").respond(
            200, json={"agent_id": "a", "create_ts": 1, "status": "RUNNING"}
        )
        with anyio.fail_after(5):
            await client.agents.join(FULL_JOIN)
            await client.agents.join(FULL_JOIN)
    ids = {call.request.headers["X-Request-Id"] for call in route.calls}
    assert len(ids) == 2


async def test_agents_join_conflict(client):
    """A 409 TaskConflict becomes ConflictError with the server's request id."""
    with mock() as router:
        router.post("/join").respond(
            409,
            json={"detail": "agent name agent-7 is in use", "reason": "TaskConflict"},
            headers={"X-Request-Id": "req-409"},
        )
        with anyio.fail_after(5), pytest.raises(ConflictError) as info:
            await client.agents.join(FULL_JOIN)
    assert info.value.reason == "TaskConflict"
    assert info.value.request_id == "req-409"
    assert info.value.method == "POST"
    assert info.value.url == f"{BASE}{PREFIX}/join"


async def test_agents_join_rejects_other_types(client):
    """join takes a JoinRequest only; a dict fails before sending."""
    with no_requests(), pytest.raises(ValidationError) as info:
        await client.agents.join({"name": "x"})
    assert info.value.field == "request"


# --- get --------------------------------------------------------------------------------

DOCUMENTED_QUERY_RESPONSES = [
    pytest.param(
        example("query", "200"),
        Agent(
            agent_id="Agent ID.",
            status=AgentStatus.RUNNING,
            create_ts=None,
            message="Details of the request result.",
        ),
        id="en-openapi-example",
    ),
    pytest.param(
        {"message": "ok", "agent_id": AGENT_ID, "create_ts": 1735035893, "status": "RUNNING"},
        Agent(agent_id=AGENT_ID, status=AgentStatus.RUNNING, create_ts=1735035893, message="ok"),
        id="zh-example",
    ),
    pytest.param(
        {"agent_id": AGENT_ID, "create_ts": 1735035893, "status": "STOPPED"},
        Agent(agent_id=AGENT_ID, status=AgentStatus.STOPPED, create_ts=1735035893),
        id="no-message",
    ),
]


@pytest.mark.parametrize(("body", "expected"), DOCUMENTED_QUERY_RESPONSES)
async def test_agents_get_sends_exact_request(client, body, expected):
    """get is GET /agents/{agentId} with no body, parsed with its message."""
    with mock() as router:
        route = router.get(f"/agents/{AGENT_ID}").respond(
            200, json=body, headers={"X-Request-Id": "req-q"}
        )
        with anyio.fail_after(5):
            agent = await client.agents.get(AGENT_ID)
    request = route.calls.last.request
    assert request.method == "GET"
    assert request.url.raw_path == f"{PREFIX}/agents/{AGENT_ID}".encode()
    assert request.content == b""
    assert "Content-Type" not in request.headers
    assert_common_headers(request)
    assert agent == expected
    assert agent.message == expected.message
    assert agent.raw == body
    assert agent.response is not None
    assert agent.response.request_id == "req-q"


async def test_agents_ids_are_url_quoted():
    """Agent ids are quoted into the path, so '/' cannot change the route (an App ID
    that could is refused at construction: test_client_rejects_bad_configuration)."""
    async with make_client() as client:
        with respx.mock(base_url=BASE, assert_all_called=True, assert_all_mocked=True) as router:
            route = router.get(url__regex=r"/api/speech-to-text/v1/projects/.*").respond(
                200, json={"agent_id": "a/b c", "status": "RUNNING"}
            )
            with anyio.fail_after(5):
                agent = await client.agents.get("a/b c?x=1")
    raw_path = route.calls.last.request.url.raw_path
    assert raw_path == f"{PREFIX}/agents/a%2Fb%20c%3Fx%3D1".encode()
    assert agent.agent_id == "a/b c"


@pytest.mark.parametrize("bad", ["", None, 5])
async def test_agents_get_rejects_bad_id(client, bad):
    """An empty or non-string agent id fails before sending."""
    with no_requests(), pytest.raises(ValidationError) as info:
        await client.agents.get(bad)
    assert info.value.field == "agent_id"


async def test_agents_get_not_found_query_style_body(client):
    """The documented query failure body raises NotFoundError with its message."""
    body = example("query", "default")
    assert body["status"] == "FAILED"
    with mock() as router:
        router.get("/agents/gone").respond(404, json=body)
        with anyio.fail_after(5), pytest.raises(NotFoundError) as info:
            await client.agents.get("gone")
    assert info.value.message == "Details of the failed request."
    assert info.value.status_code == 404


async def test_agents_get_unauthorized(client):
    """401 with the documented body raises AuthenticationError."""
    with mock() as router:
        router.get("/agents/a").respond(401, json={"message": "Invalid authentication credentials"})
        with anyio.fail_after(5), pytest.raises(AuthenticationError) as info:
            await client.agents.get("a")
    assert info.value.message == "Invalid authentication credentials"


async def test_agents_get_bad_success_body(client):
    """A 200 that is not a documented agent body raises ResponseError."""
    with mock() as router:
        router.get("/agents/a").respond(200, json={"agent_id": "a", "status": 3})
        with anyio.fail_after(5), pytest.raises(ResponseError) as info:
            await client.agents.get("a")
    assert "Agent" in str(info.value)


# --- update -----------------------------------------------------------------------------

UPDATE_CASES = [
    pytest.param(
        {
            "languages": ["en-US", "ja-JP"],
            "subscribe_audio_uids": ["100", "300"],
            "translate_enable": False,
        },
        "languages,rtcConfig.subscribeAudioUids,translateConfig.enable",
        {
            "languages": ["en-US", "ja-JP"],
            "rtcConfig": {"subscribeAudioUids": ["100", "300"]},
            "translateConfig": {"enable": False},
        },
        id="languages-uids-enable",
    ),
    pytest.param(
        {
            "translate_enable": True,
            "translate_languages": [LanguagePair(source="en-US", target=["ja-JP"])],
        },
        "translateConfig.enable,translateConfig.languages",
        example("update"),
        id="openapi-example",
    ),
    pytest.param({"keywords": ["Agora"]}, "keywords", {"keywords": ["Agora"]}, id="keywords"),
    pytest.param(
        {"uid_languages_config": []},
        "uidLanguagesConfig",
        {"uidLanguagesConfig": []},
        id="clear-uid-languages",
    ),
    pytest.param(
        {
            "languages": ["zh-CN"],
            "keywords": ["k"],
            "uid_languages_config": [UidLanguages(uid="5", languages=["en-US"])],
            "subscribe_audio_uids": ["all"],
            "translate_enable": True,
            "translate_languages": [LanguagePair(source="zh-CN", target=["en-US"])],
        },
        "languages,keywords,uidLanguagesConfig,rtcConfig.subscribeAudioUids,"
        "translateConfig.enable,translateConfig.languages",
        {
            "languages": ["zh-CN"],
            "keywords": ["k"],
            "uidLanguagesConfig": [{"uid": "5", "languages": ["en-US"]}],
            "rtcConfig": {"subscribeAudioUids": ["all"]},
            "translateConfig": {
                "languages": [{"source": "zh-CN", "target": ["en-US"]}],
                "enable": True,
            },
        },
        id="everything",
    ),
]


@pytest.mark.parametrize(("fields", "mask", "body"), UPDATE_CASES)
async def test_agents_update_sends_exact_request(client, fields, mask, body):
    """update POSTs the given fields, with sequenceId and the updateMask derived from them."""
    with mock() as router:
        route = router.post(f"/agents/{AGENT_ID}/update").respond(
            200, json={"agent_id": AGENT_ID, "create_ts": 1735035893, "status": "RUNNING"}
        )
        with anyio.fail_after(5):
            agent = await client.agents.update(AGENT_ID, sequence_id=3, **fields)
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.path == f"{PREFIX}/agents/{AGENT_ID}/update"
    assert dict(request.url.params) == {"sequenceId": "3", "updateMask": mask}
    assert list(request.url.params) == ["sequenceId", "updateMask"]
    sent = sent_json(request)
    assert sent == body
    validate_request("UpdateRequest", sent)
    assert_common_headers(request)
    assert agent == Agent(agent_id=AGENT_ID, status=AgentStatus.RUNNING, create_ts=1735035893)


async def test_agents_update_with_model(client):
    """An UpdateRequest model sends the same as the keyword form."""
    update = UpdateRequest(
        languages=["en-US"],
        rtc_config=UpdateRtcConfig(subscribe_audio_uids=["1"]),
        translate_config=TranslateConfig(enable=True),
    )
    with mock() as router:
        route = router.post("/agents/a/update").respond(
            200, json={"agent_id": "a", "create_ts": 1, "status": "RUNNING"}
        )
        with anyio.fail_after(5):
            await client.agents.update("a", update, sequence_id=0, request_id="rid")
    request = route.calls.last.request
    assert request.url.params["sequenceId"] == "0"
    assert request.url.params["updateMask"] == (
        "languages,rtcConfig.subscribeAudioUids,translateConfig.enable"
    )
    body = sent_json(request)
    assert body == {
        "languages": ["en-US"],
        "rtcConfig": {"subscribeAudioUids": ["1"]},
        "translateConfig": {"enable": True},
    }
    validate_request("UpdateRequest", body)
    assert_common_headers(request, "rid")


async def test_agents_update_model_and_fields_refused(client):
    """Passing both a model and keyword fields is refused before sending."""
    with no_requests(), pytest.raises(ValidationError) as info:
        await client.agents.update(
            "a", UpdateRequest(languages=["en-US"]), sequence_id=1, keywords=["x"]
        )
    assert info.value.field == "update"


@pytest.mark.parametrize(
    "request_body",
    [{"languages": ["en-US"]}, "languages", ["en-US"]],
    ids=["dict", "str", "list"],
)
async def test_agents_update_refuses_a_request_that_is_not_a_model(client, request_body):
    """An update body that is not an UpdateRequest is a ValidationError before sending
    (a dict once raised a bare AttributeError)."""
    with no_requests(), pytest.raises(ValidationError) as info:
        await client.agents.update("a", request_body, sequence_id=1)
    assert info.value.field == "request"
    assert "UpdateRequest" in str(info.value)


async def test_agents_update_sequence_id_int64_bound(client):
    """sequence_id is an int64 (spec §4.6): 2**63-1 is sent, 2**63 refused before sending."""
    with no_requests(), pytest.raises(ValidationError) as info:
        await client.agents.update("a", sequence_id=2**63, languages=["en-US"])
    assert info.value.field == "sequence_id"
    with mock() as router:
        route = router.post("/agents/a/update").respond(
            200, json={"agent_id": "a", "create_ts": 1, "status": "RUNNING"}
        )
        with anyio.fail_after(5):
            await client.agents.update("a", sequence_id=2**63 - 1, languages=["en-US"])
    assert route.calls.last.request.url.params["sequenceId"] == str(2**63 - 1)


async def test_agents_update_nothing_refused(client):
    """An update with no field to change is refused before sending."""
    with no_requests(), pytest.raises(ValidationError) as info:
        await client.agents.update("a", sequence_id=1)
    assert info.value.field == "update"


# --- leave ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [b"", b"{}", b"OK", b"<html>ok</html>"], ids=["empty", "object", "text", "html"]
)
async def test_agents_leave_sends_exact_request(client, content):
    """leave POSTs /agents/{agentId}/leave with no body; any 200 body means done."""
    with mock() as router:
        route = router.post(f"/agents/{AGENT_ID}/leave").respond(200, content=content)
        with anyio.fail_after(5):
            result = await client.agents.leave(AGENT_ID, request_id="leave-1")
    request = route.calls.last.request
    assert result is None
    assert request.method == "POST"
    assert request.url.raw_path == f"{PREFIX}/agents/{AGENT_ID}/leave".encode()
    assert request.content == b""
    assert_common_headers(request, "leave-1")


async def test_agents_leave_unknown_agent(client):
    """leave of an unknown agent raises NotFoundError (TaskNotFound)."""
    with mock() as router:
        router.post("/agents/x/leave").respond(
            404, json={"detail": "not found", "reason": "TaskNotFound"}
        )
        with anyio.fail_after(5), pytest.raises(NotFoundError) as info:
            await client.agents.leave("x")
    assert info.value.reason == "TaskNotFound"
    assert info.value.detail == "not found"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"timeout": -1}, "timeout", id="timeout-negative"),
        pytest.param({"timeout": 0}, "timeout", id="timeout-zero"),
        pytest.param({"timeout": float("nan")}, "timeout", id="timeout-nan"),
        pytest.param({"timeout": "5"}, "timeout", id="timeout-str"),
        pytest.param({"timeout": True}, "timeout", id="timeout-bool"),
        pytest.param({"app_id": 123}, "app_id must be a string", id="app-id-int"),
        pytest.param({"app_id": "a/b"}, "app_id must be letters", id="app-id-slash"),
        pytest.param({"app_id": "a?x=1"}, "app_id must be letters", id="app-id-query"),
        pytest.param({"customer_id": "a:b"}, "customer_id cannot contain", id="customer-colon"),
        pytest.param({"customer_secret": b"x"}, "customer_secret must be", id="secret-bytes"),
        # objects used later, checked now (they failed with an AttributeError on the
        # first request or the first retry)
        pytest.param({"clock": "x"}, "clock must have", id="clock-str"),
        pytest.param({"rng": "x"}, "rng must be a random.Random", id="rng-str"),
        pytest.param(
            {"http_client": "x", "transport": None}, "http_client must be", id="http-client-str"
        ),
        pytest.param({"transport": "x"}, "transport must be", id="transport-str"),
        pytest.param({"allow_insecure": "no"}, "allow_insecure must be", id="insecure-str"),
        pytest.param({"allow_insecure": 1}, "allow_insecure must be", id="insecure-int"),
        pytest.param({"fast": "yes", "transport": None}, "fast must be", id="fast-str"),
        pytest.param({"fast": 0, "transport": None}, "fast must be", id="fast-int"),
    ],
)
def test_client_rejects_bad_configuration(kwargs: dict[str, Any], match: str) -> None:
    """Bad construction arguments are a ConfigurationError naming the field, at once,
    and never echo a credential's value."""
    with pytest.raises(ConfigurationError, match=match) as caught:
        make_client(**kwargs)
    assert CUSTOMER_SECRET not in str(caught.value)
    assert "b'x'" not in str(caught.value)


def test_client_accepts_timeout_forms() -> None:
    for timeout in (1, 2.5, httpx.Timeout(3.0)):
        client = make_client(timeout=timeout)
        assert client.app_id == APP
