"""The fault plan's table in docs/reliability.md is true: every row once, each with a test that
exists and a figure."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
#: The plan's rows: load, upstream faults, cancellation, security, Redis and runtime.
ROWS = ([f"L{i}" for i in range(1, 4)] + [f"F{i}" for i in range(1, 15)]
        + [f"C{i}" for i in range(1, 8)] + [f"S{i}" for i in range(1, 15)]
        + [f"R{i}" for i in range(1, 9)])
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)")
HEADING = "## The fault plan, row by row"


def plan_rows() -> dict[str, list[str]]:
    text = DOC.read_text()
    assert HEADING in text, f"{DOC.name} has no '{HEADING}' section"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"[LFCSR]\d+", cells[0]):
            assert cells[0] not in rows, f"row {cells[0]} appears twice"
            rows[cells[0]] = cells
    return rows


def test_plan_table_has_every_row_once() -> None:
    assert sorted(plan_rows(), key=ROWS.index) == ROWS


def test_plan_table_names_tests_that_exist_and_a_figure_for_each_row() -> None:
    for row, (_, fault, tests, figure) in plan_rows().items():
        refs = TEST_REF.findall(tests)
        assert fault and figure, f"{row}: the fault and the figure must be filled"
        assert refs, f"{row}: no test named as `tests/...py::test_name`"
        for path, name in refs:
            source = ROOT / path
            assert source.is_file(), f"{row}: {path} does not exist"
            assert re.search(rf"^(async )?def {name}\(|^\s+(async )?def {name}\(",
                             source.read_text(), re.M), f"{row}: {path} has no {name}"
