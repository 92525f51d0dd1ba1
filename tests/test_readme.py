"""The README holds what it shows: its Quickstart test command is the one ``.ci/run``
runs, its state diagram is the state machine's own, every Python example compiles,
the examples marked ``<!-- readme-test: run -->`` run against the emulator, every
``agora-stt`` command line it shows exists with the options it names, and its table of
exit statuses is the CLI's."""

from __future__ import annotations

import ast
import inspect
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import click
import pytest

from agora_stt_async import emulator, state
from agora_stt_async._cli import _common
from agora_stt_async._cli._app import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
RUN_MARKER = "<!-- readme-test: run -->"

_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(lang: str) -> list[tuple[int, str, bool]]:
    """Fenced blocks of ``lang``: (line number, text, marked to run)."""
    found = []
    for match in _FENCE.finditer(README):
        if match["lang"] != lang:
            continue
        line = README.count("\n", 0, match.start()) + 1
        before = README[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        found.append((line, match["body"], before.strip() == RUN_MARKER))
    return found


def section(title: str) -> str:
    """The text of the ``## title`` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match is not None, f"README has no section {title!r}"
    return match[1]


def test_readme_quickstart_has_the_two_commands():
    """Quickstart: install-and-demo, then .ci/run, as the first two shell blocks."""
    shell = [body.strip() for _, body, _ in blocks("bash")]
    assert shell[:2] == [
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]" '
        "&& agora-stt demo",
        "bash .ci/run",
    ]
    assert 'pip install -e ".[dev]" && agora-stt demo' in section("Quickstart")


def test_readme_test_command_is_the_one_ci_runs():
    """The test command the README states is exactly the last command of .ci/run."""
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    commands = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    ci_command = commands[-1]
    assert ci_command.startswith("python -m pytest")
    shown = [body.strip() for _, body, _ in blocks("bash")]
    assert ci_command in shown
    assert f"`{ci_command}`" in README or ci_command in section("Quickstart")


def _path_without_redis(tmp_path: Path) -> str:
    """A PATH with the tools .ci/redis.sh uses but no redis-server, redis-cli or apt-get:
    a machine that has no Redis and cannot install one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("id", "tr", "cat", "sed", "mktemp", "seq", "sleep"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


@pytest.mark.parametrize(
    ("ci", "status"),
    [
        pytest.param("", 0, id="not-ci"),
        pytest.param("false", 0, id="ci-false"),
        pytest.param("true", 1, id="ci"),
    ],
)
def test_readme_ci_redis_script_without_redis(tmp_path, ci, status):
    """.ci/redis.sh, sourced under ``set -euo pipefail`` where Redis can be neither found
    nor installed, warns and carries on outside CI (the Redis tests then skip), so the
    Quickstart's ``bash .ci/run`` works there; in CI it fails."""
    bash = shutil.which("bash")
    if bash is None:  # pragma: no cover - every CI image has bash
        pytest.skip("no bash")
    done = subprocess.run(
        [bash, "-c", "set -euo pipefail; . .ci/redis.sh; echo carried on"],
        cwd=ROOT,
        env={"PATH": _path_without_redis(tmp_path), "CI": ci, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == status, done.stderr
    if status == 0:
        assert done.stdout.strip() == "carried on"
        assert "warning: no Redis server" in done.stderr
    else:
        assert "carried on" not in done.stdout
        assert "error: CI is set" in done.stderr


def test_readme_ci_run_always_starts_redis():
    """.ci/run sources .ci/redis.sh unconditionally (a missing script must fail, not
    silently skip the Redis tests)."""
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert ". .ci/redis.sh" in lines


def test_readme_mermaid_is_the_state_machine():
    """The README's phase diagram equals ``state.mermaid("phases")``."""
    [(_, diagram, _)] = blocks("mermaid")
    assert diagram == state.mermaid("phases")


def test_readme_placeholder_sections_are_present():
    """The sections other parts of the project fill keep their headings."""
    for title in (
        "Reliability",
        "Webhooks",
        "Performance",
        "Operating in production",
        "Scaling out: a shared task store",
    ):
        assert section(title).strip()


PYTHON_BLOCKS = blocks("python")


@pytest.mark.parametrize(
    ("line", "source"),
    [pytest.param(line, body, id=f"line-{line}") for line, body, _ in PYTHON_BLOCKS],
)
def test_readme_python_compiles(line, source):
    """Every Python example compiles (snippets may ``await`` at top level)."""
    compile(source, f"README.md:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.fixture
def readme_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[emulator.EmulatorApp]:
    """An emulator on loopback with the AGORA_* variables pointing at it (agents start
    at once, so the examples' waits end quickly)."""
    app = emulator.create_app(emulator.EmulatorConfig(start_delay=0.0, stop_delay=0.0))
    with emulator.serve(app) as base_url:
        monkeypatch.setenv("AGORA_STT_BASE_URL", base_url)
        monkeypatch.setenv("AGORA_APP_ID", _common.EMULATOR_APP_ID)
        monkeypatch.setenv("AGORA_CUSTOMER_ID", _common.EMULATOR_CUSTOMER_ID)
        monkeypatch.setenv("AGORA_CUSTOMER_SECRET", _common.EMULATOR_CUSTOMER_SECRET)
        yield app


def test_readme_has_runnable_examples():
    """Some examples are marked to run (so the next test cannot pass vacuously)."""
    assert sum(run for _, _, run in PYTHON_BLOCKS) >= 3


@pytest.mark.parametrize(
    ("line", "source"),
    [pytest.param(line, body, id=f"line-{line}") for line, body, run in PYTHON_BLOCKS if run],
)
def test_readme_example_runs(readme_service, line, source, capsys):
    """A marked example runs as a script against the emulator; test functions it
    defines are called with an in-process emulator transport."""
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(source, f"README.md:{line}", "exec"), namespace)
    tests = [
        fn
        for name, fn in namespace.items()
        if name.startswith("test_") and inspect.iscoroutinefunction(fn)
    ]
    for fn in tests:
        anyio.run(fn, emulator.create_app().transport())
    # A script shows what it did; an example test is called instead.
    assert tests or capsys.readouterr().out.strip()


def _command_lines() -> list[list[str]]:
    lines = []
    for _, body, _ in blocks("bash"):
        for raw in body.splitlines():
            text = raw.split("#", 1)[0].replace("&", " ").strip()
            if text.startswith("agora-stt "):
                lines.append(shlex.split(text)[1:])
    return lines


def test_readme_cli_commands_exist():
    """Every ``agora-stt ...`` line in the README names a real command and real options."""
    lines = _command_lines()
    assert len(lines) >= 10
    for words in lines:
        command: click.Command = cli
        ctx = click.Context(cli)
        rest = list(words)
        while isinstance(command, click.Group) and rest and not rest[0].startswith(("-", "[")):
            sub = command.get_command(ctx, rest.pop(0))
            assert sub is not None, f"no command in: agora-stt {' '.join(words)}"
            command = sub
        assert not isinstance(command, click.Group), f"incomplete: agora-stt {' '.join(words)}"
        known = {opt for param in command.params for opt in param.opts}
        known |= {"--base-url", "--verbose", "-v", "--help", "-h"}
        for word in rest:
            option = word.strip("[]").split("=", 1)[0]
            if option.startswith("--"):
                assert option in known, f"{option} is not an option of agora-stt {' '.join(words)}"


def test_readme_exit_statuses_are_the_clis():
    """The README's exit-status table lists exactly the CLI's statuses."""
    rows = re.findall(r"^\| *(\d) *\|", section("The command line"), re.MULTILINE)
    assert sorted(int(code) for code in rows) == sorted(
        {
            _common.EXIT_OK,
            _common.EXIT_FAILURE,
            _common.EXIT_USAGE,
            _common.EXIT_AUTH,
            _common.EXIT_NOT_FOUND,
            _common.EXIT_INVALID,
            _common.EXIT_SERVICE,
        }
    )
