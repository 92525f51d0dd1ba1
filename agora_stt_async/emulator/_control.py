"""The ``/_emulator/`` control API: clock, faults, channels, state, reset.

Not part of Agora's API. It needs no credentials, is never faulted and is not counted in
``requests``; ``EmulatorConfig(control_api=False)`` removes it (its paths then answer the
gateway's 404, like any unknown path). Errors are ``{"error": "..."}`` with 400 (a body
that is not JSON, nested too deeply, or the wrong shape), 404, 405 (method) or 409 (a
clock that cannot advance, a status that cannot be forced); an unexpected failure is
500 ``{"message": "An unexpected error occurred"}``. Every answer carries X-Request-Id.

Fault config (``POST /_emulator/faults``, the JSON of ``FaultConfig``): ``rate``,
``routes``, ``kinds`` (``500``, ``502``, ``503``, ``504``, ``429``, ``code20``,
``internal``, ``latency``, ``drop``), ``retry_after``, ``latency``, ``base_latency``,
``schedule`` (``[{"kind", "route", "count", "skip"}]``) and ``internal_code`` (the legacy
code an ``internal`` fault carries: 1, 6, 23, 62, 501, 502 or 504). A ``drop`` served by
``serve()``/``run()`` closes the connection without a byte of response; behind another
ASGI server the status line and headers go out, then the connection closes.

=============================  ==============================================================
``GET  /_emulator/clock``      ``{"now": <unix s>}``
``POST /_emulator/clock``      ``{"advance": s}`` moves the clock; answers ``{"now": ...}``
``GET  /_emulator/faults``     the fault config in force (``FaultConfig`` JSON)
``POST /_emulator/faults``     replace it; ``{}`` clears every fault
``GET  /_emulator/state``      counts by status (agents, tasks), tokens minted, channels,
                               requests per route, responses per status, faults injected
                               and what is left of the fault schedule;
                               ``?list=1&limit=N`` adds the first N agents and tasks
``POST /_emulator/channels/X`` ``{"hosts": n}`` sets channel X's host count (0 = idle)
``GET  /_emulator/channels/X`` ``{"channel": X, "hosts": n}``
``GET  /_emulator/agents/ID``  one agent in full (config, sequence, exit message)
``POST /_emulator/agents/ID``  ``{"status": "FAILED"|"RECOVERING"|"RUNNING"|"STOPPED",
                               "message": ...}`` forces a status (the fault the API can't ask);
                               a STOPPING agent can only be forced to end (else 409)
``GET  /_emulator/tasks/ID``   one legacy task in full
``GET  /_emulator/events``     recent lifecycle events (``?limit=N``), the NCS seam
``GET  /_emulator/callbacks``  NCS callbacks: enabled, url, pending and counters
``POST /_emulator/callbacks``  send the pending callbacks now; answers as GET plus ``sent``
``POST /_emulator/reset``      forget everything; faults and counters too (not the clock)
=============================  ==============================================================
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agora_stt_async._enums import AgentStatus
from agora_stt_async.emulator._faults import FaultConfig
from agora_stt_async.emulator._records import Agent, Task, TransitionRefused, UnknownAgent
from agora_stt_async.emulator._schema import InvalidBody
from agora_stt_async.emulator._validate import parse_json

if TYPE_CHECKING:
    from agora_stt_async.emulator._app import EmulatorApp

PREFIX: Final = "/_emulator"
_LIST_LIMIT_MAX: Final = 10000


class _ControlError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def control_routes(app: EmulatorApp) -> list[BaseRoute]:
    """The control API's routes, bound to ``app``."""
    api = _Control(app)
    table: list[tuple[str, str, Callable[[Request], Awaitable[object]]]] = [
        ("/clock", "GET", api.get_clock),
        ("/clock", "POST", api.advance_clock),
        ("/faults", "GET", api.get_faults),
        ("/faults", "POST", api.set_faults),
        ("/state", "GET", api.state),
        ("/channels/{name}", "GET", api.get_channel),
        ("/channels/{name}", "POST", api.set_channel),
        ("/agents/{agent_id}", "GET", api.get_agent),
        ("/agents/{agent_id}", "POST", api.set_agent),
        ("/tasks/{task_id}", "GET", api.get_task),
        ("/events", "GET", api.events),
        ("/callbacks", "GET", api.get_callbacks),
        ("/callbacks", "POST", api.deliver_callbacks),
        ("/reset", "POST", api.reset),
    ]
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[object]]]] = {}
    for path, method, handler in table:
        by_path.setdefault(PREFIX + path, {})[method] = handler
    return [
        Route(path, _endpoint(methods), methods=sorted(methods))
        for path, methods in by_path.items()
    ]


def _endpoint(
    methods: dict[str, Callable[[Request], Awaitable[object]]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        handler = methods.get(request.method)
        if handler is None:
            return JSONResponse({"error": f"{request.method} is not allowed here"}, 405)
        try:
            return JSONResponse(await handler(request))
        except _ControlError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)

    endpoint.__name__ = "control"
    return endpoint


class _Control:
    def __init__(self, app: EmulatorApp) -> None:
        self._app = app

    async def get_clock(self, request: Request) -> object:
        return {"now": self._app.world.advance()}

    async def advance_clock(self, request: Request) -> object:
        body = await _body(request)
        seconds = body.get("advance")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise _ControlError('expected {"advance": <seconds>}')
        advance = getattr(self._app.clock, "advance", None)
        if advance is None:
            raise _ControlError("this emulator's clock cannot be advanced", 409)
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise _ControlError("advance must be a finite number of seconds >= 0")
        advance(float(seconds))
        return {"now": self._app.world.advance()}

    async def get_faults(self, request: Request) -> object:
        return self._app.faults.config.to_json()

    async def set_faults(self, request: Request) -> object:
        try:
            config = FaultConfig.from_json(await _body(request))
        except ValueError as exc:
            raise _ControlError(str(exc)) from exc
        self._app.faults.configure(config)
        return config.to_json()

    async def state(self, request: Request) -> object:
        app = self._app
        world = app.world
        counts = world.counts()
        body: dict[str, object] = {
            "now": world.advance(),
            **counts,
            "requests": dict(app.requests),
            "responses": {str(k): v for k, v in sorted(app.responses.items())},
            "faults": {
                "injected": dict(app.faults.injected),
                "pending": app.faults.pending(),
                "config": app.faults.config.to_json(),
            },
        }
        if request.query_params.get("list") in ("1", "true", "yes"):
            limit = _int(request.query_params.get("limit", "100"), "limit", 0, _LIST_LIMIT_MAX)
            agents = body["agents"]
            tasks = body["tasks"]
            assert isinstance(agents, dict)
            assert isinstance(tasks, dict)
            agents["items"] = [a.describe() for a in world.agents(limit)]
            tasks["items"] = [t.describe() for t in world.tasks(limit)]
        return body

    async def get_channel(self, request: Request) -> object:
        name = request.path_params["name"]
        return {"channel": name, "hosts": self._app.world.hosts(name)}

    async def set_channel(self, request: Request) -> object:
        name = request.path_params["name"]
        hosts = (await _body(request)).get("hosts")
        if isinstance(hosts, bool) or not isinstance(hosts, int) or hosts < 0:
            raise _ControlError('expected {"hosts": <integer >= 0>}')
        self._app.world.set_hosts(name, hosts)
        return {"channel": name, "hosts": hosts}

    async def get_agent(self, request: Request) -> object:
        agent = self._app.world.find_agent(request.path_params["agent_id"])
        if agent is None:
            raise _ControlError("no such agent", 404)
        return _detail(agent)

    async def set_agent(self, request: Request) -> object:
        body = await _body(request)
        try:
            status = AgentStatus(body.get("status"))
        except ValueError as exc:
            raise _ControlError("status must be an agent status") from exc
        message = body.get("message")
        if message is not None and not isinstance(message, str):
            raise _ControlError("message must be a string")
        try:
            agent = self._app.world.set_agent_status(
                request.path_params["agent_id"], status, message
            )
        except UnknownAgent as exc:
            raise _ControlError("no such agent, or it has already ended", 404) from exc
        except TransitionRefused as exc:
            raise _ControlError(str(exc), 409) from exc
        except ValueError as exc:
            raise _ControlError(str(exc)) from exc
        return agent.describe()

    async def get_task(self, request: Request) -> object:
        task = self._app.world.find_task(request.path_params["task_id"])
        if task is None:
            raise _ControlError("no such task", 404)
        return _detail(task)

    async def events(self, request: Request) -> object:
        limit = _int(request.query_params.get("limit", "100"), "limit", 0, _LIST_LIMIT_MAX)
        self._app.world.advance()
        recent = list(self._app.world.events)[-limit:] if limit else []
        return {"events": [dataclasses.asdict(event) for event in recent]}

    async def get_callbacks(self, request: Request) -> object:
        return self._app.callbacks.describe()

    async def deliver_callbacks(self, request: Request) -> object:
        sent = await self._app.deliver_callbacks()
        return {**self._app.callbacks.describe(), "sent": sent}

    async def reset(self, request: Request) -> object:
        self._app.reset()
        return {"now": self._app.world.advance(), **self._app.world.counts()}


def _detail(job: Agent | Task) -> dict[str, object]:
    """One agent or task in full: its summary, timers, sequence and stored config."""
    return {
        **job.describe(),
        "max_idle_time": job.max_idle_time,
        "last_sequence_id": job.last_sequence_id,
        "exit_message": job.exit_message if job.status.is_terminal else None,
        "config": json.loads(job.config),
    }


async def _body(request: Request) -> dict[str, object]:
    raw = await request.body()
    try:
        body = parse_json(raw) if raw else {}
    except InvalidBody as exc:  # not JSON, or nested too deeply to decode
        raise _ControlError(f"the body must be JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise _ControlError("the body must be a JSON object")
    return body


def _int(raw: str, name: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise _ControlError(f"{name} must be an integer") from exc
    if not low <= value <= high:
        raise _ControlError(f"{name} must be within {low}..{high}")
    return value
