"""Time pieces of the gateway's code inside the running server, under real load.

``python -m tests.bench.insitu --wrap MODULE:NAME [--wrap ...] [--every N] -- serve ARGS...`` runs
``python -m gateway ARGS...`` with each named function wrapped in a ``time.perf_counter_ns``
timer, and every ``N`` calls of the first one (and at exit) writes to stderr, per wrapped
function, how many calls it had and its mean wall time per call, its callees included. Drive the
server with h2load or wrk as in docs/benchmarks.md ("Profiling").

Why: the same Python costs more inside the server than in a loop that runs it alone
(``gateway_logic``): between two calls grpc core, uvloop and the kernel run, and what one call's
code needs is no longer in the CPU's caches. A synchronous piece's wall time is its CPU time
here (nothing else runs on the loop meanwhile); an ``async`` one's includes its waits.

``NAME`` is where the code looks the function up: a module global (``gateway.cache:make_key``,
the name ``gateway.cache`` calls, not the module that defines it) or a class attribute
(``gateway.cache:ResponseCache.read``; static methods stay static). Each timer adds ~0.2 µs.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import importlib
import inspect
import sys
import time
from collections.abc import Callable
from typing import Any


class Timers:
    """Wall nanoseconds and calls per wrapped name."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.names: list[str] = []
        self.nanos: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.names.append(name)
        self.nanos[name] = self.calls[name] = 0
        clock, first = time.perf_counter_ns, len(self.names) == 1

        def done(started: int) -> None:
            self.nanos[name] += clock() - started
            self.calls[name] += 1
            if first and self.every and self.calls[name] % self.every == 0:
                self.report()

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = clock()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    done(started)
            return timed_async

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                done(started)
        return timed

    def report(self) -> None:
        lines = ["in-situ timers (mean wall µs per call of each, callees included):"]
        for name in self.names:
            calls = self.calls[name]
            mean = self.nanos[name] / calls / 1000 if calls else 0.0
            lines.append(f"  {name:<58} {calls:>9,} calls {mean:9.2f} µs")
        print("\n".join(lines), file=sys.stderr, flush=True)


def install(timers: Timers, spec: str) -> None:
    """Wrap the function ``spec`` (``module:name`` or ``module:Class.name``) in place."""
    module_name, _, path = spec.partition(":")
    if not path:
        raise SystemExit(f"--wrap {spec!r}: expected MODULE:NAME")
    owner: Any = importlib.import_module(module_name)
    *parents, attribute = path.split(".")
    try:
        for parent in parents:
            owner = getattr(owner, parent)
        raw = inspect.getattr_static(owner, attribute)
    except AttributeError:
        raise SystemExit(f"--wrap {spec!r}: {module_name} has no {path}") from None
    if isinstance(raw, staticmethod):
        setattr(owner, attribute, staticmethod(timers.wrap(spec, raw.__func__)))
    elif isinstance(raw, classmethod):
        setattr(owner, attribute, classmethod(timers.wrap(spec, raw.__func__)))
    elif callable(raw):
        setattr(owner, attribute, timers.wrap(spec, raw))
    else:
        raise SystemExit(f"--wrap {spec!r}: not a function")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.insitu")
    parser.add_argument("--wrap", action="append", default=[], metavar="MODULE:NAME")
    parser.add_argument("--every", type=int, default=20_000,
                        help="report every N calls of the first wrapped function (0: at exit)")
    parser.add_argument("gateway_args", nargs=argparse.REMAINDER,
                        help="-- then the arguments of python -m gateway")
    args = parser.parse_args(argv)
    gateway_args = args.gateway_args[1:] if args.gateway_args[:1] == ["--"] else args.gateway_args
    if not args.wrap or not gateway_args:
        parser.error("give at least one --wrap, then -- and the gateway's arguments")
    timers = Timers(args.every)
    for spec in args.wrap:
        install(timers, spec)
    atexit.register(timers.report)
    from gateway.__main__ import main as gateway_main

    return gateway_main(gateway_args)


if __name__ == "__main__":
    sys.exit(main())
