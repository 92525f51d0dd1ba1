"""A real Redis server for the tests of the shared store (and for benchmarks/store_cost.py).

Where the server comes from, in order:

1. ``AGORA_STT_TEST_REDIS_URL`` (``.ci/redis.sh`` starts Debian's ``redis-server`` and
   sets it in CI);
2. a ``redis-server`` binary on ``PATH``, started here on a free loopback port with
   persistence off, and stopped afterwards;
3. neither: the tests skip with a reason, except when ``CI`` is set, where they fail
   (CI must never pass by skipping the multi-worker tests).

Tests never flush the server: each uses a namespace of its own, so a developer's Redis
given through the variable keeps its data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Final

ENV_URL: Final = "AGORA_STT_TEST_REDIS_URL"
SKIP_REASON: Final = "no Redis server: install redis-server or set AGORA_STT_TEST_REDIS_URL"


class NoRedisError(RuntimeError):
    """No Redis server could be found or started."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def local_redis_server(binary: str = "redis-server") -> Iterator[str]:
    """Start ``redis-server`` on a free loopback port; yield its URL; stop it after."""
    path = shutil.which(binary)
    if path is None:
        raise NoRedisError(SKIP_REASON)
    with tempfile.TemporaryDirectory(prefix="agora-stt-redis-") as workdir:
        for _ in range(3):  # another process may take the port between the pick and the bind
            port = _free_port()
            process = subprocess.Popen(
                [path, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", workdir, "--daemonize", "no"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            for _ in range(500):  # 10 s
                if process.poll() is not None or _pings(port):
                    break
                time.sleep(0.02)  # noqa: TID251 - a synchronous fixture, no event loop here
            if process.poll() is None and _pings(port):
                break
            process.kill()
            process.wait()
        else:
            raise NoRedisError(f"{path} did not start on a loopback port")
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """The URL of a Redis server: from the environment, else one started here.

    Raises:
        NoRedisError: neither is possible.
    """
    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    with local_redis_server() as started:
        yield started


def in_ci() -> bool:
    """``CI`` is set to something other than empty, ``0`` or ``false`` (CI=true in CI)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def redis_for_tests() -> Iterator[str]:
    """``redis_server()`` for a pytest fixture: skip without Redis, or fail when ``CI`` is set."""
    import pytest

    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(redis_server())
        except NoRedisError as exc:
            if in_ci():
                pytest.fail(f"{exc} (CI is set: the shared-store tests must run here)")
            pytest.skip(str(exc))
        yield url
