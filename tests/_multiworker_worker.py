"""One backend worker for tests/test_multiworker.py: a Session on a shared RedisStore.

Run as a child process: ``python tests/_multiworker_worker.py REDIS_URL NAMESPACE
EMULATOR_URL NAME LEASE_TTL ADOPT_INTERVAL``. It talks JSON lines: one command per line
on stdin, one answer per line on stdout (the first answer, ``{"ready": owner}``, comes
unasked). Commands:

- ``{"op": "start", "keys": [...], "armed": bool}``: start every key at once (the
  channel is the key); with ``armed``, first answer ``{"armed": n}`` and wait for a
  ``{"op": "go"}`` line, so that several workers start together. Answers ``{"ok": [...],
  "refused": [...], "errors": {key: text}}`` (``refused``: another worker drives it);
- ``{"op": "stop", "keys": [...]}``: ``session.stop(key)`` for each, at once; answers
  ``{"stopped": n, "errors": {...}}``;
- ``{"op": "status"}``: ``{"driving": [keys of live tasks this session drives]}``;
- ``{"op": "exit"}``: leave the session (stopping what it drives), answer
  ``{"exit": true}`` and end with status 0.

Standalone on purpose (no import from ``tests``): it runs by path, in its own process.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import anyio

from agora_stt_async import (
    AsyncClient,
    JoinRequest,
    RetryPolicy,
    RtcConfig,
    Session,
    SessionError,
)
from agora_stt_async._constants import (
    EMULATOR_APP_ID,
    EMULATOR_CUSTOMER_ID,
    EMULATOR_CUSTOMER_SECRET,
)
from agora_stt_async.stores import RedisStore


def join(key: str) -> JoinRequest:
    return JoinRequest(
        name=f"agent-{key}",
        languages=["en-US"],
        rtc_config=RtcConfig(channel_name=key, pub_bot_uid="1000"),
    )


async def command() -> dict[str, Any]:
    """The next command line from stdin (read in a thread: stdin is a blocking file)."""
    line = await anyio.to_thread.run_sync(sys.stdin.buffer.readline)
    if not line:
        raise EOFError("the test closed this worker's stdin")
    message: dict[str, Any] = json.loads(line)
    return message


def answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def start_all(session: Session, keys: list[str]) -> dict[str, Any]:
    ok: list[str] = []
    refused: list[str] = []
    errors: dict[str, str] = {}

    async def start(key: str) -> None:
        try:
            await session.start(key, join(key))
        except SessionError as error:
            if "another worker" in str(error) or "not driven" in str(error):
                refused.append(key)
            else:
                errors[key] = repr(error)
        except Exception as error:  # noqa: BLE001 - reported to the test, which fails on it
            errors[key] = repr(error)
        else:
            ok.append(key)

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(start, key)
    return {"ok": sorted(ok), "refused": sorted(refused), "errors": errors}


async def stop_all(session: Session, keys: list[str]) -> dict[str, Any]:
    stopped = 0
    errors: dict[str, str] = {}

    async def stop(key: str) -> None:
        nonlocal stopped
        try:
            await session.stop(key)
        except Exception as error:  # noqa: BLE001 - reported to the test, which fails on it
            errors[key] = repr(error)
        else:
            stopped += 1

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(stop, key)
    return {"stopped": stopped, "errors": errors}


async def main(argv: list[str]) -> None:
    redis_url, namespace, emulator_url, _name, ttl, adopt = argv
    store = RedisStore(redis_url, app_id=EMULATOR_APP_ID, namespace=namespace, lease_ttl=float(ttl))
    client = AsyncClient(
        app_id=EMULATOR_APP_ID,
        customer_id=EMULATOR_CUSTOMER_ID,
        customer_secret=EMULATOR_CUSTOMER_SECRET,
        base_url=emulator_url,
        retry=RetryPolicy.testing(),
    )
    async with (
        store,
        client,
        Session(
            client,
            store=store,
            refresh_interval=30.0,
            stop_timeout=60.0,
            adopt_interval=float(adopt),
        ) as session,
    ):
        assert session._leases is not None
        answer({"ready": session._leases.owner})
        while True:
            order = await command()
            op = order["op"]
            if op == "start":
                if order.get("armed"):
                    answer({"armed": len(order["keys"])})
                    go = await command()
                    assert go == {"op": "go"}, go
                answer(await start_all(session, order["keys"]))
            elif op == "stop":
                answer(await stop_all(session, order["keys"]))
            elif op == "status":
                driving = [h.key for h in session.handles() if not h.record.phase.is_terminal]
                answer({"driving": sorted(driving)})
            elif op == "exit":
                break
            else:
                raise ValueError(f"unknown command {op!r}")
    answer({"exit": True})


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    anyio.run(main, sys.argv[1:], backend="asyncio")
