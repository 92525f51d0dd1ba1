"""The fault soak, small and in process: nothing leaked, duplicated or lost (issue 7.3).

``benchmarks/soak.py`` at CI size: 60 channels, v7 and legacy alternating, every fault
kind the emulator has (500/502/503/504, 429, code 20, latency, dropped responses) at
rate 0.2 on every route, ``RetryPolicy.testing()`` so nothing waits.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from soak import soak

pytestmark = pytest.mark.anyio


def _check(result: dict[str, Any], channels: int) -> None:
    assert result["leaked"] == 0, result["details"]
    assert result["duplicates"] == 0, result["details"]
    assert result["lost"] == 0, result["details"]
    # Every channel ended stopped or with a typed SDK error the caller saw.
    assert result["unsettled"] == 0
    assert result["untyped"] == {}
    assert result["stopped"] + sum(result["failed"].values()) == channels
    # The run was a soak: the emulator faulted and the client retried.
    assert result["faults_injected"] > 0
    assert result["retries"] > 0
    assert result["jobs"] >= result["stopped"]


@pytest.mark.parametrize("seed", [0, 1])
async def test_soak_both_apis_nothing_leaked_duplicated_or_lost(seed: int) -> None:
    with anyio.fail_after(60):
        result = await soak(channels=60, fault_rate=0.2, api="both", seed=seed, no_wait=True)
    _check(result, 60)
    # Channels whose caller saw an error were still stopped by the session's exit.
    assert set(result["records_by_phase"]) <= {"STOPPED", "FAILED"}


async def test_soak_high_fault_rate_still_nothing_lost() -> None:
    """At a 50 % fault rate some channels fail, but each failure is typed and seen."""
    with anyio.fail_after(60):
        result = await soak(channels=30, fault_rate=0.5, api="both", seed=3, no_wait=True)
    _check(result, 30)
