"""Seeded, reproducible fault injection: what goes wrong, on which route, and when.

A ``FaultConfig`` is plain data (JSON in and out for ``POST /_emulator/faults``). A
``FaultPlan`` draws from it with its own ``random.Random``, so the same seed and the same
sequence of requests give the same faults, and world ids are not disturbed by fault draws.

Kinds, and when they strike:

- before processing, no state change: ``500``, ``502``, ``503``, ``504``, ``429`` (with
  ``Retry-After``), ``code20`` (Agora's processing timeout, spec §6.1), ``internal`` (a
  legacy internal error carrying ``FaultConfig.internal_code``, one of the start-time
  codes of spec §6.1: 1, 6, 23, 501, 502, 504, or 62 "not started because of a network
  problem"; on v7 routes, which have no codes, the v7 500 ``InternalError``);
- around processing: ``latency`` (the request waits ``latency`` seconds, then runs);
- after processing: ``drop`` (the state change happens, the response is never sent — the
  case that makes retrying a non-idempotent call dangerous). In process
  (``EmulatorTransport``) the client gets ``httpx.RemoteProtocolError``; served by
  ``serve()`` or ``run()``, the connection is closed without a byte of response.
  Behind any other ASGI server the status line and headers go out, then the
  connection closes (the client sees an incomplete response).

An explicit ``schedule`` comes before the random rates: tests use it for exact sequences.
No HTTP here; ``_app`` renders the chosen fault.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, cast, get_args

FaultKind = Literal["500", "502", "503", "504", "429", "code20", "internal", "latency", "drop"]
FAULT_KINDS: Final[tuple[FaultKind, ...]] = get_args(FaultKind)
PRE_PROCESSING: Final = frozenset({"500", "502", "503", "504", "429", "code20", "internal"})
INTERNAL_CODES: Final = (1, 6, 23, 62, 501, 502, 504)
"""spec §6.1: the codes of internal errors on start (62: "not started because of a
network problem"); the values ``FaultConfig.internal_code`` may take."""

V7_ROUTES: Final = ("join", "query", "update", "leave", "list")
LEGACY_ROUTES: Final = ("acquire", "start", "legacy_query", "legacy_update", "stop")
ROUTES: Final = V7_ROUTES + LEGACY_ROUTES
"""Route names for per-route rates and schedules."""


@dataclass(frozen=True)
class ScheduledFault:
    """ "The next ``count`` requests to ``route`` (after ``skip`` of them) get ``kind``."

    ``route=None`` matches every route. Each entry counts the matching requests it sees;
    of the entries ready to fire, the first in the schedule wins.
    """

    kind: FaultKind
    route: str | None = None
    count: int = 1
    skip: int = 0

    def __post_init__(self) -> None:
        _check_kind(self.kind)
        if self.route is not None:
            _check_route(self.route)
        if self.count < 1 or self.skip < 0:
            raise ValueError("a scheduled fault needs count >= 1 and skip >= 0")


@dataclass(frozen=True)
class FaultConfig:
    """Fault injection settings. ``FaultConfig()`` injects nothing.

    Args:
        rate: probability (0..1) that a request to any route gets a fault.
        routes: per-route probabilities that replace ``rate`` for those routes.
        kinds: relative weights of the kinds drawn when a random fault strikes.
        retry_after: seconds sent in ``Retry-After`` with an injected 429.
        latency: seconds a ``latency`` fault adds.
        base_latency: seconds added to every (non-control) request, fault or not.
        schedule: explicit faults, consumed before any random draw.
        internal_code: the Agora ``code`` an ``internal`` fault carries on legacy routes
            (one of ``INTERNAL_CODES``; default 501, whose current advice is "retry").

    Raises:
        ValueError: a rate outside 0..1, an unknown kind or route, a negative or non-finite
            latency, or an ``internal_code`` not in ``INTERNAL_CODES``.
    """

    rate: float = 0.0
    routes: Mapping[str, float] = field(default_factory=dict)
    kinds: Mapping[FaultKind, float] = field(default_factory=lambda: {"503": 1.0})
    retry_after: int = 1
    latency: float = 0.2
    base_latency: float = 0.0
    schedule: tuple[ScheduledFault, ...] = ()
    internal_code: int = 501

    def __post_init__(self) -> None:
        for name, rate in [("rate", self.rate), *self.routes.items()]:
            if name != "rate":
                _check_route(name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate for {name} must be within 0..1, got {rate!r}")
        for kind, weight in self.kinds.items():
            _check_kind(kind)
            if not (weight >= 0 and math.isfinite(weight)):
                raise ValueError(f"weight of fault kind {kind} must be >= 0")
        if (self.rate or any(self.routes.values())) and not any(self.kinds.values()):
            raise ValueError("a fault rate needs at least one kind with a positive weight")
        if not all(
            math.isfinite(value) and value >= 0
            for value in (self.retry_after, self.latency, self.base_latency)
        ):
            # NaN or infinity would stall every request (or break anyio.sleep).
            raise ValueError("retry_after, latency and base_latency must be finite and >= 0")
        if isinstance(self.internal_code, bool) or self.internal_code not in INTERNAL_CODES:
            known = ", ".join(map(str, INTERNAL_CODES))
            raise ValueError(f"internal_code must be one of {known}, got {self.internal_code!r}")

    def to_json(self) -> dict[str, object]:
        """The JSON form ``POST /_emulator/faults`` accepts."""
        return {
            "rate": self.rate,
            "routes": dict(self.routes),
            "kinds": dict(self.kinds),
            "retry_after": self.retry_after,
            "latency": self.latency,
            "base_latency": self.base_latency,
            "schedule": [
                {"kind": s.kind, "route": s.route, "count": s.count, "skip": s.skip}
                for s in self.schedule
            ],
            "internal_code": self.internal_code,
        }

    @classmethod
    def from_json(cls, data: object) -> FaultConfig:
        """Parse the JSON form; ``{}`` means no faults. Raises ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError("fault config must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault config fields: {sorted(unknown)}")
        try:
            schedule = tuple(ScheduledFault(**entry) for entry in data.get("schedule", ()))
            return cls(
                rate=float(data.get("rate", 0.0)),
                routes={str(k): float(v) for k, v in dict(data.get("routes", {})).items()},
                kinds={
                    cast(FaultKind, str(k)): float(v)
                    for k, v in dict(data.get("kinds", {"503": 1.0})).items()
                },
                retry_after=int(data.get("retry_after", 1)),
                latency=float(data.get("latency", 0.2)),
                base_latency=float(data.get("base_latency", 0.0)),
                schedule=schedule,
                internal_code=_integer(data.get("internal_code", 501), "internal_code"),
            )
        except TypeError as exc:
            raise ValueError(f"bad fault config: {exc}") from exc


@dataclass
class _Slot:
    entry: ScheduledFault
    skip: int
    count: int


class FaultPlan:
    """Draws faults from a ``FaultConfig`` with a seeded RNG, and counts what it injected."""

    def __init__(self, config: FaultConfig | None = None, seed: int | str = 0) -> None:
        self._rng = random.Random(f"{seed}/faults")
        self.injected: Counter[str] = Counter()
        """Injected faults by ``"<route>:<kind>"``."""
        self.configure(config or FaultConfig())

    @property
    def config(self) -> FaultConfig:
        """The settings in force."""
        return self._config

    def configure(self, config: FaultConfig) -> None:
        """Replace the settings; the schedule starts over, the RNG stream continues."""
        self._config = config
        self._schedule = [_Slot(entry, entry.skip, entry.count) for entry in config.schedule]
        self._weighted = [(k, w) for k, w in config.kinds.items() if w > 0]

    def pending(self) -> list[dict[str, object]]:
        """What is left of the schedule, in the JSON form of its entries."""
        return [
            {"kind": s.entry.kind, "route": s.entry.route, "count": s.count, "skip": s.skip}
            for s in self._schedule
        ]

    def draw(self, route: str) -> FaultKind | None:
        """The fault for this request to ``route``, or ``None``."""
        for slot in self._schedule:
            entry = slot.entry
            if entry.route is not None and entry.route != route:
                continue
            if slot.skip > 0:
                slot.skip -= 1
                continue
            slot.count -= 1
            if slot.count == 0:
                self._schedule.remove(slot)
            return self._count(route, entry.kind)
        rate = self._config.routes.get(route, self._config.rate)
        if rate > 0 and self._rng.random() < rate:
            kinds, weights = zip(*self._weighted, strict=True)
            return self._count(route, self._rng.choices(kinds, weights)[0])
        return None

    def _count(self, route: str, kind: FaultKind) -> FaultKind:
        self.injected[f"{route}:{kind}"] += 1
        return kind


def _integer(value: object, name: str) -> int:
    # int("7") or int(7.9) would quietly turn a wrong JSON value into a valid-looking code.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _check_kind(kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")


def _check_route(route: str) -> None:
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; known: {', '.join(ROUTES)}")
