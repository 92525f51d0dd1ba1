"""The ``agora-stt`` console script, run in process with click's ``CliRunner`` (the
commands call ``anyio.run`` themselves, so these tests are synchronous), against the
in-process emulator (demo) or an emulator served on loopback (everything else), plus
subprocess smoke tests of the installed script."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import click
import httpx
import pytest
from click.testing import CliRunner, Result

from agora_stt_async import (
    AgentStatus,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectError,
    JoinRequest,
    LegacyStartRequest,
    NotFoundError,
    RtcConfig,
    ServerError,
    ServiceNotEnabledError,
    Session,
    StopIncompleteError,
    ValidationError,
    emulator,
    state,
)
from agora_stt_async import _constants as C
from agora_stt_async._cli import _common, _demo, main
from agora_stt_async._cli._app import cli
from agora_stt_async.stores import SqliteStore

APP_ID = "cliapp00000000000000000000000000"
CUSTOMER_ID = "cli-tester"
SECRET = "cli-Secret-0123456789-never-printed"
SUMMARY_KEYS = {"channels", "started", "stopped", "leaked", "requests", "errors", "wall_s"}


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[emulator.EmulatorApp, str]]:
    """One emulator on loopback for the module (reset before each test that uses it)."""
    app = emulator.create_app(
        emulator.EmulatorConfig(start_delay=0.0, stop_delay=0.0),
        app_ids=[APP_ID],
        credentials={CUSTOMER_ID: SECRET},
    )
    with emulator.serve(app) as base_url:
        yield app, base_url


@pytest.fixture(scope="module")
def served_other() -> Iterator[tuple[emulator.EmulatorApp, str]]:
    """A second emulator on loopback, with the same credentials: the service a
    ``--base-url`` names while ``AGORA_STT_BASE_URL`` names the first."""
    app = emulator.create_app(
        emulator.EmulatorConfig(start_delay=0.0, stop_delay=0.0),
        app_ids=[APP_ID],
        credentials={CUSTOMER_ID: SECRET},
    )
    with emulator.serve(app) as base_url:
        yield app, base_url


@pytest.fixture
def other(served_other: tuple[emulator.EmulatorApp, str]) -> str:
    """The second emulator, fresh; its base URL."""
    app, base_url = served_other
    app.reset()
    return base_url


@pytest.fixture
def service(
    served: tuple[emulator.EmulatorApp, str], monkeypatch: pytest.MonkeyPatch
) -> emulator.EmulatorApp:
    """The served emulator, fresh, with the AGORA_* variables pointing at it."""
    app, base_url = served
    app.reset()
    monkeypatch.setenv("AGORA_STT_BASE_URL", base_url)
    monkeypatch.setenv("AGORA_APP_ID", APP_ID)
    monkeypatch.setenv("AGORA_CUSTOMER_ID", CUSTOMER_ID)
    monkeypatch.setenv("AGORA_CUSTOMER_SECRET", SECRET)
    return app


def invoke(*args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input)
    # Whatever happens, no command ever prints the secret.
    assert SECRET not in result.output
    return result


def last_json(result: Result) -> dict[str, Any]:
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert isinstance(data, dict)
    return data


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def client() -> AsyncClient:
    return AsyncClient(fast=False)  # configured from the environment set by `service`


def join(*channels: str) -> list[str]:
    """Start one v7 agent per channel through the SDK; their ids."""

    async def main() -> list[str]:
        async with client() as c:
            return [
                (
                    await c.agents.join(
                        JoinRequest(
                            name=f"{channel}-{i}",
                            languages=["en-US"],
                            rtc_config=RtcConfig(channel_name=channel, pub_bot_uid="7"),
                        )
                    )
                ).agent_id
                for i, channel in enumerate(channels)
            ]

    return anyio.run(main)


def status_of(agent_id: str) -> AgentStatus:
    async def main() -> AgentStatus:
        async with client() as c:
            return (await c.agents.get(agent_id)).status

    return anyio.run(main)


def legacy_task() -> tuple[str, str]:
    """A running legacy task: (task id, builder token name)."""

    async def main() -> tuple[str, str]:
        async with client() as c:
            token = await c.legacy.acquire("cli-legacy")
            task = await c.legacy.start(
                token,
                LegacyStartRequest(
                    languages=["en-US"],
                    rtc_config=RtcConfig(
                        channel_name="cli-legacy", pub_bot_uid="1", sub_bot_uid="2"
                    ),
                ),
            )
            return task.task_id, token.token_name

    return anyio.run(main)


# --- help, fallback, the table ---------------------------------------------------------------


def test_cli_help_lists_commands():
    """--help names every command and the exit statuses."""
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("demo", "emulator", "agents", "legacy", "tasks"):
        assert command in result.output
    text = " ".join(result.output.split())  # as read, whatever the wrapping
    assert "3 bad or missing credentials" in text
    assert "a confirmation declined" in text
    assert "beats AGORA_STT_BASE_URL" in text


def test_cli_demo_help_names_its_own_default():
    """demo --help says the demo's default service is the in-process emulator."""
    result = invoke("demo", "--help")
    assert result.exit_code == 0
    assert "default: the emulator in this process" in " ".join(result.output.split())
    assert "api.agora.io" not in result.output


def test_cli_main_without_extra_prints_install_command(monkeypatch, capsys):
    """Without click/rich, main() prints the install command and exits 1."""
    monkeypatch.setitem(sys.modules, "click", None)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 1
    assert "pip install 'agora-stt-async[cli]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "code"),
    [
        pytest.param(AuthenticationError(status_code=401), 3, id="auth"),
        pytest.param(ServiceNotEnabledError(status_code=403), 3, id="service-not-enabled"),
        pytest.param(_common.CredentialsMissing("x"), 3, id="missing-credentials"),
        pytest.param(NotFoundError(status_code=404), 4, id="not-found"),
        pytest.param(ValidationError("f", "limit"), 5, id="validation"),
        pytest.param(ConfigurationError("x"), 5, id="configuration"),
        pytest.param(BadRequestError(status_code=400), 5, id="bad-request"),
        pytest.param(ServerError(status_code=503), 6, id="server"),
        pytest.param(ConnectError("x"), 6, id="transport"),
        pytest.param(StopIncompleteError(("k",)), 1, id="stop-incomplete"),
    ],
)
def test_cli_exit_code_table(error, code):
    """Exit statuses come from the table, by the most specific error class."""
    assert _common.exit_code_for(error) == code


def test_cli_emulator_credentials_match_the_emulator():
    """The emulator credentials the CLI prints are the emulator's real defaults."""
    assert _common.EMULATOR_APP_ID == C.EMULATOR_APP_ID
    assert _common.EMULATOR_CUSTOMER_ID == C.EMULATOR_CUSTOMER_ID
    assert _common.EMULATOR_CUSTOMER_SECRET == C.EMULATOR_CUSTOMER_SECRET
    assert _common.ENV_BASE_URL == C.ENV_BASE_URL
    assert _common.CREDENTIAL_VARIABLES == (
        C.ENV_APP_ID,
        C.ENV_CUSTOMER_ID,
        C.ENV_CUSTOMER_SECRET,
    )


# --- demo -------------------------------------------------------------------------------------


def test_cli_demo_json_summary():
    """demo --json prints one JSON object: every channel ran the lifecycle, none leaked."""
    result = invoke("demo", "--channels", "20", "--json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert set(data) >= SUMMARY_KEYS
    assert data["channels"] == 20
    assert data["started"] == data["running"] == data["updated"] == 20
    assert data["listed"] == 20
    assert data["stopped"] == 20
    assert data["leaked"] == 0
    assert data["errors"] == 0
    assert isinstance(data["requests"], int)
    assert data["requests"] > 3 * 20  # join, update, leave each, and lists
    assert {"join", "update", "leave", "list"} <= set(data["latency_ms"])


def test_cli_demo_with_faults_leaks_nothing():
    """With 20 % faults on both API generations, nothing is left running."""
    result = invoke(
        "demo", "--channels", "12", "--api", "both", "--fault-rate", "0.2", "--seed", "3", "--json"
    )
    assert result.exit_code == 0, result.output
    data = last_json(result)
    assert data["leaked"] == 0
    assert data["fault_rate"] == 0.2
    assert isinstance(data["faults_injected"], int)
    assert data["faults_injected"] > 0
    assert data["started"] == data["stopped"]
    assert data["started"] + data["errors"] >= 12


def test_cli_demo_table():
    """Without --json the demo prints the summary tables (no progress bar off a terminal)."""
    result = invoke("demo", "--channels", "4", "--api", "legacy")
    assert result.exit_code == 0, result.output
    assert "still running (leaked)" in result.stdout
    assert "p99 ms" in result.stdout
    assert "acquire" in result.stdout


def test_cli_demo_exit_status_1_when_something_leaked(monkeypatch):
    """The demo exits 1 when tasks are still running at the end."""

    async def three(app: object) -> int:
        return 3

    monkeypatch.setattr(_demo, "count_leaked_in_process", three)
    result = invoke("demo", "--channels", "2", "--json")
    assert result.exit_code == 1
    assert last_json(result)["leaked"] == 3


def test_cli_demo_fault_rate_needs_in_process_emulator():
    """--fault-rate with a base URL is a usage error (exit 2)."""
    result = invoke("demo", "--base-url", "http://127.0.0.1:9", "--fault-rate", "0.1")
    assert result.exit_code == 2
    assert "in-process" in result.output


def test_cli_demo_against_served_emulator(service):
    """With a base URL the demo uses that service and the AGORA_* credentials."""
    result = invoke("demo", "--channels", "3", "--update-delay", "0", "--json")
    assert result.exit_code == 0, result.output
    data = last_json(result)
    assert data["target"].startswith("http://127.0.0.1:")
    assert data["stopped"] == 3
    assert data["leaked"] == 0


def test_cli_demo_exit_status_1_when_a_stop_is_not_confirmed(monkeypatch):
    """The demo exits 1 when the session reports stops it could not confirm, even with
    nothing counted as leaked."""

    class IncompleteSession:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._inner = Session(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        async def __aenter__(self) -> IncompleteSession:
            await self._inner.__aenter__()
            return self

        async def __aexit__(self, *exc: Any) -> None:
            await self._inner.__aexit__(*exc)
            raise StopIncompleteError(("ch-00000",))

    monkeypatch.setattr(_demo, "Session", IncompleteSession)
    result = invoke("demo", "--channels", "2", "--json")
    assert result.exit_code == 1, result.output
    data = last_json(result)
    assert (data["leaked"], data["stop_incomplete"]) == (0, 1)


def test_cli_demo_counts_leaks_of_every_task_the_session_owns(service, monkeypatch):
    """Against a base URL, a task whose start() raised but which the session started is
    counted as leaked (exit 1), though the demo never got its handle."""

    class FlakySession:
        """Starts ch-00000 and then raises, as a start whose answer was lost would; does
        not stop tasks on exit, so that one stays running."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._inner = Session(*args, **kwargs, stop_on_exit=False)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        async def start(self, key: str, request: Any) -> Any:
            handle = await self._inner.start(key, request)
            if key == "ch-00000":
                raise ServerError(status_code=503)
            return handle

        async def __aenter__(self) -> FlakySession:
            await self._inner.__aenter__()
            return self

        async def __aexit__(self, *exc: Any) -> None:
            await self._inner.__aexit__(*exc)

    monkeypatch.setattr(_demo, "Session", FlakySession)
    result = invoke("demo", "--channels", "2", "--update-delay", "0", "--json")
    assert result.exit_code == 1, result.output
    data = last_json(result)
    assert data["errors_by_step"] == {"start: ServerError": 1}
    assert data["stopped"] == 1
    assert data["leaked"] == 1


def test_cli_demo_legacy_has_no_list_count():
    """With --api legacy (no list endpoint) "listed back" is null in JSON and "-" in the
    table, not 0."""
    result = invoke("demo", "--channels", "2", "--api", "legacy", "--json")
    assert result.exit_code == 0, result.output
    assert last_json(result)["listed"] is None
    table = invoke("demo", "--channels", "2", "--api", "legacy")
    assert table.exit_code == 0, table.output
    assert re.search(r"listed back\s*│\s*-\s*│", table.stdout), table.stdout


def test_cli_demo_in_process_logs_a_local_url():
    """With -v the in-process demo logs URLs that cannot be mistaken for Agora's."""
    result = invoke("demo", "--channels", "1", "-v", "--json")
    assert result.exit_code == 0, result.output
    assert f"POST {_demo.IN_PROCESS_BASE_URL}/" in result.stderr
    assert "api.agora.io" not in result.stderr


# --- --base-url against AGORA_STT_BASE_URL ----------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(True, False, id="before-the-command"),
        pytest.param(False, True, id="after-the-command"),
        pytest.param(True, True, id="both-the-same"),
    ],
)
@pytest.mark.parametrize("command", ["agents-list", "demo", "agents-stop-all"])
def test_cli_base_url_flag_beats_the_environment(service, other, before, after, command):
    """A --base-url typed before or after the command is the service used, not the one
    AGORA_STT_BASE_URL names (an operator with production variables exported who types
    a local URL must not touch production)."""
    [env_agent] = join("env-room")
    group = ("--base-url", other) if before else ()
    own = ("--base-url", other) if after else ()
    if command == "agents-list":
        result = invoke(*group, "agents", "list", "--json", *own)
        assert result.exit_code == 0, result.output
        assert json_lines(result) == []  # the other service runs nothing
    elif command == "demo":
        result = invoke(*group, "demo", "--channels", "1", "--update-delay", "0", "--json", *own)
        assert result.exit_code == 0, result.output
        assert last_json(result)["target"] == other
    else:
        result = invoke(*group, "agents", "stop", "--all-running", "--yes", "--json", *own)
        assert result.exit_code == 0, result.output
        assert last_json(result)["stopped"] == []
    assert status_of(env_agent) is AgentStatus.RUNNING


def test_cli_base_url_from_the_environment_without_a_flag(service):
    """Without --base-url, AGORA_STT_BASE_URL names the service (the group and the
    command read the same variable)."""
    join("env-room")
    listed = invoke("agents", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert len(json_lines(listed)) == 1
    ran = invoke("demo", "--channels", "1", "--update-delay", "0", "--json")
    assert ran.exit_code == 0, ran.output
    assert last_json(ran)["target"] == os.environ["AGORA_STT_BASE_URL"]


def test_cli_base_url_given_twice_differently_is_refused(service, other):
    """--base-url before and after the command with different values is a usage error
    (exit 2), and nothing is stopped."""
    [env_agent] = join("env-room")
    result = invoke(
        "--base-url", other, "agents", "stop", "--all-running", "--yes",
        "--base-url", os.environ["AGORA_STT_BASE_URL"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--base-url given twice" in result.stderr
    assert status_of(env_agent) is AgentStatus.RUNNING


def test_cli_base_url_empty_is_refused(service):
    """An empty --base-url is a usage error, not a silent fall-back to the environment."""
    result = invoke("--base-url", "", "agents", "list")
    assert result.exit_code == 2, result.output
    assert "must not be empty" in result.stderr


# --- agents -----------------------------------------------------------------------------------


def test_cli_agents_list_follows_the_cursor(service):
    """agents list prints every agent across pages: a table, or JSON lines."""
    ids = join(*(f"room-{i}" for i in range(5)))
    result = invoke("agents", "list", "--page-size", "2", "--json")
    assert result.exit_code == 0, result.output
    rows = json_lines(result)
    assert sorted(r["agent_id"] for r in rows) == sorted(ids)
    assert {r["status"] for r in rows} == {"RUNNING"}
    table = invoke("agents", "list", "--channel", "room-3")
    assert table.exit_code == 0
    assert ids[3] in table.stdout
    assert ids[0] not in table.stdout
    assert "1 agent(s) running in room-3" in table.stderr


def test_cli_agents_get(service):
    """agents get shows one agent; --verbose adds the request id."""
    [agent_id] = join("one")
    result = invoke("agents", "get", agent_id, "--json", "--verbose")
    assert result.exit_code == 0, result.output
    data = last_json(result)
    assert data["agent_id"] == agent_id
    assert data["status"] == "RUNNING"
    assert str(data["request_id"]).strip()
    assert "request id" in result.stderr  # the SDK's DEBUG log lines


def test_cli_agents_get_unknown_exits_4(service):
    """An unknown agent is 'not found': exit 4, a hint, the request id only with -v."""
    result = invoke("agents", "get", "NO-SUCH-AGENT")
    assert result.exit_code == 4
    assert "NotFoundError" in result.stderr
    assert "hint:" in result.stderr
    assert "request id" not in result.stderr
    verbose = invoke("--verbose", "agents", "get", "NO-SUCH-AGENT", "--json")
    assert verbose.exit_code == 4
    error = last_json(verbose)["error"]
    assert isinstance(error, dict)
    assert error["exit_code"] == 4
    assert error["request_id"]
    assert f"request id: {error['request_id']}" in verbose.stderr


def test_cli_agents_stop_by_id(service):
    """agents stop ID leaves the agent; again it is 'already stopped'; unknown → 4."""
    [agent_id] = join("stop-me")
    first = invoke("agents", "stop", agent_id, "--json")
    assert first.exit_code == 0, first.output
    assert last_json(first)["stopped"] == [agent_id]
    assert status_of(agent_id) in (AgentStatus.STOPPING, AgentStatus.STOPPED)
    again = invoke("agents", "stop", agent_id, "--json")
    assert again.exit_code == 0, again.output
    assert last_json(again)["already_stopped"] == [agent_id]
    unknown = invoke("agents", "stop", "NO-SUCH-AGENT")
    assert unknown.exit_code == 4
    assert "not found 1" in unknown.stderr


def test_cli_agents_stop_channel(service):
    """agents stop --channel stops every live agent of that channel, only those."""
    a1, a2, b = join("chan-a", "chan-a", "chan-b")
    result = invoke("agents", "stop", "--channel", "chan-a", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(last_json(result)["stopped"]) == sorted([a1, a2])
    assert status_of(b) is AgentStatus.RUNNING


def test_cli_agents_stop_all_running_asks_first(service, monkeypatch):
    """--all-running asks for confirmation: 'no' stops nothing (exit 1), --yes stops all."""
    monkeypatch.setattr(_common, "stdin_is_terminal", lambda: True)
    ids = join("x1", "x2", "x3")
    declined = invoke("agents", "stop", "--all-running", input="n\n")
    assert declined.exit_code == 1
    assert "Stop 3 live agent(s)" in declined.output
    assert all(status_of(i) is AgentStatus.RUNNING for i in ids)
    confirmed = invoke("agents", "stop", "--all-running", input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "stopped 3" in confirmed.stderr
    join("x4")
    forced = invoke("agents", "stop", "--all-running", "--yes", "--json")
    assert forced.exit_code == 0
    assert len(last_json(forced)["stopped"]) == 1
    listed = invoke("agents", "list", "--json")
    assert json_lines(listed) == []


def test_cli_agents_stop_all_running_without_terminal_needs_yes(service):
    """Without a terminal on stdin, --all-running refuses (exit 2, nothing stopped) even
    when a "y" is piped in: only --yes stops without asking."""
    ids = join("p1", "p2")
    piped = invoke("agents", "stop", "--all-running", input="y\n")
    assert piped.exit_code == 2, piped.output
    assert "--yes" in piped.stderr
    assert all(status_of(i) is AgentStatus.RUNNING for i in ids)
    assert invoke("agents", "stop", "--all-running", "--yes").exit_code == 0
    assert not any(status_of(i) is AgentStatus.RUNNING for i in ids)


def test_cli_agents_stop_all_running_asks_on_the_main_thread(service, monkeypatch):
    """The confirmation is asked on the main thread, outside the event loop (so Ctrl-C at
    the prompt aborts at once), and a "no" stops nothing."""
    monkeypatch.setattr(_common, "stdin_is_terminal", lambda: True)
    asked: list[tuple[str, bool]] = []

    def confirm(text: str, **kwargs: Any) -> bool:
        asked.append((text, threading.current_thread() is threading.main_thread()))
        return False

    monkeypatch.setattr(click, "confirm", confirm)
    ids = join("m1")
    result = invoke("agents", "stop", "--all-running")
    assert result.exit_code == 1, result.output
    assert asked == [(f"Stop 1 live agent(s) of App ID {APP_ID}?", True)]
    assert status_of(ids[0]) is AgentStatus.RUNNING


def test_cli_agents_stop_all_running_includes_idle(monkeypatch):
    """--all-running lists IDLE agents too (spec §4.3: "not initialised", not ended) and
    stops them."""
    prefix = C.V7_PATH_PREFIX.format(app_id=APP_ID)
    states: list[str | None] = []
    left: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == f"{prefix}/agents":
            state = request.url.params.get("state")
            states.append(state)
            items = [{"agent_id": "IDLE-1", "status": "IDLE", "start_ts": 1_700_000_000}]
            page = items if state == "0" else []
            body = {"data": {"count": len(page), "list": page}, "meta": {"cursor": ""}}
            return httpx.Response(200, json={**body, "status": "ok"})
        if request.method == "POST" and request.url.path.endswith("/leave"):
            left.append(request.url.path.split("/")[-2])
            return httpx.Response(200, json={})
        return httpx.Response(500)

    def make_client(settings: Any, **kwargs: Any) -> AsyncClient:
        return AsyncClient(
            app_id=APP_ID,
            customer_id=CUSTOMER_ID,
            customer_secret=SECRET,
            transport=httpx.MockTransport(answer),
        )

    monkeypatch.setattr(_common, "make_client", make_client)
    result = invoke("agents", "stop", "--all-running", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert last_json(result)["stopped"] == ["IDLE-1"]
    assert left == ["IDLE-1"]
    assert "0" in states


def test_cli_agents_stop_needs_exactly_one_selection(service):
    """agents stop with no selection, or two, is a usage error (exit 2)."""
    assert invoke("agents", "stop").exit_code == 2
    assert invoke("agents", "stop", "ID", "--all-running").exit_code == 2


def test_cli_bad_credentials_exit_3(service, monkeypatch):
    """A wrong secret is an authentication failure: exit 3, and the secret is not shown."""
    monkeypatch.setenv("AGORA_CUSTOMER_SECRET", "wrong-" + SECRET)
    result = invoke("--verbose", "agents", "list")
    assert result.exit_code == 3
    assert "AuthenticationError" in result.stderr
    assert "wrong-" not in result.output


def test_cli_missing_credentials_exit_3(monkeypatch):
    """Unset credential variables: exit 3, naming the variables."""
    result = invoke("agents", "list", "--base-url", "http://127.0.0.1:9")
    assert result.exit_code == 3
    assert "AGORA_CUSTOMER_SECRET" in result.stderr


def test_cli_wrong_app_id_exit_3(service, monkeypatch):
    """An App ID without STT: exit 3."""
    monkeypatch.setenv("AGORA_APP_ID", "f" * 32)
    result = invoke("agents", "list")
    assert result.exit_code == 3
    assert "ServiceNotEnabledError" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("agents", "list", "--channel", ""), id="empty-channel"),
        pytest.param(("agents", "list", "--base-url", "ftp://example.com"), id="bad-url"),
        pytest.param(
            ("agents", "list", "--base-url", "http://example.com"), id="insecure-remote-url"
        ),
    ],
)
def test_cli_bad_input_exit_5(service, args):
    """Input the SDK refuses before sending anything: exit 5."""
    result = invoke(*args)
    assert result.exit_code == 5, result.output


def test_cli_service_error_exit_6(service):
    """A service that keeps failing after retries: exit 6."""
    service.faults.configure(
        emulator.FaultConfig(
            schedule=(emulator.ScheduledFault("503", "query", count=10),),
        )
    )
    result = invoke("agents", "get", "ANY")
    assert result.exit_code == 6, result.output
    assert "ServerError" in result.stderr


# --- legacy -----------------------------------------------------------------------------------


def test_cli_legacy_stop(service):
    """legacy stop TASK_ID --token stops the task; the token is never printed."""
    task_id, token = legacy_task()
    result = invoke("--verbose", "legacy", "stop", task_id, "--token", token, "--json")
    assert result.exit_code == 0, result.output
    assert last_json(result) == {"task_id": task_id, "outcome": "stopped"}
    assert token not in result.output
    again = invoke("legacy", "stop", task_id, "--token", token)
    assert again.exit_code in (0, 4), again.output  # code 49 (already stopped) or 404
    assert token not in again.output


def test_cli_legacy_stop_wrong_token_exit_5(service):
    """A builder token that did not start the task is invalid input: exit 5."""
    task_id, _ = legacy_task()
    result = invoke("legacy", "stop", task_id, "--token", "not-a-token")
    assert result.exit_code == 5, result.output


# --- tasks over a store file ----------------------------------------------------------------------


def crashed_service(path: Path) -> dict[str, str]:
    """Start three tasks through a Session on a SqliteStore, then leave without stopping
    them, as a crashed service would; their server ids by key."""

    async def main() -> dict[str, str]:
        async with (
            client() as c,
            SqliteStore(path) as store,
            Session(c, store=store, stop_on_exit=False) as session,
        ):
            handles = [
                await session.start(
                    f"room-{i}",
                    JoinRequest(
                        name=f"store-room-{i}",
                        languages=["en-US"],
                        rtc_config=RtcConfig(channel_name=f"store-{i}", pub_bot_uid="1"),
                    ),
                )
                for i in range(2)
            ]
            handles.append(
                await session.start(
                    "old-room",
                    LegacyStartRequest(
                        languages=["en-US"],
                        rtc_config=RtcConfig(
                            channel_name="store-old", pub_bot_uid="1", sub_bot_uid="2"
                        ),
                    ),
                )
            )
            for handle in handles:
                with anyio.fail_after(10):
                    await handle.wait_for(AgentStatus.RUNNING)
            return {h.key: str(h.record.server_id) for h in handles}

    return anyio.run(main)


def test_cli_tasks_list(service, tmp_path):
    """tasks list shows the records of a store file, never a builder token."""
    path = tmp_path / "stt-tasks.db"
    ids = crashed_service(path)
    result = invoke("tasks", "list", "--store", str(path), "--json")
    assert result.exit_code == 0, result.output
    rows = {str(r["key"]): r for r in json_lines(result)}
    assert set(rows) == set(ids)
    assert rows["room-0"]["agent_id"] == ids["room-0"]
    assert rows["old-room"]["task_id"] == ids["old-room"]
    assert {r["phase"] for r in rows.values()} == {"ACTIVE"}
    assert all("token_name" not in r and "request" not in r for r in rows.values())
    table = invoke("tasks", "list", "--store", str(path))
    assert table.exit_code == 0
    assert "old-room" in table.stdout
    assert "3 not ended" in table.stderr


def test_cli_tasks_stop_by_key_then_all(service, tmp_path):
    """tasks stop KEY stops that task only; --all the rest; the store records it."""
    path = tmp_path / "stt-tasks.db"
    ids = crashed_service(path)
    one = invoke("tasks", "stop", "room-0", "--store", str(path), "--json")
    assert one.exit_code == 0, one.output
    assert last_json(one)["tasks"] == [
        {"key": "room-0", "server_id": ids["room-0"], "outcome": "stopped", "error": None}
    ]
    assert status_of(ids["room-0"]) in (AgentStatus.STOPPING, AgentStatus.STOPPED)
    assert status_of(ids["room-1"]) is AgentStatus.RUNNING
    rest = invoke("tasks", "stop", "--all", "--store", str(path), "--json")
    assert rest.exit_code == 0, rest.output
    outcomes = {t["key"]: t["outcome"] for t in last_json(rest)["tasks"]}
    assert outcomes == {"room-1": "stopped", "old-room": "stopped"}
    assert status_of(ids["room-1"]) in (AgentStatus.STOPPING, AgentStatus.STOPPED)
    listed = invoke("tasks", "list", "--store", str(path), "--live", "--json")
    assert json_lines(listed) == []
    state = httpx.get(os.environ["AGORA_STT_BASE_URL"] + "/_emulator/state").json()
    assert "IN_PROGRESS" not in state["tasks"]["by_status"]


def test_cli_tasks_stop_unknown_key_exit_4(service, tmp_path):
    """A key the store does not have: exit 4."""
    path = tmp_path / "stt-tasks.db"
    crashed_service(path)
    result = invoke("tasks", "stop", "nope", "--store", str(path))
    assert result.exit_code == 4, result.output
    assert "no task 'nope'" in result.stdout


def test_cli_tasks_missing_store_exit_5(tmp_path):
    """A store path that does not exist: exit 5, and no file is created."""
    path = tmp_path / "missing.db"
    result = invoke("tasks", "list", "--store", str(path))
    assert result.exit_code == 5
    assert "no store file" in result.stderr
    assert not path.exists()


@pytest.mark.parametrize("command", [("list",), ("stop", "--all")])
def test_cli_tasks_empty_store_file_is_refused_and_left_alone(tmp_path, command):
    """An empty --store file is not a store: exit 5, and the file stays empty (`tasks
    list` only reads)."""
    path = tmp_path / "empty.db"
    path.touch()
    result = invoke("tasks", *command, "--store", str(path))
    assert result.exit_code == 5, result.output
    assert "is empty" in result.stderr
    assert path.stat().st_size == 0


def test_cli_tasks_stop_needs_keys_or_all(tmp_path):
    """tasks stop with neither keys nor --all, or both, is a usage error."""
    assert invoke("tasks", "stop", "--store", str(tmp_path / "x.db")).exit_code == 2
    assert invoke("tasks", "stop", "k", "--all").exit_code == 2


# --- the installed script ---------------------------------------------------------------------


def script() -> str:
    path = Path(sys.executable).parent / "agora-stt"
    if not path.exists():  # pragma: no cover - depends on how the venv was made
        pytest.skip("the agora-stt script is not installed next to this interpreter")
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_until_serving(url: str, process: subprocess.Popen[str]) -> None:
    """Poll ``url`` until it answers (bounded: 30 s), failing fast if ``process`` exits."""
    with anyio.fail_after(30):
        async with httpx.AsyncClient(timeout=1) as http:
            while True:
                try:
                    await http.get(url)
                    return
                except httpx.TransportError:
                    if process.poll() is not None:
                        raise
                    await anyio.sleep(0.05)


def test_cli_script_demo_json():
    """The installed console script runs the README's first command (small): one JSON
    object on stdout, nothing leaked, exit status 0, no progress bar off a terminal."""
    done = subprocess.run(
        [script(), "demo", "--channels", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("AGORA_")},
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    data = json.loads(line)
    assert set(data) >= SUMMARY_KEYS
    assert (data["channels"], data["stopped"], data["leaked"]) == (4, 4, 0)
    assert done.stderr == ""


def test_cli_script_emulator_serves(monkeypatch):
    """`agora-stt emulator` serves on the given port; the CLI talks to it with the
    credentials the banner prints."""
    port = free_port()
    process = subprocess.Popen(
        [script(), "emulator", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        anyio.run(wait_until_serving, base_url + "/_emulator/state", process)
        monkeypatch.setenv("AGORA_STT_BASE_URL", base_url)
        monkeypatch.setenv("AGORA_APP_ID", _common.EMULATOR_APP_ID)
        monkeypatch.setenv("AGORA_CUSTOMER_ID", _common.EMULATOR_CUSTOMER_ID)
        monkeypatch.setenv("AGORA_CUSTOMER_SECRET", _common.EMULATOR_CUSTOMER_SECRET)
        result = CliRunner().invoke(cli, ["agents", "list", "--json"])
        assert result.exit_code == 0, result.output
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert f"export AGORA_STT_BASE_URL={base_url}" in err


def test_cli_emulator_refuses_port_zero(monkeypatch) -> None:
    """--port 0 is a usage error (exit 2): the banner could not name the port it got."""
    served: list[int] = []
    monkeypatch.setattr(emulator, "run", lambda app, **kwargs: served.append(kwargs["port"]))
    result = CliRunner().invoke(cli, ["emulator", "--port", "0"])
    assert result.exit_code == 2
    assert served == []
    assert "export" not in result.output


@pytest.mark.parametrize("table", ["phases", "v7", "legacy"])
def test_cli_diagram_prints_the_state_tables(table: str) -> None:
    result = CliRunner().invoke(cli, ["diagram", table])
    assert result.exit_code == 0, result.output
    assert result.stdout == state.mermaid(table)


def test_cli_diagram_refuses_an_unknown_table() -> None:
    result = CliRunner().invoke(cli, ["diagram", "nope"])
    assert result.exit_code == 2
