"""No credential, bot token, encryption key, storage key or builder token in any log line,
repr or error string."""

from __future__ import annotations

import base64
import logging
from typing import Any

import anyio
import httpx
import pytest
import respx

from agora_stt_async import (
    AgoraSTTError,
    AsyncClient,
    BuilderToken,
    CaptionConfig,
    JoinRequest,
    LanguagePair,
    LegacyStartRequest,
    RetryPolicy,
    RtcConfig,
    StorageConfig,
    TranslateConfig,
    ValidationError,
)
from agora_stt_async._secrets import Secret, redact_text, redact_url

pytestmark = pytest.mark.anyio

BASE = "https://api.agora.io"
APP = "app0"
V7 = f"/api/speech-to-text/v1/projects/{APP}"
LEGACY = f"/v1/projects/{APP}/rtsc/speech-to-text"

CUSTOMER_ID = "customer-id-visible"
CUSTOMER_SECRET = "CUSTOMERSECRETzq1"
BASIC = base64.b64encode(f"{CUSTOMER_ID}:{CUSTOMER_SECRET}".encode()).decode()
PUB_TOKEN = "PUBBOTTOKENzq2"
SUB_TOKEN = "SUBBOTTOKENzq3"
ENC_SECRET = "ENCRYPTIONSECRETzq4"
SALT = base64.b64encode(b"SALTSALT" * 4).decode()
ACCESS_KEY = "STORAGEACCESSzq5"
SECRET_KEY = "STORAGESECRETzq6"
BUILDER_TOKEN = "BUILDERTOKENzq7" + "x" * 40

SECRETS = {
    "customer secret": CUSTOMER_SECRET,
    "authorization header": f"Basic {BASIC}",
    "basic credentials": BASIC,
    "pub bot token": PUB_TOKEN,
    "sub bot token": SUB_TOKEN,
    "encryption secret": ENC_SECRET,
    "encryption salt": SALT,
    "storage access key": ACCESS_KEY,
    "storage secret key": SECRET_KEY,
    "builder token": BUILDER_TOKEN,
}


def assert_clean(text: str, where: str) -> None:
    for name, value in SECRETS.items():
        assert value not in text, f"{name} leaked into {where}: {text!r}"


RTC = RtcConfig(
    channel_name="room",
    pub_bot_uid="1",
    pub_bot_token=PUB_TOKEN,
    sub_bot_uid="2",
    sub_bot_token=SUB_TOKEN,
    cryption_mode=7,
    secret=ENC_SECRET,
    salt=SALT,
)
CAPTIONS = CaptionConfig(
    storage=StorageConfig(
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, bucket="b", vendor=1, region=0
    )
)
JOIN = JoinRequest(
    name="n",
    languages=["en-US"],
    rtc_config=RTC,
    caption_config=CAPTIONS,
    translate_config=TranslateConfig(languages=[LanguagePair(source="en-US", target=["fr-FR"])]),
)
START = LegacyStartRequest(languages=["en-US"], rtc_config=RTC, caption_config=CAPTIONS)
AGENT = {"agent_id": "a1", "create_ts": 1, "status": "RUNNING"}
TASK = {"taskId": "t1", "createTs": 1, "status": "IN_PROGRESS"}
STARTED = "The task has been started, current status is STARTED, taskId is t1"


def page(ids: list[str], cursor: str) -> httpx.Response:
    items = [{"start_ts": 1, "status": "RUNNING", "agent_id": i} for i in ids]
    return httpx.Response(
        200,
        json={"data": {"count": len(ids), "list": items}, "meta": {"cursor": cursor, "total": 3}},
    )


async def test_secrets_absent_from_debug_logs_and_errors(caplog):
    """Every endpoint, with failures and retries, logs and raises without a secret."""
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []

    async def expect_failure(call: Any) -> None:
        try:
            await call
        except AgoraSTTError as error:
            errors.append(error)
        else:  # pragma: no cover - the test's own sanity
            raise AssertionError("the call should have failed")

    async with AsyncClient(
        app_id=APP,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        retry=RetryPolicy.testing(),
    ) as client:
        assert_clean(repr(client), "repr(client)")
        assert_clean(str(client), "str(client)")
        with respx.mock(base_url=BASE, assert_all_called=True, assert_all_mocked=True) as router:
            router.post(f"{V7}/join").mock(
                side_effect=[
                    httpx.Response(503, text="<html>unavailable</html>"),
                    httpx.Response(200, json=AGENT),
                ]
            )
            router.get(f"{V7}/agents/a1").mock(
                side_effect=[
                    httpx.Response(503),
                    httpx.Response(200, json=AGENT),
                    httpx.Response(401, json={"message": "Invalid authentication credentials"}),
                ]
            )
            router.post(f"{V7}/agents/a1/update").respond(200, json=AGENT)
            router.post(f"{V7}/agents/a1/leave").mock(
                side_effect=[httpx.ConnectError("refused"), httpx.Response(200)]
            )
            router.get(f"{V7}/agents").mock(
                side_effect=[page(["a1", "a2"], "a2"), page(["a3"], "")]
            )
            router.post(f"{LEGACY}/builderTokens").respond(
                200, json={"tokenName": BUILDER_TOKEN, "createTs": 1, "instanceId": "room"}
            )
            router.post(f"{LEGACY}/tasks").mock(
                side_effect=[
                    httpx.Response(200, json=TASK),
                    httpx.Response(409, json={"code": 49, "message": STARTED}),
                ]
            )
            router.get(f"{LEGACY}/tasks/t1").mock(
                side_effect=[
                    httpx.Response(400, json={"code": 20, "message": "timeout"}),
                    httpx.Response(200, json=TASK),
                    httpx.Response(200, content=b"<html>not json</html>"),
                ]
            )
            router.patch(f"{LEGACY}/tasks/t1").mock(
                side_effect=[
                    httpx.Response(200, json=TASK),
                    httpx.Response(400, json={"code": 53, "message": "mismatch"}),
                ]
            )
            router.delete(f"{LEGACY}/tasks/t1").mock(
                side_effect=[
                    httpx.ReadTimeout("slow"),
                    httpx.Response(200),
                    httpx.ReadTimeout("x"),
                    *[httpx.RemoteProtocolError("dropped")] * 3,
                ]
            )
            with anyio.fail_after(10):
                await expect_failure(client.agents.join(JOIN))
                agent = await client.agents.join(JOIN)
                await client.agents.get(agent.agent_id)
                await expect_failure(client.agents.get(agent.agent_id))
                await client.agents.update(agent.agent_id, sequence_id=1, languages=["en-US"])
                await client.agents.leave(agent.agent_id)
                _ = [a async for a in client.agents.list(channel="room")]
                token = await client.legacy.acquire("room")
                task = await client.legacy.start(token, START)
                await expect_failure(client.legacy.start(token, START))
                await client.legacy.query(task.task_id, token)
                await expect_failure(client.legacy.query(task.task_id, token))
                await client.legacy.update(task.task_id, token, sequence_id=1, languages=["en-US"])
                await expect_failure(
                    client.legacy.update(task.task_id, token, sequence_id=2, languages=["en-US"])
                )
                await client.legacy.stop(task.task_id, token)
                await expect_failure(client.legacy.stop(task.task_id, token))
            # the requests really carried the secrets (so their absence below means something)
            sent = [call.request for call in router.calls]
            assert sent[0].headers["Authorization"] == SECRETS["authorization header"]
            assert any(BUILDER_TOKEN in str(request.url) for request in sent)
            assert any(PUB_TOKEN.encode() in request.content for request in sent)
            assert any(SECRET_KEY.encode() in request.content for request in sent)
        assert_clean(repr(client), "repr(client)")
        assert_clean(repr(token), "repr(BuilderToken)")
        assert_clean(repr(task), "repr(Task)")

    assert len(errors) == 6
    for error in errors:
        assert_clean(str(error), f"str({type(error).__name__})")
        assert_clean(repr(error), f"repr({type(error).__name__})")
        assert_clean(repr(vars(error)), f"vars({type(error).__name__})")
    records = caplog.records
    assert any(r.name == "agora_stt_async" and r.levelno == logging.DEBUG for r in records)
    assert any(r.name == "agora_stt_async" and r.levelno == logging.INFO for r in records)
    assert any(r.name == "httpx" for r in records)  # httpx's own lines are captured too
    assert_clean(caplog.text, "the captured log")
    for record in records:
        assert_clean(record.getMessage(), f"log record of {record.name}")
        assert_clean(repr(record.args), f"log record args of {record.name}")


REPRS = [
    pytest.param(RTC, id="RtcConfig"),
    pytest.param(CAPTIONS, id="CaptionConfig"),
    pytest.param(CAPTIONS.storage, id="StorageConfig"),
    pytest.param(JOIN, id="JoinRequest"),
    pytest.param(START, id="LegacyStartRequest"),
    pytest.param(BuilderToken(token_name=BUILDER_TOKEN, create_ts=1, instance_id="r"), id="token"),
    pytest.param(Secret(CUSTOMER_SECRET), id="Secret"),
]


@pytest.mark.parametrize("value", REPRS)
def test_secrets_absent_from_model_reprs(value):
    """Models holding tokens, keys or secrets mask them in repr() and str()."""
    assert_clean(repr(value), "repr")
    assert_clean(str(value), "str")


def test_secrets_masked_fields_show_presence():
    """A masked field still says whether it is set."""
    text = repr(RtcConfig(channel_name="c", pub_bot_uid="1", pub_bot_token="t"))
    assert "pub_bot_token='***'" in text
    assert "sub_bot_token=None" in text


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda: StorageConfig(
                access_key=ACCESS_KEY.encode(),  # type: ignore[arg-type]
                secret_key="s",
                bucket="b",
                vendor=1,
                region=0,
            ),
            id="storage-key-bytes",
        ),
        pytest.param(
            lambda: RtcConfig(
                channel_name="c",
                pub_bot_uid="1",
                cryption_mode=7,
                secret=ENC_SECRET,
                salt=SALT[:-4],
            ),
            id="bad-salt",
        ),
        pytest.param(
            lambda: RtcConfig(
                channel_name="c",
                pub_bot_uid="1",
                pub_bot_token=PUB_TOKEN.encode(),  # type: ignore[arg-type]
            ),
            id="token-bytes",
        ),
        pytest.param(
            lambda: LegacyStartRequest(
                languages=["en-US"],
                rtc_config=RtcConfig(channel_name="c", pub_bot_uid="1", pub_bot_token=PUB_TOKEN),
            ),
            id="legacy-missing-sub-uid",
        ),
    ],
)
def test_secrets_absent_from_validation_errors(build):
    """A ValidationError about a secret-holding request never prints the secret."""
    with pytest.raises(ValidationError) as info:
        build()
    assert_clean(str(info.value), "str(ValidationError)")
    assert_clean(repr(info.value), "repr(ValidationError)")


def test_secrets_secret_value():
    """Secret hides its value in repr/str and gives it back only through reveal()."""
    secret = Secret(CUSTOMER_SECRET)
    assert CUSTOMER_SECRET not in repr(secret)
    assert CUSTOMER_SECRET not in str(secret)
    assert CUSTOMER_SECRET not in f"{secret}"
    assert secret.reveal() == CUSTOMER_SECRET
    assert secret == Secret(CUSTOMER_SECRET)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/p?builderToken=abc&sequenceId=1", "https://h/p?builderToken=***&sequenceId=1"),
        ("https://h/p?sequenceId=1&builderToken=abc", "https://h/p?sequenceId=1&builderToken=***"),
        ("https://h/p?token=a%2Bb", "https://h/p?token=***"),
        ("https://h/p?updateMask=languages", "https://h/p?updateMask=languages"),
    ],
)
def test_secrets_redact_url(url, expected):
    """Token-like query values are masked; other parameters stay readable."""
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('{"tokenName": "abc", "x": 1}', '{"tokenName": "***", "x": 1}', id="json"),
        pytest.param("{'tokenName': 'abc'}", "{'tokenName': \"***\"}", id="python-repr"),
        pytest.param('{"builderToken":"a\\"b","n":2}', '{"builderToken":"***","n":2}', id="escape"),
        pytest.param('{"secretKey": 12345}', '{"secretKey": "***"}', id="bare-value"),
        pytest.param('{"pubBotToken": "cut-off', '{"pubBotToken": "***"', id="cut-off"),
        pytest.param('{"accessKey":"a","salt":"b"}', '{"accessKey":"***","salt":"***"}', id="two"),
        pytest.param("t?builderToken=abc&x=1", "t?builderToken=***&x=1", id="query"),
        pytest.param(
            '{"keywords": ["k"], "overwritekeys": {"a": "b"}}',
            '{"keywords": ["k"], "overwritekeys": {"a": "b"}}',
            id="not-secrets",
        ),
    ],
)
def test_secrets_redact_text(text, expected):
    """Body excerpts kept on errors have credential-like values masked, whatever the
    quoting, and even when the text was cut inside the value."""
    assert redact_text(text) == expected
