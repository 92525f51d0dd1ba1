"""Printing the figures: the console table, the JSON document and ``RESULTS.md``."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata

import attrs
from _bench_common import Figure, Section, Sizes


def machine() -> dict[str, object]:
    """What the numbers were measured on (the machine is shared: load matters)."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    packages = ("agora-stt-async", "httpx", "aiohttp", "httpx-aiohttp", "trio", "anyio", "attrs")
    for package in (*packages, "cattrs", "uvicorn", "redis"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in load] if load else None,
        "packages": versions,
    }


def _fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}" if digits > 0 else f"{value:,.0f}"


def rows(figures: Sequence[Figure]) -> list[tuple[str, str, str, str, str, str, str]]:
    return [
        (
            f.name,
            _fmt(f.low, f.digits),
            _fmt(f.median, f.digits),
            _fmt(f.high, f.digits),
            f.unit,
            str(f.target) if f.target else "",
            f.verdict,
        )
        for f in figures
    ]


HEADER = ("figure", "min", "median", "max", "unit", "target", "")


def console_table(sections: Sequence[Section]) -> str:
    lines: list[str] = []
    all_rows = [r for s in sections for r in rows(s.figures)]
    widths = [max(len(HEADER[i]), *(len(r[i]) for r in all_rows)) for i in range(len(HEADER))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in (0, 4, 5) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    for section in sections:
        lines.append("")
        lines.append(f"== {section.title}")
        lines.append(line(HEADER))
        lines.extend(line(r) for r in rows(section.figures))
    return "\n".join(lines)


def verdicts(sections: Sequence[Section]) -> dict[str, dict[str, object]]:
    return {
        f.name: {"value": f.rounded(f.median), "target": str(f.target), "verdict": f.verdict}
        for s in sections
        for f in s.figures
        if f.target is not None
    }


def document(
    sections: Sequence[Section],
    *,
    mode: str,
    runs: int,
    sizes: Sizes,
    seconds: float,
    host: dict[str, object],
) -> dict[str, object]:
    """The ``--json`` document: medians under the issue's keys, then the details."""
    out: dict[str, object] = {}
    for section in sections:
        out.update(section.json)
    out["checks"] = verdicts(sections)
    out["figures"] = {f.name: f.stats() for s in sections for f in s.figures}
    out["run"] = {
        "mode": mode,
        "repetitions": runs,
        "sizes": attrs.asdict(sizes),
        "seconds": round(seconds, 1),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": host,
    }
    return out


def markdown(
    sections: Sequence[Section],
    *,
    runs: int,
    seconds: float,
    host: dict[str, object],
    command: str,
    findings: str,
    method: str = "",
) -> str:
    """``benchmarks/RESULTS.md``: the machine, how it was measured (``method``), the
    tables, what was found (``findings``)."""
    md: list[str] = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC in {seconds:.0f} s. "
        f"Every figure was measured {runs} times; the table shows min / median / max and "
        "judges the median. Regenerate with `python benchmarks/run.py` (the whole file is "
        "rewritten: the findings of the run from its figures, the past investigations "
        "from `benchmarks/run.py`).",
        "",
        "## Machine",
        "",
        f"- CPU: {host.get('cpu')} ({host.get('cores')} cores as seen by Python)",
        f"- Load average at the end of the run: {host.get('load_average')} "
        "(a shared machine: other jobs ran at the same time)",
        f"- {host.get('implementation')} {host.get('python')} on {host.get('platform')}",
        "- Packages: "
        + ", ".join(f"{k} {v}" for k, v in dict(host.get("packages") or {}).items() if v),  # type: ignore[call-overload]
        "",
    ]
    if method.strip():
        md += [method.strip(), ""]
    md += ["## Figures", ""]
    for section in sections:
        md += [f"### {section.title}", ""]
        md.append("| " + " | ".join(h or "verdict" for h in HEADER) + " |")
        md.append("|" + "|".join(["---", *["---:"] * 3, "---", "---", "---"]) + "|")
        for r in rows(section.figures):
            md.append("| " + " | ".join([f"`{r[0]}`", *r[1:]]) + " |")
        md.append("")
        for note in section.notes:
            md += [note, ""]
    md += [findings.strip(), ""]
    return "\n".join(md)
