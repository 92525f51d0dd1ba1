"""The list endpoint's indexes: a sorted set of small integers, and the agent index on it.

The emulator numbers agents in creation order (``seq``). Each (App ID, status) pair keeps
the seqs of its agents in a ``SeqIndex``, so that ``GET /agents`` can count the matches
of a time window with two ranks and read a page from a cursor without touching other
agents. Creation order is time order (the world's clock never goes back), so a
``from_time``/``to_time`` window is a seq range found by bisection.

Blocks of a few hundred ints keep insertion and removal cheap anywhere in the set (a
plain list would move half of 100,000 pointers to remove from its front) while most
inserts, which arrive in creation order, stay appends. This is the idea of
``sortedcontainers.SortedList``, cut down to what the emulator needs.

A list filtered by ``channel`` reads the channel's agents, which most channels have a
handful of. A channel past ``_BIG_CHANNEL`` agents gets its own (App ID, status) indexes,
so a page stays O(page) there too; the few-agents case stays a list, because an index per
channel would cost ~400 bytes for each of 100,000 one-agent channels.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from itertools import islice
from operator import attrgetter
from typing import Final

from agora_stt_async._enums import AgentStatus
from agora_stt_async.emulator._records import Agent, Page
from agora_stt_async.emulator._validate import ListQuery

_LOAD: Final = 512
"""Target block size; a block splits at twice this many items."""
_BIG_CHANNEL: Final = 256
"""Agents in one channel from which it gets its own indexes."""
_CREATE_TS: Final = attrgetter("create_ts")
_SEQ: Final = attrgetter("seq")


class SeqIndex:
    """A sorted set of ints: add, discard, rank and iterate from a value."""

    __slots__ = ("_blocks", "_len", "_maxes")

    def __init__(self) -> None:
        self._blocks: list[list[int]] = []
        self._maxes: list[int] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, value: int) -> bool:
        i = bisect_left(self._maxes, value)
        if i == len(self._maxes):
            return False
        block = self._blocks[i]
        j = bisect_left(block, value)
        return j < len(block) and block[j] == value

    def add(self, value: int) -> None:
        """Insert ``value``; it must not be present already."""
        maxes = self._maxes
        if not maxes:
            self._blocks.append([value])
            maxes.append(value)
            self._len = 1
            return
        i = bisect_left(maxes, value)
        if i == len(maxes):
            # The common case: a newer agent than every other one here.
            i -= 1
            self._blocks[i].append(value)
            maxes[i] = value
        else:
            insort(self._blocks[i], value)
        self._len += 1
        block = self._blocks[i]
        if len(block) > 2 * _LOAD:
            half = block[_LOAD:]
            del block[_LOAD:]
            self._blocks.insert(i + 1, half)
            maxes[i] = block[-1]
            maxes.insert(i + 1, half[-1])

    def discard(self, value: int) -> None:
        """Remove ``value`` if present."""
        maxes = self._maxes
        i = bisect_left(maxes, value)
        if i == len(maxes):
            return
        block = self._blocks[i]
        j = bisect_left(block, value)
        if j == len(block) or block[j] != value:
            return
        del block[j]
        self._len -= 1
        if not block:
            del self._blocks[i]
            del maxes[i]
        else:
            maxes[i] = block[-1]

    def rank(self, value: int) -> int:
        """How many members are smaller than ``value``."""
        maxes = self._maxes
        i = bisect_left(maxes, value)
        before = sum(len(b) for b in self._blocks[:i])
        if i == len(maxes):
            return before
        return before + bisect_left(self._blocks[i], value)

    def iter_from(self, value: int) -> Iterator[int]:
        """Members greater than or equal to ``value``, in ascending order."""
        maxes = self._maxes
        i = bisect_left(maxes, value)
        if i == len(maxes):
            return
        first = self._blocks[i]
        yield from islice(first, bisect_left(first, value), None)
        for block in self._blocks[i + 1 :]:
            yield from block

    def __iter__(self) -> Iterator[int]:
        for block in self._blocks:
            yield from block

    def count_between(self, low: int, high: int) -> int:
        """How many members ``m`` satisfy ``low <= m < high``."""
        if high <= low:
            return 0
        return self.rank(high) - self.rank(low)


class AgentIndex:
    """Every agent in creation order, indexed for the list endpoint (spec §4.7).

    The world owns the agents and tells the index about each new one (``add``) and each
    status change (``moved``); the index never changes an agent.
    """

    def __init__(self) -> None:
        self.by_seq: list[Agent] = []
        """All agents; an agent's ``seq`` is its position here."""
        self._by_status: dict[tuple[str, AgentStatus], SeqIndex] = {}
        self._by_channel: dict[str, list[Agent]] = {}
        self._big: dict[str, dict[tuple[str, AgentStatus], SeqIndex]] = {}

    def add(self, agent: Agent) -> None:
        """Index a new agent; its ``seq`` must be ``len(by_seq)``."""
        assert agent.seq == len(self.by_seq)
        self.by_seq.append(agent)
        _of(self._by_status, agent.app_id, agent.status).add(agent.seq)
        in_channel = self._by_channel.setdefault(agent.channel, [])
        in_channel.append(agent)
        big = self._big.get(agent.channel)
        if big is not None:
            _of(big, agent.app_id, agent.status).add(agent.seq)
        elif len(in_channel) >= _BIG_CHANNEL:
            big = self._big[agent.channel] = {}
            for member in in_channel:
                _of(big, member.app_id, member.status).add(member.seq)

    def moved(self, agent: Agent, old: AgentStatus) -> None:
        """Re-index an agent whose status just changed from ``old``."""
        for indexes in (self._by_status, self._big.get(agent.channel)):
            if indexes is not None:
                _of(indexes, agent.app_id, old).discard(agent.seq)
                _of(indexes, agent.app_id, agent.status).add(agent.seq)

    def in_channel(self, channel: str) -> list[Agent]:
        """Every agent ever joined to ``channel``, in creation order."""
        return self._by_channel.get(channel, [])

    def counts(self) -> dict[str, dict[str, int]]:
        """Agents per App ID per status value (non-zero counts only)."""
        by_app: dict[str, dict[str, int]] = {}
        for (app_id, status), index in sorted(self._by_status.items()):
            if len(index):
                by_app.setdefault(app_id, {})[status.value] = len(index)
        return by_app

    def page(self, app_id: str, query: ListQuery, after: int | None) -> Page:
        """One page of ``query`` in creation order, from the agent after seq ``after``."""
        seq_lo = bisect_left(self.by_seq, query.from_ts, key=_CREATE_TS)
        seq_hi = bisect_right(self.by_seq, query.to_ts, key=_CREATE_TS)
        start = seq_lo if after is None else max(seq_lo, after + 1)
        indexes = self._by_status if query.channel is None else self._big.get(query.channel)
        if indexes is None:
            # A small channel: its agents (any App ID, any status) are a short list.
            in_channel = self.in_channel(query.channel or "")
            lo = bisect_left(in_channel, seq_lo, key=_SEQ)
            hi = bisect_left(in_channel, seq_hi, key=_SEQ)
            matches = [
                a for a in in_channel[lo:hi] if a.app_id == app_id and a.status is query.status
            ]
            first = bisect_left(matches, start, key=_SEQ)
            items = matches[first : first + query.limit]
            more = first + query.limit < len(matches)
            return Page(items, len(matches), items[-1].agent_id if more and items else "")
        index = indexes.get((app_id, query.status))
        if index is None:
            return Page([], 0, "")
        items = []
        more = False
        for seq in index.iter_from(start):
            if seq >= seq_hi:
                break
            if len(items) == query.limit:
                more = True
                break
            items.append(self.by_seq[seq])
        total = index.count_between(seq_lo, seq_hi)
        return Page(items, total, items[-1].agent_id if more and items else "")


def _of(
    indexes: dict[tuple[str, AgentStatus], SeqIndex], app_id: str, status: AgentStatus
) -> SeqIndex:
    index = indexes.get((app_id, status))
    if index is None:
        index = indexes[(app_id, status)] = SeqIndex()
    return index
