"""The ``agora-stt`` click group: global options and the commands of the other modules."""

from __future__ import annotations

import click

from agora_stt_async import __version__, state
from agora_stt_async._cli import _common
from agora_stt_async._cli._agents import agents, legacy
from agora_stt_async._cli._demo import demo, emulator_command
from agora_stt_async._cli._tasks import tasks

EPILOG = """\b
Exit status: 0 ok; 1 tasks left running, a stop not confirmed, a confirmation
declined, or an unexpected failure; 2 bad command line; 3 bad or missing
credentials; 4 not found; 5 invalid input; 6 service error (after retries).
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, "--version", prog_name="agora-stt")
@_common.connection_options
@click.pass_context
def cli(ctx: click.Context, base_url: str | None, verbose: bool) -> None:
    """Agora Real-Time STT from the command line: a demo, a local emulator, and the
    tools to find and stop agents and tasks.

    Credentials come from AGORA_APP_ID, AGORA_CUSTOMER_ID and AGORA_CUSTOMER_SECRET;
    the service from --base-url or AGORA_STT_BASE_URL (default https://api.agora.io;
    the demo's default is the emulator in process). Secrets are never printed.
    """
    ctx.obj = _common.Settings(
        base_url=base_url, verbose=verbose, base_url_given=_common.base_url_given(ctx)
    )


@cli.command()
@click.argument("table", type=click.Choice(["phases", "v7", "legacy"]), default="phases")
def diagram(table: str) -> None:
    """Print the task-state machine's TABLE as a Mermaid stateDiagram (from the tables
    the session runs, so it cannot drift from the code)."""
    click.echo(state.mermaid(table), nl=False)


cli.add_command(demo)
cli.add_command(emulator_command)
cli.add_command(agents)
cli.add_command(legacy)
cli.add_command(tasks)
