"""RedisStore against a real redis-server: the TaskStore and LeasingStore contracts, and
sessions sharing one store in one process (leases, stops from elsewhere, adoption).

The contract tests run on ``LeasingMemoryStore`` too, so both implementations are held
to the same behaviour. ``redis.asyncio`` is asyncio-only: this module runs on asyncio
(its own ``anyio_backend``), except ``LeasingMemoryStore``, which runs on trio as well,
and the tests that check the store and the session say so clearly on trio.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import anyio
import anyio.abc
import attrs
import httpx
import pytest

from agora_stt_async import (
    AgentStatus,
    ApiGeneration,
    AsyncClient,
    ConfigurationError,
    JoinRequest,
    RetryPolicy,
    RtcConfig,
    Session,
    SessionError,
    UsageError,
)
from agora_stt_async import state as sm
from agora_stt_async._constants import (
    EMULATOR_APP_ID,
    EMULATOR_CUSTOMER_ID,
    EMULATOR_CUSTOMER_SECRET,
)
from agora_stt_async.emulator import EmulatorApp, EmulatorConfig, create_app
from agora_stt_async.stores import (
    LeasingMemoryStore,
    LeasingStore,
    RedisStore,
    StoreConflictError,
    StoreError,
    TaskStore,
)
from agora_stt_async.testing import FakeClock
from tests._redis_server import redis_for_tests

pytestmark = pytest.mark.anyio

FAST = EmulatorConfig(start_delay=0.05, stop_delay=0.0)
TTL = 0.6  # seconds: renewals every 0.2 s


ASYNCIO: Final[tuple[str, dict[str, object]]] = ("asyncio", {"debug": True})
TRIO: Final[tuple[str, dict[str, object]]] = ("trio", {})


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    """asyncio only (redis.asyncio); trio cases are parametrized explicitly."""
    return ASYNCIO


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests on ``stores``: memory on asyncio and trio, Redis on asyncio (no skips)."""
    if "store_kind" in metafunc.fixturenames:
        metafunc.parametrize(
            ("store_kind", "anyio_backend"),
            [("memory", ASYNCIO), ("memory", TRIO), ("redis", ASYNCIO)],
            ids=["memory-asyncio", "memory-trio", "redis-asyncio"],
        )


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_for_tests() as url:
        yield url


def _namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


class Stores:
    """Makes stores of one kind that share their records (one 'server')."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind = kind
        self.url = url
        self.namespace = _namespace()
        self.clock = FakeClock()
        self._memory: LeasingMemoryStore | None = None
        self._opened: list[Any] = []

    def new(self, *, lease_ttl: float = TTL) -> Any:
        if self.kind == "redis":
            assert self.url is not None
            store = RedisStore(
                self.url, app_id=EMULATOR_APP_ID, namespace=self.namespace, lease_ttl=lease_ttl
            )
            self._opened.append(store)
            return store
        if self._memory is None:  # one in-memory 'server' shared by every handle
            self._memory = LeasingMemoryStore(lease_ttl=lease_ttl, clock=self.clock)
        return self._memory

    async def expire_leases(self, *, ttl: float = TTL) -> None:
        """Let every lease run out (real time for Redis, the fake clock for memory)."""
        if self.kind == "redis":
            await anyio.sleep(ttl + 0.15)
        else:
            self.clock.advance(ttl + 0.15)

    async def aclose(self) -> None:
        for store in self._opened:
            await store.aclose()


@pytest.fixture
async def stores(request: pytest.FixtureRequest, store_kind: str) -> AsyncIterator[Stores]:
    url = request.getfixturevalue("redis_url") if store_kind == "redis" else None
    made = Stores(store_kind, url)
    try:
        yield made
    finally:
        await made.aclose()


def record(key: str = "k", **changes: Any) -> sm.TaskRecord:
    base = sm.new_record(key, ApiGeneration.V7, channel=f"ch-{key}", name=f"agent-{key}", now=1.0)
    return attrs.evolve(base, **changes)


# --- the TaskStore contract --------------------------------------------------------------


async def test_redis_store_round_trip_and_all(stores: Stores) -> None:
    """A record comes back equal, with its request; all() is every record, by key."""
    store = stores.new()
    assert isinstance(store, TaskStore)
    assert isinstance(store, LeasingStore)
    full = record("b", request={"name": "agent-b", "token": "bot-token"}, sequence_id=4)
    assert await store.create(full)
    assert await store.create(record("a"))
    assert await store.get("b") == full
    assert await store.get("missing") is None
    assert [r.key for r in await store.all()] == ["a", "b"]


async def test_redis_store_create_if_absent_under_concurrency(stores: Stores) -> None:
    """Of 40 concurrent creates of one key (through separate clients), exactly one wins."""
    handles = [stores.new() for _ in range(4)]
    wins: list[int] = []

    async def create(i: int) -> None:
        if await handles[i % 4].create(record("same", channel=f"ch-{i}")):
            wins.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(create, i)
    assert len(wins) == 1
    stored = await handles[0].get("same")
    assert stored is not None
    assert stored.channel == f"ch-{wins[0]}"


async def test_redis_store_put_is_compare_and_set(stores: Stores) -> None:
    """put() with a stale or missing version raises StoreConflictError and changes nothing."""
    store = stores.new()
    first = record()
    assert await store.create(first)
    second = attrs.evolve(first, version=1, sequence_id=1)
    await store.put(second, expected_version=0)
    with pytest.raises(StoreConflictError) as caught:
        await store.put(attrs.evolve(first, version=1, sequence_id=9), expected_version=0)
    assert (caught.value.expected, caught.value.actual) == (0, 1)
    assert await store.get("k") == second
    with pytest.raises(StoreConflictError) as caught:
        await store.put(record("new", version=1), expected_version=0)
    assert caught.value.actual is None
    await store.put(record("new", version=5), expected_version=None)  # unconditional
    stored = await store.get("new")
    assert stored is not None
    assert stored.version == 5


async def test_redis_store_delete_is_compare_and_set(stores: Stores) -> None:
    """delete() honours expected_version; deleting nothing is quiet; the index follows."""
    store = stores.new()
    assert await store.create(record("a"))
    with pytest.raises(StoreConflictError):
        await store.delete("a", expected_version=3)
    await store.delete("a", expected_version=0)
    await store.delete("a")
    with pytest.raises(StoreConflictError):
        await store.delete("a", expected_version=0)
    assert await store.all() == []
    assert await store.create(record("a"))  # the key is free again


async def test_redis_store_concurrent_updates_never_lose_a_field(stores: Stores) -> None:
    """20 writers on 4 clients each add their own field and bump sequence_id with
    reload-and-retry on conflict: every field and every increment survives."""
    handles = [stores.new() for _ in range(4)]
    assert await handles[0].create(record(request={}))
    conflicts = 0

    async def writer(i: int) -> None:
        nonlocal conflicts
        store = handles[i % 4]
        for round_ in range(5):
            while True:
                current = await store.get("k")
                assert current is not None
                request = dict(current.request or {})
                request[f"w{i}-{round_}"] = i
                new = attrs.evolve(
                    current,
                    request=request,
                    sequence_id=current.sequence_id + 1,
                    version=current.version + 1,
                )
                try:
                    await store.put(new, expected_version=current.version)
                    break
                except StoreConflictError:
                    conflicts += 1

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(writer, i)
    final = await handles[0].get("k")
    assert final is not None
    assert final.sequence_id == final.version == 100
    assert set(final.request or {}) == {f"w{i}-{r}" for i in range(20) for r in range(5)}
    assert conflicts > 0  # the test did race


# --- the LeasingStore contract ----------------------------------------------------------


async def test_redis_store_lease_acquire_renew_release(stores: Stores) -> None:
    """One owner at a time; the owner may extend; only the owner renews or releases."""
    store = stores.new()
    assert await store.acquire_lease("k", "A", TTL)
    assert not await store.acquire_lease("k", "B", TTL)
    assert await store.acquire_lease("k", "A", TTL)  # re-entrant for its owner
    assert await store.lease_owner("k") == "A"
    assert await store.renew_leases(["k", "other"], "A", TTL) == {"k"}
    assert await store.renew_leases(["k"], "B", TTL) == set()
    await store.release_lease("k", "B")  # not B's: no effect
    assert await store.lease_owner("k") == "A"
    await store.release_lease("k", "A")
    assert await store.lease_owner("k") is None
    assert await store.acquire_lease("k", "B", TTL)


async def test_redis_store_lease_expires_and_is_taken_over(stores: Stores) -> None:
    """An unrenewed lease expires; another owner takes it; the old owner's renewal says so."""
    store = stores.new()
    assert await store.acquire_lease("k", "A", TTL)
    await stores.expire_leases()
    assert await store.lease_owner("k") is None
    assert await store.acquire_lease("k", "B", TTL)
    assert await store.renew_leases(["k"], "A", TTL) == set()
    assert await store.lease_owner("k") == "B"


async def test_redis_store_unleased_lists_live_orphans(stores: Stores) -> None:
    """unleased(): live records no lease covers; ended and leased ones are not orphans."""
    store = stores.new()
    for key, phase in (("a", sm.Phase.ACTIVE), ("b", sm.Phase.STOPPED), ("c", sm.Phase.STARTING)):
        assert await store.create(record(key, phase=phase))
    assert await store.acquire_lease("c", "A", TTL)
    assert [r.key for r in await store.unleased()] == ["a"]
    # A record that ends leaves the live index; one that starts again re-enters it.
    await store.put(record("a", phase=sm.Phase.STOPPED, version=1), expected_version=0)
    await store.put(record("b", phase=sm.Phase.PENDING, version=1), expected_version=0)
    assert [r.key for r in await store.unleased()] == ["b"]


# --- RedisStore specifics -----------------------------------------------------------------


async def test_redis_store_keys_are_scoped_by_app_id_and_namespace(redis_url: str) -> None:
    """Stores of other App IDs or namespaces on the same server see nothing of each other."""
    namespace = _namespace()
    async with (
        RedisStore(redis_url, app_id="app-1", namespace=namespace) as one,
        RedisStore(redis_url, app_id="app-2", namespace=namespace) as two,
        RedisStore(redis_url, app_id="app-1", namespace=_namespace()) as three,
    ):
        assert await one.create(record("k"))
        assert await two.get("k") is None
        assert await three.all() == []
        assert await two.create(record("k"))


async def test_redis_store_repr_and_errors_hide_the_password() -> None:
    """The URL's password shows in neither repr() nor the error of a failed connection."""
    store = RedisStore("redis://:hunter2-secret@127.0.0.1:1/3", app_id="app")
    assert "hunter2" not in repr(store)
    assert "127.0.0.1:1/3" in repr(store)
    with pytest.raises(StoreError) as caught:
        await store.get("k")
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value.__cause__)
    await store.aclose()
    with pytest.raises(UsageError):
        await store.get("k")


async def test_redis_store_unreadable_record_is_store_error(redis_url: str) -> None:
    """A record that is not valid JSON raises StoreError, naming the key."""
    import redis.asyncio

    namespace = _namespace()
    async with RedisStore(redis_url, app_id="app", namespace=namespace) as store:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            await client.hset(f"{namespace}:{{app}}:task:bad", mapping={"v": "0", "r": "{nope"})
        finally:
            await client.aclose()
        with pytest.raises(StoreError, match="'bad'"):
            await store.get("bad")


async def test_redis_store_leaves_a_given_client_open(redis_url: str) -> None:
    """A client passed in is the caller's: aclose() does not close it."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        async with RedisStore(client, app_id="app", namespace=_namespace()) as store:
            assert await store.all() == []
        assert await client.ping()
    finally:
        await client.aclose()


@pytest.mark.parametrize("anyio_backend", [TRIO], ids=["trio"])
async def test_redis_store_on_trio_says_it_needs_asyncio() -> None:
    """On trio every call raises ConfigurationError naming asyncio, before touching the
    network."""
    store = RedisStore("redis://127.0.0.1:1/0", app_id="app")
    with pytest.raises(ConfigurationError, match="needs asyncio"):
        await store.get("k")
    with pytest.raises(ConfigurationError, match="needs asyncio"):
        await store.acquire_lease("k", "me", 1.0)


@pytest.mark.parametrize("anyio_backend", [TRIO], ids=["trio"])
async def test_redis_session_on_trio_fails_at_once(app: EmulatorApp) -> None:
    """A Session on a RedisStore refuses to enter on trio (no hang, no half-started
    session); the same session object is simply never entered."""
    store = RedisStore("redis://127.0.0.1:1/0", app_id=EMULATOR_APP_ID)
    async with client_for(app) as client:
        session = Session(client, store=store)
        with anyio.fail_after(5), pytest.raises(ConfigurationError, match="needs asyncio"):
            async with session:
                pytest.fail("the session must not be entered on trio")
    await store.aclose()


async def test_redis_store_pool_makes_a_burst_wait(redis_url: str) -> None:
    """200 concurrent calls through a 2-connection pool all succeed (they queue for a
    connection instead of failing with "Too many connections")."""
    async with RedisStore(
        redis_url, app_id="app", namespace=_namespace(), max_connections=2
    ) as store:
        results: list[bool] = []

        async def create(i: int) -> None:
            results.append(await store.create(record(f"k{i}")))
            assert await store.acquire_lease(f"k{i}", "me", 60.0)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(create, i)
        assert results == [True] * 200
        assert len(await store.all()) == 200
        assert len(await store.renew_leases([f"k{i}" for i in range(200)], "me", 60.0)) == 200


def test_redis_store_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the redis package, constructing a RedisStore names the extra to install."""
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ConfigurationError, match=r"agora-stt-async\[redis\]"):
        RedisStore("redis://127.0.0.1:1/0", app_id="app")


def test_redis_store_rejects_bad_arguments() -> None:
    """An empty App ID, a namespace with a hash-tag brace, or a bad TTL are refused."""
    with pytest.raises(ConfigurationError):
        RedisStore("redis://127.0.0.1:1/0", app_id="")
    with pytest.raises(ConfigurationError):
        RedisStore("redis://127.0.0.1:1/0", app_id="a", namespace="x{y")
    with pytest.raises(ConfigurationError):
        RedisStore("redis://127.0.0.1:1/0", app_id="a", lease_ttl=0)
    with pytest.raises(ConfigurationError):
        RedisStore("redis://127.0.0.1:1/0", app_id="a", max_connections=0)
    with pytest.raises(ConfigurationError):
        RedisStore(object(), app_id="a")  # type: ignore[arg-type]
    for bad in (0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ConfigurationError, match="socket_timeout"):
            RedisStore("redis://127.0.0.1:1/0", app_id="a", socket_timeout=bad)


async def test_redis_store_server_that_never_answers_is_a_store_error() -> None:
    """A server that accepts the connection and never answers (a paused process, a
    partition that drops packets) fails the call after ``socket_timeout``: no hang."""
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def mute(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, mute)
            async with RedisStore(
                f"redis://127.0.0.1:{port}/0", app_id="a", socket_timeout=0.2
            ) as store:
                with anyio.fail_after(5):
                    with pytest.raises(StoreError, match="Timeout"):
                        await store.get("k")
                    with pytest.raises(StoreError, match="Timeout"):
                        await store.renew_leases({"k"}, "me", 1.0)
            tg.cancel_scope.cancel()


# --- sessions sharing a store, in one process -------------------------------------------


def client_for(app: EmulatorApp) -> AsyncClient:
    return AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=app.transport(),
        retry=RetryPolicy.testing(),
    )


def join(i: int | str) -> JoinRequest:
    return JoinRequest(
        name=f"agent-{i}",
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=f"ch-{i}", pub_bot_uid="1000"),
    )


async def agents(app: EmulatorApp) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(transport=app.transport(), base_url="http://emulator") as raw:
        response = await raw.get("/_emulator/state", params={"list": "1", "limit": "10000"})
        items: list[dict[str, Any]] = response.json()["agents"]["items"]
        return items


def live(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in items if a["status"] in ("IDLE", "STARTING", "RUNNING", "RECOVERING")]


@pytest.fixture
def app() -> EmulatorApp:
    return create_app(FAST, seed=11)


async def test_redis_sessions_same_key_started_once(stores: Stores, app: EmulatorApp) -> None:
    """Three sessions start the same key at once: one join; the others are told who drives."""
    outcomes: list[object] = []
    async with (
        client_for(app) as client,
        Session(client, store=stores.new()) as s1,
        Session(client, store=stores.new()) as s2,
        Session(client, store=stores.new()) as s3,
    ):

        async def start(session: Session) -> None:
            try:
                outcomes.append(await session.start("shared", join("shared")))
            except SessionError as error:
                outcomes.append(error)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for session in (s1, s2, s3):
                    tg.start_soon(start, session)
        errors = [o for o in outcomes if isinstance(o, SessionError)]
        assert len(errors) == 2
        assert all("another worker" in str(e) or "not driven" in str(e) for e in errors)
        assert len(await agents(app)) == 1
    assert live(await agents(app)) == []


async def test_redis_sessions_stop_from_another_session(stores: Stores, app: EmulatorApp) -> None:
    """A session that did not start a task stops it; the driver sees it end."""
    async with (
        client_for(app) as client,
        Session(client, store=stores.new(), refresh_interval=0.2) as owner,
        Session(client, store=stores.new()) as other,
    ):
        with anyio.fail_after(20):
            handle = await owner.start("k", join(1))
            await handle.wait_for(AgentStatus.RUNNING, timeout=10)
            await other.stop("k")
            stored = await stores.new().get("k")
            assert stored is not None
            assert stored.phase is sm.Phase.STOPPED
            assert live(await agents(app)) == []
            await handle.stop(wait=True)  # the driver catches up (reload on conflict)
            assert handle.record.phase is sm.Phase.STOPPED
        with pytest.raises(UsageError):
            await other.stop("never-started")


async def test_redis_sessions_stop_while_the_driver_is_starting(
    stores: Stores, app: EmulatorApp
) -> None:
    """A stop stored while the join is in flight reaches the driver through the version
    check: the driver reloads, and stops the agent its join created."""
    gate = anyio.Event()
    release = anyio.Event()

    class Held(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await app.transport().handle_async_request(request)
            if request.url.path.endswith("/join"):
                gate.set()
                await release.wait()
            return response

    held = AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=Held(),
        retry=RetryPolicy.testing(),
    )
    async with (
        held,
        client_for(app) as client,
        Session(held, store=stores.new(), refresh_interval=0.2) as owner,
        Session(client, store=stores.new()) as other,
    ):
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(owner.start, "k", join(1))
                await gate.wait()
                await other.stop("k")  # stored as a wish: no id known yet
                release.set()
            handle = owner.handle("k")
            await handle.stop(wait=True)
            assert handle.record.stop_requested
    items = await agents(app)
    assert len(items) == 1
    assert live(items) == []


async def test_redis_sessions_start_whose_lease_was_lost_says_so(
    stores: Stores, app: EmulatorApp
) -> None:
    """A driver stalls while its join is in flight; its lease expires, another session
    adopts the task (finding the agent the join created), and the stalled start then
    fails with SessionError, not a store conflict; one agent, stopped at the end."""
    gate = anyio.Event()
    release = anyio.Event()

    class Held(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await app.transport().handle_async_request(request)
            if request.url.path.endswith("/join"):
                gate.set()
                await release.wait()
            return response

    held = AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        transport=Held(),
        retry=RetryPolicy.testing(),
    )
    outcome: list[BaseException] = []

    async def start(session: Session) -> None:
        try:
            await session.start("k", join(1))
        except SessionError as error:
            outcome.append(error)

    async with (
        held,
        client_for(app) as client,
        Session(held, store=stores.new()) as stalled,
        Session(client, store=stores.new(), refresh_interval=0.2) as adopter,
    ):
        assert stalled._leases is not None
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(start, stalled)
                await gate.wait()
                stalled._leases._renewing = False  # the worker stalls
                await stores.expire_leases()
                report = await adopter.adopt_orphans()
                assert report.live == ("k",)
                await stalled._leases.renew()  # it wakes up: the lease is gone
                assert stalled.handles() == []
                release.set()
            assert len(outcome) == 1
            assert "driven by another worker now" in str(outcome[0])
            assert adopter.handle("k").agent_id is not None
    items = await agents(app)
    assert len(items) == 1
    assert live(items) == []


async def test_redis_sessions_dead_driver_tasks_are_adopted(
    stores: Stores, app: EmulatorApp
) -> None:
    """A driver that stops renewing loses its tasks after the lease TTL; another session
    adopts them (one driver at a time) and stops them on exit; the first lets them be."""
    async with client_for(app) as client:
        first = Session(client, store=stores.new(), stop_on_exit=True)
        async with first:
            with anyio.fail_after(20):
                for i in range(3):
                    await first.start(f"k{i}", join(i))
            assert first._leases is not None
            first._leases._renewing = False  # frozen: as if its worker hung or died
            await stores.expire_leases()
            async with Session(client, store=stores.new(), refresh_interval=0.2) as second:
                with anyio.fail_after(20):
                    report = await second.adopt_orphans()
                    assert sorted(report.live) == ["k0", "k1", "k2"]
                    again = await second.adopt_orphans()
                    assert again.loaded == 0  # held now
                    # The first session notices at its next renewal, and drops them.
                    first._leases._renewing = True
                    await first._leases.renew()
                    assert first.handles() == []
                    # A stop from the first session is now a stop from elsewhere.
                    await first.stop("k0")
                    await second.handle("k0").stop(wait=True)
                    assert live(await agents(app)) != []  # k1, k2 still run
            assert len(await agents(app)) == 3
            assert live(await agents(app)) == []


async def test_redis_sessions_adopt_interval_adopts_by_itself(
    stores: Stores, app: EmulatorApp
) -> None:
    """With adopt_interval, a session adopts orphans without being asked."""
    store = stores.new()
    async with client_for(app) as client:
        async with Session(client, store=store, stop_on_exit=False) as first:
            await first.start("k", join(1))
        # The first left without stopping: its lease was released, the task is an orphan.
        assert [r.key for r in await store.unleased()] == ["k"]
        async with Session(client, store=stores.new(), adopt_interval=0.1) as second:
            with anyio.fail_after(10):
                while not second.handles():
                    await anyio.sleep(0.05)
            assert second.handle("k").agent_id is not None
    assert live(await agents(app)) == []


async def test_redis_sessions_adopt_interval_needs_leases(app: EmulatorApp) -> None:
    """adopt_interval without a leasing store is a configuration error."""
    async with client_for(app) as client:
        with pytest.raises(ConfigurationError):
            Session(client, adopt_interval=1.0)


class GatedGets:
    """A store whose next ``get`` answers (with what it read) only once ``go`` is set: a
    reply slow to arrive."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.armed = False
        self.read = anyio.Event()
        self.go = anyio.Event()

    @property
    def lease_ttl(self) -> float:
        ttl: float = self.inner.lease_ttl
        return ttl

    async def get(self, key: str) -> sm.TaskRecord | None:
        found: sm.TaskRecord | None = await self.inner.get(key)
        if self.armed:
            self.armed = False
            self.read.set()
            await self.go.wait()
        return found

    async def create(self, record: sm.TaskRecord) -> bool:
        created: bool = await self.inner.create(record)
        return created

    async def put(self, record: sm.TaskRecord, *, expected_version: int | None) -> None:
        await self.inner.put(record, expected_version=expected_version)

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        await self.inner.delete(key, expected_version=expected_version)

    async def all(self) -> list[sm.TaskRecord]:
        records: list[sm.TaskRecord] = await self.inner.all()
        return records

    async def aclose(self) -> None:
        pass  # the inner store is closed by its owner

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        taken: bool = await self.inner.acquire_lease(key, owner, ttl)
        return taken

    async def renew_leases(self, keys: Any, owner: str, ttl: float) -> set[str]:
        kept: set[str] = await self.inner.renew_leases(keys, owner, ttl)
        return kept

    async def release_lease(self, key: str, owner: str) -> None:
        await self.inner.release_lease(key, owner)

    async def lease_owner(self, key: str) -> str | None:
        owner: str | None = await self.inner.lease_owner(key)
        return owner

    async def unleased(self) -> list[sm.TaskRecord]:
        records: list[sm.TaskRecord] = await self.inner.unleased()
        return records


async def test_redis_sessions_stale_stop_never_passes_on_a_restarted_key(
    stores: Stores, app: EmulatorApp
) -> None:
    """A stop from another worker reads the record, is delayed, and meanwhile the key is
    stopped and started again: its write must not pass the version check of the new
    lifecycle (versions keep rising across restarts), so the store never says STOPPED
    for the new agent while it runs."""
    reader = GatedGets(stores.new())
    async with (
        client_for(app) as client,
        Session(client, store=stores.new(), stop_on_exit=False) as driver,
        Session(client, store=reader, stop_on_exit=False) as other,
    ):
        with anyio.fail_after(20):
            first = await driver.start("k", join(1))
            await first.wait_for(AgentStatus.RUNNING, timeout=10)
            old = await stores.new().get("k")
            assert old is not None
            reader.armed = True
            async with anyio.create_task_group() as tg:
                tg.start_soon(other.stop, "k")
                await reader.read.wait()  # the other worker has read lifecycle 1
                await driver.stop("k")
                second = await driver.start("k", join(1))
                await second.wait_for(AgentStatus.RUNNING, timeout=10)
                new = await stores.new().get("k")
                assert new is not None
                assert new.version > old.version  # no version of the new lifecycle repeats
                reader.go.set()  # the stale stop goes on
            stored = await stores.new().get("k")
            assert stored is not None
            assert stored.agent_id == new.agent_id  # the old agent's stop wrote nothing
            running_ids = {a["agent_id"] for a in live(await agents(app))}
            if stored.phase.is_terminal:  # the stop was re-applied to the new task: it ended
                assert running_ids == set()
            else:
                assert running_ids == {new.agent_id}
            await driver.stop("k")
    assert live(await agents(app)) == []


class HangingRenewals(GatedGets):
    """A leasing store whose renewals never answer once ``hang`` is set (a server that
    stopped answering without closing the connection)."""

    hang = False

    async def renew_leases(self, keys: Any, owner: str, ttl: float) -> set[str]:
        if self.hang:
            await anyio.sleep_forever()
        return await super().renew_leases(keys, owner, ttl)


@pytest.mark.parametrize("anyio_backend", [ASYNCIO, TRIO], ids=["asyncio", "trio"])
async def test_lease_keeper_gives_tasks_up_when_renewals_never_answer(app: EmulatorApp) -> None:
    """Renewals that hang count as failures (each is bounded by a third of the TTL): after
    a lease TTL without a confirmed renewal the session gives its tasks up, as promised."""
    clock = FakeClock()
    store = HangingRenewals(LeasingMemoryStore(lease_ttl=0.3, clock=clock))
    async with (
        client_for(app) as client,
        Session(client, store=store, clock=clock, stop_on_exit=False) as session,
    ):
        with anyio.fail_after(10):
            handle = await session.start("k", join(1))
            store.hang = True
            clock.advance(1.0)  # longer than the TTL since the last confirmed renewal
            while session.handles():
                await anyio.sleep(0.02)
        with pytest.raises(SessionError, match="another worker"):
            await handle.wait_for(AgentStatus.RUNNING, timeout=1)
