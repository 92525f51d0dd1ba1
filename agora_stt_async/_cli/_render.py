"""Output: rich tables for people, JSON for scripts, messages on stderr.

Results go to stdout (a table, one JSON object, or JSON lines for lists); everything
else (progress, errors, hints, logs) goes to stderr, so ``--json`` output can be piped.
Consoles are made per call, so they always write to the current ``sys.stdout`` and
``sys.stderr`` (click's test runner swaps them).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agora_stt_async import Agent
from agora_stt_async.state import TaskRecord

PIPE_WIDTH = 250
"""Width when writing to a pipe or file: tables keep their natural width (ids are never
folded), instead of rich's 80 columns."""


def _console(stream: TextIO, *, stderr: bool = False) -> Console:
    console = Console(file=stream, highlight=False, stderr=stderr)
    if not console.is_terminal:
        console = Console(file=stream, highlight=False, stderr=stderr, width=PIPE_WIDTH)
    return console


def stdout() -> Console:
    return _console(sys.stdout)


def stderr() -> Console:
    return _console(sys.stderr, stderr=True)


def json_object(obj: Mapping[str, object]) -> None:
    """One JSON object on one line of stdout."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """A line for people, on stderr."""
    stderr().print(escape(message), soft_wrap=True)


def error(message: str, *, hint: str | None = None, request_id: str | None = None) -> None:
    console = stderr()
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    if request_id:
        console.print(f"  request id: {escape(request_id)}", soft_wrap=True)
    if hint:
        console.print(f"  [dim]hint:[/] {escape(hint)}", soft_wrap=True)


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    err: bool = False,
) -> None:
    """A rich table of ``rows`` (``None`` cells print as ``-``)."""
    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*(escape("-" if cell is None else str(cell)) for cell in row))
    (stderr() if err else stdout()).print(t)


def timestamp(ts: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC, to the second."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- agents and task records ---------------------------------------------------------------

AGENT_COLUMNS = ("agent id", "status", "created")


def agent_dict(agent: Agent, *, request_id: bool = False) -> dict[str, object]:
    data: dict[str, object] = {
        "agent_id": agent.agent_id,
        "status": agent.status.value,
        "create_ts": agent.create_ts,
    }
    if agent.message:
        data["message"] = agent.message
    if request_id and agent.response is not None and agent.response.request_id:
        data["request_id"] = agent.response.request_id
    return data


def agent_row(agent: Agent) -> tuple[object, ...]:
    return (agent.agent_id, agent.status.value, timestamp(agent.create_ts))


RECORD_COLUMNS = (
    "key",
    "api",
    "phase",
    "channel",
    "server id",
    "last status",
    "updated",
    "last error",
)


def record_dict(record: TaskRecord) -> dict[str, object]:
    """What an operator may see of a record: never its builder token or start request
    (which can hold bot tokens and storage keys)."""
    status = record.server_status
    return {
        "key": record.key,
        "api": record.api.value,
        "phase": record.phase.value,
        "channel": record.channel,
        "name": record.name,
        "agent_id": record.agent_id,
        "task_id": record.task_id,
        "instance_id": record.instance_id,
        "status": None if status is None else status.value,
        "sequence_id": record.sequence_id,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "last_error": record.last_error,
    }


def record_row(record: TaskRecord) -> tuple[object, ...]:
    status = record.server_status
    return (
        record.key,
        record.api.value,
        record.phase.value,
        record.channel,
        record.server_id,
        None if status is None else status.value,
        timestamp(record.updated_at),
        record.last_error,
    )
