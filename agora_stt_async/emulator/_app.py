"""The emulator's ASGI face: routing, auth, request ids and faults.

Thin by design: each route reads its inputs, asks ``_validate`` to check them and
``_world`` to act, and renders the result, or the refusal in its generation's envelope
(``_envelopes``). Routing is starlette's, without its middleware stack, so nothing but
this module and ``_envelopes`` decides what goes on the wire.

Order of checks for a documented route: the optional QPS limit (429, ``qps_limit``) →
fault draw (a pre-processing fault answers at once, state untouched) → auth (401,
``_auth``) → App ID (v7 403 / legacy 400 code 62) → the route's own checks → the world.
A ``drop`` fault lets all of that happen, then raises ``ConnectionDropped`` instead of
answering: served by ``serve()``/``run()`` the connection closes with no byte of the
response (the ``DROP_EXTENSION`` the server puts in the scope does that); behind another
ASGI server the status line and headers go out first.

Every response carries ``X-Request-Id``, errors included: an unexpected exception (a bug)
is logged and answered with the generation's documented 500 envelope (Kong's 500 body
outside the documented routes), never with the server's plain-text 500.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final

import anyio
import anyio.abc
import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, Router
from starlette.types import Message, Receive, Scope, Send

from agora_stt_async import _constants as C
from agora_stt_async._enums import AgentStatus
from agora_stt_async.emulator._auth import Authenticator, QpsLimiter
from agora_stt_async.emulator._callbacks import CallbackSender
from agora_stt_async.emulator._config import (
    EmulatorClock,
    EmulatorConfig,
    SupportsNow,
    resolve_app_ids,
    resolve_credentials,
)
from agora_stt_async.emulator._envelopes import (
    FAULT_BODIES,
    NO_ROUTE,
    RATE_LIMITED,
    UNEXPECTED,
    Generation,
    fault_response,
    json_response,
    render,
)
from agora_stt_async.emulator._faults import PRE_PROCESSING, FaultConfig, FaultPlan
from agora_stt_async.emulator._records import BuilderToken, WorldError
from agora_stt_async.emulator._schema import InvalidBody, SchemaError
from agora_stt_async.emulator._validate import Validator, parse_json
from agora_stt_async.emulator._world import World

if TYPE_CHECKING:
    from agora_stt_async.emulator._server import EmulatorTransport

Handler = Callable[[Request], Awaitable[Response]]

DROP_EXTENSION: Final = "agora_stt_async.drop"
"""ASGI scope extension: an ``async () -> None`` that closes the client's connection at
once, without a response. ``serve()`` and ``run()`` provide it (``_server``)."""

_log = logging.getLogger("agora_stt_async.emulator")


class ConnectionDropped(Exception):
    """Raised after a request was processed but its response must never arrive (``drop``).

    ``EmulatorTransport`` turns it into ``httpx.RemoteProtocolError``; a bare
    ``httpx.ASGITransport`` lets it propagate. Served by ``serve()``/``run()`` the
    connection is already closed, with no byte of response, when it is raised; under any
    other ASGI server the status line and headers have been sent, and the server closes
    the connection because the app raised after starting its response.
    """


class EmulatorApp:
    """An ASGI app that behaves like the Agora STT service (v7 agents API and legacy v5/v6).

    Attributes:
        world: the service state (agents, tasks, tokens, channels).
        faults: the fault plan in force (``faults.configure(FaultConfig(...))``).
        clock: the clock every time-driven change reads.
        requests: requests per route name (control routes not counted).
        responses: responses per HTTP status (dropped ones included).
        callbacks: the NCS callback sender (``config.callback_url``); its
            ``transport`` may be set to send in process.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        clock: SupportsNow,
        seed: int | str = 0,
        faults: FaultConfig | None = None,
        callback_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.seed = seed
        self.world = World(config, clock, seed)
        self.callbacks = CallbackSender(config, clock, seed, self.world.advance, callback_transport)
        self.world.on_event = self.callbacks.on_event
        self.faults = FaultPlan(faults, seed)
        self.validator = Validator(
            check_languages=config.check_languages,
            strict_fields=config.strict_fields,
            legacy_version=config.legacy_version,
            list_max_limit=config.list_max_limit,
        )
        self.app_ids = resolve_app_ids(config)
        self._auth = Authenticator(
            resolve_credentials(config), self.app_ids, config.rtc_tokens, clock
        )
        self.qps = QpsLimiter(config.qps_limit, clock)
        self.requests: Counter[str] = Counter()
        self.responses: Counter[int] = Counter()
        self._rid_rng = random.Random(f"{seed}/request-ids")
        self._router = Router(self._routes(), redirect_slashes=False, default=self._no_route)

    def reset(self) -> None:
        """Back to a fresh emulator (same seed, same clock, no faults)."""
        self.world.reset()
        self.callbacks.reset()
        self.faults = FaultPlan(None, self.seed)
        self.requests.clear()
        self.responses.clear()
        self.qps.windows.clear()
        self._rid_rng = random.Random(f"{self.seed}/request-ids")

    def transport(
        self, *, root_path: str = "", client: tuple[str, int] = ("127.0.0.1", 123)
    ) -> EmulatorTransport:
        """An httpx transport that serves requests with this app, in process.

        Use it as ``httpx.AsyncClient(base_url="http://emulator", transport=app.transport())``.
        A ``drop`` fault surfaces as ``httpx.RemoteProtocolError``.
        """
        from agora_stt_async.emulator._server import EmulatorTransport

        return EmulatorTransport(self, root_path=root_path, client=client)

    # -- NCS callbacks ----------------------------------------------------------------------

    async def deliver_callbacks(self) -> int:
        """Apply due changes and send every pending NCS callback now (held ones too);
        return how many were sent. The deterministic way for tests."""
        return await self.callbacks.deliver()

    async def run_callbacks(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Send NCS callbacks as they happen, until cancelled.

        Start it in a task group (``await tg.start(app.run_callbacks)``); served by
        uvicorn with its lifespan on, the app runs it itself.
        """
        await self.callbacks.run(task_status=task_status)

    # -- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here; the server closes the connection
        # SPEC-SILENT (spec §12.3 [INFERRED], as Agora's other REST products): echo the
        # caller's X-Request-Id, else send a fresh req_<16 hex> from the seeded RNG.
        request_id = next((v for k, v in scope["headers"] if k == b"x-request-id" and v), None)
        if request_id is None:
            request_id = f"req_{self._rid_rng.getrandbits(64):016x}".encode()
        header = (b"x-request-id", request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self.responses[message["status"]] += 1
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self._router(scope, receive, send_with_id)
        except ClientDisconnect:
            return  # the client left mid-request: nobody to answer
        except ConnectionDropped:
            raise
        except Exception:
            # Outside the documented routes (control API, routing): Kong's 500 body.
            _log.exception("emulator: unexpected error on %s %s", scope["method"], scope["path"])
            if started:
                raise  # too late to answer; the server closes the connection
            await json_response(UNEXPECTED, 500)(scope, receive, send_with_id)

    async def _no_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        # SPEC-SILENT: any path or method the API does not have answers the gateway's 404.
        await json_response(NO_ROUTE, 404)(scope, receive, send)

    def _routes(self) -> list[BaseRoute]:
        v7, legacy = C.V7_PATH_PREFIX, C.LEGACY_PATH_PREFIX
        table: list[tuple[str, Generation, dict[str, tuple[str, Handler]]]] = [
            (v7 + "/join", "v7", {"POST": ("join", self._join)}),
            (v7 + "/agents", "v7", {"GET": ("list", self._list)}),
            (v7 + "/agents/{agent_id}", "v7", {"GET": ("query", self._query)}),
            (v7 + "/agents/{agent_id}/leave", "v7", {"POST": ("leave", self._leave)}),
            (v7 + "/agents/{agent_id}/update", "v7", {"POST": ("update", self._update)}),
            (legacy + "/builderTokens", "legacy", {"POST": ("acquire", self._acquire)}),
            (legacy + "/tasks", "legacy", {"POST": ("start", self._start)}),
            (
                legacy + "/tasks/{task_id}",
                "legacy",
                {
                    "GET": ("legacy_query", self._legacy_query),
                    "PATCH": ("legacy_update", self._legacy_update),
                    "DELETE": ("stop", self._stop),
                },
            ),
        ]
        routes: list[BaseRoute] = [
            Route(path, _Endpoint(self, generation, handlers))
            for path, generation, handlers in table
        ]
        if self.config.control_api:
            from agora_stt_async.emulator._control import control_routes

            routes.extend(control_routes(self))
        return routes

    async def handle(
        self,
        route: str,
        generation: Generation,
        handler: Handler,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Serve one request of a documented route: faults, auth, the handler, errors."""
        self.requests[route] += 1
        app_id = str(scope.get("path_params", {}).get("app_id", ""))
        # Only App IDs with STT are counted (any other is refused anyway): a flood of
        # made-up App IDs must not grow the per-App-ID windows without bound.
        if self.config.qps_limit > 0 and app_id in self.app_ids:
            wait = self.qps.wait(app_id)
            if wait is not None:
                headers = {"Retry-After": str(wait)}
                await json_response(RATE_LIMITED, 429, headers)(scope, receive, send)
                return
        fault = self.faults.draw(route)
        delay = self.faults.config.base_latency
        if fault == "latency":
            delay += self.faults.config.latency
        if delay > 0:
            await anyio.sleep(delay)
        if fault is not None and fault in PRE_PROCESSING:
            response = fault_response(
                fault,
                generation,
                retry_after=self.faults.config.retry_after,
                code20_status=self.config.code20_status,
                internal_code=self.faults.config.internal_code,
            )
        else:
            try:
                response = await self._serve(route, generation, handler, Request(scope, receive))
            except ClientDisconnect:
                raise  # the client left mid-body; __call__ ends the exchange quietly
            except Exception:  # noqa: BLE001 - a bug: logged, answered as the service would
                # Not a refusal: still answer as the service would (spec §6.1/§6.2: 500),
                # with the request id, so a client can report it.
                _log.exception("emulator: unexpected error serving %s", route)
                response = json_response(FAULT_BODIES[("500", generation)], 500)
        if fault == "drop":
            await self._drop(route, response, scope, send)
        await response(scope, receive, send)

    async def _serve(
        self, route: str, generation: Generation, handler: Handler, request: Request
    ) -> Response:
        """Auth, then the handler; a refusal rendered in the generation's envelope."""
        refusal = self._auth.refusal(
            request.headers.get("authorization", ""), request.path_params["app_id"], generation
        )
        if refusal is not None:
            return refusal
        try:
            return await handler(request)
        except (InvalidBody, SchemaError, WorldError) as exc:
            return render(exc, generation, route, self.config.repeat_start_status)

    async def _drop(self, route: str, response: Response, scope: Scope, send: Send) -> None:
        """Send nothing (or only the headers) of ``response``, then ``ConnectionDropped``."""
        abort = scope.get("extensions", {}).get(DROP_EXTENSION)
        if abort is not None:
            self.responses[response.status_code] += 1  # processed, counted, never sent
            await abort()
        else:
            # No way to close the connection from here: send the headers, then raise; the
            # server closes the connection because the app failed mid-response.
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": response.raw_headers,
                }
            )
        raise ConnectionDropped(f"{route}: response dropped after processing")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # The server's lifespan is the one long-lived task an ASGI app gets: the NCS
        # sender runs in it, when callbacks are configured.
        async with anyio.create_task_group() as tg:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if self.callbacks.enabled:
                        await tg.start(self.run_callbacks)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    tg.cancel_scope.cancel()
                    break
        await send({"type": "lifespan.shutdown.complete"})

    # -- v7 routes (spec §4) ---------------------------------------------------------------

    async def _join(self, request: Request) -> Response:
        spec = self.validator.join(await _read_json(request))
        # keep the body as sent (starlette caches it): cheaper than re-encoding the config
        spec = dataclasses.replace(spec, raw=await request.body())
        agent = self.world.join(request.path_params["app_id"], spec)
        return json_response(
            {"agent_id": agent.agent_id, "create_ts": agent.create_ts, "status": agent.status.value}
        )

    async def _query(self, request: Request) -> Response:
        params = request.path_params
        agent = self.world.agent(params["app_id"], params["agent_id"])
        # SPEC-SILENT: a FAILED agent is still a successful query: 200, status FAILED, and
        # its exit message as ``message`` (spec §4.5 shows that body for failures).
        message = agent.exit_message if agent.status is AgentStatus.FAILED else "ok"
        return json_response(
            {
                "message": message,
                "agent_id": agent.agent_id,
                "create_ts": agent.create_ts,
                "status": agent.status.value,
            }
        )

    async def _leave(self, request: Request) -> Response:
        params = request.path_params
        self.world.leave(params["app_id"], params["agent_id"])
        # spec §4.4: 200, no body documented; the emulator sends none (Content-Length: 0).
        return Response(status_code=200)

    async def _update(self, request: Request) -> Response:
        params, query = request.path_params, request.query_params
        spec = self.validator.update(
            await _read_json(request), query.get("sequenceId"), query.get("updateMask")
        )
        agent = self.world.update(
            params["app_id"],
            params["agent_id"],
            spec,
            lambda config: self.validator.check_translation(config, legacy=False),
        )
        return json_response(
            {"agent_id": agent.agent_id, "create_ts": agent.create_ts, "status": agent.status.value}
        )

    async def _list(self, request: Request) -> Response:
        params = {key: request.query_params.getlist(key) for key in request.query_params}
        query = self.validator.list_query(params, self.world.advance())
        page = self.world.list_agents(request.path_params["app_id"], query)
        items = [
            {"start_ts": a.create_ts, "status": a.status.value, "agent_id": a.agent_id}
            for a in page.items
        ]
        return json_response(
            {
                "data": {"count": len(items), "list": items},
                "meta": {"cursor": page.cursor, "total": page.total},
                "status": "ok",
            }
        )

    # -- legacy routes (spec §5) -----------------------------------------------------------

    async def _acquire(self, request: Request) -> Response:
        instance_id = self.validator.acquire(await _read_json(request))
        token = self.world.acquire(request.path_params["app_id"], instance_id)
        return json_response(
            {"tokenName": token.name, "createTs": token.create_ts, "instanceId": token.instance_id}
        )

    async def _start(self, request: Request) -> Response:
        token = self.world.parse_token(
            request.path_params["app_id"], request.query_params.get("builderToken")
        )
        spec = self.validator.legacy_start(
            await _read_json(request), accept_v5_nested=self.config.accept_v5_nested
        )
        spec = dataclasses.replace(spec, raw=await request.body())
        task = self.world.start(token, spec)
        return json_response(
            {"taskId": task.task_id, "createTs": task.create_ts, "status": task.status.value}
        )

    async def _legacy_query(self, request: Request) -> Response:
        task = self.world.task(self._token(request), request.path_params["task_id"])
        return json_response(
            {"taskId": task.task_id, "createTs": task.create_ts, "status": task.status.value}
        )

    async def _legacy_update(self, request: Request) -> Response:
        token = self._token(request)
        query = request.query_params
        spec = self.validator.legacy_update(
            await _read_json(request), query.get("sequenceId"), query.get("updateMask")
        )
        task = self.world.update_task(
            token,
            request.path_params["task_id"],
            spec,
            lambda config: self.validator.check_translation(config, legacy=True),
        )
        return json_response(
            {"taskId": task.task_id, "createTs": task.create_ts, "status": task.status.value}
        )

    async def _stop(self, request: Request) -> Response:
        self.world.stop(self._token(request), request.path_params["task_id"])
        # SPEC-SILENT: spec §5.5 documents no stop body; 200 with an empty body, as leave.
        return Response(status_code=200)

    def _token(self, request: Request) -> BuilderToken:
        return self.world.parse_token(
            request.path_params["app_id"], request.query_params.get("builderToken")
        )


class _Endpoint:
    """One path: dispatches on the method; an undocumented method is the gateway's 404."""

    def __init__(
        self, app: EmulatorApp, generation: Generation, handlers: dict[str, tuple[str, Handler]]
    ) -> None:
        self._app = app
        self._generation = generation
        self._handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self._handlers.get(scope["method"])
        if entry is None:
            await json_response(NO_ROUTE, 404)(scope, receive, send)
            return
        route, handler = entry
        await self._app.handle(route, self._generation, handler, scope, receive, send)


async def _read_json(request: Request) -> object:
    # ClientDisconnect (the client left mid-body) propagates: there is nobody to answer.
    return parse_json(await request.body())


def create_app(
    config: EmulatorConfig | None = None,
    *,
    clock: SupportsNow | None = None,
    seed: int | str = 0,
    faults: FaultConfig | None = None,
    app_ids: Iterable[str] | None = None,
    credentials: Mapping[str, str] | None = None,
    control_api: bool | None = None,
    callback_transport: httpx.AsyncBaseTransport | None = None,
) -> EmulatorApp:
    """Build an emulator: an ASGI app behaving like Agora's STT service (v7 and legacy).

    Args:
        config: behaviour settings; keyword arguments below override its fields.
        clock: anything with ``now() -> float`` (Unix seconds); default ``EmulatorClock()``
            (real time plus an offset the control API can grow).
        seed: seeds every random choice (ids, tokens, request ids, faults).
        faults: fault injection in force from the start.
        app_ids: App IDs with STT enabled (default: the emulator's, plus ``AGORA_APP_ID``).
        credentials: Customer ID → Secret pairs (default: ``emulator`` / ``emulator-secret``,
            plus ``AGORA_CUSTOMER_ID`` / ``AGORA_CUSTOMER_SECRET``).
        control_api: serve ``/_emulator/`` (default ``True``).
        callback_transport: the httpx transport NCS callbacks are sent through (default:
            the network); e.g. ``httpx.ASGITransport(receiver)`` for an in-process one.

    Returns:
        An ``EmulatorApp``; serve it with ``app.transport()`` or ``serve(app)``.
    """
    config = config or EmulatorConfig()
    if app_ids is not None:
        config = dataclasses.replace(config, app_ids=tuple(app_ids))
    if credentials is not None:
        config = dataclasses.replace(config, credentials=dict(credentials))
    if control_api is not None:
        config = dataclasses.replace(config, control_api=control_api)
    return EmulatorApp(
        config, clock if clock is not None else EmulatorClock(), seed, faults, callback_transport
    )
