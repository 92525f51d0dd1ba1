"""Every example in Agora's v7 OpenAPI file goes through the SDK (spec §4, §6.2).

The file (``tests/data/v7.en.condensed.yaml``, a copy of
``shared/spec/openapi/v7.en.condensed.yaml``) is walked for every ``example`` and
``examples`` entry, wherever it sits: request bodies are parsed into the SDK's request
models and sent back out unchanged; success responses are parsed into results; error
responses (``ErrorResponse``, ``AgentErrorResponse``) are read by ``error_from_response``
into a typed ``APIError`` carrying their fields. An example in a place this test does not
know fails it, so a new example in the file cannot go untested.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest
import yaml

from agora_stt_async import (
    Agent,
    AgentPage,
    AgentStatus,
    APIError,
    JoinRequest,
    UpdateRequest,
)
from agora_stt_async._converter import (
    structure_page,
    structure_request,
    structure_response,
    unstructure_request,
)
from agora_stt_async._errors import error_from_response
from tests.openapi import SCHEMA_PATH, validate_request

Example = tuple[tuple[str, ...], Any]
"""Where an example sits in the file (its keys, outermost first) and its value."""


def _walk(node: Any, where: tuple[str, ...] = ()) -> Iterator[Example]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "example":
                yield where, value
            elif key == "examples" and isinstance(value, dict):
                for name, entry in value.items():  # OpenAPI: {name: {value: ...}}
                    yield (*where, f"examples/{name}"), entry.get("value", entry)
            else:
                yield from _walk(value, (*where, str(key)))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, (*where, str(index)))


def _examples() -> list[Example]:
    return list(_walk(yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))))


def _operation_id(where: tuple[str, ...]) -> str:
    spec = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    operation = spec["paths"][where[1]][where[2]]
    assert isinstance(operation, dict)
    return str(operation["operationId"])


_REQUEST_MODELS: Final[dict[str, tuple[str, type[Any]]]] = {
    "join": ("JoinRequest", JoinRequest),
    "update": ("UpdateRequest", UpdateRequest),
}


def _check_request(operation: str, example: Any) -> None:
    schema_name, model = _REQUEST_MODELS[operation]
    validate_request(schema_name, example)  # the example is valid by its own file
    parsed = structure_request(example, model)
    assert isinstance(parsed, model)
    assert unstructure_request(parsed) == example  # and the SDK sends it back unchanged


# The response examples are not validated against the file's own schemas: they carry
# "create_ts": null, a placeholder the schema's integer does not allow (spec §4.2); what
# matters here is that the SDK reads them.


def _check_success(operation: str, example: Any) -> None:
    if operation == "list":
        page = structure_page(example)
        assert isinstance(page, AgentPage)
        assert page.count == example["data"]["count"] == len(page.items)
        assert page.total == example["meta"]["total"]
        assert page.cursor == example["meta"]["cursor"]
        for item, wire in zip(page.items, example["data"]["list"], strict=True):
            assert (item.agent_id, item.status.value) == (wire["agent_id"], wire["status"])
        return
    agent = structure_response(example, Agent)
    assert agent.agent_id == example["agent_id"]
    assert agent.status is AgentStatus(example["status"])
    assert agent.create_ts == example["create_ts"]
    assert agent.raw == example


def _check_failure(operation: str, example: Any) -> None:
    for status in (400, 404, 500):
        error = error_from_response(
            status, json.dumps(example).encode(), request_id="r1", operation=operation
        )
        assert isinstance(error, APIError)
        assert error.status_code == status
        for field in ("message", "detail", "reason"):
            if field in example:
                assert getattr(error, field) == example[field], field
        text = example.get("message") or example.get("detail")
        assert text in str(error)
        assert error.body_excerpt  # the raw text is kept (spec §6.2)


def _handler(where: tuple[str, ...]) -> Callable[[Any], None] | None:
    """What checks the example found at ``where``; ``None`` for an unknown place."""
    if len(where) < 3 or where[0] != "paths":
        return None
    operation = _operation_id(where)
    rest = where[3:]
    if rest == ("requestBody", "content", "application/json") and operation in _REQUEST_MODELS:
        return lambda example: _check_request(operation, example)
    if len(rest) == 4 and rest[0] == "responses" and rest[2:] == ("content", "application/json"):
        if rest[1] == "200":
            return lambda example: _check_success(operation, example)
        if rest[1] == "default" or rest[1][:1] in ("4", "5"):
            return lambda example: _check_failure(operation, example)
    return None


EXAMPLES: Final = _examples()


def test_openapi_examples_are_all_found() -> None:
    """The walk finds the file's examples: both request bodies, the success bodies and
    both error shapes (``ErrorResponse``, ``AgentErrorResponse``)."""
    places = {"/".join(where) for where, _ in EXAMPLES}
    assert len(EXAMPLES) >= 7
    assert any("requestBody" in place and "/join/" in place for place in places)
    assert any("requestBody" in place and "/update/" in place for place in places)
    shapes = {frozenset(value) for where, value in EXAMPLES if "default" in where}
    assert frozenset({"detail", "reason"}) in shapes  # ErrorResponse
    assert frozenset({"message", "agent_id", "create_ts", "status"}) in shapes  # AgentError


def _id(where: tuple[str, ...]) -> str:
    if len(where) > 3 and where[0] == "paths":
        kind = where[4] if where[3] == "responses" else "request"
        return f"{_operation_id(where)}-{kind}"
    return "/".join(where)


@pytest.mark.parametrize(("where", "example"), [pytest.param(w, e, id=_id(w)) for w, e in EXAMPLES])
def test_openapi_example_goes_through_the_sdk(where: tuple[str, ...], example: Any) -> None:
    """Each example of the file parses through the SDK's models (requests, results) or
    its error reader (failures); an example in an unknown place fails."""
    check = _handler(where)
    assert check is not None, f"no check for the example at {'/'.join(where)}: add one"
    check(example)
