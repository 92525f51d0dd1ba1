"""Leases: which session drives a task now. An optional Protocol beside ``TaskStore``.

A *lease* is a short claim on one task key, held by an *owner* (one session) until it
expires unless renewed. A store that offers leases lets several sessions in several
processes share its records: each drives only the tasks it holds a lease on, renews
them while it lives, and adopts the tasks whose lease has expired (their driver died).

Leases only keep the work from being done twice; correctness never rests on them.
Every write is still version-checked (``put(..., expected_version=...)``), so a driver
that lost its lease without noticing (a long pause, a partition) has its next write
refused with :class:`~agora_stt_async.stores.StoreConflictError` instead of
overwriting the new driver's.

Shipped here: the :class:`LeasingStore` Protocol, which the session detects with
``isinstance``, and :class:`LeasingMemoryStore`, a ``MemoryStore`` with leases for
tests that run several sessions in one process. The production implementation is
:class:`~agora_stt_async.stores.redis.RedisStore`.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, final, runtime_checkable

import anyio.lowlevel

from agora_stt_async._clock import Clock, SystemClock
from agora_stt_async._errors import ConfigurationError
from agora_stt_async.state import TaskRecord

if TYPE_CHECKING:
    from agora_stt_async.stores import TaskStore

__all__ = ["DEFAULT_LEASE_TTL_S", "LeasingMemoryStore", "LeasingStore", "check_lease_ttl"]

DEFAULT_LEASE_TTL_S = 15.0
"""How long a lease lives without renewal (seconds). The session renews every third of
it, so a driver must miss two renewals in a row to lose a task, and a dead driver's tasks
are free again at most this long after it died."""


def check_lease_ttl(ttl: float) -> float:
    """``ttl`` as a float, or :class:`ConfigurationError` if it is not a positive number."""
    value = float(ttl)
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"lease_ttl must be a positive number of seconds, got {ttl!r}")
    return value


@runtime_checkable
class LeasingStore(Protocol):
    """What a :class:`~agora_stt_async.stores.TaskStore` adds to share tasks between sessions.

    Every method is atomic. Times are seconds; ``owner`` is an opaque string that names
    one session (the session makes one up: host, pid and a random part).
    """

    @property
    def lease_ttl(self) -> float:
        """The lease lifetime sessions on this store use (seconds)."""
        ...

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Take the lease on ``key`` for ``ttl`` seconds if it is free or expired, or
        extend it if ``owner`` already holds it; ``False`` if another owner holds it."""
        ...

    async def renew_leases(self, keys: Collection[str], owner: str, ttl: float) -> set[str]:
        """Extend ``owner``'s leases on ``keys`` by ``ttl``; return the keys it still
        held (the others expired, and may belong to someone else now)."""
        ...

    async def release_lease(self, key: str, owner: str) -> None:
        """Give up the lease on ``key`` if ``owner`` holds it; otherwise do nothing."""
        ...

    async def lease_owner(self, key: str) -> str | None:
        """Who holds the lease on ``key`` now, or ``None``."""
        ...

    async def unleased(self) -> list[TaskRecord]:
        """The records of live tasks (phase not terminal) that no lease covers: their
        driver is gone. Ordered by key."""
        ...


@final
class LeasingMemoryStore:
    """A ``MemoryStore`` with leases: several sessions of one process can share it.

    For tests of multi-worker behaviour without a Redis server. Leases expire on
    ``clock.monotonic()``; pass a ``FakeClock`` and advance it to make them expire.

    Args:
        lease_ttl: the lease lifetime sessions use (seconds).
        clock: the clock leases expire on (default: the real one).
        records: the store records live in (default: a new ``MemoryStore``).
    """

    def __init__(
        self,
        *,
        lease_ttl: float = DEFAULT_LEASE_TTL_S,
        clock: Clock | None = None,
        records: TaskStore | None = None,
    ) -> None:
        if records is None:
            from agora_stt_async.stores import MemoryStore  # here: the package imports us

            records = MemoryStore()
        self._records = records
        self._lease_ttl = check_lease_ttl(lease_ttl)
        self._clock: Clock = clock or SystemClock()
        self._leases: dict[str, tuple[str, float]] = {}  # key -> (owner, expires at)

    @property
    def lease_ttl(self) -> float:
        return self._lease_ttl

    # --- TaskStore: delegated ------------------------------------------------------------

    async def get(self, key: str) -> TaskRecord | None:
        return await self._records.get(key)

    async def create(self, record: TaskRecord) -> bool:
        return await self._records.create(record)

    async def put(self, record: TaskRecord, *, expected_version: int | None) -> None:
        await self._records.put(record, expected_version=expected_version)

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        await self._records.delete(key, expected_version=expected_version)
        self._leases.pop(key, None)

    async def all(self) -> list[TaskRecord]:
        return await self._records.all()

    async def aclose(self) -> None:
        await self._records.aclose()

    # --- LeasingStore -------------------------------------------------------------------

    def _holder(self, key: str) -> str | None:
        lease = self._leases.get(key)
        if lease is None:
            return None
        if lease[1] <= self._clock.monotonic():
            del self._leases[key]
            return None
        return lease[0]

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        await anyio.lowlevel.checkpoint()  # concurrent callers interleave, as with a server
        holder = self._holder(key)
        if holder is not None and holder != owner:
            return False
        self._leases[key] = (owner, self._clock.monotonic() + ttl)
        return True

    async def renew_leases(self, keys: Collection[str], owner: str, ttl: float) -> set[str]:
        await anyio.lowlevel.checkpoint()
        held = {key for key in keys if self._holder(key) == owner}
        expires = self._clock.monotonic() + ttl
        for key in held:
            self._leases[key] = (owner, expires)
        return held

    async def release_lease(self, key: str, owner: str) -> None:
        await anyio.lowlevel.checkpoint()
        if self._holder(key) == owner:
            del self._leases[key]

    async def lease_owner(self, key: str) -> str | None:
        await anyio.lowlevel.checkpoint()
        return self._holder(key)

    async def unleased(self) -> list[TaskRecord]:
        records = await self._records.all()
        return [r for r in records if not r.phase.is_terminal and self._holder(r.key) is None]

    async def __aenter__(self) -> LeasingMemoryStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"LeasingMemoryStore(lease_ttl={self._lease_ttl}, <{len(self._leases)} leases>)"
