"""A durable :class:`~agora_stt_async.stores.TaskStore` on the standard library's sqlite3.

Durability is the point: the session writes a record before it sends the request
the record guards, so the write must be on disk when ``put()`` returns. Hence:

* ``journal_mode=WAL``: readers never block the writer, and a file left behind by a
  crashed process is recovered by the next connection that opens it;
* ``synchronous=FULL``: every commit is fsynced before it returns (WAL's ``NORMAL``
  could lose the last commits on power loss, which is exactly the write that says
  "a start is in flight");
* autocommit: each method is one statement, hence one transaction, hence atomic.

sqlite3 blocks, so every call runs in a worker thread (``anyio.to_thread.run_sync``)
behind a dedicated ``CapacityLimiter(1)``: one connection, one statement at a time,
and the event loop never waits on the disk. Other processes may open the same file;
``timeout`` is how long a write waits for their locks.

Records are stored as JSON (``state.record_to_dict``) beside a few indexed columns;
a ``schema_version`` table lets later versions migrate the file.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import sqlite3
from collections.abc import Callable
from types import TracebackType
from typing import Final, TypeVar, final

import anyio
import anyio.to_thread

from agora_stt_async._errors import ConfigurationError, UsageError
from agora_stt_async.state import TaskRecord, record_from_dict, record_to_dict
from agora_stt_async.stores._errors import StoreConflictError, StoreError

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

SCHEMA_VERSION: Final = 1
"""The layout this module writes. A file with a larger number was written by a newer
version of the package and is refused rather than damaged."""

_T = TypeVar("_T")

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS tasks (
        key TEXT PRIMARY KEY NOT NULL,
        version INTEGER NOT NULL,
        phase TEXT NOT NULL,
        updated_at REAL NOT NULL,
        record TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS tasks_phase ON tasks (phase)",
)


def _encode(record: TaskRecord) -> tuple[str, int, str, float, str]:
    body = json.dumps(record_to_dict(record), separators=(",", ":"), allow_nan=False)
    return (record.key, record.version, record.phase.value, record.updated_at, body)


def _decode(key: str, body: str) -> TaskRecord:
    try:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        return record_from_dict(data)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"task record {key!r} in the SQLite store is unreadable: {exc}") from exc


@final
class SqliteStore:
    """A :class:`~agora_stt_async.stores.TaskStore` in one SQLite file.

    The file is opened on first use. Use ``async with SqliteStore(path) as store:`` or
    call :meth:`aclose`. Several processes may share a file; a process that crashed
    leaves it consistent, and a new ``SqliteStore`` on the same path sees every change
    whose call had returned.

    Args:
        path: the database file; created if missing (unless ``read_only``).
        timeout: seconds a statement waits for another connection's lock.
        read_only: open an existing store file without ever writing to it (an
            operator's look at what a crashed service left): no schema is created, a
            file that is not a store is a ``StoreError``, and every write is a
            ``UsageError``.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, timeout: float = 30.0, read_only: bool = False
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise ConfigurationError(f"timeout must be a number of seconds, got {timeout!r}")
        if not (math.isfinite(timeout) and timeout >= 0):
            raise ConfigurationError(f"timeout must be finite and >= 0, got {timeout!r}")
        if not isinstance(read_only, bool):
            raise ConfigurationError(f"read_only must be True or False, got {read_only!r}")
        self._path = os.fspath(path)
        self._timeout = float(timeout)
        self._read_only = read_only
        self._conn: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._closed = False

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    # --- plumbing ---------------------------------------------------------------------

    def _writable(self) -> None:
        if self._read_only:
            raise UsageError(f"this SqliteStore ({self._path}) was opened read-only")

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise UsageError(f"this SqliteStore ({self._path}) is closed")
        if self._limiter is None:  # made here: a limiter belongs to a running event loop
            self._limiter = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(self._call, fn, limiter=self._limiter)

    def _call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        # Runs in a worker thread, one at a time (the limiter).
        if self._closed:
            raise UsageError(f"this SqliteStore ({self._path}) is closed")
        try:
            if self._conn is None:
                self._conn = self._open()
            return fn(self._conn)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self._path}: {exc}") from exc

    def _open(self) -> sqlite3.Connection:
        if self._read_only:
            return self._open_read_only()
        conn = sqlite3.connect(
            self._path,
            timeout=self._timeout,
            isolation_level=None,  # autocommit: one statement, one transaction
            check_same_thread=False,  # used from worker threads, one at a time
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
                found = None if row is None else row[0]
                if found is None:
                    conn.execute(
                        "INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,)
                    )
                elif found > SCHEMA_VERSION:
                    raise StoreError(
                        f"the SQLite store {self._path} has schema version {found}; this"
                        f" version of agora-stt-async reads up to {SCHEMA_VERSION}: upgrade it"
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        # mode=ro: SQLite itself refuses every write, and a missing file is an error
        # instead of a new empty database.
        uri = pathlib.Path(self._path).absolute().as_uri() + "?mode=ro"
        conn = sqlite3.connect(
            uri, uri=True, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        try:
            try:
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            except sqlite3.DatabaseError as exc:  # no such table, or not a database
                raise StoreError(f"{self._path} is not a SqliteStore file ({exc})") from exc
            found = None if row is None else row[0]
            if found is None or found > SCHEMA_VERSION:
                raise StoreError(
                    f"{self._path} has schema version {found}; this version of"
                    f" agora-stt-async reads 1 to {SCHEMA_VERSION}"
                )
        except BaseException:
            conn.close()
            raise
        return conn

    # --- the TaskStore methods --------------------------------------------------------

    async def get(self, key: str) -> TaskRecord | None:
        def get(conn: sqlite3.Connection) -> TaskRecord | None:
            row = conn.execute("SELECT record FROM tasks WHERE key = ?", (key,)).fetchone()
            return None if row is None else _decode(key, row[0])

        return await self._run(get)

    async def create(self, record: TaskRecord) -> bool:
        self._writable()
        values = _encode(record)

        def create(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO tasks (key, version, phase, updated_at, record)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
                values,
            )
            return cursor.rowcount == 1

        return await self._run(create)

    async def put(self, record: TaskRecord, *, expected_version: int | None) -> None:
        self._writable()
        key, version, phase, updated_at, body = _encode(record)

        def put(conn: sqlite3.Connection) -> None:
            if expected_version is None:
                conn.execute(
                    "INSERT INTO tasks (key, version, phase, updated_at, record)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                    " version = excluded.version, phase = excluded.phase,"
                    " updated_at = excluded.updated_at, record = excluded.record",
                    (key, version, phase, updated_at, body),
                )
                return
            cursor = conn.execute(
                "UPDATE tasks SET version = ?, phase = ?, updated_at = ?, record = ?"
                " WHERE key = ? AND version = ?",
                (version, phase, updated_at, body, key, expected_version),
            )
            if cursor.rowcount != 1:
                raise StoreConflictError(key, expected_version, _version_of(conn, key))

        await self._run(put)

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        self._writable()

        def delete(conn: sqlite3.Connection) -> None:
            if expected_version is None:
                conn.execute("DELETE FROM tasks WHERE key = ?", (key,))
                return
            cursor = conn.execute(
                "DELETE FROM tasks WHERE key = ? AND version = ?", (key, expected_version)
            )
            if cursor.rowcount != 1:
                raise StoreConflictError(key, expected_version, _version_of(conn, key))

        await self._run(delete)

    async def all(self) -> list[TaskRecord]:
        def all_(conn: sqlite3.Connection) -> list[TaskRecord]:
            rows = conn.execute("SELECT key, record FROM tasks ORDER BY key").fetchall()
            return [_decode(key, body) for key, body in rows]

        return await self._run(all_)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._limiter is None:  # never used: nothing was opened
            return
        # Through the limiter, so a statement still running finishes first.
        await anyio.to_thread.run_sync(self._close, limiter=self._limiter)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"SqliteStore({self._path!r}{', read_only=True' if self._read_only else ''})"


def _version_of(conn: sqlite3.Connection, key: str) -> int | None:
    row = conn.execute("SELECT version FROM tasks WHERE key = ?", (key,)).fetchone()
    return None if row is None else int(row[0])
