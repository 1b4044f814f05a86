"""The instruction-count suite's arithmetic and its reading of cachegrind's summary; the counting
itself runs in ``make bench`` (cachegrind takes a minute and a half)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.bench import logic_instructions as li

SUMMARY = ("==1== Cachegrind, a high-precision tracing profiler\n==1== \n"
           "==1== I   refs:      3,059,203,346\n")


def test_one_call_is_the_long_run_less_the_short_one(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[list[str]] = []

    def fake_run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        runs.append(args)
        calls = int(args[-1])
        refs = 1_000_000 + 70_000 * calls
        return subprocess.CompletedProcess(args, 0, "", f"==1== I   refs:      {refs:,}\n")

    monkeypatch.setattr(li.subprocess, "run", fake_run)
    assert li.per_call("valgrind", "hit") == 70_000
    assert [run[-3:] for run in runs] == [["--drive", "hit", str(li.LONG)],
                                          ["--drive", "hit", str(li.SHORT)]]
    assert runs[0][:2] == ["valgrind", "--tool=cachegrind"]


def test_a_failed_count_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(li.subprocess, "run", lambda args, **_: subprocess.CompletedProcess(
        args, 1, "", "Traceback: boom"))
    with pytest.raises(RuntimeError, match="cachegrind run of shell x500 failed .*boom"):
        li.count("valgrind", "shell", 500)


def test_the_summary_line_is_read() -> None:
    found = li._REFS.search(SUMMARY)
    assert found is not None and int(found.group(1).replace(",", "")) == 3_059_203_346
