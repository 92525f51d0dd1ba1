"""Import layers (house style §4.2): every module's imports, read with ``ast``, against a
table kept here as data.

Layers::

    L0  leaf, stdlib only      _constants _enums _clock _secrets _version   (+anyio in _clock)
    L1  values                 _errors _models/ _stats                      (+attrs)
    L2  pure logic             _converter state _retry _hosts               (+cattrs)
    L3  I/O edge               _http _transports/                           (+httpx, anyio)
    L4  API                    _client _pagination
    L5  orchestration          stores/ _reconcile _session _actions _handle, notifications
    L6  integrations           _notifications_asgi testing, and the package facade
    L7  applications           _cli/                                        (public names only)
    side                       emulator/    (_constants/_enums only; starlette, uvicorn, httpx)

A module may import the SDK's modules of its own layer or below, and third-party packages
allowed at its layer or below. Modules are matched by name pattern, so modules that do
not exist yet are classified the day they appear; a module matching no pattern fails.
"""

from __future__ import annotations

import ast
import fnmatch
import sys
from pathlib import Path

import pytest

import agora_stt_async

PACKAGE = "agora_stt_async"
ROOT = Path(agora_stt_async.__file__).parent
SIDE = 100  # the emulator: outside the stack, governed by its own rules

# (module pattern, layer), first match wins.
LAYERS: list[tuple[str, int]] = [
    ("agora_stt_async._constants", 0),
    ("agora_stt_async._enums", 0),
    ("agora_stt_async._clock", 0),
    ("agora_stt_async._secrets", 0),
    ("agora_stt_async._version", 0),
    ("agora_stt_async._errors", 1),
    ("agora_stt_async._models", 1),
    ("agora_stt_async._models.*", 1),
    ("agora_stt_async._stats", 1),
    ("agora_stt_async.hooks", 1),  # event values and their dispatch (stdlib + attrs)
    ("agora_stt_async._converter", 2),
    ("agora_stt_async.state", 2),
    ("agora_stt_async._retry", 2),
    ("agora_stt_async._hosts", 2),
    ("agora_stt_async._ratelimit", 2),
    ("agora_stt_async._http", 3),
    ("agora_stt_async._transports", 3),
    ("agora_stt_async._transports.*", 3),
    ("agora_stt_async._client", 4),
    ("agora_stt_async._pagination", 4),
    ("agora_stt_async.stores", 5),
    ("agora_stt_async.stores.*", 5),
    ("agora_stt_async._reconcile*", 5),
    ("agora_stt_async._session*", 5),
    ("agora_stt_async._actions", 5),
    ("agora_stt_async._handle", 5),
    ("agora_stt_async._leases", 5),
    # Event types and verification are values the session consumes (session.feed);
    # only the ASGI glue, which drives a session, sits above it.
    ("agora_stt_async.notifications", 5),
    ("agora_stt_async._notifications_parse", 5),
    ("agora_stt_async._notifications_events", 5),
    ("agora_stt_async._notifications*", 6),
    ("agora_stt_async.testing", 6),
    ("agora_stt_async.otel", 6),  # the otel extra: a hooks subscriber
    ("agora_stt_async", 6),  # the facade re-exports up to the session (L5)
    ("agora_stt_async._cli", 7),
    ("agora_stt_async._cli.*", 7),
    ("agora_stt_async.emulator", SIDE),
    ("agora_stt_async.emulator.*", SIDE),
]

# Third-party packages each layer adds; a layer may use its own and every lower layer's.
THIRD_PARTY_BY_LAYER: dict[int, frozenset[str]] = {
    0: frozenset({"typing_extensions"}),
    1: frozenset({"attrs"}),
    2: frozenset({"cattrs"}),
    3: frozenset({"httpx", "anyio"}),
    4: frozenset(),
    5: frozenset({"redis"}),  # stores/redis.py (the redis extra)
    6: frozenset(),
    7: frozenset({"click", "rich"}),
}

# Extra third-party packages for particular modules (pattern → names).
THIRD_PARTY_EXTRA: list[tuple[str, frozenset[str]]] = [
    ("agora_stt_async._clock", frozenset({"anyio"})),
    (
        "agora_stt_async._transports*",
        frozenset({"aiohttp", "yarl", "multidict", "httpcore", "sniffio"}),
    ),
    ("agora_stt_async.testing", frozenset({"pytest"})),
    ("agora_stt_async.otel", frozenset({"opentelemetry"})),
    (
        "agora_stt_async.emulator*",
        frozenset({"starlette", "uvicorn", "httpx", "anyio", "typing_extensions"}),
    ),
]

# Standard-library modules only some SDK modules may import (name → allowed patterns).
RESTRICTED_STDLIB: dict[str, tuple[str, ...]] = {
    # anyio everywhere else, so the SDK runs on trio too (§4.2)
    "asyncio": ("agora_stt_async._transports", "agora_stt_async._transports.*"),
}
# The pure layers never read time: it arrives as an argument (§4.2, §4.6).
NO_TIME_BELOW_LAYER = 3
TIME_ALLOWED = ("agora_stt_async._clock",)

EMULATOR_MODULES = ("agora_stt_async.emulator", "agora_stt_async.emulator.*")
# What the emulator may import of the SDK besides itself (§4.1: "its own reading").
EMULATOR_SDK_IMPORTS = frozenset({"agora_stt_async._constants", "agora_stt_async._enums"})
# Who may import the emulator.
CLI_MODULES = ("agora_stt_async._cli", "agora_stt_async._cli.*")
EMULATOR_IMPORTERS = ("agora_stt_async.testing", *CLI_MODULES)


def _matches(name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def layer_of(module: str) -> int:
    for pattern, layer in LAYERS:
        if fnmatch.fnmatchcase(module, pattern):
            return layer
    raise LookupError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")


def third_party_allowed(module: str) -> frozenset[str]:
    layer = layer_of(module)
    allowed: set[str] = set()
    if layer != SIDE:
        for level, names in THIRD_PARTY_BY_LAYER.items():
            if level <= layer:
                allowed |= names
    for pattern, names in THIRD_PARTY_EXTRA:
        if fnmatch.fnmatchcase(module, pattern):
            allowed |= names
    return frozenset(allowed)


def discover() -> dict[str, Path]:
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = discover()


def imports_of(module: str, path: Path) -> set[str]:
    """Every module ``module`` imports, anywhere in the file (lazy and TYPE_CHECKING too).

    ``from pkg import name`` counts as ``pkg.name`` when that is a module of the SDK.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                found.add(candidate if candidate in MODULES else source)
    return found


def internal_target(name: str) -> str | None:
    """The SDK module an import refers to (the longest known prefix), or None."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def is_public(module: str) -> bool:
    return not any(part.startswith("_") for part in module.split("."))


def violations(module: str) -> list[str]:
    layer = layer_of(module)
    problems = []
    for name in sorted(imports_of(module, MODULES[module])):
        top = name.partition(".")[0]
        target = internal_target(name)
        if target is not None:
            if target == module or target.startswith(module + "."):
                continue  # a package importing its own submodules
            if layer == SIDE:
                if not _matches(target, EMULATOR_MODULES) and target not in EMULATOR_SDK_IMPORTS:
                    problems.append(f"the emulator imports {target} (only _constants/_enums)")
                continue
            if _matches(target, EMULATOR_MODULES):
                if not _matches(module, EMULATOR_IMPORTERS):
                    problems.append(f"imports the emulator ({target})")
                continue
            if layer == 7 and not (is_public(target) or _matches(target, CLI_MODULES)):
                problems.append(f"the CLI imports the private module {target}")
                continue
            target_layer = layer_of(target)
            if target_layer > layer:
                problems.append(f"L{layer} imports {target} (L{target_layer})")
        elif top in sys.stdlib_module_names:
            if top in RESTRICTED_STDLIB and not _matches(module, RESTRICTED_STDLIB[top]):
                problems.append(f"imports {top}")
            if top == "time" and layer < NO_TIME_BELOW_LAYER and not _matches(module, TIME_ALLOWED):
                problems.append("a pure module imports time")
        elif top not in third_party_allowed(module):
            problems.append(f"imports the third-party package {top}")
    return problems


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layers_module_imports(module):
    """Each module imports only what its layer allows."""
    assert violations(module) == []


def test_layers_every_module_classified():
    """Every module of the package matches a pattern of the table."""
    unclassified = []
    for module in MODULES:
        try:
            layer_of(module)
        except LookupError:
            unclassified.append(module)
    assert unclassified == []


def test_layers_known_modules_present():
    """The table is exercised: the core modules are found and parsed."""
    for name in ("_constants", "_errors", "_converter", "_http", "_client", "_pagination"):
        assert f"agora_stt_async.{name}" in MODULES
    assert "agora_stt_async._converter" in imports_of(
        "agora_stt_async._client", MODULES["agora_stt_async._client"]
    )
    assert "agora_stt_async._constants" in imports_of(
        "agora_stt_async._client", MODULES["agora_stt_async._client"]
    )


CHECKER_CASES = [
    pytest.param(
        "agora_stt_async._retry", "import httpx", "third-party package httpx", id="L2-httpx"
    ),
    pytest.param(
        "agora_stt_async.state", "import anyio", "third-party package anyio", id="state-anyio"
    ),
    pytest.param(
        "agora_stt_async.state", "import time", "pure module imports time", id="state-time"
    ),
    pytest.param(
        "agora_stt_async._hosts", "from agora_stt_async import _clock", None, id="L2-L0-ok"
    ),
    pytest.param(
        "agora_stt_async._errors",
        "from agora_stt_async._http import HttpCore",
        "L1 imports agora_stt_async._http (L3)",
        id="L1-up-to-L3",
    ),
    pytest.param("agora_stt_async._http", "import asyncio", "imports asyncio", id="asyncio"),
    pytest.param("agora_stt_async._transports.x", "import asyncio, aiohttp", None, id="transports"),
    pytest.param(
        "agora_stt_async.emulator._x",
        "from agora_stt_async._models import Agent",
        "only _constants/_enums",
        id="emulator-models",
    ),
    pytest.param(
        "agora_stt_async.emulator._x",
        "from agora_stt_async import _constants as C\nfrom . import _world",
        None,
        id="emulator-ok",
    ),
    pytest.param(
        "agora_stt_async._client",
        "from agora_stt_async.emulator import create_app",
        "imports the emulator",
        id="client-emulator",
    ),
    pytest.param(
        "agora_stt_async._cli._demo",
        "from agora_stt_async._client import AsyncClient",
        "private module",
        id="cli-private",
    ),
    pytest.param(
        "agora_stt_async._cli._demo",
        "from agora_stt_async import AsyncClient\nfrom agora_stt_async.emulator import serve\n"
        "import click",
        None,
        id="cli-public",
    ),
    pytest.param(
        "agora_stt_async._session",
        "import anyio\nfrom agora_stt_async._client import AsyncClient",
        None,
        id="session-future-module",
    ),
]


@pytest.mark.parametrize(("module", "source", "expected"), CHECKER_CASES)
def test_layers_checker_catches_violations(tmp_path, monkeypatch, module, source, expected):
    """The checker itself flags what the rules forbid (so a green run means something)."""
    path = tmp_path / "mod.py"
    path.write_text(source, encoding="utf-8")
    monkeypatch.setitem(MODULES, module, path)
    found = violations(module)
    if expected is None:
        assert found == []
    else:
        assert any(expected in problem for problem in found), found
