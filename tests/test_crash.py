"""Crash recovery, small: SIGKILLed workers, a new process recovers, nothing left running.

``benchmarks/crash.py`` at CI size (issue 7.4): the emulator is a separate server
process; a worker process using ``SqliteStore`` is killed with SIGKILL while it starts,
runs and stops tasks on v7 and legacy; a new process calls ``recover()`` and stops
everything. Synchronous on purpose: the work happens in child processes.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from crash import crash

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL needs POSIX")


def test_crash_two_rounds_nothing_leaked_or_lost(tmp_path: Path) -> None:
    result = crash(
        rounds=2,
        slots=6,
        fault_rate=0.05,
        seed=1,
        min_delay=0.5,
        max_delay=1.5,
        workdir=tmp_path,
    )
    assert result["rounds"] == 2
    assert result["leaked"] == 0, result["details"]
    assert result["lost"] == 0, result["details"]
    assert result["duplicates"] == 0, result["details"]
    # The workers really were killed mid-run, and had created work to recover.
    assert [r["worker_exit"] for r in result["per_round"]] == [-signal.SIGKILL] * 2
    assert result["jobs"] > 0
    for round_ in result["per_round"]:
        assert round_["leaked"] == 0
        assert round_["recovery"]["incomplete"] == []
    assert sum(r["recovery"]["loaded"] for r in result["per_round"]) > 0
    # The store of the last round holds what the first rounds recovered and stopped.
    assert (tmp_path / "tasks.db").exists()
