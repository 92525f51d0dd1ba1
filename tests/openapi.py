"""Agora's own v7 OpenAPI schema, as a referee for request and response bodies.

Loads ``tests/data/v7.en.condensed.yaml`` (a copy of Agora's published OpenAPI 3.1 file,
condensed; CI runs from a clean clone, so nothing outside ``tests/`` is read), inlines
every ``$ref`` and validates with ``jsonschema`` (Draft 2020-12, the dialect of OpenAPI
3.1).

One documented defect is patched: ``StorageConfig`` requires lower-case ``accesskey`` /
``secretkey``, while the file's own example and every other Agora example send
``accessKey`` / ``secretKey`` (spec §4.1 [CONFLICT]). The patched schema uses camelCase.

Usage::

    validate_request("JoinRequest", body)          # raises jsonschema.ValidationError
    validate_response("query", 200, response.json())
    validate_response("query", 404, body, strict=True)   # + the error overlay below

The file's error schemas (``ErrorResponse``, ``AgentErrorResponse``) require no field, so
any object passes them, ``{}`` included. ``strict=True`` adds a test-only overlay that
holds error bodies to what the emulator promises (spec §6.2, §3.1): service-level v7
refusals (400, 403, 404, 409) carry string ``detail`` and ``reason``; a 401 carries
``message``; any other error status one of the two shapes.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).parent / "data" / "v7.en.condensed.yaml"

__all__ = [
    "STRICT_ERRORS",
    "load_spec",
    "operation",
    "schema",
    "validate_request",
    "validate_response",
]

_DETAIL_REASON: dict[str, Any] = {
    "type": "object",
    "required": ["detail", "reason"],
    "properties": {"detail": {"type": "string"}, "reason": {"type": "string", "minLength": 1}},
}
_MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["message"],
    "properties": {"message": {"type": "string", "minLength": 1}},
}
STRICT_ERRORS: dict[int, dict[str, Any]] = {
    400: _DETAIL_REASON,
    401: _MESSAGE,  # spec §3.1: {"message": "Invalid authentication credentials"}
    403: _DETAIL_REASON,
    404: _DETAIL_REASON,
    409: _DETAIL_REASON,
}
"""The overlay for v7 error statuses; other error statuses get ``_ANY_ERROR``."""
_ANY_ERROR: dict[str, Any] = {"anyOf": [_MESSAGE, _DETAIL_REASON]}


@functools.cache
def load_spec() -> dict[str, Any]:
    """The OpenAPI document with every ``$ref`` inlined and the known defect patched."""
    raw = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    _patch_storage_keys(raw)
    resolved = _resolve(raw, raw, ())
    assert isinstance(resolved, dict)
    return resolved


def _patch_storage_keys(spec: dict[str, Any]) -> None:
    storage = spec["components"]["schemas"]["StorageConfig"]
    renames = {"accesskey": "accessKey", "secretkey": "secretKey"}
    storage["required"] = [renames.get(name, name) for name in storage["required"]]
    storage["properties"] = {
        renames.get(name, name): value for name, value in storage["properties"].items()
    }


def _resolve(node: Any, root: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in seen:
                raise ValueError(f"recursive $ref {ref}")
            target: Any = root
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
            return _resolve(merged, root, (*seen, ref))
        return {key: _resolve(value, root, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, root, seen) for item in node]
    return node


def schema(name: str) -> dict[str, Any]:
    """A resolved component schema by name (``"JoinRequest"``, ``"AgentResponse"``, …)."""
    schemas = load_spec()["components"]["schemas"]
    if name not in schemas:
        raise KeyError(f"no schema {name!r}; known: {sorted(schemas)}")
    result = schemas[name]
    assert isinstance(result, dict)
    return result


def operation(operation_id: str) -> dict[str, Any]:
    """The resolved operation object for an ``operationId`` (join, query, update, leave, list)."""
    for path_item in load_spec()["paths"].values():
        for op in path_item.values():
            if isinstance(op, dict) and op.get("operationId") == operation_id:
                return op
    raise KeyError(f"no operation {operation_id!r}")


def _validate(instance: Any, json_schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(
        json_schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        raise error


def validate_request(schema_name: str, body: Any) -> None:
    """Check a request body against a component schema; raises ``jsonschema.ValidationError``."""
    _validate(body, schema(schema_name))


def validate_response(operation_id: str, status: int, body: Any, *, strict: bool = False) -> None:
    """Check a response body against the operation's documented response for ``status``.

    Falls back to the ``default`` response for undocumented statuses. A response the file
    documents without a schema (leave) accepts any body, since there is nothing to check.
    ``strict=True`` also checks an error body (status >= 400) against the overlay
    (``STRICT_ERRORS``), whatever the file documents.

    Raises:
        jsonschema.ValidationError: the body does not match.
        KeyError: the operation, or a response for that status, is not documented.
    """
    responses = operation(operation_id)["responses"]
    response = responses.get(str(status), responses.get("default"))
    if response is None:
        raise KeyError(f"{operation_id} documents no response for {status}")
    if strict and status >= 400:
        _validate(body, STRICT_ERRORS.get(status, _ANY_ERROR))
    content = response.get("content", {}).get("application/json")
    if content is None or "schema" not in content:
        return
    _validate(body, content["schema"])
