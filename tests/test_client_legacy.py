"""``client.legacy``: the exact v5/v6 builder-token requests sent and results parsed."""

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
    AsyncClient,
    BuilderToken,
    BuilderTokenError,
    BuilderTokenExpiredError,
    CaptionConfig,
    ConflictError,
    LanguagePair,
    LegacyStartRequest,
    LegacyTaskStatus,
    NotFoundError,
    ResponseError,
    RetryPolicy,
    RtcConfig,
    ServerError,
    ServiceNotEnabledError,
    StorageConfig,
    Task,
    TaskAlreadyStartedError,
    TranslateConfig,
    UidLanguages,
    UpdateRequest,
    ValidationError,
)

pytestmark = pytest.mark.anyio

BASE = "https://api.agora.io"
APP = "0123456789abcdef0123456789abcdef"
PREFIX = f"/v1/projects/{APP}/rtsc/speech-to-text"
CUSTOMER_ID = "customer-id"
CUSTOMER_SECRET = "customer-secret-value"
AUTH = "Basic " + base64.b64encode(f"{CUSTOMER_ID}:{CUSTOMER_SECRET}".encode()).decode()
TASK_ID = "c662ce961441cd8dc22f858ab7cec4d4"
# Real builder tokens are long URL-safe Base64-like strings (spec §5.1); '+', '/' and '='
# make sure the query value is encoded, not pasted.
TOKEN = "tok_" + "A1b2-C3d4_" * 37 + "+/="
TASK_BODY = {"taskId": TASK_ID, "createTs": 1661324319, "status": "IN_PROGRESS"}


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


def assert_common_headers(request: httpx.Request, request_id: str | None = None) -> None:
    assert request.headers["Authorization"] == AUTH
    sent_id = request.headers["X-Request-Id"]
    assert sent_id == request_id if request_id else sent_id.startswith("sdk_")


def sent_json(request: httpx.Request) -> Any:
    assert request.headers["Content-Type"] == "application/json"
    return json.loads(request.content)


def token(name: str = TOKEN) -> BuilderToken:
    return BuilderToken(token_name=name, create_ts=1661324319, instance_id="room-1")


START = LegacyStartRequest(
    languages=["en-US", "zh-CN"],
    rtc_config=RtcConfig(
        channel_name="room-1",
        sub_bot_uid="1000",
        sub_bot_token="sub-token",
        pub_bot_uid="2000",
        pub_bot_token="pub-token",
        subscribe_audio_uids=["11", "12"],
        cryption_mode=1,
        secret="enc-secret",
        enable_json_protocol=False,
    ),
    max_idle_time=60,
    uid_languages_config=[UidLanguages(uid="11", languages=["ja-JP"])],
    translate_config=TranslateConfig(
        languages=[LanguagePair(source="en-US", target=["fr-FR", "de-DE"])]
    ),
    caption_config=CaptionConfig(
        slice_duration=60,
        storage=StorageConfig(
            access_key="storage-ak",
            secret_key="storage-sk",
            bucket="captions",
            vendor=2,
            region=3,
            file_name_prefix=["rtt", "room1"],
        ),
    ),
)

START_BODY = {
    "languages": ["en-US", "zh-CN"],
    "rtcConfig": {
        "channelName": "room-1",
        "pubBotUid": "2000",
        "pubBotToken": "pub-token",
        "subBotUid": "1000",
        "subBotToken": "sub-token",
        "subscribeAudioUids": ["11", "12"],
        "cryptionMode": 1,
        "secret": "enc-secret",
        "enableJsonProtocol": False,
    },
    "maxIdleTime": 60,
    "uidLanguagesConfig": [{"uid": "11", "languages": ["ja-JP"]}],
    "translateConfig": {"languages": [{"source": "en-US", "target": ["fr-FR", "de-DE"]}]},
    "captionConfig": {
        "sliceDuration": 60,
        "storage": {
            "accessKey": "storage-ak",
            "secretKey": "storage-sk",
            "bucket": "captions",
            "vendor": 2,
            "region": 3,
            "fileNamePrefix": ["rtt", "room1"],
        },
    },
}


# --- acquire ----------------------------------------------------------------------------


async def test_legacy_acquire_sends_exact_request(client):
    """acquire POSTs {"instanceId"} to /builderTokens and parses the documented answer."""
    body = {"tokenName": TOKEN, "createTs": 1661324319, "instanceId": "room-1"}
    with mock() as router:
        route = router.post("/builderTokens").respond(
            200, json=body, headers={"X-Request-Id": "req-acq"}
        )
        with anyio.fail_after(5):
            result = await client.legacy.acquire("room-1")
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.raw_path == f"{PREFIX}/builderTokens".encode()
    assert sent_json(request) == {"instanceId": "room-1"}
    assert_common_headers(request)
    assert result == BuilderToken(token_name=TOKEN, create_ts=1661324319, instance_id="room-1")
    assert result.expires_at == 1661324319 + 300
    assert result.raw == body
    assert result.response is not None
    assert result.response.request_id == "req-acq"


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "ch.1"])
async def test_legacy_acquire_validates_instance_id(client, bad):
    """A bad instanceId fails before sending."""
    with no_requests(), pytest.raises(ValidationError) as info:
        await client.legacy.acquire(bad)
    assert info.value.field == "instance_id"


async def test_legacy_acquire_not_enabled(client):
    """The documented "invalid_appid!" answer raises ServiceNotEnabledError."""
    with mock() as router:
        router.post("/builderTokens").respond(400, json={"code": 62, "message": "invalid_appid!"})
        with anyio.fail_after(5), pytest.raises(ServiceNotEnabledError) as info:
            await client.legacy.acquire("room-1")
    assert info.value.code == 62


# --- start ------------------------------------------------------------------------------


@pytest.mark.parametrize("as_model", [True, False], ids=["token-model", "token-name"])
async def test_legacy_start_sends_exact_request(client, as_model):
    """start POSTs the v6 flat body to /tasks?builderToken=... and keeps the token."""
    with mock() as router:
        route = router.post("/tasks").respond(200, json=TASK_BODY)
        with anyio.fail_after(5):
            task = await client.legacy.start(token() if as_model else TOKEN, START)
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url.path == f"{PREFIX}/tasks"
    assert dict(request.url.params) == {"builderToken": TOKEN}
    assert sent_json(request) == START_BODY
    assert_common_headers(request)
    assert task == Task(
        task_id=TASK_ID,
        status=LegacyTaskStatus.IN_PROGRESS,
        create_ts=1661324319,
        token_name=TOKEN,
    )
    assert task.raw == TASK_BODY


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(TASK_BODY, LegacyTaskStatus.IN_PROGRESS, id="in-progress"),
        pytest.param({**TASK_BODY, "status": "STARTED"}, LegacyTaskStatus.STARTED, id="started"),
        pytest.param(
            {**TASK_BODY, "status": "RECONNECTING"}, LegacyTaskStatus.RECONNECTING, id="reconnect"
        ),
    ],
)
async def test_legacy_start_parses_documented_responses(client, body, status):
    """The documented start answers parse with the example task id."""
    with mock() as router:
        router.post("/tasks").respond(200, json=body)
        with anyio.fail_after(5):
            task = await client.legacy.start(token(), START)
    assert task.task_id == TASK_ID
    assert task.status is status
    assert task.create_ts == 1661324319


async def test_legacy_start_repeated_names_existing_task(client):
    """A repeated start raises TaskAlreadyStartedError carrying the existing task id."""
    message = f"The task has been started, current status is STARTED, taskId is {TASK_ID}"
    with mock() as router:
        router.post("/tasks").respond(409, json={"code": 49, "message": message})
        with anyio.fail_after(5), pytest.raises(TaskAlreadyStartedError) as info:
            await client.legacy.start(token(), START)
    assert info.value.task_id == TASK_ID
    assert info.value.code == 49
    assert TOKEN not in str(info.value)


async def test_legacy_start_code_62_is_a_network_failure(client):
    """spec §6.1: code 62 on start means "not started because of a network problem": a
    retryable ServerError (not ServiceNotEnabledError), still sent once (start is not
    idempotent; the session repeats it with the same token)."""
    with mock() as router:
        route = router.post("/tasks").respond(400, json={"code": 62})
        retry = RetryPolicy.testing()
        with anyio.fail_after(5), pytest.raises(ServerError) as info:
            await client.legacy.start(token(), START, retry=retry)
    assert info.value.code == 62
    assert info.value.retryable is True
    assert route.call_count == 1


async def test_legacy_acquire_code_62_is_not_enabled(client):
    """spec §6.1: code 62 on acquire means STT is not enabled for the App ID."""
    with mock() as router:
        router.post("/builderTokens").respond(400, json={"code": 62})
        with anyio.fail_after(5), pytest.raises(ServiceNotEnabledError) as info:
            await client.legacy.acquire("room-1")
    assert info.value.retryable is False


async def test_legacy_update_refuses_a_request_that_is_not_a_model(client):
    """A legacy update body that is not an UpdateRequest is a ValidationError before
    sending (a dict once raised a bare AttributeError)."""
    with no_requests(), pytest.raises(ValidationError) as info:
        await client.legacy.update(TASK_ID, TOKEN, {"languages": ["en-US"]}, sequence_id=1)
    assert info.value.field == "request"


async def test_legacy_acquire_bad_body_masks_the_token(client):
    """A 200 acquire body that cannot be parsed raises ResponseError without the builder
    token anywhere in the error (its excerpt masks tokenName)."""
    body = {"tokenName": TOKEN, "createTs": "soon", "instanceId": "room-1"}
    with mock() as router:
        router.post("/builderTokens").respond(200, json=body)
        with anyio.fail_after(5), pytest.raises(ResponseError) as info:
            await client.legacy.acquire("room-1")
    head = TOKEN[:24]  # the excerpt is short: even a part of the token must not show
    assert head not in repr(vars(info.value))
    assert head not in str(info.value)
    assert "tokenName" in info.value.body_excerpt


async def test_legacy_start_expired_token(client):
    """The 5-minute window message raises BuilderTokenExpiredError."""
    with mock() as router:
        router.post("/tasks").respond(
            400, json={"message": "resourceId reaches out the limited time interval!"}
        )
        with anyio.fail_after(5), pytest.raises(BuilderTokenExpiredError):
            await client.legacy.start(token(), START)


@pytest.mark.parametrize("bad", ["", None, 5])
async def test_legacy_start_validates_token(client, bad):
    """A missing token fails before sending."""
    with no_requests(), pytest.raises(ValidationError) as info:
        await client.legacy.start(bad, START)
    assert info.value.field == "token"


async def test_legacy_start_rejects_other_request_types(client):
    """start takes a LegacyStartRequest only."""
    with no_requests(), pytest.raises(ValidationError) as info:
        await client.legacy.start(token(), {"languages": ["en-US"]})
    assert info.value.field == "request"


# --- query ------------------------------------------------------------------------------


async def test_legacy_query_sends_exact_request(client):
    """query GETs /tasks/{taskId}?builderToken=... and parses the task."""
    with mock() as router:
        route = router.get(f"/tasks/{TASK_ID}").respond(
            200, json=TASK_BODY, headers={"X-Request-Id": "req-q"}
        )
        with anyio.fail_after(5):
            task = await client.legacy.query(TASK_ID, token(), request_id="mine")
    request = route.calls.last.request
    assert request.method == "GET"
    assert request.url.path == f"{PREFIX}/tasks/{TASK_ID}"
    assert dict(request.url.params) == {"builderToken": TOKEN}
    assert request.content == b""
    assert_common_headers(request, "mine")
    assert task.task_id == TASK_ID
    assert task.status is LegacyTaskStatus.IN_PROGRESS
    assert task.token_name == TOKEN
    assert task.response is not None
    assert task.response.request_id == "req-q"


async def test_legacy_query_task_id_quoted(client):
    """The task id is quoted into the path."""
    with mock() as router:
        route = router.get(url__regex=r"/tasks/.*").respond(200, json=TASK_BODY)
        with anyio.fail_after(5):
            await client.legacy.query("a/b", TOKEN)
    assert route.calls.last.request.url.raw_path.startswith(f"{PREFIX}/tasks/a%2Fb?".encode())


async def test_legacy_query_v5_doc_bug_body_refused(client):
    """The v5 query page's example (a copy of acquire's answer) is not a task: ResponseError."""
    with mock() as router:
        router.get(f"/tasks/{TASK_ID}").respond(
            200, json={"tokenName": TOKEN, "createTs": 1661324319, "instanceId": "room-1"}
        )
        with anyio.fail_after(5), pytest.raises(ResponseError):
            await client.legacy.query(TASK_ID, TOKEN)


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        pytest.param(
            404, {"code": 404, "message": "The task is not found"}, NotFoundError, id="nf"
        ),
        pytest.param(
            400,
            {"code": 53, "message": "The taskId does not match with builderToken."},
            BuilderTokenError,
            id="mismatch",
        ),
    ],
)
async def test_legacy_query_errors(client, status, body, cls):
    """Documented query failures raise their classes."""
    with mock() as router:
        router.get(f"/tasks/{TASK_ID}").respond(status, json=body)
        with anyio.fail_after(5), pytest.raises(cls) as info:
            await client.legacy.query(TASK_ID, TOKEN)
    assert info.value.message == body["message"]


# --- update -----------------------------------------------------------------------------


async def test_legacy_update_sends_exact_request(client):
    """update PATCHes /tasks/{taskId} with builderToken, sequenceId and updateMask."""
    with mock() as router:
        route = router.patch(f"/tasks/{TASK_ID}").respond(200, json=TASK_BODY)
        with anyio.fail_after(5):
            task = await client.legacy.update(
                TASK_ID,
                token(),
                sequence_id=2,
                languages=["en-US"],
                subscribe_audio_uids=["all"],
                translate_enable=True,
                translate_languages=[LanguagePair(source="en-US", target=["ja-JP"])],
            )
    request = route.calls.last.request
    assert request.method == "PATCH"
    assert request.url.path == f"{PREFIX}/tasks/{TASK_ID}"
    assert dict(request.url.params) == {
        "builderToken": TOKEN,
        "sequenceId": "2",
        "updateMask": "languages,rtcConfig.subscribeAudioUids,"
        "translateConfig.enable,translateConfig.languages",
    }
    assert sent_json(request) == {
        "languages": ["en-US"],
        "rtcConfig": {"subscribeAudioUids": ["all"]},
        "translateConfig": {
            "languages": [{"source": "en-US", "target": ["ja-JP"]}],
            "enable": True,
        },
    }
    assert_common_headers(request)
    assert task.task_id == TASK_ID
    assert task.token_name == TOKEN


async def test_legacy_update_with_model(client):
    """An UpdateRequest model is accepted as in the v7 API."""
    update = UpdateRequest(uid_languages_config=[UidLanguages(uid="9", languages=["ko-KR"])])
    with mock() as router:
        route = router.patch(f"/tasks/{TASK_ID}").respond(200, json=TASK_BODY)
        with anyio.fail_after(5):
            await client.legacy.update(TASK_ID, TOKEN, update, sequence_id=0)
    request = route.calls.last.request
    assert request.url.params["updateMask"] == "uidLanguagesConfig"
    assert sent_json(request) == {"uidLanguagesConfig": [{"uid": "9", "languages": ["ko-KR"]}]}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param(
            {"request": UpdateRequest(keywords=["k"])}, "keywords", id="keywords-not-legacy"
        ),
        pytest.param(
            {
                "translate_languages": [
                    LanguagePair(source="en-US", target=["a", "b", "c", "d", "e", "f"])
                ]
            },
            "translate_config.languages.target",
            id="legacy-targets-over-5",
        ),
        pytest.param(
            {
                "languages": ["en-US", "zh-CN"],
                "translate_languages": [LanguagePair(source="en-US", target=["en-US"])],
            },
            "translate_config.languages.target",
            id="legacy-same-source-target",
        ),
        pytest.param({"sequence_id": -1, "languages": ["en-US"]}, "sequence_id", id="seq-neg"),
        pytest.param(
            {"sequence_id": 2**63, "languages": ["en-US"]}, "sequence_id", id="seq-past-int64"
        ),
        pytest.param({}, "update", id="nothing"),
    ],
)
async def test_legacy_update_validates(client, kwargs, field):
    """Legacy update limits fail before sending."""
    kwargs = {"sequence_id": 1, **kwargs}
    with no_requests(), pytest.raises(ValidationError) as info:
        await client.legacy.update(TASK_ID, TOKEN, **kwargs)
    assert info.value.field == field


# --- stop -------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"{}", b"success"], ids=["empty", "object", "text"])
async def test_legacy_stop_sends_exact_request(client, content):
    """stop DELETEs /tasks/{taskId}?builderToken=... with no body; any 200 means done."""
    with mock() as router:
        route = router.delete(f"/tasks/{TASK_ID}").respond(200, content=content)
        with anyio.fail_after(5):
            result = await client.legacy.stop(TASK_ID, token())
    request = route.calls.last.request
    assert result is None
    assert request.method == "DELETE"
    assert request.url.path == f"{PREFIX}/tasks/{TASK_ID}"
    assert dict(request.url.params) == {"builderToken": TOKEN}
    assert request.content == b""
    assert_common_headers(request)


async def test_legacy_stop_repeated(client):
    """A repeated stop answers code 49: ConflictError."""
    with mock() as router:
        router.delete(f"/tasks/{TASK_ID}").respond(400, json={"code": 49, "message": "repeated"})
        with anyio.fail_after(5), pytest.raises(ConflictError) as info:
            await client.legacy.stop(TASK_ID, TOKEN)
    assert info.value.code == 49


async def test_legacy_full_flow(client):
    """acquire → start → query → update → stop, each with the token that started the task."""
    with mock() as router:
        router.post("/builderTokens").respond(
            200, json={"tokenName": TOKEN, "createTs": 1, "instanceId": "room-1"}
        )
        router.post("/tasks").respond(200, json=TASK_BODY)
        router.get(f"/tasks/{TASK_ID}").respond(200, json=TASK_BODY)
        router.patch(f"/tasks/{TASK_ID}").respond(200, json=TASK_BODY)
        stop = router.delete(f"/tasks/{TASK_ID}").respond(200)
        with anyio.fail_after(5):
            acquired = await client.legacy.acquire("room-1")
            task = await client.legacy.start(acquired, START)
            assert task.token_name is not None
            await client.legacy.query(task.task_id, task.token_name)
            await client.legacy.update(
                task.task_id, task.token_name, sequence_id=1, languages=["en-US"]
            )
            await client.legacy.stop(task.task_id, task.token_name)
    assert all(call.request.url.params["builderToken"] == TOKEN for call in router.calls[1:])
    assert stop.called
