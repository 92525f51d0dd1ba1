"""``AsyncClient``: configuration, ownership, and one thin method per endpoint.

``client.agents`` speaks the v7 agents API (join / get / update / leave / list) and
``client.legacy`` the legacy v5/v6 builder-token API (acquire / start / query / update /
stop). Every method validates its input before sending, goes through ``HttpCore`` and
returns a model; nothing here touches httpx directly.
"""

from __future__ import annotations

import inspect
import ipaddress
import math
import os
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Final, Generic, Literal, ParamSpec, TypeVar, final
from urllib.parse import quote, urlsplit

import attrs
import httpx

from agora_stt_async import _constants as C
from agora_stt_async._clock import Clock, SystemClock
from agora_stt_async._converter import (
    structure_page,
    structure_response,
    unstructure_request,
    wire_update_mask,
)
from agora_stt_async._enums import AgentStatus
from agora_stt_async._errors import ConfigurationError, UsageError, ValidationError
from agora_stt_async._hosts import Area, hosts_for_area
from agora_stt_async._http import Endpoint, HttpCore, capture_responses
from agora_stt_async._models import (
    AcquireRequest,
    Agent,
    AgentPage,
    BuilderToken,
    JoinRequest,
    LanguagePair,
    LegacyStartRequest,
    ResponseInfo,
    Task,
    TranslateConfig,
    UidLanguages,
    UpdateRequest,
    UpdateRtcConfig,
)
from agora_stt_async._models.legacy import check_legacy_translation
from agora_stt_async._pagination import AgentIterator
from agora_stt_async._ratelimit import RateLimit, RateLimiter
from agora_stt_async._retry import RetryPolicy
from agora_stt_async._secrets import Secret
from agora_stt_async._stats import ClientStatistics
from agora_stt_async.hooks import Hooks

DEFAULT_TIMEOUT_S: Final = 10.0
"""Per-request timeout; Agora's own Go middleware uses 10 s for these calls."""
DEFAULT_MAX_IN_FLIGHT: Final = 64
"""Requests in flight at once per client (and connections in its pool)."""

_JOIN: Final = Endpoint("join", "POST", idempotent=False)
_GET: Final = Endpoint("query", "GET", idempotent=True, group="query")
_UPDATE: Final = Endpoint("update", "POST", idempotent=True)
_LEAVE: Final = Endpoint("leave", "POST", idempotent=True, expects_body=False)
_LIST: Final = Endpoint("list", "GET", idempotent=True, group="query")
# Acquire stays non-idempotent although a second token is harmless: the issue retries
# join, start and acquire only when the request surely never reached the server, and
# each acquire answered twice would leave a token nobody records.
_ACQUIRE: Final = Endpoint("acquire", "POST", idempotent=False)
_START: Final = Endpoint("start", "POST", idempotent=False)
_QUERY: Final = Endpoint("legacy_query", "GET", idempotent=True, group="query")
_LEGACY_UPDATE: Final = Endpoint("legacy_update", "PATCH", idempotent=True)
_STOP: Final = Endpoint("stop", "DELETE", idempotent=True, expects_body=False)
# Update is retried: the server applies the latest sequenceId, so a repeat with the same
# sequenceId is harmless (spec §4.6). Leave/stop are retried: the session treats "not
# found" after a retry as "stopped".


P = ParamSpec("P")
T = TypeVar("T")


@final
@attrs.frozen
class RawResponse(Generic[T]):
    """A call's parsed result with the HTTP exchange it came from
    (``client.with_raw_response``): for debugging with Agora's support, quote
    ``request_id``."""

    parsed: T
    info: ResponseInfo

    @property
    def status_code(self) -> int:
        return self.info.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        """The response headers (never the request's ``Authorization``)."""
        return self.info.headers

    @property
    def request_id(self) -> str | None:
        return self.info.request_id

    @property
    def elapsed_s(self) -> float:
        """Seconds of the successful attempt."""
        return self.info.elapsed_s


def _rate_limiter(value: object, *, transport: object, urls: tuple[str, ...]) -> RateLimiter | None:
    if value == "auto":
        # SPEC-SILENT: the limits protect Agora's per-App-ID quota. A local emulator or an
        # in-process transport (a test double) has none, so "auto" leaves them off there;
        # pass rate_limit=RateLimit() to exercise the limiter against one.
        local = transport is not None or all(
            _is_loopback(urlsplit(url).hostname or "") for url in urls
        )
        return None if local else RateLimiter(RateLimit())
    if value is None or isinstance(value, RateLimiter):
        return value
    if isinstance(value, RateLimit):
        return RateLimiter(value)
    raise ConfigurationError(
        f"rate_limit must be a RateLimit, a RateLimiter, None or 'auto', got {value!r}"
    )


def _env_or(value: str | None, name: str) -> str | None:
    return value if value is not None else os.environ.get(name) or None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_base_url(url: object, *, allow_insecure: bool) -> str:
    if not isinstance(url, str):
        raise ConfigurationError(f"a base URL must be a string, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError:
        parts = None
    if parts is not None and (parts.username is not None or parts.password is not None):
        # Not echoed: it carries a password, which would otherwise reach reprs, hook
        # events, spans and error messages through the base URL.
        raise ConfigurationError(
            "a base URL must not carry credentials (user:password@host); pass "
            "customer_id and customer_secret instead"
        )
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
    ):
        shown = "(not shown: it has an '@')" if "@" in url else repr(url)
        raise ConfigurationError(f"base URL must be http(s)://host[:port][/path], got {shown}")
    if parts.scheme == "http" and not allow_insecure and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing plain http:// to {parts.hostname}: credentials would travel "
            "unencrypted. Use https://, a loopback address, or allow_insecure=True."
        )
    return url.rstrip("/")


# SPEC-SILENT: Agora App IDs are 32 hex characters; letters, digits, '-' and '_' are
# accepted (emulators and tests use readable ids) and nothing that could change the URL.
_APP_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _check_credentials(app_id: object, customer_id: object, secret: object) -> None:
    # The values are never echoed: a secret passed in the wrong place must not be logged.
    for name, value in (
        ("app_id", app_id),
        ("customer_id", customer_id),
        ("customer_secret", secret),
    ):
        if not isinstance(value, str):
            raise ConfigurationError(f"{name} must be a string, not {type(value).__name__}")
    if not isinstance(app_id, str) or not isinstance(customer_id, str):  # pragma: no cover
        return  # refused above; for mypy
    if not _APP_ID.fullmatch(app_id):
        raise ConfigurationError(
            "app_id must be letters, digits, '-' or '_' (Agora's are 32 hex characters)"
        )
    if ":" in customer_id:  # RFC 7617: the Basic-auth user-id cannot contain a colon
        raise ConfigurationError("customer_id cannot contain ':' (HTTP Basic auth)")


def _check_timeout(timeout: object) -> None:
    if isinstance(timeout, httpx.Timeout):
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigurationError(
            f"timeout must be a number of seconds > 0 or an httpx.Timeout, got {timeout!r}"
        )


def _check_options(
    *,
    clock: object,
    rng: object,
    http_client: object,
    transport: object,
    allow_insecure: object,
    fast: object,
) -> None:
    """The objects the client uses later, checked now: a wrong one would otherwise fail
    with an AttributeError on the first request or the first retry."""
    if clock is not None and not isinstance(clock, Clock):
        raise ConfigurationError(
            "clock must have now(), monotonic() and async sleep(seconds) (e.g. "
            f"agora_stt_async.testing.FakeClock), got {type(clock).__name__}"
        )
    if rng is not None and not isinstance(rng, random.Random):
        raise ConfigurationError(f"rng must be a random.Random, got {type(rng).__name__}")
    if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
        raise ConfigurationError(
            f"http_client must be an httpx.AsyncClient, got {type(http_client).__name__}"
        )
    if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
        raise ConfigurationError(
            f"transport must be an httpx.AsyncBaseTransport, got {type(transport).__name__}"
        )
    if not isinstance(allow_insecure, bool):
        raise ConfigurationError(f"allow_insecure must be True or False, got {allow_insecure!r}")
    if fast is not None and not isinstance(fast, bool):
        raise ConfigurationError(f"fast must be None, True or False, got {fast!r}")


def _id(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(field, "must be a non-empty string", value)
    return quote(value, safe="")


_INT64_MAX: Final = 2**63 - 1


def _sequence_id(value: object) -> int:
    # spec §4.6: sequenceId is an integer >= 0, int64 (the OpenAPI's format).
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT64_MAX:
        raise ValidationError("sequence_id", "must be an integer in 0..2**63-1 (int64)", value)
    return value


def _token_name(token: object) -> str:
    name = token.token_name if isinstance(token, BuilderToken) else token
    if not isinstance(name, str) or not name:
        raise ValidationError("token", "a BuilderToken or its non-empty token_name", None)
    return name


def build_update(
    request: UpdateRequest | None,
    *,
    languages: Sequence[str] | None = None,
    keywords: Sequence[str] | None = None,
    uid_languages_config: Sequence[UidLanguages] | None = None,
    subscribe_audio_uids: Sequence[str] | None = None,
    translate_enable: bool | None = None,
    translate_languages: Sequence[LanguagePair] | None = None,
) -> UpdateRequest:
    """An ``UpdateRequest`` from either a model or keyword fields (not both).

    Raises:
        ValidationError: ``request`` is not an ``UpdateRequest`` (a dict, say), both are
            given, or a field breaks its limit.
    """
    if request is not None and not isinstance(request, UpdateRequest):
        raise ValidationError(
            "request",
            f"must be an UpdateRequest (or pass the fields as keywords), "
            f"not {type(request).__name__}",
        )
    given = any(
        value is not None
        for value in (
            languages,
            keywords,
            uid_languages_config,
            subscribe_audio_uids,
            translate_enable,
            translate_languages,
        )
    )
    if request is not None:
        if given:
            raise ValidationError("update", "pass an UpdateRequest or keyword fields, not both")
        return request
    translate = None
    if translate_enable is not None or translate_languages is not None:
        translate = TranslateConfig(languages=translate_languages, enable=translate_enable)
    return UpdateRequest(
        languages=languages,
        keywords=keywords,
        uid_languages_config=uid_languages_config,
        rtc_config=(
            None
            if subscribe_audio_uids is None
            else UpdateRtcConfig(subscribe_audio_uids=subscribe_audio_uids)
        ),
        translate_config=translate,
    )


@final
class AgentsAPI:
    """The v7 agents API: ``client.agents``."""

    def __init__(self, http: HttpCore, prefix: str) -> None:
        self._http = http
        self._prefix = prefix

    async def join(
        self,
        request: JoinRequest,
        *,
        request_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Agent:
        """Start an agent (``POST /join``).

        Not retried once it may have reached the server; on ``TransportError`` with
        ``maybe_processed`` or a 5xx, find out with ``list(channel=...)`` (``Session``
        does this for you). Joining again with the same ``name`` never creates a second
        agent: the server answers ``ConflictError``.

        Raises:
            ValidationError: ``request`` is not a ``JoinRequest``.
            APIError, TransportError: see ``agora_stt_async._errors``.
        """
        if not isinstance(request, JoinRequest):
            raise ValidationError("request", "must be a JoinRequest", None)
        exchange = await self._http.request(
            _JOIN,
            f"{self._prefix}/join",
            json_body=unstructure_request(request),
            request_id=request_id,
            retry=retry,
        )
        return structure_response(exchange.body, Agent, info=exchange.info)

    async def get(
        self, agent_id: str, *, request_id: str | None = None, retry: RetryPolicy | None = None
    ) -> Agent:
        """Query one agent (``GET /agents/{agentId}``); ``NotFoundError`` if unknown."""
        exchange = await self._http.request(
            _GET,
            f"{self._prefix}/agents/{_id(agent_id, 'agent_id')}",
            request_id=request_id,
            retry=retry,
        )
        return structure_response(exchange.body, Agent, info=exchange.info)

    async def update(
        self,
        agent_id: str,
        request: UpdateRequest | None = None,
        *,
        sequence_id: int,
        languages: Sequence[str] | None = None,
        keywords: Sequence[str] | None = None,
        uid_languages_config: Sequence[UidLanguages] | None = None,
        subscribe_audio_uids: Sequence[str] | None = None,
        translate_enable: bool | None = None,
        translate_languages: Sequence[LanguagePair] | None = None,
        request_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Agent:
        """Change a running agent (``POST /agents/{agentId}/update``).

        Pass the fields to change (or an ``UpdateRequest``); each is replaced as a
        whole and ``updateMask`` is derived from them. ``sequence_id`` (an int64 >= 0)
        must grow with every update of the agent (``Session`` allocates it for you).
        Agora asks for at least 5 s between updates.

        Raises:
            ValidationError: ``request`` is not an ``UpdateRequest``, a field breaks its
                limit, or ``sequence_id`` is not in 0..2**63-1.
            APIError, TransportError: see ``agora_stt_async._errors``.
        """
        body = build_update(
            request,
            languages=languages,
            keywords=keywords,
            uid_languages_config=uid_languages_config,
            subscribe_audio_uids=subscribe_audio_uids,
            translate_enable=translate_enable,
            translate_languages=translate_languages,
        )
        params: dict[str, str | int] = {
            "sequenceId": _sequence_id(sequence_id),
            "updateMask": wire_update_mask(body),
        }
        exchange = await self._http.request(
            _UPDATE,
            f"{self._prefix}/agents/{_id(agent_id, 'agent_id')}/update",
            params=params,
            json_body=unstructure_request(body),
            request_id=request_id,
            retry=retry,
        )
        return structure_response(exchange.body, Agent, info=exchange.info)

    async def leave(
        self, agent_id: str, *, request_id: str | None = None, retry: RetryPolicy | None = None
    ) -> None:
        """Stop an agent (``POST /agents/{agentId}/leave``).

        Raises ``NotFoundError`` if the agent is unknown or already gone (the session
        treats that as stopped).
        """
        await self._http.request(
            _LEAVE,
            f"{self._prefix}/agents/{_id(agent_id, 'agent_id')}/leave",
            request_id=request_id,
            retry=retry,
        )

    def list(
        self,
        *,
        channel: str | None = None,
        state: AgentStatus | int | None = None,
        from_time: int | None = None,
        to_time: int | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> AgentIterator:
        """Every agent matching the filters, following the cursor (``GET /agents``).

        Server defaults apply to what is not given: ``state`` RUNNING, the last 24 h of
        creation time, 20 per page. ``page_size`` is the ``limit`` per request.
        ``cursor`` resumes after the agent with that id (``AgentIterator.cursor``);
        ``""``, the cursor of a finished sweep, yields nothing. Returns at once;
        requests are made as you iterate.
        """
        params: dict[str, str | int] = {}
        if channel is not None:
            params["channel"] = _text_param(channel, "channel")
        if state is not None:
            params["state"] = str(_state_code(state))
        if from_time is not None:
            params["from_time"] = _int_param(from_time, "from_time", 0)
        if to_time is not None:
            params["to_time"] = _int_param(to_time, "to_time", 0)
        if page_size is not None:
            params["limit"] = _int_param(page_size, "page_size", 1)
        path = f"{self._prefix}/agents"

        async def fetch(page_cursor: str | None) -> AgentPage:
            query = params if page_cursor is None else {**params, "cursor": page_cursor}
            exchange = await self._http.request(_LIST, path, params=query, retry=retry)
            return structure_page(exchange.body, info=exchange.info)

        return AgentIterator(fetch, cursor=cursor)


def _text_param(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(field, "must be a non-empty string", value)
    return value


def _int_param(value: object, field: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValidationError(field, f"must be an integer >= {low}", value)
    return value


def _state_code(state: object) -> int:
    if isinstance(state, AgentStatus):
        return state.code
    if isinstance(state, bool) or not isinstance(state, int):
        raise ValidationError("state", "an AgentStatus or its code 0..6", state)
    try:
        return AgentStatus.from_code(state).code
    except ValueError:
        raise ValidationError("state", "an AgentStatus or its code 0..6", state) from None


@final
class LegacyAPI:
    """The legacy v5/v6 builder-token API: ``client.legacy``.

    Past end-of-life at Agora (June 2026) but still served to old projects.
    """

    def __init__(self, http: HttpCore, prefix: str) -> None:
        self._http = http
        self._prefix = prefix

    async def acquire(
        self, instance_id: str, *, request_id: str | None = None, retry: RetryPolicy | None = None
    ) -> BuilderToken:
        """Get a builder token (``POST /builderTokens``); start a task within 5 minutes."""
        body = unstructure_request(AcquireRequest(instance_id=instance_id))
        exchange = await self._http.request(
            _ACQUIRE,
            f"{self._prefix}/builderTokens",
            json_body=body,
            request_id=request_id,
            retry=retry,
        )
        return structure_response(exchange.body, BuilderToken, info=exchange.info)

    async def start(
        self,
        token: BuilderToken | str,
        request: LegacyStartRequest,
        *,
        request_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Task:
        """Start a task with a builder token (``POST /tasks?builderToken=``).

        Starting again with the same token never creates a second task: the server
        answers ``TaskAlreadyStartedError`` carrying the existing ``task_id``.
        """
        name = _token_name(token)
        if not isinstance(request, LegacyStartRequest):
            raise ValidationError("request", "must be a LegacyStartRequest", None)
        exchange = await self._http.request(
            _START,
            f"{self._prefix}/tasks",
            params={"builderToken": name},
            json_body=unstructure_request(request),
            request_id=request_id,
            retry=retry,
        )
        return _with_token(structure_response(exchange.body, Task, info=exchange.info), name)

    async def query(
        self,
        task_id: str,
        token: BuilderToken | str,
        *,
        request_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Task:
        """Query a task (``GET /tasks/{taskId}?builderToken=``) with the token that started it."""
        name = _token_name(token)
        exchange = await self._http.request(
            _QUERY,
            f"{self._prefix}/tasks/{_id(task_id, 'task_id')}",
            params={"builderToken": name},
            request_id=request_id,
            retry=retry,
        )
        return _with_token(structure_response(exchange.body, Task, info=exchange.info), name)

    async def update(
        self,
        task_id: str,
        token: BuilderToken | str,
        request: UpdateRequest | None = None,
        *,
        sequence_id: int,
        languages: Sequence[str] | None = None,
        uid_languages_config: Sequence[UidLanguages] | None = None,
        subscribe_audio_uids: Sequence[str] | None = None,
        translate_enable: bool | None = None,
        translate_languages: Sequence[LanguagePair] | None = None,
        request_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Task:
        """Change a task (``PATCH /tasks/{taskId}``); fields as ``agents.update``."""
        name = _token_name(token)
        body = build_update(
            request,
            languages=languages,
            uid_languages_config=uid_languages_config,
            subscribe_audio_uids=subscribe_audio_uids,
            translate_enable=translate_enable,
            translate_languages=translate_languages,
        )
        if body.keywords is not None:
            raise ValidationError("keywords", "not supported by the legacy API")
        check_legacy_translation(body.translate_config)
        params: dict[str, str | int] = {
            "builderToken": name,
            "sequenceId": _sequence_id(sequence_id),
            "updateMask": wire_update_mask(body),
        }
        exchange = await self._http.request(
            _LEGACY_UPDATE,
            f"{self._prefix}/tasks/{_id(task_id, 'task_id')}",
            params=params,
            json_body=unstructure_request(body),
            request_id=request_id,
            retry=retry,
        )
        return _with_token(structure_response(exchange.body, Task, info=exchange.info), name)

    async def stop(
        self,
        task_id: str,
        token: BuilderToken | str,
        *,
        request_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Stop a task (``DELETE /tasks/{taskId}?builderToken=``) with the token that started it.

        A repeated stop answers ``ConflictError`` (code 49) or ``NotFoundError``.
        """
        name = _token_name(token)
        await self._http.request(
            _STOP,
            f"{self._prefix}/tasks/{_id(task_id, 'task_id')}",
            params={"builderToken": name},
            request_id=request_id,
            retry=retry,
        )


def _with_token(task: Task, token_name: str) -> Task:
    return attrs.evolve(task, token_name=token_name)


@final
class AsyncClient:
    """An Agora Real-Time STT client for one App ID.

    Args:
        app_id: the project's App ID (default: ``AGORA_APP_ID``).
        customer_id, customer_secret: RESTful API credentials (default:
            ``AGORA_CUSTOMER_ID`` / ``AGORA_CUSTOMER_SECRET``).
        base_url: one base URL (default: ``AGORA_STT_BASE_URL`` or
            ``https://api.agora.io``).
        area: opt-in regional routing (``"US"``, ``"EU"``, ``"AP"``, ``"CN"``) over
            Agora's regional gateways with failover; exclusive with ``base_url(s)``.
        base_urls: an explicit list of hosts tried in order, with failover.
        timeout: seconds per request (or an ``httpx.Timeout``); with ``http_client``,
            that client's own timeout applies instead.
        retry: the ``RetryPolicy`` for every call (each method also takes ``retry=``).
        http_client: your own ``httpx.AsyncClient`` (never closed by this client).
        transport: an httpx transport for the client this one creates (e.g.
            ``agora_stt_async.emulator.transport()``); never closed by this client.
        max_in_flight: requests in flight at once, and connections in the pool.
        fast: what moves the bytes under the client this one creates. ``None``
            (default) = automatic: aiohttp directly on asyncio when installed (a
            dependency), httpx's own transport on trio or without aiohttp; ``True`` =
            aiohttp, required; ``False`` = httpx's own transport. ``fast=True`` cannot
            be combined with ``http_client`` or ``transport``.
        clock: time source (tests pass a fake one): an object with ``now()``,
            ``monotonic()`` and ``async sleep(seconds)`` (``agora_stt_async.testing.FakeClock``).
        allow_insecure: allow ``http://`` to a non-loopback host (a bool).
        rng: the ``random.Random`` jitter is drawn from (tests pass a seeded one).
        rate_limit: client-side rate limiting (``RateLimit``; see its defaults and why).
            ``"auto"`` (default): ``RateLimit()`` towards Agora, off towards a loopback
            host or a ``transport`` (an emulator has no quota); a ``RateLimiter`` to
            share one budget between clients of the same App ID; ``None``: off.

    Raises:
        ConfigurationError: a credential is missing, a base URL is unusable, or an
            option has the wrong type (checked here, not on the first request).
    """

    def __init__(
        self,
        *,
        app_id: str | None = None,
        customer_id: str | None = None,
        customer_secret: str | None = None,
        base_url: str | None = None,
        area: Area | str | None = None,
        base_urls: Sequence[str] | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        clock: Clock | None = None,
        allow_insecure: bool = False,
        rng: random.Random | None = None,
        fast: bool | None = None,
        rate_limit: RateLimit | RateLimiter | Literal["auto"] | None = "auto",
    ) -> None:
        app = _env_or(app_id, C.ENV_APP_ID)
        cid = _env_or(customer_id, C.ENV_CUSTOMER_ID)
        secret = _env_or(customer_secret, C.ENV_CUSTOMER_SECRET)
        missing = [
            name
            for name, value in (
                (f"app_id ({C.ENV_APP_ID})", app),
                (f"customer_id ({C.ENV_CUSTOMER_ID})", cid),
                (f"customer_secret ({C.ENV_CUSTOMER_SECRET})", secret),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                "missing credential(s): " + ", ".join(missing) + "; pass them or set the "
                "environment variables (Agora Console → RESTful API)"
            )
        if app is None or cid is None or secret is None:  # pragma: no cover - for mypy
            raise ConfigurationError("missing credentials")
        _check_credentials(app, cid, secret)
        _check_timeout(timeout)
        _check_options(
            clock=clock,
            rng=rng,
            http_client=http_client,
            transport=transport,
            allow_insecure=allow_insecure,
            fast=fast,
        )
        if http_client is not None and transport is not None:
            raise ConfigurationError("pass http_client or transport, not both")
        if fast and (http_client is not None or transport is not None):
            raise ConfigurationError("fast=True applies to the client this one creates")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise ConfigurationError("max_in_flight must be an integer >= 1")
        if max_in_flight < 1:
            raise ConfigurationError("max_in_flight must be an integer >= 1")
        urls = self._resolve_urls(base_url, area, base_urls, allow_insecure=allow_insecure)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry must be a RetryPolicy")
        self.app_id: Final = app
        self._customer_id = cid
        self._http = HttpCore(
            customer_id=cid,
            customer_secret=Secret(secret),
            base_urls=urls,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            retry=retry or RetryPolicy(),
            clock=clock or SystemClock(),
            max_in_flight=max_in_flight,
            http_client=http_client,
            transport=transport,
            rng=rng,
            fast=fast,
            rate_limiter=_rate_limiter(rate_limit, transport=transport, urls=urls),
            hooks=Hooks(),
        )
        app_path = quote(app, safe="")
        self.agents: Final = AgentsAPI(self._http, C.V7_PATH_PREFIX.format(app_id=app_path))
        self.legacy: Final = LegacyAPI(self._http, C.LEGACY_PATH_PREFIX.format(app_id=app_path))

    @staticmethod
    def _resolve_urls(
        base_url: str | None,
        area: Area | str | None,
        base_urls: Sequence[str] | None,
        *,
        allow_insecure: bool,
    ) -> tuple[str, ...]:
        if sum(x is not None for x in (base_url, area, base_urls)) > 1:
            raise ConfigurationError("pass at most one of base_url, area and base_urls")
        if area is not None:
            try:
                candidates: Sequence[str] = hosts_for_area(Area(area))
            except ValueError:
                raise ConfigurationError(
                    f"area must be one of {', '.join(a.value for a in Area)}, got {area!r}"
                ) from None
        elif base_urls is not None:
            if isinstance(base_urls, str) or not base_urls:
                raise ConfigurationError("base_urls must be a non-empty list of URLs")
            candidates = base_urls
        else:
            candidates = [base_url or os.environ.get(C.ENV_BASE_URL) or C.DEFAULT_BASE_URL]
        return tuple(_check_base_url(url, allow_insecure=allow_insecure) for url in candidates)

    @property
    def base_urls(self) -> tuple[str, ...]:
        """The hosts this client sends to, in order of preference."""
        return self._http.base_urls

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._http.retry_policy

    @property
    def clock(self) -> Clock:
        """The clock this client waits and times with (a ``Session`` follows it)."""
        return self._http.clock

    def statistics(self) -> ClientStatistics:
        """Requests, retries, errors and latency percentiles so far, per operation."""
        return self._http.statistics()

    @property
    def hooks(self) -> Hooks:
        """Subscribe to typed events (``agora_stt_async.hooks``):
        ``client.hooks.subscribe(callback, *event_types)``."""
        return self._http.hooks

    @property
    def rate_limiter(self) -> RateLimiter | None:
        """The client-side rate limiter (``None`` when off)."""
        return self._http.rate_limiter

    async def with_raw_response(
        self, method: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> RawResponse[T]:
        """Call ``method`` (a method of ``client.agents`` or ``client.legacy``) and
        return its result with the HTTP exchange it came from::

            raw = await client.with_raw_response(client.agents.leave, agent_id)
            raw.status_code, raw.request_id, raw.headers, raw.parsed

        Models already carry theirs (``agent.response``); this also covers calls that
        return nothing (leave, stop). Errors are raised as usual (they carry
        ``status_code`` and ``request_id``). For listing, each page has ``response``.

        Raises:
            UsageError: ``method`` is not awaitable (e.g. ``agents.list``: iterate its
                ``pages()`` instead) or sent no request.
        """
        if not callable(method):
            raise UsageError(f"with_raw_response: {method!r} is not a method to call")
        with capture_responses() as found:
            pending = method(*args, **kwargs)
            if not inspect.isawaitable(pending):
                raise UsageError(
                    "with_raw_response: the method is not awaitable (agents.list() is "
                    "iterated instead: each page has its own .response)"
                )
            parsed = await pending
        if not found:
            raise UsageError("with_raw_response: the call sent no request")
        return RawResponse(parsed=parsed, info=found[-1])

    async def aclose(self) -> None:
        """Close the connection pool if this client created it."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"AsyncClient(app_id={self.app_id!r}, customer_id={self._customer_id!r}, "
            f"customer_secret='***', base_urls={self.base_urls!r})"
        )
