"""``agora-stt agents list|get|stop`` (v7 agents API) and ``agora-stt legacy stop``.

``agents stop --all-running`` is the emergency brake: it lists every live agent of the
App ID (through the cursor, before stopping any, so the listing is not disturbed by
its own effects), asks for confirmation unless ``--yes``, and leaves each. An agent
that is already gone when its turn comes counts as stopped. Without a terminal on
stdin there is nobody to ask: it refuses (exit 2) unless ``--yes``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

import anyio
import attrs
import click

from agora_stt_async import (
    AgentStatus,
    AgoraSTTError,
    AsyncClient,
    ConflictError,
    NotFoundError,
)
from agora_stt_async._cli import _common, _render
from agora_stt_async._cli._common import connection_options, json_option

STATES: Final = tuple(status.value.lower() for status in AgentStatus)
LIVE_STATES: Final = (
    AgentStatus.IDLE,
    AgentStatus.STARTING,
    AgentStatus.RUNNING,
    AgentStatus.RECOVERING,
)
"""What "running" means for the brake: every agent that is or may soon be transcribing.
IDLE is in (spec §4.3: "not initialised", so not ended either); listing it costs one
more list request."""
STOP_CONCURRENCY: Final = 16

Outcome = Literal["stopped", "already stopped", "not found", "failed"]


@attrs.frozen
class StopResult:
    agent_id: str
    outcome: Outcome
    error: AgoraSTTError | None = None


@click.group()
def agents() -> None:
    """List, inspect and stop v7 agents (credentials from AGORA_* variables)."""


@agents.command("list")
@click.option("--channel", default=None, help="Only agents of this channel.")
@click.option(
    "--state",
    type=click.Choice(STATES),
    default="running",
    show_default=True,
    help="Only agents in this state.",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 100),
    default=100,
    show_default=True,
    help="Agents per list request (the cursor is followed to the end).",
)
@json_option
@connection_options
@click.pass_context
def list_agents(
    ctx: click.Context,
    channel: str | None,
    state: str,
    page_size: int,
    json_mode: bool,
    base_url: str | None,
    verbose: bool,
) -> None:
    """List agents, following the cursor: a table, or JSON lines with --json.

    The service lists agents created in the last 24 hours.
    """
    opts = _common.settings(ctx, base_url, verbose)

    async def main() -> int:
        rows = []
        async with _common.make_client(opts) as client:
            async for agent in client.agents.list(
                channel=channel, state=AgentStatus(state.upper()), page_size=page_size
            ):
                if json_mode:
                    _render.json_object(_render.agent_dict(agent))
                else:
                    rows.append(_render.agent_row(agent))
        if not json_mode:
            _render.table(None, _render.AGENT_COLUMNS, rows)
            _render.info(f"{len(rows)} agent(s) {state}" + (f" in {channel}" if channel else ""))
        return _common.EXIT_OK

    _common.run(ctx, opts, main, json_mode=json_mode)


@agents.command("get")
@click.argument("agent_id")
@json_option
@connection_options
@click.pass_context
def get_agent(
    ctx: click.Context, agent_id: str, json_mode: bool, base_url: str | None, verbose: bool
) -> None:
    """Show one agent."""
    opts = _common.settings(ctx, base_url, verbose)

    async def main() -> int:
        async with _common.make_client(opts) as client:
            agent = await client.agents.get(agent_id)
        data = _render.agent_dict(agent, request_id=opts.verbose)
        if json_mode:
            _render.json_object(data)
        else:
            _render.table(None, ("field", "value"), data.items())
        return _common.EXIT_OK

    _common.run(ctx, opts, main, json_mode=json_mode)


async def live_agent_ids(client: AsyncClient, channel: str | None) -> list[str]:
    """Every live agent (of ``channel``, or all), listed to the end before any is stopped."""
    found: dict[str, None] = {}
    for status in LIVE_STATES:
        async for agent in client.agents.list(channel=channel, state=status, page_size=100):
            found[agent.agent_id] = None
    return list(found)


async def leave(client: AsyncClient, agent_id: str, *, gone_is_stopped: bool) -> StopResult:
    """Leave one agent. A 404 is "already stopped" when the agent still answers a query
    (STOPPING/STOPPED), or when ``gone_is_stopped`` (it was listed live a moment ago)."""
    try:
        await client.agents.leave(agent_id)
    except NotFoundError as error:
        if gone_is_stopped:
            return StopResult(agent_id, "already stopped")
        try:
            agent = await client.agents.get(agent_id)
        except NotFoundError:
            return StopResult(agent_id, "not found", error)
        except AgoraSTTError as other:
            return StopResult(agent_id, "failed", other)
        if agent.status in (AgentStatus.STOPPING, AgentStatus.STOPPED, AgentStatus.FAILED):
            return StopResult(agent_id, "already stopped")
        return StopResult(agent_id, "failed", error)
    except AgoraSTTError as error:
        return StopResult(agent_id, "failed", error)
    return StopResult(agent_id, "stopped")


async def leave_all(
    client: AsyncClient, agent_ids: Iterable[str], *, gone_is_stopped: bool
) -> list[StopResult]:
    results: list[StopResult] = []
    limiter = anyio.CapacityLimiter(STOP_CONCURRENCY)

    async def one(agent_id: str) -> None:
        async with limiter:
            results.append(await leave(client, agent_id, gone_is_stopped=gone_is_stopped))

    async with anyio.create_task_group() as tg:
        for agent_id in agent_ids:
            tg.start_soon(one, agent_id)
    return results


def report_stops(results: list[StopResult], *, json_mode: bool, verbose: bool) -> int:
    """Print what happened to each agent; the status of the first failure, or 0."""
    by: dict[str, list[str]] = {"stopped": [], "already stopped": [], "not found": []}
    failed: list[dict[str, object]] = []
    for result in results:
        if result.outcome == "failed":
            assert result.error is not None
            failure: dict[str, object] = {
                "agent_id": result.agent_id,
                "type": type(result.error).__name__,
                "message": _common.describe(result.error),
            }
            rid = _common.request_id_of(result.error)
            if verbose and rid:
                failure["request_id"] = rid
            failed.append(failure)
        else:
            by[result.outcome].append(result.agent_id)
    if json_mode:
        _render.json_object(
            {
                "stopped": by["stopped"],
                "already_stopped": by["already stopped"],
                "not_found": by["not found"],
                "failed": failed,
            }
        )
    else:
        if results:
            _render.table(
                None,
                ("agent id", "outcome", "error"),
                [
                    (
                        r.agent_id,
                        r.outcome,
                        None
                        if r.error is None or r.outcome != "failed"
                        else _common.describe_for(r.error, verbose=verbose),
                    )
                    for r in sorted(results, key=lambda r: r.agent_id)
                ],
            )
        _render.info(
            f"stopped {len(by['stopped'])}, already stopped {len(by['already stopped'])}, "
            f"not found {len(by['not found'])}, failed {len(failed)}"
        )
    for result in results:
        if result.outcome in ("failed", "not found") and result.error is not None:
            return _common.exit_code_for(result.error)
    return _common.EXIT_OK


@agents.command("stop")
@click.argument("agent_ids", nargs=-1, metavar="[AGENT_ID]...")
@click.option("--channel", default=None, help="Stop every live agent of this channel.")
@click.option(
    "--all-running",
    is_flag=True,
    default=False,
    help="Stop every live agent of the App ID (asks first unless --yes).",
)
@click.option("--yes", "-y", is_flag=True, default=False, help="Do not ask for confirmation.")
@json_option
@connection_options
@click.pass_context
def stop_agents(
    ctx: click.Context,
    agent_ids: tuple[str, ...],
    channel: str | None,
    all_running: bool,
    yes: bool,
    json_mode: bool,
    base_url: str | None,
    verbose: bool,
) -> None:
    """Stop agents: by id, every live one of a --channel, or --all-running.

    Live means IDLE, STARTING, RUNNING or RECOVERING. An agent already stopping or
    stopped counts as stopped.
    """
    if sum((bool(agent_ids), channel is not None, all_running)) != 1:
        raise click.UsageError("give agent ids, or --channel, or --all-running (exactly one)")
    ask = all_running and not yes
    if ask and not _common.stdin_is_terminal():
        # Nobody can confirm: a piped "y" (or `yes |`) must not stand in for --yes.
        raise click.UsageError(
            "--all-running asks for confirmation on a terminal and stdin is not one; "
            "pass --yes to stop every live agent without asking"
        )
    opts = _common.settings(ctx, base_url, verbose)
    listed: list[str] | None = None
    if ask:

        async def find() -> tuple[str, list[str]]:
            async with _common.make_client(opts) as client:
                return client.app_id, await live_agent_ids(client, None)

        app_id, listed = _common.call(ctx, opts, find, json_mode=json_mode)
        # Asked between two event loops, on the main thread: Ctrl-C at the prompt aborts
        # at once (a prompt in a worker thread would keep the process alive until Enter).
        question = f"Stop {len(listed)} live agent(s) of App ID {app_id}?"
        if listed and not click.confirm(question, default=False, err=True):
            _render.info("nothing stopped")
            ctx.exit(_common.EXIT_FAILURE)

    async def main() -> int:
        async with _common.make_client(opts) as client:
            if agent_ids:
                results = await leave_all(client, dict.fromkeys(agent_ids), gone_is_stopped=False)
                return report_stops(results, json_mode=json_mode, verbose=opts.verbose)
            ids = listed if listed is not None else await live_agent_ids(client, channel)
            results = await leave_all(client, ids, gone_is_stopped=True)
        return report_stops(results, json_mode=json_mode, verbose=opts.verbose)

    _common.run(ctx, opts, main, json_mode=json_mode)


# --- legacy ----------------------------------------------------------------------------------


@click.group()
def legacy() -> None:
    """The legacy v5/v6 builder-token API (past end-of-life at Agora; v7 is the default)."""


@legacy.command("stop")
@click.argument("task_id")
@click.option(
    "--token",
    "token_name",
    required=True,
    metavar="TOKEN_NAME",
    help="The builder token (tokenName) that started the task; never printed.",
)
@json_option
@connection_options
@click.pass_context
def legacy_stop(
    ctx: click.Context,
    task_id: str,
    token_name: str,
    json_mode: bool,
    base_url: str | None,
    verbose: bool,
) -> None:
    """Stop a legacy task with the builder token that started it."""
    opts = _common.settings(ctx, base_url, verbose)

    async def main() -> int:
        outcome = "stopped"
        async with _common.make_client(opts) as client:
            try:
                await client.legacy.stop(task_id, token_name)
            except ConflictError:
                outcome = "already stopped"  # spec §5: a repeated stop answers code 49
        if json_mode:
            _render.json_object({"task_id": task_id, "outcome": outcome})
        else:
            _render.info(f"task {task_id}: {outcome}")
        return _common.EXIT_OK

    _common.run(ctx, opts, main, json_mode=json_mode)
