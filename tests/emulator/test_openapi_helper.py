"""tests/openapi.py: Agora's schema loads, resolves, carries its patch and can say no."""

from __future__ import annotations

import jsonschema
import pytest

from tests.openapi import load_spec, operation, schema, validate_request, validate_response


def test_refs_are_resolved() -> None:
    """No $ref is left in the loaded document."""
    assert "$ref" not in repr(load_spec())
    assert schema("JoinRequest")["properties"]["rtcConfig"]["required"] == [
        "channelName",
        "pubBotUid",
    ]


def test_storage_keys_are_patched_to_camel_case() -> None:
    """StorageConfig requires accessKey/secretKey, as every Agora example sends them."""
    storage = schema("StorageConfig")
    assert storage["required"] == ["accessKey", "secretKey", "bucket", "vendor", "region"]
    assert "accesskey" not in storage["properties"]


def test_documented_examples_validate() -> None:
    """The file's own request and response examples pass its (patched) schemas."""
    join = operation("join")
    validate_request("JoinRequest", join["requestBody"]["content"]["application/json"]["example"])
    update = operation("update")
    validate_request(
        "UpdateRequest", update["requestBody"]["content"]["application/json"]["example"]
    )
    validate_response(
        "list", 200, operation("list")["responses"]["200"]["content"]["application/json"]["example"]
    )


@pytest.mark.parametrize(
    ("name", "body"),
    [
        (
            "JoinRequest",
            {"languages": ["en-US"], "rtcConfig": {"channelName": "c", "pubBotUid": "1"}},
        ),
        (
            "JoinRequest",
            {
                "name": "n" * 65,
                "languages": [],
                "rtcConfig": {"channelName": "c", "pubBotUid": "1"},
            },
        ),
        ("UpdateRequest", {"languages": ["a", "b", "c", "d", "e"]}),
        ("UpdateRequest", {"translateConfig": {"enable": "yes"}}),
    ],
)
def test_bad_requests_fail(name: str, body: object) -> None:
    """validate_request raises on bodies that break the schema."""
    with pytest.raises(jsonschema.ValidationError):
        validate_request(name, body)


@pytest.mark.parametrize(
    ("operation_id", "status", "body"),
    [
        ("join", 200, {"agent_id": 5, "create_ts": 1, "status": "RUNNING"}),
        ("join", 200, {"agent_id": "a", "create_ts": "1", "status": "RUNNING"}),
        ("query", 200, {"message": "ok", "agent_id": "a", "create_ts": 1, "status": "WALKING"}),
        ("query", 404, {"message": "x", "status": "RUNNING"}),
        ("list", 200, {"data": {"count": "1", "list": []}, "meta": {"cursor": "", "total": 0}}),
        ("list", 400, {"detail": 1, "reason": "x"}),
    ],
)
def test_bad_responses_fail(operation_id: str, status: int, body: object) -> None:
    """validate_response raises on bodies that break the documented response."""
    with pytest.raises(jsonschema.ValidationError):
        validate_response(operation_id, status, body)


def test_leave_has_no_schema_and_unknown_operations_fail() -> None:
    """Leave documents no body, so anything passes; unknown operations are a KeyError."""
    validate_response("leave", 200, None)
    with pytest.raises(KeyError):
        validate_response("teleport", 200, {})
    with pytest.raises(KeyError):
        schema("Nope")


@pytest.mark.parametrize(
    ("operation_id", "status", "body"),
    [
        ("query", 404, {"message": "not found"}),
        ("join", 400, {"detail": "x"}),
        ("join", 409, {"reason": "TaskConflict"}),
        ("list", 403, {"detail": "x", "reason": ""}),
        ("leave", 404, None),
        ("join", 401, {"detail": "x", "reason": "Unauthorized"}),
        ("update", 500, {}),
        ("list", 504, {"error": "x"}),
    ],
)
def test_strict_overlay_refuses_loose_error_bodies(
    operation_id: str, status: int, body: object
) -> None:
    """The file's error schemas require nothing; strict=True requires {detail, reason} on
    400/403/404/409, {message} on 401, and one of the two on any other error."""
    validate_response(operation_id, status, body)  # the file alone lets these pass
    with pytest.raises(jsonschema.ValidationError):
        validate_response(operation_id, status, body, strict=True)


@pytest.mark.parametrize(
    ("operation_id", "status", "body"),
    [
        ("query", 404, {"detail": "agent x not found", "reason": "TaskNotFound"}),
        ("join", 401, {"message": "Invalid authentication credentials"}),
        ("list", 429, {"message": "API rate limit exceeded"}),
        ("update", 504, {"detail": "timed out", "reason": "TaskOperationTimeout"}),
        ("query", 200, {"message": "ok", "agent_id": "a", "create_ts": 1, "status": "RUNNING"}),
    ],
)
def test_strict_overlay_accepts_the_emulator_shapes(
    operation_id: str, status: int, body: object
) -> None:
    """The shapes the emulator sends pass the overlay; success bodies are not touched."""
    validate_response(operation_id, status, body, strict=True)
