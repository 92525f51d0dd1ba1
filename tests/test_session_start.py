"""Session.start() and construction: what a start of a live key may ask, the keys and
stores a session accepts, the clock it follows, and record versions across restarts."""

from __future__ import annotations

from pathlib import Path

import anyio
import attrs
import pytest

from agora_stt_async import (
    ConfigurationError,
    Session,
    UsageError,
    ValidationError,
)
from agora_stt_async import state as sm
from agora_stt_async._constants import EMULATOR_APP_ID
from agora_stt_async.emulator import EmulatorApp, create_app
from agora_stt_async.stores import (
    MemoryStore,
    RedisStore,
    SqliteStore,
    StoreConflictError,
    TaskStore,
)
from agora_stt_async.testing import FakeClock
from tests.test_session import FAST, client_for, emulator_state, join, legacy, running

pytestmark = pytest.mark.anyio


@pytest.fixture
def app() -> EmulatorApp:
    return create_app(FAST, seed=7)


async def test_session_start_live_key_with_another_config_is_usage_error(
    app: EmulatorApp,
) -> None:
    """Starting a live key again with the same config returns its handle; with another
    config, or the other API generation, it is a UsageError, not silently ignored."""
    async with client_for(app) as client, Session(client) as session:
        with anyio.fail_after(20):
            first = await session.start("k", join(1))
            again = await session.start("k", join(1))
            assert again.record is first.record
            with pytest.raises(UsageError, match="another start request"):
                await session.start("k", attrs.evolve(join(1), languages=["fr-FR"]))
            with pytest.raises(UsageError, match="another API generation"):
                await session.start("k", legacy(1), api="legacy")
            assert client.statistics().by_operation["join"].calls == 1
            assert "acquire" not in client.statistics().by_operation
    assert running(await emulator_state(app)) == 0


@pytest.mark.parametrize("key", [123, None, b"k", ""], ids=["int", "none", "bytes", "empty"])
async def test_session_start_key_must_be_a_non_empty_string(app: EmulatorApp, key: object) -> None:
    """A key that is not a non-empty string is a ValidationError; nothing is stored or sent."""
    store = MemoryStore()
    async with client_for(app) as client, Session(client, store=store) as session:
        with anyio.fail_after(10), pytest.raises(ValidationError, match="key"):
            await session.start(key, join(1))  # type: ignore[arg-type]
        assert await store.all() == []
        assert client.statistics().requests == 0


async def test_session_follows_the_client_clock(app: EmulatorApp) -> None:
    """Without a clock of its own, a session uses the client's: records are stamped with
    the client's (here fake) time, not the real one."""
    clock = FakeClock()
    async with client_for(app, clock=clock) as client, Session(client) as session:
        with anyio.fail_after(20):
            handle = await session.start("k", join(1))
        assert handle.record.created_at == clock.now()


async def test_session_store_of_another_app_id_is_configuration_error(app: EmulatorApp) -> None:
    """A store bound to another App ID than the client's is refused at construction."""
    async with (
        client_for(app) as client,
        RedisStore("redis://127.0.0.1:1/0", app_id="another-app") as other,
        RedisStore("redis://127.0.0.1:1/0", app_id=EMULATOR_APP_ID) as same,
    ):
        with pytest.raises(ConfigurationError, match="App ID"):
            Session(client, store=other)
        Session(client, store=same)  # the same App ID: accepted


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_session_restarted_key_keeps_raising_its_version(
    app: EmulatorApp, tmp_path: Path, kind: str
) -> None:
    """A key started again after its task ended gets a record whose version continues
    above the ended one's, so a write prepared against the old lifecycle can never pass
    the version check of the new one."""
    store: TaskStore = MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "s.db")
    async with client_for(app) as client, Session(client, store=store) as session:
        with anyio.fail_after(20):
            await session.start("k", join(1))
            await session.stop("k")
            ended = await store.get("k")
            assert ended is not None
            assert ended.phase is sm.Phase.STOPPED
            # A stale write against the ended record's version (the old lifecycle's).
            stale = attrs.evolve(ended, phase=sm.Phase.STOPPED, version=ended.version + 1)
            handle = await session.start("k", join(1))
            assert handle.record.version > ended.version
            stored = await store.get("k")
            assert stored is not None
            assert stored.version == handle.record.version
            with pytest.raises(StoreConflictError):
                await store.put(stale, expected_version=ended.version)
    await store.aclose()
    assert running(await emulator_state(app)) == 0
