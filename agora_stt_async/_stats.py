"""Counters of what a client sent: calls, attempts, retries, errors and latencies.

Latencies are kept in a fixed-size reservoir per operation, so memory stays bounded
however long a client lives; percentiles are exact until the reservoir fills.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Final, final

import attrs

RESERVOIR_SIZE: Final = 4096


@attrs.frozen
class OperationStatistics:
    """Figures for one operation (``join``, ``query``, ``acquire``, ...)."""

    calls: int
    attempts: int
    retries: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None


@attrs.frozen
class ClientStatistics:
    """A snapshot of a client's counters; ``requests`` counts HTTP attempts sent."""

    requests: int
    retries: int
    errors: int
    by_operation: Mapping[str, OperationStatistics]


def _percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


@final
class StatsRecorder:
    """Mutable counters behind ``AsyncClient.statistics()``."""

    def __init__(self) -> None:
        self._calls: dict[str, int] = {}
        self._attempts: dict[str, int] = {}
        self._retries: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._latencies: dict[str, list[float]] = {}
        self._rng = random.Random(0)

    def record_call(self, op: str) -> None:
        self._calls[op] = self._calls.get(op, 0) + 1

    def record_retry(self, op: str) -> None:
        self._retries[op] = self._retries.get(op, 0) + 1

    def record_error(self, op: str) -> None:
        self._errors[op] = self._errors.get(op, 0) + 1

    def record_attempt(self, op: str, status: int | None, elapsed_s: float) -> None:
        count = self._attempts.get(op, 0) + 1
        self._attempts[op] = count
        reservoir = self._latencies.setdefault(op, [])
        if len(reservoir) < RESERVOIR_SIZE:
            reservoir.append(elapsed_s)
        else:
            slot = self._rng.randrange(count)
            if slot < RESERVOIR_SIZE:
                reservoir[slot] = elapsed_s

    def snapshot(self) -> ClientStatistics:
        ops: dict[str, OperationStatistics] = {}
        for op in sorted(set(self._calls) | set(self._attempts)):
            values = sorted(self._latencies.get(op, ()))
            p50, p99 = _percentile(values, 0.5), _percentile(values, 0.99)
            ops[op] = OperationStatistics(
                calls=self._calls.get(op, 0),
                attempts=self._attempts.get(op, 0),
                retries=self._retries.get(op, 0),
                errors=self._errors.get(op, 0),
                p50_ms=None if p50 is None else p50 * 1000,
                p99_ms=None if p99 is None else p99 * 1000,
            )
        return ClientStatistics(
            requests=sum(self._attempts.values()),
            retries=sum(self._retries.values()),
            errors=sum(self._errors.values()),
            by_operation=ops,
        )
