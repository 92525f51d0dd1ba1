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

import anyio
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import httpx  # noqa: E402
import run  # noqa: E402
import transport  # noqa: E402
from _bench_common import TOY, Context, Section, Target, figure  # noqa: E402
from _bench_lifecycle import scaling_exponent  # noqa: E402
from _bench_requests import choose_paths  # noqa: E402

from agora_stt_async import AsyncClient  # noqa: E402
from tests._redis_server import in_ci  # noqa: E402

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


DIFFERENCES = frozenset({"sdk_overhead_ms_per_call"})
"""Figures that are a difference of two measured costs: in a smoke run's tiny, noisy
sample (or on a loaded machine) the SDK's side can come out cheaper, so they may be
negative."""


@pytest.mark.parametrize("key", SCALARS)
def test_smoke_json_has_the_issue_keys(smoke: tuple[dict[str, Any], str], key: str) -> None:
    """Every key the issues name is a finite number (the median), non-negative unless
    it is a difference of two costs."""
    doc, _ = smoke
    value = doc[key]
    if key in DIFFERENCES:
        assert isinstance(value, float), value
        assert math.isfinite(value), value
    else:
        _number(value)


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
    """The markdown has the machine, how it was measured (the rate limiter off), a table
    row per figure, the findings of this run and the dated past investigations."""
    doc, md = smoke
    assert "## Machine" in md
    assert "| figure | min | median | max | unit | target | verdict |" in md
    for name in doc["figures"]:
        assert f"| `{name}` |" in md
    assert "## Findings" in md
    assert "## How it was measured" in md
    assert "client-side rate limiter is off" in md
    assert "## Findings of this run" in md
    assert "## Past investigations (November 2026)" in md
    assert "In this run" not in md.split("## Past investigations")[1]


def test_smoke_store_cost_or_its_reason(smoke: tuple[dict[str, Any], str]) -> None:
    """The store cost (memory, SQLite, Redis) is in the run when a Redis server is at
    hand, and skipped with a reason otherwise (never silently; in CI it must run)."""
    doc, _ = smoke
    if "store_cost" not in doc:
        assert not in_ci(), doc["skipped"]
        assert "Redis" in doc["skipped"]["store"]
        return
    assert set(doc["store_cost"]) == {"memory", "sqlite", "redis"}
    for row in doc["store_cost"].values():
        assert _number(row["calls"]) >= 2  # a create and at least one write
        assert _number(row["throughput"]) > 0
    assert isinstance(doc["warnings"], list)


def test_run_refuses_fewer_than_three_runs_when_writing_results(tmp_path: Path) -> None:
    """A full run that would write RESULTS.md with fewer than 3 runs is refused before
    anything is measured or written."""
    results = tmp_path / "RESULTS.md"
    with pytest.raises(SystemExit) as exc:
        run.main(["--runs", "2", "--results", str(results)])
    assert exc.value.code == 2
    assert not results.exists()


def test_rotated_moves_the_first_path_each_repetition() -> None:
    """Rotating by the repetition number puts every path first once in turn."""
    paths = ["a", "b", "c"]
    assert [transport.rotated(paths, r)[0] for r in range(4)] == ["a", "b", "c", "a"]
    assert sorted(transport.rotated(paths, 5)) == paths
    assert transport.rotated([], 3) == []


def test_baseline_headers_are_the_sdks() -> None:
    """The baselines send the headers the SDK sends (a fresh request id each time)."""
    sent: list[httpx.Headers] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers)
        body = {"agent_id": "A", "status": "RUNNING", "create_ts": 1}
        return httpx.Response(200, json=body, headers=dict(request.headers.items()))

    endpoint = transport.Endpoint("https://api.agora.io")

    async def main() -> None:
        async with AsyncClient(
            app_id=endpoint.app_id,
            customer_id=endpoint.customer_id,
            customer_secret=endpoint.customer_secret,
            transport=httpx.MockTransport(answer),
        ) as client:
            await client.agents.get("A")

    anyio.run(main)
    [sdk] = sent
    ours = endpoint.headers()
    names = {name.lower() for name in ours}
    assert names == {"authorization", "x-request-id", "accept", "user-agent"}
    for name in ("authorization", "accept", "user-agent"):
        assert ours[next(n for n in ours if n.lower() == name)] == sdk[name], name
    assert endpoint.headers()["X-Request-Id"] != ours["X-Request-Id"]


def test_missing_comparison_path_is_said(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A per-request path whose package is missing is left out with a warning on stderr
    and in the results, not silently."""
    monkeypatch.setattr(transport, "available", lambda path: path != "httpx_aiohttp")
    ctx = Context(sizes=TOY, runs=1, quick=True, log=lambda line: None)
    paths = choose_paths(ctx, "sdk_fast")
    assert "httpx_aiohttp" not in paths
    assert "raw_aiohttp" in paths
    [warning] = ctx.warnings
    assert "httpx-aiohttp is not installed" in warning
    assert "WARNING: per-request path httpx_aiohttp left out" in capsys.readouterr().err


def test_run_findings_come_from_the_figures() -> None:
    """The findings of a run are sentences built from its own figures: medians, ranges,
    verdicts, skipped sections and missing comparisons."""
    limit = Target(1.5)
    section = Section(
        title="t",
        figures=(
            figure("sdk_vs_aiohttp_cpu_ratio [C=10]", [1.2, 1.6, 1.3], "x", limit),
            figure("sdk_vs_aiohttp_cpu_ratio [C=50]", [1.7, 1.8, 1.4], "x", limit),
        ),
        json={},
    )
    text = run.run_findings(
        run.Outcome([section], {"store": "no Redis server"}, ["httpx-aiohttp missing"])
    )
    assert "C=10 1.30 (runs 1.20-1.60)" in text
    assert "misses the 1.5x target at C=50" in text
    assert "Targets missed on the median: `sdk_vs_aiohttp_cpu_ratio [C=50]`." in text
    assert "Section `store` was not run: no Redis server." in text
    assert "Measured without: httpx-aiohttp missing." in text
    held = run.run_findings(run.Outcome([Section("t", section.figures[:1], {})], {}, []))
    assert "holds the 1.5x target at every concurrency measured" in held
    assert "single runs went above it at C=10" in held
    assert "Every target was met on the median." in held


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
