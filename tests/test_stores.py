"""MemoryStore and SqliteStore held to the TaskStore contract, plus SQLite's durability.

(RedisStore and LeasingMemoryStore have their own contract tests in test_redis_store.py.)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import attrs
import pytest

from agora_stt_async import ApiGeneration, ConfigurationError, UsageError
from agora_stt_async import state as sm
from agora_stt_async.stores import (
    MemoryStore,
    SqliteStore,
    StoreConflictError,
    StoreError,
    TaskStore,
)
from agora_stt_async.stores.sqlite import SCHEMA_VERSION

pytestmark = pytest.mark.anyio


def record(key: str, *, version: int = 0, phase: sm.Phase = sm.Phase.PENDING) -> sm.TaskRecord:
    base = sm.new_record(key, ApiGeneration.V7, channel=f"ch-{key}", name=f"a-{key}", now=10.0)
    return attrs.evolve(base, version=version, phase=phase)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    made: TaskStore = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    async with made:  # type: ignore[attr-defined]
        yield made


async def test_store_is_a_task_store(store: TaskStore) -> None:
    assert isinstance(store, TaskStore)


async def test_store_create_get_all(store: TaskStore) -> None:
    """create claims a key once; get and all return exactly what was stored, by key."""
    assert await store.get("b") is None
    assert await store.all() == []
    assert await store.create(record("b"))
    assert await store.create(record("a"))
    assert not await store.create(record("b", version=7))  # claimed: no change
    assert await store.get("b") == record("b")
    assert [r.key for r in await store.all()] == ["a", "b"]


async def test_store_create_if_absent_under_concurrency(store: TaskStore) -> None:
    """Twenty concurrent creates of one key: exactly one wins."""
    wins: list[int] = []

    async def claim(i: int) -> None:
        if await store.create(record("k", version=i)):
            wins.append(i)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(claim, i)
    assert len(wins) == 1
    stored = await store.get("k")
    assert stored is not None
    assert stored.version == wins[0]


async def test_store_put_is_compare_and_set(store: TaskStore) -> None:
    """put with expected_version succeeds only on that version; None writes anyway."""
    await store.put(record("k"), expected_version=None)  # upsert into nothing
    await store.put(record("k", version=1, phase=sm.Phase.STARTING), expected_version=0)
    with pytest.raises(StoreConflictError) as stale:
        await store.put(record("k", version=1, phase=sm.Phase.FAILED), expected_version=0)
    assert (stale.value.key, stale.value.expected, stale.value.actual) == ("k", 0, 1)
    assert "reload" in str(stale.value)
    with pytest.raises(StoreConflictError) as missing:
        await store.put(record("nope", version=1), expected_version=0)
    assert missing.value.actual is None
    stored = await store.get("k")
    assert stored is not None
    assert (stored.version, stored.phase) == (1, sm.Phase.STARTING)
    await store.put(record("k", version=5), expected_version=None)
    assert (await store.get("k")) == record("k", version=5)


async def test_store_delete_is_compare_and_set(store: TaskStore) -> None:
    await store.create(record("k", version=3))
    with pytest.raises(StoreConflictError):
        await store.delete("k", expected_version=2)
    assert await store.get("k") is not None
    await store.delete("k", expected_version=3)
    assert await store.get("k") is None
    await store.delete("k")  # nothing there: no error
    with pytest.raises(StoreConflictError):
        await store.delete("k", expected_version=3)


async def test_store_closed_is_usage_error(tmp_path: Path) -> None:
    """A closed store refuses work with UsageError; aclose is idempotent."""
    for made in (MemoryStore(), SqliteStore(tmp_path / "c.db")):
        await made.create(record("k"))
        await made.aclose()
        await made.aclose()
        with pytest.raises(UsageError, match="closed"):
            await made.get("k")


async def test_sqlite_survives_reopen_and_another_process_view(tmp_path: Path) -> None:
    """Every change whose call returned is in the file for the next opener."""
    path = tmp_path / "d.db"
    async with SqliteStore(path) as first:
        await first.create(record("k"))
        await first.put(record("k", version=1, phase=sm.Phase.STARTING), expected_version=0)
        # Seen by an independent connection while the store is still open (WAL).
        with sqlite3.connect(path) as raw:
            row = raw.execute("SELECT version, phase FROM tasks WHERE key = 'k'").fetchone()
        assert row == (1, "STARTING")
    async with SqliteStore(path) as second:
        assert await second.get("k") == record("k", version=1, phase=sm.Phase.STARTING)


async def test_sqlite_is_wal_fsynced_and_off_the_event_loop(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "w.db")
    async with store:
        await store.create(record("k"))
        mode = await store._run(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        sync = await store._run(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        worker = await store._run(lambda c: threading.get_ident())
    assert (mode, sync) == ("wal", 2)  # 2 = FULL
    assert worker != threading.get_ident()


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    async with SqliteStore(path) as store:
        await store.create(record("k"))
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    async with SqliteStore(path) as newer:
        with pytest.raises(StoreError, match="upgrade"):
            await newer.get("k")


async def test_sqlite_unreadable_record_is_store_error(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    async with SqliteStore(path) as store:
        await store.create(record("k"))
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE tasks SET record = '[1, 2]' WHERE key = 'k'")
    async with SqliteStore(path) as again:
        with pytest.raises(StoreError, match=r"'k'.*unreadable"):
            await again.get("k")
        with pytest.raises(StoreError):
            await again.all()


async def test_sqlite_error_is_store_error(tmp_path: Path) -> None:
    """A file that is not a database: StoreError naming the path, not sqlite3's own."""
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    async with SqliteStore(path) as store:
        with pytest.raises(StoreError, match=r"junk\.db"):
            await store.get("k")


def test_store_reprs() -> None:
    assert repr(MemoryStore()) == "MemoryStore(<0 records>)"
    assert repr(SqliteStore("x.db")) == "SqliteStore('x.db')"


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf"), "5", True])
def test_sqlite_rejects_bad_timeout(timeout: object) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        SqliteStore("x.db", timeout=timeout)  # type: ignore[arg-type]


async def test_sqlite_read_only_reads_and_never_writes(tmp_path: Path) -> None:
    """A read-only store reads every record, refuses writes with UsageError, and leaves
    the file's bytes unchanged."""
    path = tmp_path / "ro.db"
    async with SqliteStore(path) as writer:
        await writer.create(record("k"))
    before = path.read_bytes()
    async with SqliteStore(path, read_only=True) as reader:
        assert [r.key for r in await reader.all()] == ["k"]
        assert await reader.get("k") == record("k")
        with pytest.raises(UsageError, match="read-only"):
            await reader.create(record("other"))
        with pytest.raises(UsageError, match="read-only"):
            await reader.put(record("k", version=1), expected_version=0)
        with pytest.raises(UsageError, match="read-only"):
            await reader.delete("k")
    assert path.read_bytes() == before
    assert repr(SqliteStore(path, read_only=True)).endswith("read_only=True)")


async def test_sqlite_read_only_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    """Read-only on a missing file or a database without the store's schema is a
    StoreError, and no file or table is created."""
    missing = tmp_path / "missing.db"
    async with SqliteStore(missing, read_only=True) as store:
        with pytest.raises(StoreError):
            await store.all()
    assert not missing.exists()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE t (x)")
    async with SqliteStore(other, read_only=True) as store:
        with pytest.raises(StoreError, match="not a SqliteStore file"):
            await store.all()
    with sqlite3.connect(other) as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert tables == {"t"}


def test_sqlite_rejects_bad_read_only() -> None:
    with pytest.raises(ConfigurationError, match="read_only"):
        SqliteStore("x.db", read_only="yes")  # type: ignore[arg-type]
