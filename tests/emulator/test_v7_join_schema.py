"""v7 join body validation: every documented limit of spec §4.1, answered 400 {detail, reason}."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from agora_stt_async.emulator import EmulatorApp, EmulatorConfig
from tests.emulator.conftest import V7, ConformanceClient, join_body
from tests.openapi import validate_request

pytestmark = pytest.mark.anyio

SALT = base64.b64encode(bytes(32)).decode()
STORAGE = {"accessKey": "ak", "secretKey": "sk", "bucket": "b", "vendor": 2, "region": 3}


def with_(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``join_body()`` with ``value`` set at a dotted path (``...`` deletes the field)."""
    body = copy.deepcopy(base if base is not None else join_body())
    *parents, leaf = path.split(".")
    node = body
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return body


MISSING = [
    ("name", with_("name", ...)),
    ("languages", with_("languages", ...)),
    ("rtcConfig", with_("rtcConfig", ...)),
    ("rtcConfig.channelName", with_("rtcConfig.channelName", ...)),
    ("rtcConfig.pubBotUid", with_("rtcConfig.pubBotUid", ...)),
    ("rtcConfig.secret", with_("rtcConfig.cryptionMode", 5)),
    (
        "rtcConfig.salt",
        with_(
            "rtcConfig", {"channelName": "c", "pubBotUid": "1", "cryptionMode": 7, "secret": "s"}
        ),
    ),
    ("uidLanguagesConfig[0].languages", with_("uidLanguagesConfig", [{"uid": "1"}])),
    (
        "translateConfig.languages[0].target",
        with_("translateConfig.languages", [{"source": "en-US"}]),
    ),
    ("captionConfig.storage.bucket", with_("captionConfig.storage", {**STORAGE, "bucket": None})),
    (
        "captionConfig.storage.accessKey",
        with_("captionConfig.storage", {k: v for k, v in STORAGE.items() if k != "accessKey"}),
    ),
    ("extensionParams.endpoint", with_("captionConfig.storage", {**STORAGE, "vendor": 11})),
]

INVALID = [
    ("name", with_("name", "n" * 65)),
    ("name", with_("name", "")),
    ("name", with_("name", 7)),
    ("languages", with_("languages", [])),
    ("languages", with_("languages", ["en-US", "fr-FR", "de-DE", "ja-JP", "ko-KR"])),
    ("languages", with_("languages", "en-US")),
    ("languages[0]", with_("languages", ["english"])),
    ("rtcConfig.pubBotUid", with_("rtcConfig.pubBotUid", 1000)),
    (
        "rtcConfig.subscribeAudioUids",
        with_("rtcConfig.subscribeAudioUids", [str(i) for i in range(33)]),
    ),
    ("rtcConfig.unSubscribeAudioUids", with_("rtcConfig.unSubscribeAudioUids", list("123456"))),
    (
        "rtcConfig.unSubscribeAudioUids",
        with_(
            "rtcConfig",
            {
                "channelName": "c",
                "pubBotUid": "1",
                "subscribeAudioUids": ["1"],
                "unSubscribeAudioUids": ["2"],
            },
        ),
    ),
    ("rtcConfig.cryptionMode", with_("rtcConfig.cryptionMode", 9)),
    (
        "rtcConfig.salt",
        with_(
            "rtcConfig",
            {
                "channelName": "c",
                "pubBotUid": "1",
                "cryptionMode": 8,
                "secret": "s",
                "salt": "c2hvcnQ=",
            },
        ),
    ),
    ("rtcConfig.enableJsonProtocol", with_("rtcConfig.enableJsonProtocol", "true")),
    ("maxIdleTime", with_("maxIdleTime", -1)),
    ("maxIdleTime", with_("maxIdleTime", 2_592_001)),
    ("maxIdleTime", with_("maxIdleTime", 30.5)),
    ("maxIdleTime", with_("maxIdleTime", True)),
    (
        "uidLanguagesConfig",
        with_("uidLanguagesConfig", [{"uid": str(i), "languages": ["en-US"]} for i in range(6)]),
    ),
    (
        "uidLanguagesConfig[1].uid",
        with_(
            "uidLanguagesConfig",
            [{"uid": "1", "languages": ["en-US"]}, {"uid": "1", "languages": ["fr-FR"]}],
        ),
    ),
    (
        "translateConfig.languages",
        with_("translateConfig.languages", [{"source": "en-US", "target": ["fr-FR"]}] * 5),
    ),
    (
        "translateConfig.languages[0].target",
        with_("translateConfig.languages", [{"source": "en-US", "target": ["fr-FR"] * 11}]),
    ),
    (
        "translateConfig.languages[0].target",
        with_("translateConfig.languages", [{"source": "en-US", "target": ["en-US"]}]),
    ),
    (
        "translateConfig.languages[0].target[0]",
        with_("translateConfig.languages", [{"source": "en-US", "target": ["xx"]}]),
    ),
    ("captionConfig.sliceDuration", with_("captionConfig.sliceDuration", 4)),
    ("captionConfig.sliceDuration", with_("captionConfig.sliceDuration", 28801)),
    ("captionConfig.storage.vendor", with_("captionConfig.storage", {**STORAGE, "vendor": 4})),
    (
        "captionConfig.storage.region",
        with_("captionConfig.storage", {**STORAGE, "vendor": 1, "region": 18}),
    ),
    (
        "captionConfig.storage.fileNamePrefix[1]",
        with_("captionConfig.storage", {**STORAGE, "fileNamePrefix": ["ok", "no/"]}),
    ),
    (
        "captionConfig.storage.fileNamePrefix",
        with_("captionConfig.storage", {**STORAGE, "fileNamePrefix": ["a" * 64] * 2}),
    ),
    (
        "extensionParams.sse",
        with_(
            "extensionParams",
            {"sse": "aes128"},
            with_("captionConfig.storage", {**STORAGE, "vendor": 1}),
        ),
    ),
    (
        "extensionParams.sse",
        with_("extensionParams", {"sse": "kms"}, with_("captionConfig.storage", STORAGE)),
    ),
    (
        "extensionParams.tag",
        with_(
            "extensionParams",
            {"tag": "t"},
            with_("captionConfig.storage", {**STORAGE, "vendor": 5}),
        ),
    ),
    ("keywords", with_("keywords", ["k"] * 501)),
    ("keywords[0]", with_("keywords", [1])),
    ("translateConfig.forceTranslateInterval", with_("translateConfig.forceTranslateInterval", 9)),
]

VALID = [
    join_body(),
    with_("maxIdleTime", 0),
    with_("maxIdleTime", 2_592_000),
    with_("languages", ["en-US", "fr-FR", "de-DE", "ja-JP"]),
    with_("languages", ["nan-CN"]),  # dropped from the current table; the union is accepted
    with_(
        "rtcConfig",
        {
            "channelName": "c",
            "pubBotUid": "1",
            "subBotUid": "1",
            "cryptionMode": 7,
            "secret": "s",
            "salt": SALT,
            "enableJsonProtocol": True,
            "subscribeAudioUids": ["all"],
        },
    ),
    with_(
        "translateConfig",
        {
            "enable": True,
            "forceTranslateInterval": 5,
            "languages": [{"source": "en-US", "target": ["fr-FR"] * 10}],
        },
    ),
    with_(
        "captionConfig", {"sliceDuration": 60, "storage": {**STORAGE, "fileNamePrefix": ["a", "b"]}}
    ),
    with_(
        "captionConfig",
        {
            "storage": {
                "accesskey": "ak",
                "secretkey": "sk",
                "bucket": "b",
                "vendor": 1,
                "region": 28,
            }
        },
    ),
    with_(
        "captionConfig",
        {
            "storage": {**STORAGE, "vendor": 11},
            "extensionParams": {"endpoint": "http://minio:9000", "provider": "Minio"},
        },
    ),
    with_(
        "extensionParams",
        {"endpoint": "http://minio:9000", "overwritekeys": [{"a": "b"}]},
        with_("captionConfig", {"storage": {**STORAGE, "vendor": 11}}),
    ),
    with_("keywords", ["Agora"] * 500),
    with_("callback", {"url": "https://example.com"}),  # unknown fields are ignored
    with_("uidLanguagesConfig", [{"uid": str(i), "languages": ["en-US"]} for i in range(5)]),
]


@pytest.mark.parametrize(("field", "body"), MISSING, ids=[f for f, _ in MISSING])
async def test_join_missing_required_field(
    client: ConformanceClient, field: str, body: Any
) -> None:
    """A missing required field answers 400 MissingRequiredField naming it."""
    response = await client.post(f"{V7}/join", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "detail": response.json()["detail"],
        "reason": "MissingRequiredField",
    }
    assert response.json()["detail"].startswith(f"{field}:")


@pytest.mark.parametrize(("field", "body"), INVALID, ids=[f for f, _ in INVALID])
async def test_join_invalid_field_value(
    client: ConformanceClient, app: EmulatorApp, field: str, body: Any
) -> None:
    """A value breaking a documented limit answers 400 InvalidFieldValue naming the field."""
    response = await client.post(f"{V7}/join", json=body)
    assert response.status_code == 400
    assert response.json()["reason"] == "InvalidFieldValue"
    assert response.json()["detail"].startswith(f"{field}:")
    assert app.world.counts()["agents"]["total"] == 0  # type: ignore[index]


@pytest.mark.parametrize("body", VALID)
async def test_join_accepts_documented_bodies(client: ConformanceClient, body: Any) -> None:
    """Bodies within every documented limit are accepted."""
    response = await client.post(f"{V7}/join", json=body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "content", [b"", b"{", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"], ids=repr
)
async def test_join_non_object_body_is_invalid_request_body(
    client: ConformanceClient, content: bytes
) -> None:
    """A body that is not a JSON object answers 400 InvalidRequestBody."""
    response = await client.post(f"{V7}/join", content=content)
    assert response.status_code == 400
    assert response.json()["reason"] == "InvalidRequestBody"


@pytest.mark.parametrize("config", [EmulatorConfig(strict_fields=True)])
async def test_strict_fields_rejects_unknown_fields(client: ConformanceClient) -> None:
    """strict_fields=True: an unknown field answers 400 InvalidFieldValue naming it."""
    response = await client.post(f"{V7}/join", json=with_("rtcConfig.colour", "blue"))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("rtcConfig.colour:")


@pytest.mark.parametrize("config", [EmulatorConfig(check_languages=False)])
async def test_language_check_can_be_switched_off(client: ConformanceClient) -> None:
    """check_languages=False accepts codes outside spec §10."""
    response = await client.post(f"{V7}/join", json=with_("languages", ["tlh-KLINGON"]))
    assert response.status_code == 200


def test_valid_join_bodies_match_openapi() -> None:
    """The bodies the emulator accepts here are valid JoinRequests by Agora's schema too.

    Except where the file takes the other side of a documented conflict (spec §4.1):
    ``maxIdleTime: 0`` (the file says 5..2592000), lower-case ``accesskey`` (the patched
    schema wants camelCase) and ``overwritekeys`` as an array (the file says object).
    """
    checked = 0
    for body in VALID:
        storage = body.get("captionConfig", {}).get("storage", {})
        overwrite = body.get("extensionParams", {}).get("overwritekeys", {})
        if (
            body.get("maxIdleTime") != 0
            and "accesskey" not in storage
            and not isinstance(overwrite, list)
        ):
            validate_request("JoinRequest", body)
            checked += 1
    assert checked == len(VALID) - 3


async def test_join_null_max_idle_time_is_the_default(client: ConformanceClient) -> None:
    """``"maxIdleTime": null`` counts as absent (30 s), like every other null field."""
    response = await client.post(f"{V7}/join", json=join_body(maxIdleTime=None))
    assert response.status_code == 200, response.text
    detail = await client.get(f"/_emulator/agents/{response.json()['agent_id']}")
    assert detail.json()["max_idle_time"] == 30
