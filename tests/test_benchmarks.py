"""Smoke test of the benchmark runner: every section's code path, with tiny sizes.

``benchmarks/run.py --smoke --runs 1`` runs every section against the emulator (a child
process) and the loopback server with a few dozen requests and channels; the numbers
mean nothing and are not judged here (no timing assertions). What is checked is the
shape of what the runner promises: the JSON document's keys and types, and the
markdown it writes. The pure helpers are checked on exact inputs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from _bench_common import TOY, Target, figure  # noqa: E402
from _bench_lifecycle import scaling_exponent  # noqa: E402

SMOKE_TIMEOUT_S = 180.0
"""A bound, not a speed goal: the smoke run takes seconds; a hang must not stall CI."""


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """One smoke run of the runner: its JSON document and its markdown."""
    out = tmp_path_factory.mktemp("bench")
    doc, md = out / "out.json", out / "RESULTS.md"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "run.py"),
            "--smoke",
            "--runs",
            "1",
            "--quiet",
            "--json",
            str(doc),
            "--results",
            str(md),
        ],
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "PASS" in done.stdout or "MISS" in done.stdout
    return json.loads(doc.read_text()), md.read_text()


def _number(value: object) -> float:
    assert isinstance(value, (int, float)), value
    assert not isinstance(value, bool), value
    assert math.isfinite(value), value
    assert value >= 0, value
    return float(value)


SCALARS = (
    "sdk_vs_raw_cpu_ratio",
    "sdk_httpx_vs_raw_cpu_ratio",
    "sdk_overhead_ms_per_call",
    "lifecycle_ratio",
    "lifecycle_requests_per_channel_sdk",
    "lifecycle_requests_per_channel_raw",
    "list_items_per_s",
    "list_peak_kib_10k",
    "list_peak_kib_100k",
    "bytes_per_task",
)


@pytest.mark.parametrize("key", SCALARS)
def test_smoke_json_has_the_issue_keys(smoke: tuple[dict[str, Any], str], key: str) -> None:
    """Every key the issues name is a finite, non-negative number (the median)."""
    doc, _ = smoke
    _number(doc[key])


def test_smoke_json_limiter_figure(smoke: tuple[dict[str, Any], str]) -> None:
    """The rate limiter's figure joins the runner whenever its module exists."""
    doc, _ = smoke
    if (BENCHMARKS / "limiter.py").exists():
        assert isinstance(doc["limiter_overhead_ms_per_request"], float)
    else:
        assert "limiter_overhead_ms_per_request" not in doc


def test_smoke_json_keyed_and_listed_figures(smoke: tuple[dict[str, Any], str]) -> None:
    """Per-concurrency ratios are objects keyed by C; the scaling is a list by N."""
    doc, _ = smoke
    for key in ("sdk_vs_aiohttp_cpu_ratio", "sdk_trio_vs_raw_cpu_ratio"):
        ratios = doc[key]
        assert set(ratios) == {str(c) for c in TOY.request_concurrency}, key
        for value in ratios.values():
            assert _number(value) > 0
    scaling = doc["lifecycle_scaling"]
    assert [row["channels"] for row in scaling] == list(TOY.scaling_channels)
    for row in scaling:
        assert _number(row["cpu_s"]) > 0
        assert _number(row["requests_per_channel"]) >= 3  # start, update, stop at least
    assert _number(doc["lifecycle_requests_per_channel_raw"]) >= 4


def test_smoke_json_checks_and_details(smoke: tuple[dict[str, Any], str]) -> None:
    """Every target has a verdict; every figure has min <= median <= max; run details."""
    doc, _ = smoke
    assert doc["checks"], "no targets judged"
    for name, check in doc["checks"].items():
        assert check["verdict"] in ("PASS", "MISS"), name
    for name, stats in doc["figures"].items():
        assert stats["min"] <= stats["median"] <= stats["max"], name
        assert len(stats["runs"]) == 1, name
    run = doc["run"]
    assert run["mode"] == "smoke"
    assert run["repetitions"] == 1
    assert run["machine"]["cores"] >= 1
    assert run["sizes"]["request_n"] == TOY.request_n


def test_smoke_markdown(smoke: tuple[dict[str, Any], str]) -> None:
    """The markdown has the machine, a table row per figure and the findings."""
    doc, md = smoke
    assert "## Machine" in md
    assert "| figure | min | median | max | unit | target | verdict |" in md
    for name in doc["figures"]:
        assert f"| `{name}` |" in md
    assert "## Findings" in md


def test_scaling_exponent_of_exact_powers() -> None:
    """Linear growth is 1.0, quadratic 2.0, whatever the constant."""
    ns = [100, 1000, 10_000]
    assert scaling_exponent(ns, [3.0 * n for n in ns]) == pytest.approx(1.0)
    assert scaling_exponent(ns, [0.5 * n * n for n in ns]) == pytest.approx(2.0)


def test_figure_summary_and_verdict() -> None:
    """min / median / max of the runs; the verdict judges the median."""
    fig = figure("x", [1.3, 0.9, 1.0], "x", Target(1.1))
    assert (fig.low, fig.median, fig.high) == (0.9, 1.0, 1.3)
    assert fig.verdict == "PASS"
    assert figure("y", [2.0, 2.0, 1.0], target=Target(1.5)).verdict == "MISS"
    assert figure("z", [10.0], target=Target(5.0, op=">=")).verdict == "PASS"
    assert figure("w", [1.0]).verdict == ""
    with pytest.raises(ValueError, match="no values"):
        figure("empty", [])
