"""``client.agents.list``: following ``meta.cursor``, filters, guards and resuming."""

from __future__ import annotations

import base64
import ssl
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from agora_stt_async import (
    Agent,
    AgentIterator,
    AgentPage,
    AgentStatus,
    AsyncClient,
    PaginationError,
    RetryPolicy,
    ServerError,
    ValidationError,
)
from tests.openapi import operation, validate_response

pytestmark = pytest.mark.anyio

BASE = "https://api.agora.io"
APP = "0123456789abcdef0123456789abcdef"
PREFIX = f"/api/speech-to-text/v1/projects/{APP}"
AUTH = "Basic " + base64.b64encode(b"cid:secret").decode()


# One TLS context for every client of this module: building one per client (certifi's
# bundle) would dominate the run time. respx still intercepts below this transport.
_TLS = ssl.create_default_context()


def make_client(**kw: Any) -> AsyncClient:
    options: dict[str, Any] = {
        "transport": httpx.AsyncHTTPTransport(verify=_TLS),
        "app_id": APP,
        "customer_id": "cid",
        "customer_secret": "secret",
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
    return respx.mock(assert_all_called=False, assert_all_mocked=True)


def page(ids: list[str], cursor: str, total: int, status: str = "RUNNING") -> httpx.Response:
    body = {
        "data": {
            "count": len(ids),
            "list": [
                {"start_ts": 1735035000 + int(i[1:]), "status": status, "agent_id": i} for i in ids
            ],
        },
        "meta": {"cursor": cursor, "total": total},
        "status": "ok",
    }
    validate_response("list", 200, body)
    return httpx.Response(200, json=body, headers={"X-Request-Id": f"req-{cursor or 'end'}"})


def cursors_sent(route: respx.Route) -> list[str | None]:
    return [call.request.url.params.get("cursor") for call in route.calls]


async def collect(iterator: AgentIterator) -> list[str]:
    with anyio.fail_after(5):
        return [agent.agent_id async for agent in iterator]


async def test_pagination_follows_meta_cursor(client):
    """Items of every page are yielded in order, each request carrying the previous cursor."""
    with mock() as router:
        route = router.get("/agents").mock(
            side_effect=[
                page(["a1", "a2"], "a2", 5),
                page(["a3", "a4"], "a4", 5),
                page(["a5"], "", 5),
            ]
        )
        iterator = client.agents.list()
        assert await collect(iterator) == ["a1", "a2", "a3", "a4", "a5"]
    assert cursors_sent(route) == [None, "a2", "a4"]
    assert iterator.pages_fetched == 3
    assert iterator.cursor == ""
    request = route.calls.last.request
    assert request.method == "GET"
    assert request.url.path == f"{PREFIX}/agents"
    assert request.content == b""
    assert request.headers["Authorization"] == AUTH
    assert request.headers["X-Request-Id"].startswith("sdk_")


async def test_pagination_items_are_parsed(client):
    """List items become Agents with start_ts as create_ts and their raw item kept."""
    with mock() as router:
        router.get("/agents").mock(side_effect=[page(["a7"], "", 1, status="STOPPED")])
        with anyio.fail_after(5):
            agents = [agent async for agent in client.agents.list()]
    assert agents == [Agent(agent_id="a7", status=AgentStatus.STOPPED, create_ts=1735035007)]
    assert agents[0].raw == {"start_ts": 1735035007, "status": "STOPPED", "agent_id": "a7"}


async def test_pagination_items_carry_their_page_response(client):
    """Every item carries the exchange of the page it came in (one shared object per
    page, as every other result carries its own); it was None."""
    with mock() as router:
        router.get("/agents").mock(side_effect=[page(["a1", "a2"], "a2", 3), page(["a3"], "", 3)])
        with anyio.fail_after(5):
            agents = [agent async for agent in client.agents.list()]
    infos = [agent.response for agent in agents]
    assert all(info is not None for info in infos)
    assert [info.request_id for info in infos if info] == ["req-a2", "req-a2", "req-end"]
    assert infos[0] is infos[1]  # shared, not copied per item
    assert infos[0] is not infos[2]


async def test_pagination_documented_example(client):
    """The documented list example parses into one page of one agent."""
    example = operation("list")["responses"]["200"]["content"]["application/json"]["example"]
    with mock() as router:
        router.get("/agents").respond(200, json=example)
        with anyio.fail_after(5):
            pages = [p async for p in client.agents.list().pages()]
    assert len(pages) == 1
    assert pages[0].items == (
        Agent(
            agent_id="1NT29X11GQSxxxxx80BEIN56XF",
            status=AgentStatus.RUNNING,
            create_ts=1735035893,
        ),
    )
    assert (pages[0].total, pages[0].cursor, pages[0].count) == (1, "", 1)


async def test_pagination_empty_result(client):
    """An empty first page ends the iteration after one request."""
    with mock() as router:
        route = router.get("/agents").mock(side_effect=[page([], "", 0)])
        assert await collect(client.agents.list()) == []
    assert route.call_count == 1


async def test_pagination_empty_page_with_cursor_stops(client):
    """An empty page ends the iteration even if it names a further cursor."""
    with mock() as router:
        route = router.get("/agents").mock(
            side_effect=[page(["a1", "a2"], "a2", 9), page([], "a9", 9)]
        )
        iterator = client.agents.list()
        assert await collect(iterator) == ["a1", "a2"]
    assert route.call_count == 2
    assert iterator.cursor == ""


async def test_pagination_last_page_empty_cursor_stops(client):
    """``meta.cursor: ""`` on a full page ends the iteration: no request after it."""
    with mock() as router:
        route = router.get("/agents").mock(side_effect=[page(["a1", "a2"], "", 2)])
        assert await collect(client.agents.list(page_size=2)) == ["a1", "a2"]
    assert route.call_count == 1


async def test_pagination_missing_meta_stops(client):
    """A body without ``meta`` is treated as the last page."""
    body = {"data": {"count": 1, "list": [{"start_ts": 1, "status": "RUNNING", "agent_id": "x"}]}}
    with mock() as router:
        route = router.get("/agents").respond(200, json=body)
        with anyio.fail_after(5):
            pages = [p async for p in client.agents.list().pages()]
    assert route.call_count == 1
    assert [p.total for p in pages] == [1]


async def test_pagination_pages(client):
    """``pages()`` yields whole AgentPages with items, total, cursor and count."""
    with mock() as router:
        router.get("/agents").mock(side_effect=[page(["a1", "a2"], "a2", 3), page(["a3"], "", 3)])
        iterator = client.agents.list()
        with anyio.fail_after(5):
            pages = [p async for p in iterator.pages()]
    assert [type(p) for p in pages] == [AgentPage, AgentPage]
    assert [[a.agent_id for a in p.items] for p in pages] == [["a1", "a2"], ["a3"]]
    assert [(p.total, p.cursor, p.count) for p in pages] == [(3, "a2", 2), (3, "", 1)]
    assert [p.response.request_id for p in pages if p.response] == ["req-a2", "req-end"]
    assert iterator.cursor == ""


async def test_pagination_repeating_cursor(client):
    """A server that answers the cursor it was given raises PaginationError."""
    with mock() as router:
        router.get("/agents").mock(side_effect=[page(["a1", "a2"], "a2", 9), page(["a3"], "a2", 9)])
        iterator = client.agents.list()
        with anyio.fail_after(5), pytest.raises(PaginationError) as info:
            [agent async for agent in iterator]
    assert "a2" in str(info.value)
    assert info.value.request_id == "req-a2"


async def test_pagination_cursor_cycle(client):
    """A longer cursor cycle (a2 → a4 → a2) raises PaginationError too."""
    with mock() as router:
        route = router.get("/agents").mock(
            side_effect=[
                page(["a1", "a2"], "a2", 9),
                page(["a3", "a4"], "a4", 9),
                page(["a5", "a6"], "a2", 9),
            ]
        )
        with anyio.fail_after(5), pytest.raises(PaginationError):
            [p async for p in client.agents.list().pages()]
    assert route.call_count == 3


async def test_pagination_repeated_page_items(client):
    """A page repeating the previous page's items raises PaginationError."""
    with mock() as router:
        router.get("/agents").mock(
            side_effect=[page(["a1", "a2"], "a2", 9), page(["a1", "a2"], "a4", 9)]
        )
        iterator = client.agents.list()
        with anyio.fail_after(5):
            seen = [(await iterator.__anext__()).agent_id for _ in range(2)]
            with pytest.raises(PaginationError) as info:
                await iterator.__anext__()
    assert seen == ["a1", "a2"]
    assert "previous page" in str(info.value)


async def test_pagination_cursor_resume(client):
    """``list(cursor=it.cursor)`` continues right after the last item yielded."""
    with mock() as router:
        route = router.get("/agents").mock(
            side_effect=[
                page(["a1", "a2"], "a2", 4),
                page(["a3", "a4"], "", 4),
                page(["a4"], "", 1),  # the answer to the resumed sweep
            ]
        )
        first = client.agents.list(channel="room")
        before = first.cursor  # a local: mypy would narrow the property for good
        assert before is None
        seen = []
        with anyio.fail_after(5):
            async for agent in first:
                seen.append(agent.agent_id)
                if agent.agent_id == "a1":
                    assert first.cursor == "a1"
                if agent.agent_id == "a2":
                    assert first.cursor == "a2"
                if agent.agent_id == "a3":
                    break
        assert seen == ["a1", "a2", "a3"]
        assert first.cursor == "a3"
        resumed = client.agents.list(channel="room", cursor=first.cursor)
        assert await collect(resumed) == ["a4"]
    assert cursors_sent(route) == [None, "a2", "a3"]
    assert route.calls.last.request.url.params["channel"] == "room"


async def test_pagination_finished_cursor_resumes_to_nothing(client):
    """The cursor of a finished sweep ("") resumes to an empty iteration, with no request."""
    with mock() as router:
        router.get("/agents").mock(side_effect=[page(["a1"], "", 1)])
        iterator = client.agents.list()
        assert await collect(iterator) == ["a1"]
    assert iterator.cursor == ""
    with no_requests():
        assert await collect(client.agents.list(cursor=iterator.cursor)) == []


async def test_pagination_list_is_lazy(client):
    """``list()`` returns at once; nothing is requested until iteration."""
    with no_requests():
        iterator = client.agents.list(state=AgentStatus.STOPPED)
    assert isinstance(iterator, AgentIterator)
    assert iterator.pages_fetched == 0


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({}, {}, id="none"),
        pytest.param({"state": AgentStatus.STOPPED}, {"state": "4"}, id="state-enum"),
        pytest.param({"state": AgentStatus.IDLE}, {"state": "0"}, id="state-idle"),
        pytest.param({"state": 6}, {"state": "6"}, id="state-int"),
        pytest.param(
            {
                "channel": "room 1",
                "state": AgentStatus.RUNNING,
                "from_time": 1735000000,
                "to_time": 1735086400,
                "page_size": 50,
            },
            {
                "channel": "room 1",
                "state": "2",
                "from_time": "1735000000",
                "to_time": "1735086400",
                "limit": "50",
            },
            id="all",
        ),
    ],
)
async def test_pagination_filters_encoded(client, filters, expected):
    """Filters go out as documented query parameters, on every page."""
    with mock() as router:
        route = router.get("/agents").mock(side_effect=[page(["a1"], "a1", 2), page(["a2"], "", 2)])
        assert await collect(client.agents.list(**filters)) == ["a1", "a2"]
    first, second = (dict(call.request.url.params) for call in route.calls)
    assert first == expected
    assert second == {**expected, "cursor": "a1"}


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        pytest.param({"state": 7}, "state", id="state-7"),
        pytest.param({"state": -1}, "state", id="state-negative"),
        pytest.param({"state": "2"}, "state", id="state-text"),
        pytest.param({"state": True}, "state", id="state-bool"),
        pytest.param({"page_size": 0}, "page_size", id="limit-0"),
        pytest.param({"page_size": 2.5}, "page_size", id="limit-float"),
        pytest.param({"from_time": -1}, "from_time", id="from-negative"),
        pytest.param({"to_time": "now"}, "to_time", id="to-text"),
        pytest.param({"channel": ""}, "channel", id="channel-empty"),
        pytest.param({"channel": 5}, "channel", id="channel-number"),
    ],
)
async def test_pagination_bad_filters(client, filters, field):
    """A bad filter raises ValidationError at once, before any request."""
    with no_requests(), pytest.raises(ValidationError) as info:
        client.agents.list(**filters)
    assert info.value.field == field


async def test_pagination_page_error_raises_then_resumes():
    """A failed page raises; iterating again retries that same page."""
    async with make_client() as client:
        with mock() as router:
            route = router.get("/agents").mock(
                side_effect=[
                    page(["a1"], "a1", 2),
                    httpx.Response(500, json={"detail": "x", "reason": "InternalError"}),
                    page(["a2"], "", 2),
                ]
            )
            iterator = client.agents.list()
            with anyio.fail_after(5):
                assert (await iterator.__anext__()).agent_id == "a1"
                with pytest.raises(ServerError):
                    await iterator.__anext__()
                assert [a.agent_id async for a in iterator] == ["a2"]
    assert cursors_sent(route) == [None, "a1", "a1"]


async def test_pagination_retries_a_failed_page():
    """With a retry policy, a 503 page is retried within the sweep."""
    async with make_client(retry=RetryPolicy.testing()) as client:
        with mock() as router:
            route = router.get("/agents").mock(
                side_effect=[page(["a1"], "a1", 2), httpx.Response(503), page(["a2"], "", 2)]
            )
            assert await collect(client.agents.list()) == ["a1", "a2"]
    assert cursors_sent(route) == [None, "a1", "a1"]


async def test_pagination_bad_body_is_response_error(client):
    """A page body without ``data`` raises ResponseError, not a cattrs error."""
    from agora_stt_async import ResponseError

    body: dict[str, Any] = {"meta": {"cursor": "", "total": 0}, "status": "ok"}
    with mock() as router:
        router.get("/agents").respond(200, json=body)
        with anyio.fail_after(5), pytest.raises(ResponseError):
            await collect(client.agents.list())
