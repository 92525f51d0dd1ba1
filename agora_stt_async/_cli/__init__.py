"""The ``agora-stt`` console script: a thin layer over the public API.

``main()`` is the entry point declared in ``pyproject.toml``. It needs the ``cli`` extra
(click and rich); without it, it prints the install command instead of a traceback, as
httpx's ``main()`` does. Everything else lives in private modules:

* ``_app``     the click group, global options and ``agora-stt diagram``;
* ``_demo``    ``agora-stt demo`` (every channel through the whole lifecycle, concurrently)
  and ``agora-stt emulator``;
* ``_agents``  ``agora-stt agents list|get|stop`` over the v7 agents API, and
  ``agora-stt legacy stop``;
* ``_tasks``   ``agora-stt tasks list|stop`` over a session store file;
* ``_common``  settings, the exit-code table, running a coroutine, error reporting;
* ``_render``  tables and JSON.

The CLI imports only public names of the SDK (``tests/test_layers.py`` checks it).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

INSTALL_HINT = "pip install 'agora-stt-async[cli]'"


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``agora-stt``; exits the process with the command's exit status."""
    try:
        import click  # noqa: F401
        import rich  # noqa: F401
    except ImportError:
        print(
            "The agora-stt command needs the 'cli' extra (click and rich). Install it with:\n\n"
            f"    {INSTALL_HINT}\n",
            file=sys.stderr,
        )
        sys.exit(1)
    from agora_stt_async._cli._app import cli

    cli.main(args=list(argv) if argv is not None else None, prog_name="agora-stt")
