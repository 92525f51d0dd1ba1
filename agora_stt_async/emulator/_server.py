"""Serving the emulator: in process through httpx, or on loopback through uvicorn.

The only module of the emulator that knows about threads, sockets and asyncio (uvicorn
runs its own asyncio loop in a background thread, so callers on trio are unaffected).

A ``drop`` fault must look like a server that died after doing the work: no response at
all. uvicorn answers 500 when an app fails before responding, so ``serve()`` and
``run()`` give uvicorn a subclass of its own HTTP protocol that puts a
``DROP_EXTENSION`` in each request's scope: a callable that aborts the connection. The
client then reads EOF before any byte (``httpx.RemoteProtocolError: Server disconnected
without sending a response``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Final

import anyio.lowlevel
import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from agora_stt_async.emulator._app import (
    DROP_EXTENSION,
    ConnectionDropped,
    EmulatorApp,
    create_app,
)
from agora_stt_async.emulator._config import EmulatorConfig
from agora_stt_async.emulator._faults import FaultConfig

if TYPE_CHECKING:
    import uvicorn

_START_TIMEOUT_S: Final = 10.0


class EmulatorTransport(httpx.ASGITransport):
    """``httpx.ASGITransport`` bound to an emulator, with dropped connections made real.

    A ``drop`` fault processes the request and then raises ``ConnectionDropped``; this
    transport turns it into ``httpx.RemoteProtocolError``, which is what a client sees
    when a server closes the connection without a complete response.
    """

    def __init__(
        self,
        app: EmulatorApp | None = None,
        *,
        root_path: str = "",
        client: tuple[str, int] = ("127.0.0.1", 123),
    ) -> None:
        self.emulator = app if app is not None else create_app()
        super().__init__(app=self.emulator, root_path=root_path, client=client)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a complete response.", request=request
            ) from exc


def transport(
    app: EmulatorApp | None = None,
    *,
    root_path: str = "",
    client: tuple[str, int] = ("127.0.0.1", 123),
) -> EmulatorTransport:
    """An in-process httpx transport for ``app`` (a fresh ``create_app()`` if ``None``).

    Use it as ``httpx.AsyncClient(base_url="http://emulator", transport=transport(app))``.
    """
    return EmulatorTransport(app, root_path=root_path, client=client)


class _DropFilter(logging.Filter):
    """Keeps uvicorn from logging an injected drop as an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


_DROP_FILTER: Final = _DropFilter()


@functools.cache
def _http_protocol() -> type:
    """uvicorn's HTTP protocol class (httptools if installed, else h11), plus the drop
    extension. Built on first use: uvicorn is imported only when serving."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class DroppingHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
        app: ASGIApp  # set by uvicorn's protocol (the loaded app), wrapped below
        transport: Any  # the connection's asyncio transport

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            app = self.app

            async def app_with_drop(scope: Scope, receive: Receive, send: Send) -> None:
                scope["extensions"] = {**(scope.get("extensions") or {}), DROP_EXTENSION: drop}
                await app(scope, receive, send)

            async def drop() -> None:
                self.transport.abort()
                # Let the loop run connection_lost first: uvicorn then marks the request
                # disconnected, and the 500 it sends for the app's exception goes nowhere.
                await anyio.lowlevel.checkpoint()

            self.app = app_with_drop

    return DroppingHTTPProtocol


@contextlib.contextmanager
def serve(
    app: EmulatorApp | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    subprocess: bool = False,
    config: EmulatorConfig | None = None,
    seed: int | str = 0,
    faults: FaultConfig | None = None,
) -> Iterator[str]:
    """Serve an emulator with uvicorn on loopback; yield its base URL.

    By default ``app`` runs in a background thread of this process, so tests can inspect
    ``app.world`` directly. ``subprocess=True`` runs it in a child process instead (built
    there from ``config``, ``seed`` and ``faults``; drive it through ``/_emulator/``), so
    that it does not share the GIL with the code under test — the benchmarks' choice.

    Args:
        app: the emulator to serve in a thread (a fresh ``create_app()`` if ``None``).
        host: interface to bind; loopback by default.
        port: TCP port; 0 picks a free one.
        log_level: uvicorn's log level.
        subprocess: serve from a child process (``app`` must then be ``None``).
        config: the child's ``EmulatorConfig`` (``subprocess=True`` only).
        seed: the child's seed.
        faults: the child's initial fault config.

    Yields:
        ``"http://127.0.0.1:<port>"``. On exit the server stops (thread joined, or child
        terminated).

    Raises:
        RuntimeError: the server did not start within 10 seconds.
        ValueError: ``subprocess=True`` with an ``app``.
    """
    if subprocess:
        if app is not None:
            raise ValueError("serve(subprocess=True) builds its app in the child; pass config")
        with _serve_in_child(host, port, log_level, config, seed, faults) as url:
            yield url
        return
    logging.getLogger("uvicorn.error").addFilter(_DROP_FILTER)
    sock = _bind(host, port)
    try:
        server = _server(app if app is not None else create_app(), log_level)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="agora-stt-emulator", daemon=True
        )
        thread.start()
        try:
            deadline = time.monotonic() + _START_TIMEOUT_S
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the emulator's uvicorn server did not start")
                time.sleep(0.005)
            yield _url(host, sock)
        finally:
            server.should_exit = True
            thread.join(_START_TIMEOUT_S)
    finally:
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every keep-alive request waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _url(host: str, sock: socket.socket) -> str:
    shown = f"[{host}]" if sock.family == socket.AF_INET6 else host
    return f"http://{shown}:{sock.getsockname()[1]}"


def _server(app: EmulatorApp, log_level: str) -> uvicorn.Server:
    import uvicorn

    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=log_level,
        access_log=False,
        # The lifespan runs the NCS callback sender (``_callbacks``) when one is set up.
        lifespan="on" if app.callbacks.enabled else "off",
        ws="none",
        http=_http_protocol(),
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


@contextlib.contextmanager
def _serve_in_child(
    host: str,
    port: int,
    log_level: str,
    config: EmulatorConfig | None,
    seed: int | str,
    faults: FaultConfig | None,
) -> Iterator[str]:
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    parent_end, child_end = context.Pipe(duplex=False)
    process = context.Process(
        target=_child_main,
        args=(child_end, host, port, log_level, config, seed, faults),
        name="agora-stt-emulator",
        daemon=True,
    )
    process.start()
    child_end.close()
    try:
        if not parent_end.poll(_START_TIMEOUT_S * 3):  # the child imports the SDK first
            raise RuntimeError("the emulator's child process did not start")
        url: str = parent_end.recv()
        yield url
    finally:
        parent_end.close()
        process.terminate()  # uvicorn shuts down gracefully on SIGTERM
        process.join(_START_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join()


def _child_main(
    conn: Connection,
    host: str,
    port: int,
    log_level: str,
    config: EmulatorConfig | None,
    seed: int | str,
    faults: FaultConfig | None,
) -> None:
    logging.getLogger("uvicorn.error").addFilter(_DROP_FILTER)
    sock = _bind(host, port)
    server = _server(create_app(config, seed=seed, faults=faults), log_level)
    conn.send(_url(host, sock))
    conn.close()
    server.run(sockets=[sock])


def run(
    app: EmulatorApp | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
) -> None:
    """Serve ``app`` with uvicorn in the foreground until interrupted (for the CLI)."""
    import uvicorn

    logging.getLogger("uvicorn.error").addFilter(_DROP_FILTER)
    app = app if app is not None else create_app()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on" if app.callbacks.enabled else "off",
        ws="none",
        http=_http_protocol(),
    )
