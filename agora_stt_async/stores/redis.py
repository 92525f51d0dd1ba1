"""A shared :class:`~agora_stt_async.stores.TaskStore` with leases, on Redis.

For a backend whose worker processes run on several machines: every worker's session
opens a ``RedisStore`` on the same server and App ID, so a task started by one worker
can be stopped by any other, and the tasks of a worker that died are adopted by the
others once its leases expire (see :class:`~agora_stt_async.stores.LeasingStore`).

Needs the ``redis`` extra (``pip install 'agora-stt-async[redis]'``): the maintained
``redis`` package's asyncio client, ``redis.asyncio``. **asyncio only**: that client
does not run on trio, and using the store (or entering a ``Session`` on it) on trio
raises ``ConfigurationError``.

Layout, for App ID ``A`` and namespace ``N`` (the braces are a Redis Cluster hash tag:
one App ID's keys share a slot, so the scripts below stay atomic on a cluster too)::

    N:{A}:task:<key>     hash  v = version, r = the record as JSON (state.record_to_dict)
    N:{A}:tasks          set   every key          (all())
    N:{A}:live           set   keys whose phase is not terminal (unleased())
    N:{A}:lease:<key>    string the owner's name, with a TTL (SET NX PX)

Every method is one atomic step, one round trip:

* ``create`` is a Lua script: create-if-absent (``EXISTS`` then ``HSET``) plus both
  index sets, so two workers starting the same key cannot both succeed;
* ``put`` and ``delete`` are Lua compare-and-set scripts on the ``v`` field, so two
  concurrent writers can never both win: the loser gets ``StoreConflictError``, reloads,
  and applies its change to the fresh record (no field is ever lost);
* update ``sequenceId``\\ s are allocated atomically without a counter of their own: the
  state machine allocates the next one *inside* the record (``sequence_id + 1``) and the
  session persists it with ``put(expected_version=...)`` before sending the update. Two
  writers allocating from the same version cannot both persist, so no id is handed out
  twice, and the id survives any crash (it is stored before it is used);
* lease scripts compare the owner before they extend or delete a lease, so a session
  only ever renews or releases its own.

A record holds the start request as sent (it may carry bot tokens and storage keys):
protect the Redis server like a credential store (AUTH/ACLs, TLS with ``rediss://``,
no public interface). The connection URL, which may carry a password, never appears in
``repr`` or in error messages.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Final, TypeVar, final

from agora_stt_async._errors import ConfigurationError, UsageError
from agora_stt_async._transports import current_async_library
from agora_stt_async.state import TaskRecord, record_from_dict, record_to_dict
from agora_stt_async.stores._errors import StoreConflictError, StoreError
from agora_stt_async.stores._leases import DEFAULT_LEASE_TTL_S, check_lease_ttl

if TYPE_CHECKING:
    import redis.asyncio
    from redis.commands.core import AsyncScript

__all__ = ["RedisStore"]

_T = TypeVar("_T")

_OK: Final = -2
_MISSING: Final = -1
DEFAULT_MAX_CONNECTIONS: Final = 32
"""Connections a ``RedisStore`` made from a URL opens at most (its pool's size)."""
POOL_TIMEOUT_S: Final = 30.0
"""How long a call waits for a free pooled connection before ``StoreError``."""
DEFAULT_SOCKET_TIMEOUT_S: Final = 10.0
"""How long a connection waits for the server (to connect, or for a reply) before the call
fails with ``StoreError``: a server that stops answering without closing the connection
(a partition, a paused process) must not hang the session's writes, which are shielded
from cancellation."""
_BATCH: Final = 500
"""Keys per pipeline or script call in bulk reads and renewals."""

# KEYS: record, all-set, live-set. ARGV: key, version, json, live ('1'/'0').
_CREATE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'r', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
if ARGV[4] == '1' then redis.call('SADD', KEYS[3], ARGV[1])
else redis.call('SREM', KEYS[3], ARGV[1]) end
return 1
"""

# KEYS: record, all-set, live-set. ARGV: key, expected version ('' = any), version, json, live.
# Returns -2 when written, else the stored version (-1: no record).
_PUT: Final = """
if ARGV[2] ~= '' then
  local cur = redis.call('HGET', KEYS[1], 'v')
  if not cur then return -1 end
  if cur ~= ARGV[2] then return tonumber(cur) end
end
redis.call('HSET', KEYS[1], 'v', ARGV[3], 'r', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
if ARGV[5] == '1' then redis.call('SADD', KEYS[3], ARGV[1])
else redis.call('SREM', KEYS[3], ARGV[1]) end
return -2
"""

# KEYS: record, all-set, live-set, lease. ARGV: key, expected version ('' = any).
_DELETE: Final = """
if ARGV[2] ~= '' then
  local cur = redis.call('HGET', KEYS[1], 'v')
  if not cur then return -1 end
  if cur ~= ARGV[2] then return tonumber(cur) end
end
redis.call('DEL', KEYS[1], KEYS[4])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
return -2
"""

# KEYS: lease. ARGV: owner, ttl in ms. Free or expired: take it; ours: extend it.
_ACQUIRE: Final = """
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: leases. ARGV: owner, ttl in ms. Returns the 1-based positions still held.
_RENEW: Final = """
local held = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held[#held + 1] = i
  end
end
return held
"""

# KEYS: lease. ARGV: owner.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _encode(record: TaskRecord) -> str:
    return json.dumps(record_to_dict(record), separators=(",", ":"), allow_nan=False)


def _decode(key: str, body: object) -> TaskRecord:
    try:
        data = json.loads(_text(body))
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        return record_from_dict(data)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"task record {key!r} in the Redis store is unreadable: {exc}") from exc


def _batches(items: Sequence[_T]) -> Iterable[Sequence[_T]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _import_redis() -> tuple[type[redis.asyncio.Redis], tuple[type[Exception], ...]]:
    """``redis.asyncio.Redis`` and the errors to translate, or a clear ConfigurationError."""
    try:
        import redis.asyncio
        import redis.exceptions
    except ImportError as exc:
        raise ConfigurationError(
            "RedisStore needs the 'redis' extra: pip install 'agora-stt-async[redis]'"
        ) from exc
    return redis.asyncio.Redis, (redis.exceptions.RedisError, OSError)


@final
class RedisStore:
    """A :class:`~agora_stt_async.stores.TaskStore` and
    :class:`~agora_stt_async.stores.LeasingStore` on a Redis server (asyncio only).

    Use ``async with RedisStore(url, app_id=...) as store:`` or call :meth:`aclose`.
    A store made from a URL owns its connection pool and closes it; a client passed in
    stays the caller's (it is never closed here).

    Args:
        url_or_client: a ``redis://`` / ``rediss://`` / ``unix://`` URL, or a
            ``redis.asyncio.Redis`` client.
        app_id: the Agora App ID whose tasks these are; records of other App IDs on
            the same server are invisible.
        namespace: the prefix of every key, to share a server with other data.
        lease_ttl: how long a session's lease on a task lives without renewal
            (seconds). Sessions renew every third of it; a dead worker's tasks are
            adopted by others after at most this long.
        max_connections: with a URL, the size of the store's connection pool. Callers
            beyond it wait for a free connection (a ``BlockingConnectionPool``), so a
            burst of starts queues instead of failing with "Too many connections".
        socket_timeout: with a URL, seconds a connection waits to connect or for a
            reply before the call fails with ``StoreError`` (a client passed in keeps
            its own settings: give it a ``socket_timeout`` too).

    Raises:
        ConfigurationError: the ``redis`` package is missing, or an argument is invalid.
    """

    def __init__(
        self,
        url_or_client: str | redis.asyncio.Redis,
        *,
        app_id: str,
        namespace: str = "agora-stt",
        lease_ttl: float = DEFAULT_LEASE_TTL_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT_S,
    ) -> None:
        redis_class, self._errors = _import_redis()
        if not app_id:
            raise ConfigurationError("RedisStore needs a non-empty app_id")
        if not namespace or "{" in namespace:
            raise ConfigurationError("namespace must be a non-empty string without '{'")
        self._lease_ttl = check_lease_ttl(lease_ttl)
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {max_connections!r}")
        timeout: object = socket_timeout  # typed float, but callers pass anything
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout < float("inf")  # also refuses NaN
        ):
            raise ConfigurationError(
                f"socket_timeout must be a finite number of seconds > 0, got {socket_timeout!r}"
            )
        if isinstance(url_or_client, str):
            import redis.asyncio

            timeouts = {
                "socket_timeout": float(socket_timeout),
                "socket_connect_timeout": float(socket_timeout),
            }
            # SPEC-SILENT: a full pool makes callers wait (up to POOL_TIMEOUT_S) rather
            # than fail: a session may start hundreds of tasks at once.
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                url_or_client, max_connections=max_connections, timeout=POOL_TIMEOUT_S, **timeouts
            )
            self._redis: redis.asyncio.Redis = redis_class.from_pool(pool)
            # Renewals get a connection of their own: a burst of starts filling the
            # pool must not delay them past the lease TTL (the tasks would be lost).
            self._renewals: redis.asyncio.Redis = redis_class.from_pool(
                redis.asyncio.BlockingConnectionPool.from_url(
                    url_or_client, max_connections=1, timeout=POOL_TIMEOUT_S, **timeouts
                )
            )
            self._owns_client = True
        elif isinstance(url_or_client, redis_class):
            self._redis = self._renewals = url_or_client
            self._owns_client = False
        else:
            raise ConfigurationError("RedisStore needs a redis:// URL or a redis.asyncio.Redis")
        self._app_id = app_id
        self._namespace = namespace
        self._prefix = f"{namespace}:{{{app_id}}}"
        self._all_key = f"{self._prefix}:tasks"
        self._live_key = f"{self._prefix}:live"
        self._scripts: dict[tuple[str, bool], AsyncScript] = {}
        self._closed = False

    @property
    def app_id(self) -> str:
        return self._app_id

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def lease_ttl(self) -> float:
        return self._lease_ttl

    # --- plumbing ---------------------------------------------------------------------

    def _record_key(self, key: str) -> str:
        return f"{self._prefix}:task:{key}"

    def _lease_key(self, key: str) -> str:
        return f"{self._prefix}:lease:{key}"

    def _client(self) -> redis.asyncio.Redis:
        if self._closed:
            raise UsageError(f"this RedisStore ({self._prefix}) is closed")
        self.check_event_loop()
        return self._redis

    def check_event_loop(self) -> None:
        """Raise :class:`ConfigurationError` unless this runs on asyncio (or no loop).

        ``Session`` calls it when it is entered, so a RedisStore on trio fails at once
        with a clear message instead of at its first write.
        """
        library = current_async_library()
        if library not in (None, "asyncio"):
            raise ConfigurationError(
                f"RedisStore needs asyncio (redis.asyncio does not run on {library}); "
                "on trio use SqliteStore or MemoryStore, or run the session on asyncio"
            )

    def _script(self, source: str, *, renewal: bool) -> AsyncScript:
        client = self._client()
        script = self._scripts.get((source, renewal))
        if script is None:
            on = self._renewals if renewal else client
            script = self._scripts[source, renewal] = on.register_script(source)
        return script

    async def _eval(
        self,
        source: str,
        keys: Sequence[str],
        args: Sequence[str | int],
        *,
        renewal: bool = False,
    ) -> object:
        script = self._script(source, renewal=renewal)
        try:
            return await script(keys=list(keys), args=list(args))
        except self._errors as exc:
            raise _store_error(exc) from exc

    # --- the TaskStore methods --------------------------------------------------------

    async def get(self, key: str) -> TaskRecord | None:
        client = self._client()
        try:
            body = await client.hget(self._record_key(key), "r")
        except self._errors as exc:
            raise _store_error(exc) from exc
        return None if body is None else _decode(key, body)

    async def create(self, record: TaskRecord) -> bool:
        created = await self._eval(
            _CREATE,
            (self._record_key(record.key), self._all_key, self._live_key),
            (record.key, record.version, _encode(record), _live(record)),
        )
        return int(_text(created)) == 1

    async def put(self, record: TaskRecord, *, expected_version: int | None) -> None:
        found = await self._eval(
            _PUT,
            (self._record_key(record.key), self._all_key, self._live_key),
            (
                record.key,
                "" if expected_version is None else expected_version,
                record.version,
                _encode(record),
                _live(record),
            ),
        )
        _check(record.key, expected_version, found)

    async def delete(self, key: str, *, expected_version: int | None = None) -> None:
        found = await self._eval(
            _DELETE,
            (self._record_key(key), self._all_key, self._live_key, self._lease_key(key)),
            (key, "" if expected_version is None else expected_version),
        )
        _check(key, expected_version, found)

    async def all(self) -> list[TaskRecord]:
        return await self._records_of(self._all_key)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if current_async_library() not in (None, "asyncio"):
            return  # every call was refused on this loop: no connection was ever opened
        if self._owns_client:
            await self._redis.aclose()
            await self._renewals.aclose()

    # --- the LeasingStore methods -----------------------------------------------------

    async def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        taken = await self._eval(_ACQUIRE, (self._lease_key(key),), (owner, _ms(ttl)))
        return int(_text(taken)) == 1

    async def renew_leases(self, keys: Collection[str], owner: str, ttl: float) -> set[str]:
        ordered = list(keys)
        held: set[str] = set()
        for batch in _batches(ordered):
            positions = await self._eval(
                _RENEW, [self._lease_key(key) for key in batch], (owner, _ms(ttl)), renewal=True
            )
            assert isinstance(positions, list)
            held.update(batch[int(_text(i)) - 1] for i in positions)
        return held

    async def release_lease(self, key: str, owner: str) -> None:
        await self._eval(_RELEASE, (self._lease_key(key),), (owner,))

    async def lease_owner(self, key: str) -> str | None:
        client = self._client()
        try:
            owner = await client.get(self._lease_key(key))
        except self._errors as exc:
            raise _store_error(exc) from exc
        return None if owner is None else _text(owner)

    async def unleased(self) -> list[TaskRecord]:
        records = await self._records_of(self._live_key, unleased=True)
        return [record for record in records if not record.phase.is_terminal]

    async def _records_of(self, index: str, *, unleased: bool = False) -> list[TaskRecord]:
        client = self._client()
        try:
            members = await client.smembers(index)
            keys = sorted(_text(member) for member in members)
            records: list[TaskRecord] = []
            for batch in _batches(keys):
                if unleased:
                    async with client.pipeline(transaction=False) as pipe:
                        for key in batch:
                            pipe.exists(self._lease_key(key))
                        leased = await pipe.execute()
                    batch = [key for key, n in zip(batch, leased, strict=True) if not int(n)]
                    if not batch:
                        continue
                async with client.pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.hget(self._record_key(key), "r")
                    bodies = await pipe.execute()
                records.extend(
                    _decode(key, body)
                    for key, body in zip(batch, bodies, strict=True)
                    if body is not None  # deleted between the two reads
                )
        except self._errors as exc:
            raise _store_error(exc) from exc
        return records

    # --- context manager and repr -----------------------------------------------------

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        # Never the URL: it may carry a password.
        kwargs = self._redis.connection_pool.connection_kwargs
        if "path" in kwargs:
            where = f"unix:{kwargs['path']}"
        else:
            where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return (
            f"RedisStore(<{where}/{kwargs.get('db', 0)}>, namespace={self._namespace!r},"
            f" app_id={self._app_id!r}, lease_ttl={self._lease_ttl})"
        )


def _live(record: TaskRecord) -> str:
    return "0" if record.phase.is_terminal else "1"


def _check(key: str, expected: int | None, found: object) -> None:
    code = int(_text(found))
    if code == _OK:
        return
    assert expected is not None  # an unconditional write always succeeds
    raise StoreConflictError(key, expected, None if code == _MISSING else code)


def _store_error(exc: Exception) -> StoreError:
    """A ``redis`` failure (connection, timeout, script error) as a ``StoreError``.

    The message names the error's type and text; redis-py's texts hold host and port,
    never the password.
    """
    return StoreError(f"Redis store: {type(exc).__name__}: {exc}")
