"""A sorted set of small integers, kept in blocks, for the list endpoint's indexes.

The emulator numbers agents in creation order (``seq``). Each (App ID, status) pair keeps
the seqs of its agents here, so that ``GET /agents`` can count the matches of a time
window with two ranks and read a page from a cursor without touching other agents.

Blocks of a few hundred ints keep insertion and removal cheap anywhere in the set (a
plain list would move half of 100,000 pointers to remove from its front) while most
inserts, which arrive in creation order, stay appends. This is the idea of
``sortedcontainers.SortedList``, cut down to what the emulator needs. Stdlib only.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from itertools import islice
from typing import Final

_LOAD: Final = 512
"""Target block size; a block splits at twice this many items."""


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
