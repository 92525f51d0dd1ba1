"""The async iterator behind ``client.agents.list(...)``: follows the list cursor.

It is a class with ``__anext__`` rather than an async generator, so it holds no cancel
scope across a ``yield`` and needs no finalisation on trio. Only the current page is
kept in memory. A server that repeats a cursor or a page raises ``PaginationError``
instead of looping forever; the checks use bounded memory (the last few cursors, the
previous page's ids, and a cap on the number of items relative to ``meta.total``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, final

from agora_stt_async._errors import PaginationError
from agora_stt_async._models import Agent, AgentPage

FetchPage = Callable[[str | None], Awaitable[AgentPage]]

# How many recent cursors are remembered to catch a short cycle.
_RECENT_CURSORS: Final = 64
# A longer cycle is caught by counting: more items than this many times the largest
# total the server reported (plus slack for agents created meanwhile) cannot be honest.
_ITEMS_OVER_TOTAL: Final = 2
_ITEM_SLACK: Final = 10_000


@final
class AgentIterator:
    """Iterate over every agent matching a list query, page by page.

    ``async for agent in iterator`` yields ``Agent`` items; ``iterator.pages()`` yields
    whole ``AgentPage`` objects instead (use one or the other). ``cursor`` is the
    position to resume from: pass it as ``cursor=`` to a new ``list()`` call to continue
    where a crashed sweep stopped.
    """

    def __init__(self, fetch: FetchPage, *, cursor: str | None = None) -> None:
        self._fetch = fetch
        self._cursor = cursor
        self._position = cursor
        self._page: tuple[Agent, ...] = ()
        self._index = 0
        self._done = cursor == ""  # the cursor of a finished sweep: nothing follows
        self._recent: deque[str] = deque(maxlen=_RECENT_CURSORS)
        self._previous_ids: frozenset[str] = frozenset()
        self._items_seen = 0
        self._max_total = 0
        self.pages_fetched = 0

    @property
    def cursor(self) -> str | None:
        """The position to resume from: the ``agent_id`` of the last item yielded (the
        documented cursor form), ``None`` before anything was read, ``""`` when done.

        A new ``list(..., cursor=iterator.cursor)`` continues right after that item.
        """
        return self._position

    def __aiter__(self) -> AgentIterator:
        return self

    async def __anext__(self) -> Agent:
        while self._index >= len(self._page):
            page = await self._next_page()
            if page is None:
                self._position = self._cursor  # "": the sweep is complete
                raise StopAsyncIteration
            self._page, self._index = page.items, 0
        item = self._page[self._index]
        self._index += 1
        self._position = item.agent_id if self._index < len(self._page) else self._cursor
        return item

    def pages(self) -> AsyncIterator[AgentPage]:
        """Whole pages, each with ``items``, ``total`` and ``cursor``."""
        return _PageIterator(self)

    async def _next_page(self) -> AgentPage | None:
        if self._done:
            return None
        page = await self._fetch(self._cursor or None)
        self.pages_fetched += 1
        self._check(page)
        next_cursor = page.cursor
        if not page.items or not next_cursor:
            self._done = True
            self._cursor = ""
        else:
            self._cursor = next_cursor
        return page

    def _check(self, page: AgentPage) -> None:
        ids = frozenset(agent.agent_id for agent in page.items)
        request_id = page.response.request_id if page.response else None
        if ids & self._previous_ids:
            raise PaginationError(
                "the list endpoint returned items of the previous page again; "
                "stopping rather than looping",
                request_id=request_id,
            )
        if page.cursor and (page.cursor == self._cursor or page.cursor in self._recent):
            raise PaginationError(
                f"the list endpoint repeated the cursor {page.cursor!r}; "
                "stopping rather than looping",
                request_id=request_id,
            )
        self._items_seen += len(page.items)
        self._max_total = max(self._max_total, page.total)
        if self._items_seen > _ITEMS_OVER_TOTAL * self._max_total + _ITEM_SLACK:
            raise PaginationError(
                f"the list endpoint yielded {self._items_seen} items while reporting at "
                f"most {self._max_total}; stopping rather than looping",
                request_id=request_id,
            )
        if page.cursor:
            self._recent.append(page.cursor)
        self._previous_ids = ids


@final
class _PageIterator:
    def __init__(self, source: AgentIterator) -> None:
        self._source = source

    def __aiter__(self) -> _PageIterator:
        return self

    async def __anext__(self) -> AgentPage:
        page = await self._source._next_page()
        if page is None:
            raise StopAsyncIteration
        self._source._position = self._source._cursor
        return page
