"""The gateway's own Python per call counted in CPU instructions, which no noisy neighbour changes.

``gateway_logic`` times the same stack in CPU seconds; on a shared 2-core VM those figures move by
20 % or more between two runs of the same code, more than a change to the hit path is worth. Here
``valgrind --tool=cachegrind`` (Debian ``valgrind``, installed the way h2load is) counts the
instructions of a process that makes ``SHORT`` and then of one that makes ``LONG`` calls of the
stack ``gateway_logic.assemble`` builds (admission, face, pipeline, operation; auth off, logging at
``warning``); the difference over ``LONG - SHORT`` calls is one call's, start-up and imports
cancelled. Cases: a GetMessage cache hit through the real operations, and the same stack over
``floors``' constant operations (every call answers the prebuilt message at once, marked as a hit
is: what ``proxy_grpc`` runs as the "gateway shell" floor). Their difference is what the hit's
operation costs: validation, the cache key and look-up, its counter and headers, the answer's
decoding. Runs of the same code agree within ~2 % (hash seeds and addresses vary): use it to
tell whether a change to that path helps. Instructions are not time: they leave out cache misses and what grpc
core and the kernel do per call, which ``proxy_grpc`` measures.

``python -m tests.bench.logic_instructions`` runs it alone; ``--drive {hit,shell} N`` is the
process cachegrind counts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from typing import Any

from tests.bench import loadgen

BENCHMARK = "logic_instructions"
#: Calls in the short and the long run; warm-up calls before either.
SHORT, LONG, WARMUP = 500, 2500, 100
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


async def _drive(kind: str, calls: int) -> None:
    from tests.bench.floors import _ConstantOperations
    from tests.bench.gateway_logic import assemble

    stack = assemble()
    try:
        call = stack.call()
        reply = None
        for _ in range(WARMUP):
            reply = await call()
        if kind == "shell":
            call = stack.serving(_ConstantOperations(reply)).call()
            for _ in range(WARMUP):
                await call()
        for _ in range(calls):
            await call()
    finally:
        await stack.close()


def drive(kind: str, calls: int) -> None:
    from gateway.config import ServerSettings
    from gateway.loop import LOOP_FACTORIES

    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    with asyncio.Runner(loop_factory=LOOP_FACTORIES[ServerSettings().event_loop]) as runner:
        runner.run(_drive(kind, calls))


def count(valgrind: str, kind: str, calls: int) -> int:
    """Instructions of one driving process, start to end."""
    done = subprocess.run(
        [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, "-m", "tests.bench.logic_instructions", "--drive", kind, str(calls)],
        capture_output=True, text=True, timeout=600, check=False)
    found = _REFS.search(done.stderr)
    if done.returncode or not found:
        raise RuntimeError(f"cachegrind run of {kind} x{calls} failed (rc {done.returncode}): "
                           f"{done.stderr[-800:]}")
    return int(found.group(1).replace(",", ""))


def per_call(valgrind: str, kind: str) -> float:
    return (count(valgrind, kind, LONG) - count(valgrind, kind, SHORT)) / (LONG - SHORT)


async def run() -> list[dict[str, Any]]:
    valgrind = loadgen.require_tool("valgrind")
    hit = await asyncio.to_thread(per_call, valgrind, "hit")
    shell = await asyncio.to_thread(per_call, valgrind, "shell")
    rows = [("GetMessage hit: the gateway's logic (admission, face, pipeline, operation)", hit),
            ("the same stack over constant operations (the shell's logic)", shell),
            ("the hit's operation: hit minus shell", hit - shell)]
    return [{"benchmark": BENCHMARK, "case": case, "concurrency": 1, "calls": LONG - SHORT,
             "instructions_per_call": round(value), "ratio": round(value / shell, 2),
             "vs": "shell's logic", "target": "info"} for case, value in rows]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drive", nargs=2, metavar=("KIND", "CALLS"))
    args = parser.parse_args()
    if args.drive:
        drive(args.drive[0], int(args.drive[1]))
    else:
        from tests.bench import format_table

        print(format_table(asyncio.run(run())))
