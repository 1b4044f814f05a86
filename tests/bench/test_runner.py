"""The benchmark runner: suite discovery, failure reporting, the table and the results file."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from tests.bench import format_table, run_suites, verdict, write_results
from tests.bench.common import percentile

GOOD = """
async def run():
    return [
        {"benchmark": "fake", "case": "baseline", "rps": 1234.5, "ratio": 1.0,
         "target": "baseline"},
        {"benchmark": "fake", "case": "candidate", "rps": 617.25, "p99_ms": 3.5, "_hidden": 1,
         "ratio": 0.5, "target": ">= 0.6"},
    ]
"""
FAILS = """
async def run():
    raise RuntimeError("server did not start")
"""
BROKEN_IMPORT = """
import module_that_does_not_exist_anywhere
"""


@pytest.fixture
def suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = tmp_path / "fakebench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in (("good", GOOD), ("fails", FAILS), ("broken", BROKEN_IMPORT)):
        (package / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fakebench"
    for name in [m for m in sys.modules if m == "fakebench" or m.startswith("fakebench.")]:
        del sys.modules[name]


def test_run_suites_absent_suite_noted_and_others_still_run(suites: str) -> None:
    lines: list[str] = []
    report = run_suites(["absent", "good"], package=suites, out=lines.append, quiet_wait=0)
    assert report.missing == ["absent"]
    assert report.ran == ["good"]
    assert [r["case"] for r in report.rows] == ["baseline", "candidate"]
    assert any("absent" in line and "not present" in line for line in lines)


def test_run_suites_failing_or_unimportable_suite_reported_not_skipped(suites: str) -> None:
    report = run_suites(["fails", "broken", "good"], package=suites, out=lambda _: None,
                        quiet_wait=0)
    assert set(report.failed) == {"fails", "broken"}
    assert "server did not start" in report.failed["fails"]
    assert "module_that_does_not_exist_anywhere" in report.failed["broken"]
    assert report.missing == []
    assert report.ran == ["good"]


def test_run_suites_comparison_target_gets_verdict(suites: str) -> None:
    report = run_suites(["good"], package=suites, out=lambda _: None, quiet_wait=0)
    assert [r["verdict"] for r in report.rows] == ["", "MISS"]


def test_verdict_comparisons_and_descriptive_targets() -> None:
    assert verdict(0.31, ">= 0.3") == "ok"
    assert verdict(0.29, ">= 0.3") == "MISS"
    assert verdict(1.2, "<= 1.5x") == "ok"
    assert verdict(0.5, "info: the alternative") == ""
    assert verdict(float("nan"), ">= 0.3") == ""


def test_format_table_columns_aligned_union_of_keys_hidden_keys_left_out() -> None:
    rows = [
        {"benchmark": "a", "case": "baseline", "rps": 1234.5, "ratio": 1.0, "target": "baseline",
         "verdict": ""},
        {"benchmark": "a", "case": "long candidate name", "rps": 617.25, "p99_ms": 3.5,
         "_hidden": 1, "ratio": 0.5, "target": ">= 0.6", "verdict": "MISS"},
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["benchmark", "case", "rps", "p99_ms", "ratio", "target",
                                "verdict"]
    assert "_hidden" not in lines[0]
    # Numbers are right-aligned: the rps figures end in the same column.
    assert lines[2].index("1,234") + len("1,234") == lines[3].index("617.2") + len("617.2")
    assert "MISS" in lines[3]


def test_write_results_rows_and_suite_status_in_json(suites: str, tmp_path: Path) -> None:
    report = run_suites(["good", "absent"], package=suites, out=lambda _: None, quiet_wait=0)
    path = write_results(report, tmp_path / "out" / "results.json")
    payload = json.loads(path.read_text())
    assert payload["suites"]["ran"] == ["good"]
    assert payload["suites"]["missing"] == ["absent"]
    assert payload["rows"][1]["_hidden"] == 1
    assert payload["machine"]["cpus"] >= 1


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
