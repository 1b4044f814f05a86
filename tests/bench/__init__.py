"""The benchmark runner behind ``make bench`` (``python -m tests.bench [SUITE ...]``).

Each suite is a module ``tests.bench.<name>`` exposing ``async def run() -> list[dict]``; every
row is ``{"benchmark", "case", ...figures..., "ratio", "target"}``, the ratio measured against a
baseline in the same run. Suites run one after another in this process, each on a fresh event
loop; a suite that is not there (another branch not merged yet) is noted and skipped, a suite that
fails is reported and makes the run exit non-zero. One aligned table is printed and every row is
written to ``.bench/results.json``.

Only the standard library is imported here: pytest imports this package to collect its tests.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import json
import os
import platform
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

#: Every suite the project knows, in the order they run.
SUITES = ["upstream_transport", "gateway_unary", "streaming", "cache", "rest", "auth", "ownership",
          "workers", "proxy_grpc", "proxy_rest", "proxy_stream", "proxy_memory", "gateway_logic",
          "logic_instructions"]
PACKAGE = __name__
RESULTS_PATH = Path(__file__).resolve().parents[2] / ".bench" / "results.json"

#: Columns that lead and close every table; the figures of all suites go in between.
LEADING = ("benchmark", "case")
TRAILING = ("ratio", "target", "verdict")

#: Before each suite, wait (at most QUIET_WAIT_SECONDS) until other processes use less than this
#: share of the CPUs: on a shared machine a neighbour's test run would otherwise be measured too.
QUIET_BUSY_SHARE = 0.15
QUIET_WAIT_SECONDS = 90.0


_TARGET = re.compile(r"^\s*(>=|<=|>|<)\s*([0-9]*\.?[0-9]+)\s*x?\s*$")


@dataclass
class RunReport:
    rows: list[dict[str, Any]] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    #: 1-minute load average before and after each suite: a busy machine skews every figure.
    load: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: Share of the CPUs other processes kept busy just before each suite started.
    busy_before: dict[str, float] = field(default_factory=dict)


def load_suite(name: str, package: str = PACKAGE) -> ModuleType | None:
    """The suite module, or None when no module of that name exists.

    Only the suite's own absence counts as "not present": an import error inside a suite that
    exists (a missing dependency, a syntax error) propagates and is reported as a failure.
    """
    qualified = f"{package}.{name}"
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as exc:
        if exc.name == qualified:
            return None
        raise


def verdict(ratio: Any, target: Any) -> str:
    """"ok"/"MISS" when the target is a comparison such as ">= 0.5"; "" for descriptive targets."""
    match = _TARGET.match(str(target)) if isinstance(target, str) else None
    if match is None or not isinstance(ratio, (int, float)) or ratio != ratio:
        return ""
    op, bound = match.group(1), float(match.group(2))
    met = {">=": ratio >= bound, "<=": ratio <= bound, ">": ratio > bound, "<": ratio < bound}[op]
    return "ok" if met else "MISS"


def run_suites(
    names: Sequence[str],
    *,
    package: str = PACKAGE,
    out: Callable[[str], None] = print,
    quiet_wait: float = QUIET_WAIT_SECONDS,
) -> RunReport:
    report = RunReport()
    for name in names:
        try:
            module = load_suite(name, package)
        except Exception:
            report.failed[name] = traceback.format_exc(limit=5)
            out(f"[{name}] FAILED to import:\n{report.failed[name]}")
            continue
        if module is None:
            report.missing.append(name)
            out(f"[{name}] not present, skipped")
            continue
        busy = wait_for_quiet(out, quiet_wait) if quiet_wait > 0 else float("nan")
        report.busy_before[name] = busy
        load_before = load_average()
        out(f"[{name}] running (CPUs {busy:.0%} busy before, load average {load_before:.2f}) ...")
        started = time.perf_counter()
        try:
            rows = asyncio.run(module.run())
        except Exception:
            report.failed[name] = traceback.format_exc(limit=8)
            out(f"[{name}] FAILED:\n{report.failed[name]}")
            continue
        finally:
            report.seconds[name] = round(time.perf_counter() - started, 1)
            report.load[name] = (load_before, load_average())
        for r in rows:
            r.setdefault("verdict", verdict(r.get("ratio"), r.get("target")))
        report.rows.extend(rows)
        report.ran.append(name)
        out(f"[{name}] {len(rows)} rows in {report.seconds[name]} s")
    return report


def cpu_busy_share(interval: float = 1.0) -> float:
    """Share of all CPUs busy over ``interval`` seconds (from /proc/stat); NaN where absent."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return idle, sum(fields)

    try:
        idle0, total0 = sample()
        time.sleep(interval)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return float("nan")
    spent = total1 - total0
    return 1.0 - (idle1 - idle0) / spent if spent > 0 else float("nan")


def wait_for_quiet(out: Callable[[str], None], max_wait: float = QUIET_WAIT_SECONDS) -> float:
    """Wait until the machine is nearly idle or ``max_wait`` passes; returns the last busy share."""
    end = time.monotonic() + max_wait
    busy = cpu_busy_share()
    if busy == busy and busy >= QUIET_BUSY_SHARE:
        out(f"  machine {busy:.0%} busy; waiting up to {max_wait:.0f} s for it to settle")
        while busy >= QUIET_BUSY_SHARE and time.monotonic() < end:
            busy = cpu_busy_share()
    return round(busy, 3)


def load_average() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Leading columns, then every other key in first-seen order, then the ratio columns.

    Keys starting with ``_`` are kept in results.json but left out of the table.
    """
    middle: list[str] = []
    for r in rows:
        for key in r:
            if key.startswith("_"):
                continue
            if key not in LEADING and key not in TRAILING and key not in middle:
                middle.append(key)
    return [*LEADING, *middle, *TRAILING]


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """One plain-text table; text columns left-aligned, numeric columns right-aligned."""
    if not rows:
        return "(no results)"
    cols = columns(rows)
    cells = [[format_cell(r.get(c)) for c in cols] for r in rows]
    numeric = [
        all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows)
        and c not in LEADING
        for c in cols
    ]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(cols)]

    def fmt(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    lines = [fmt(cols), "  ".join("-" * w for w in widths)]
    lines.extend(fmt(line) for line in cells)
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write_results(report: RunReport, path: Path = RESULTS_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "suites": {"ran": report.ran, "missing": report.missing, "failed": report.failed,
                   "seconds": report.seconds, "load_average": report.load,
                   "cpu_busy_before": report.busy_before},
        "rows": report.rows,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    unknown = [a for a in args if a not in SUITES]
    if unknown:
        print(f"unknown suite(s): {', '.join(unknown)}; known: {', '.join(SUITES)}",
              file=sys.stderr)
        return 2
    report = run_suites(args or SUITES)
    m = machine()
    print()
    print(f"machine: {m['cpus']} CPUs, {m['processor']}, Python {m['python']}")
    print(format_table(report.rows))
    path = write_results(report)
    print(f"\nwritten to {path}")
    if report.missing:
        print(f"not present: {', '.join(report.missing)}")
    if report.failed:
        print(f"FAILED: {', '.join(report.failed)}")
        return 1
    return 0
