"""Where task records live: the :class:`TaskStore` Protocol and its implementations.

A store keeps one :class:`~agora_stt_async.state.TaskRecord` per key. The session
writes a record *before* it sends the request the record guards (the machine's
``Persist`` action comes first), so after a crash a new process can open the same
store and finish what the old one began (``recover()``).

The Protocol is deliberately small, and every method is a single atomic step, so it
maps onto any storage with compare-and-set:

* ``create`` is create-if-absent: it claims a key, so two sessions cannot start the
  same task;
* ``put`` is an optimistic update: it succeeds only if the stored ``version`` is the
  one the caller last read (``expected_version``), else :class:`StoreConflictError`;
  the caller reloads and re-applies its event to the fresh record;
* ``delete`` can be optimistic too, so a record is never removed under a concurrent
  change that recorded a live task id.

*Leases* (which session drives a record now) are an extra, optional Protocol,
:class:`LeasingStore` (``acquire_lease``/``renew_leases``/``release_lease``/
``lease_owner``/``unleased``), that the session detects with ``isinstance``; stores
without it keep working. Leases only avoid duplicated work: correctness never depends
on them, because every write is already version-checked.

Shipped here: :class:`MemoryStore` (the default; gone with the process),
:class:`~agora_stt_async.stores.sqlite.SqliteStore` (durable, stdlib ``sqlite3``; one
machine), :class:`~agora_stt_async.stores.redis.RedisStore` (shared by workers on
several machines, with leases; the ``redis`` extra, asyncio only) and
:class:`LeasingMemoryStore` (leases in memory, for tests). Apart from ``RedisStore``
this package uses anyio only, so it runs on asyncio and trio.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, final, runtime_checkable

import anyio.lowlevel

from agora_stt_async._errors import UsageError
from agora_stt_async.state import TaskRecord
from agora_stt_async.stores._errors import StoreConflictError, StoreError
from agora_stt_async.stores._leases import LeasingMemoryStore, LeasingStore
from agora_stt_async.stores.redis import RedisStore
from agora_stt_async.stores.sqlite import SqliteStore

__all__ = [
    "LeasingMemoryStore",
    "LeasingStore",
    "MemoryStore",
    "RedisStore",
    "SqliteStore",
    "StoreConflictError",
    "StoreError",
    "TaskStore",
]


@runtime_checkable
class TaskStore(Protocol):
    """What the session needs from a place to keep task records.

    Every method is atomic. Implementations must be safe to call from concurrent tasks
    of one event loop; durable ones must have made a change durable when the call
    returns.
    """

    async def get(self, key: str) -> TaskRecord | None:
        """The record stored under ``key``, or ``None``."""
        ...

    async def create(self, record: TaskRecord) -> bool:
        """Store ``record`` if no record has its key; ``False`` (and no change) if one does."""
        ...

    async def put(self, record: TaskRecord, *, expected_version: int | None) -> None:
        """Store ``record`` under its key, replacing the stored one.

        Args:
            record: the new record; stored with its own ``version``.
            expected_version: the ``version`` the stored record must have (usually
                ``record.version - 1``, see ``Persist.expected_version``), or ``None``
                to write unconditionally (create or replace).

        Raises:
            StoreConflictError: the stored version differs, or no record exists while
                one was expected.
        """
        ...

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        """Remove the record under ``key``; nothing happens if there is none.

        Raises:
            StoreConflictError: ``expected_version`` was given and the stored record
                has another version or does not exist.
        """
        ...

    async def all(self) -> list[TaskRecord]:
        """Every record, ordered by key."""
        ...

    async def aclose(self) -> None:
        """Release resources. Idempotent; the store cannot be used afterwards."""
        ...


@final
class MemoryStore:
    """A :class:`TaskStore` in a dict: fast, and gone when the process ends.

    Each method yields to the event loop once (an anyio checkpoint) before its atomic
    part, so concurrent callers interleave as they would with a real store.
    """

    def __init__(self) -> None:
        self._records: dict[str, TaskRecord] = {}
        self._closed = False

    async def _enter(self) -> None:
        await anyio.lowlevel.checkpoint()
        if self._closed:
            raise UsageError("this MemoryStore is closed")

    async def get(self, key: str) -> TaskRecord | None:
        await self._enter()
        return self._records.get(key)

    async def create(self, record: TaskRecord) -> bool:
        await self._enter()
        if record.key in self._records:
            return False
        self._records[record.key] = record
        return True

    async def put(self, record: TaskRecord, *, expected_version: int | None) -> None:
        await self._enter()
        if expected_version is not None:
            stored = self._records.get(record.key)
            actual = None if stored is None else stored.version
            if actual != expected_version:
                raise StoreConflictError(record.key, expected_version, actual)
        self._records[record.key] = record

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        await self._enter()
        stored = self._records.get(key)
        if expected_version is not None:
            actual = None if stored is None else stored.version
            if actual != expected_version:
                raise StoreConflictError(key, expected_version, actual)
        self._records.pop(key, None)

    async def all(self) -> list[TaskRecord]:
        await self._enter()
        return [self._records[key] for key in sorted(self._records)]

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"MemoryStore(<{len(self._records)} records>)"
