"""The in-situ timers: what they wrap, count and report."""

from __future__ import annotations

import asyncio
import sys
import types

import pytest

from tests.bench import insitu


def _module() -> types.ModuleType:
    module = types.ModuleType("insitu_target")

    def plain(x: int) -> int:
        return x + 1

    async def later(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    class Thing:
        @staticmethod
        def static(x: int) -> int:
            return -x

        def method(self, x: int) -> int:
            return x

    module.plain, module.later, module.Thing = plain, later, Thing  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    return module


def test_wraps_functions_coroutines_and_static_methods_in_place(
        capsys: pytest.CaptureFixture[str]) -> None:
    module = _module()
    timers = insitu.Timers(every=2)
    for name in ("plain", "later", "Thing.static", "Thing.method"):
        insitu.install(timers, f"insitu_target:{name}")
    assert module.plain(1) == 2
    assert asyncio.run(module.later(3)) == 6
    assert module.Thing.static(4) == -4 and module.Thing().static(4) == -4
    assert module.Thing().method(5) == 5
    assert module.plain(2) == 3  # the second call of the first name: a report
    assert timers.calls == {"insitu_target:plain": 2, "insitu_target:later": 1,
                            "insitu_target:Thing.static": 2, "insitu_target:Thing.method": 1}
    assert all(nanos > 0 for nanos in timers.nanos.values())
    report = capsys.readouterr().err
    assert "insitu_target:Thing.static" in report and "2 calls" in report


def test_a_raising_function_is_timed_and_still_raises() -> None:
    module = _module()
    timers = insitu.Timers(every=0)
    insitu.install(timers, "insitu_target:plain")
    with pytest.raises(TypeError):
        module.plain("x")
    assert timers.calls["insitu_target:plain"] == 1


@pytest.mark.parametrize("spec", ["insitu_target", "insitu_target:nothing_here"])
def test_a_bad_spec_is_refused(spec: str) -> None:
    _module()
    with pytest.raises(SystemExit):
        insitu.install(insitu.Timers(every=0), spec)
