"""``agora-stt tasks list|stop`` over a session's store file.

For the operator of a service that crashed: its ``SqliteStore`` file still knows every
task it started. ``tasks list`` reads the file only (no credentials, no request);
``tasks stop`` opens a ``Session`` on it, ``recover()``s (each record is reconciled
with the service), and stops the chosen tasks. A record's builder token and start
request (which may hold bot tokens and storage keys) are never shown.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

import anyio
import click

from agora_stt_async import AgoraSTTError, Session, SessionError, TaskHandle
from agora_stt_async._cli import _common, _render
from agora_stt_async._cli._common import Settings, connection_options, json_option
from agora_stt_async.state import TaskRecord
from agora_stt_async.stores import SqliteStore

DEFAULT_STORE: Final = "stt-tasks.db"
STOP_TIMEOUT_S: Final = 60.0


def store_option(f: _common.F) -> _common.F:
    return click.option(
        "--store",
        "store_path",
        type=click.Path(dir_okay=False),
        default=DEFAULT_STORE,
        show_default=True,
        help="The SqliteStore file of the service.",
    )(f)


def open_store(path: str, *, read_only: bool = False) -> SqliteStore:
    """The store at ``path``; never creates a file (a typo must not look like "no tasks").
    ``read_only`` (``tasks list``) never writes to the file either.

    Raises:
        StoreMissing: no file at ``path``, or an empty one.
    """
    if not os.path.isfile(path):
        raise _common.StoreMissing(f"no store file at {path}")
    # An empty file (a `touch`, a failed copy) has no schema: refused with a clear
    # message rather than SQLite's "no such table".
    if os.path.getsize(path) == 0:
        raise _common.StoreMissing(f"the store file {path} is empty: not a SqliteStore file")
    return SqliteStore(path, read_only=read_only)


@click.group()
def tasks() -> None:
    """Tasks recorded in a session store file (what a crashed service left behind)."""


@tasks.command("list")
@store_option
@click.option("--live", is_flag=True, default=False, help="Only tasks not yet ended.")
@json_option
@click.option("--verbose", "-v", is_flag=True, default=False, help="Log to stderr.")
@click.pass_context
def list_tasks(
    ctx: click.Context, store_path: str, live: bool, json_mode: bool, verbose: bool
) -> None:
    """List the task records of a store file: a table, or JSON lines with --json.

    Reads the file only; sends no request.
    """
    opts = _common.settings(ctx, None, verbose)

    async def main() -> int:
        async with open_store(store_path, read_only=True) as store:
            records = await store.all()
        if live:
            records = [r for r in records if not r.phase.is_terminal]
        if json_mode:
            for record in records:
                _render.json_object(_render.record_dict(record))
        else:
            _render.table(None, _render.RECORD_COLUMNS, map(_render.record_row, records))
            alive = sum(not r.phase.is_terminal for r in records)
            _render.info(f"{len(records)} task(s), {alive} not ended, in {store_path}")
        return _common.EXIT_OK

    _common.run(ctx, opts, main, json_mode=json_mode)


Results = dict[str, "str | Exception"]
"""Per key: an outcome ("stopped", "already ended") or the error that prevented it."""


async def _stop_one(handle: TaskHandle, results: Results) -> None:
    try:
        await handle.stop(wait=True, timeout=STOP_TIMEOUT_S)
    except AgoraSTTError as error:
        results[handle.key] = error
    except TimeoutError:
        results[handle.key] = SessionError(
            f"task {handle.key!r}: the stop was not confirmed within {STOP_TIMEOUT_S:g} s"
        )
    else:
        results[handle.key] = "stopped"


@tasks.command("stop")
@click.argument("keys", nargs=-1, metavar="[KEY]...")
@click.option(
    "--all",
    "stop_all",
    is_flag=True,
    default=False,
    help="Stop every task of the store that has not ended.",
)
@store_option
@json_option
@connection_options
@click.pass_context
def stop_tasks(
    ctx: click.Context,
    keys: tuple[str, ...],
    stop_all: bool,
    store_path: str,
    json_mode: bool,
    base_url: str | None,
    verbose: bool,
) -> None:
    """Stop tasks recorded in a store file, by KEY or --all.

    Opens a Session on the store, recovers every record (each is reconciled with the
    service), then stops the chosen ones and records that in the store.
    """
    if bool(keys) == stop_all:
        raise click.UsageError("give task keys or --all (one of them)")
    opts = _common.settings(ctx, base_url, verbose)

    async def main() -> int:
        return await stop_from_store(opts, store_path, keys, json_mode=json_mode)

    _common.run(ctx, opts, main, json_mode=json_mode)


async def stop_from_store(
    opts: Settings, store_path: str, keys: Sequence[str], *, json_mode: bool
) -> int:
    store = open_store(store_path)
    results: Results = {}
    records: dict[str, TaskRecord] = {}
    # stop_on_exit=False: only the chosen tasks are stopped, never the others.
    async with (
        _common.make_client(opts) as client,
        store,
        Session(client, store=store, stop_on_exit=False) as session,
    ):
        await session.recover()
        known = {h.key: h for h in session.handles()}
        chosen = list(dict.fromkeys(keys)) if keys else sorted(known)
        async with anyio.create_task_group() as tg:
            for key in chosen:
                handle = known.get(key)
                if handle is None:
                    results[key] = _common.NothingMatched(f"no task {key!r} in {store_path}")
                elif handle.record.phase.is_terminal:
                    if keys:  # asked for by name: say so; with --all, skip quietly
                        results[key] = "already ended"
                else:
                    tg.start_soon(_stop_one, handle, results)
        records = {key: h.record for key, h in known.items()}
    return _report(results, records, json_mode=json_mode, verbose=opts.verbose)


def _report(
    results: Results,
    records: dict[str, TaskRecord],
    *,
    json_mode: bool,
    verbose: bool,
) -> int:
    code = _common.EXIT_OK
    rows: list[tuple[str, str | None, str, str | None]] = []
    for key in sorted(results):
        outcome = results[key]
        record = records.get(key)
        server_id = None if record is None else record.server_id
        if isinstance(outcome, str):
            rows.append((key, server_id, outcome, None))
        else:
            if code == _common.EXIT_OK:
                code = _common.exit_code_for(outcome)
            rows.append((key, server_id, "failed", _common.describe_for(outcome, verbose=verbose)))
    if json_mode:
        _render.json_object(
            {"tasks": [{"key": k, "server_id": s, "outcome": o, "error": e} for k, s, o, e in rows]}
        )
    else:
        _render.table(None, ("key", "server id", "outcome", "error"), rows)
        stopped = sum(row[2] == "stopped" for row in rows)
        failed = sum(row[2] == "failed" for row in rows)
        _render.info(f"stopped {stopped}, failed {failed}")
    return code
