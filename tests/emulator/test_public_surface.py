"""The emulator's public face: imports, clock, transport() and the testing fixtures."""

from __future__ import annotations

import ast
from pathlib import Path

import anyio
import httpx
import pytest

import agora_stt_async.emulator as emulator
from agora_stt_async.emulator import EmulatorApp, EmulatorClock
from tests.emulator.conftest import V7, join_body

pytestmark = pytest.mark.anyio
pytest_plugins = ["agora_stt_async.testing"]

EMULATOR_DIR = Path(emulator.__file__).parent
ALLOWED_SDK_MODULES = {"agora_stt_async._constants", "agora_stt_async._enums"}


def test_emulator_imports_nothing_else_of_the_sdk() -> None:
    """Only _constants and _enums are shared with the SDK (its own reading of the spec)."""
    for path in EMULATOR_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                if node.module == "agora_stt_async":
                    names = [f"agora_stt_async.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("agora_stt_async") and not name.startswith(
                    "agora_stt_async.emulator"
                ):
                    assert any(name.startswith(m) for m in ALLOWED_SDK_MODULES), (path.name, name)


def test_fake_clock_refuses_non_finite_advances() -> None:
    """FakeClock.advance refuses negative, NaN and infinite steps: time stays usable."""
    from agora_stt_async.testing import FakeClock  # after pytest_plugins has loaded it

    clock = FakeClock(start=100.0)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="advance"):
            clock.advance(bad)
    assert (clock.now(), clock.monotonic()) == (100.0, 1000.0)


async def test_fake_clock_infinite_sleep_waits_until_cancelled() -> None:
    """sleep(inf) on a FakeClock sleeps until cancelled, as on the real clock."""
    from agora_stt_async.testing import FakeClock

    clock = FakeClock(start=100.0)
    with anyio.move_on_after(0.05) as scope:
        await clock.sleep(float("inf"))
    assert scope.cancelled_caught
    assert clock.now() == 100.0
    await clock.sleep(float("nan"))
    assert clock.now() == 100.0


def test_public_names() -> None:
    """__all__ lists what users import, and every name exists."""
    for name in emulator.__all__:
        assert hasattr(emulator, name), name
    assert {"create_app", "EmulatorClock", "FaultConfig", "transport", "serve"} <= set(
        emulator.__all__
    )


def test_clock_advances_and_refuses_to_go_back() -> None:
    """EmulatorClock(start) is frozen until advanced; advance rejects negative values."""
    clock = EmulatorClock(start=100.0)
    assert clock.now() == 100.0
    assert clock.advance(2.5) == 102.5
    assert clock.offset == 2.5
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="advance"):
            clock.advance(bad)
    live = EmulatorClock()
    before = live.now()
    live.advance(3600)
    assert live.now() - before >= 3600


async def test_module_transport_builds_a_default_app() -> None:
    """emulator.transport() with no app serves a fresh default emulator."""
    async with httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://e", auth=("emulator", "emulator-secret")
    ) as client:
        response = await client.post(f"{V7}/join", json=join_body())
        assert response.status_code == 200


async def test_fixture_transport(
    emulator_app: EmulatorApp, emulator_transport: httpx.AsyncBaseTransport
) -> None:
    """The emulator_transport fixture serves the emulator_app fixture."""
    async with httpx.AsyncClient(
        transport=emulator_transport, base_url="http://e", auth=("emulator", "emulator-secret")
    ) as client:
        await client.post(f"{V7}/join", json=join_body())
    assert emulator_app.world.counts()["agents"]["total"] == 1  # type: ignore[index]


async def test_fixture_server(emulator_app: EmulatorApp, emulator_server: str) -> None:
    """The emulator_server fixture serves the emulator_app fixture on loopback."""
    async with httpx.AsyncClient(
        base_url=emulator_server, auth=("emulator", "emulator-secret")
    ) as client:
        await client.post(f"{V7}/join", json=join_body())
    assert emulator_app.world.counts()["agents"]["total"] == 1  # type: ignore[index]


def test_serve_in_a_subprocess() -> None:
    """serve(subprocess=True) runs the emulator in a child process, built from config."""
    config = emulator.EmulatorConfig(join_status="RUNNING")
    with (
        emulator.serve(subprocess=True, config=config, seed=2) as base_url,
        httpx.Client(base_url=base_url, auth=("emulator", "emulator-secret"), timeout=5) as client,
    ):
        assert client.post(f"{V7}/join", json=join_body()).json()["status"] == "RUNNING"
        assert client.get("/_emulator/state").json()["agents"]["total"] == 1
    with (
        pytest.raises(ValueError, match="subprocess"),
        emulator.serve(EmulatorApp(config, EmulatorClock()), subprocess=True),
    ):
        pass
