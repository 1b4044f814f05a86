"""The soak's gates fire on a real process: a short soak of a gateway that leaks on purpose
(``leaky_gateway.py``) exits 1 with a FAIL line for each leak. The soak itself runs in
``make test`` (60 s) and ``make soak``; its verdict logic on made-up samples is in
``test_soak_gates.py``."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import TEST_EVENT_LOOP


def test_a_leaking_gateway_fails_every_gate() -> None:
    env = {**os.environ, "SOAK_LEAK": "tasks,fds,memory,upstream",
           "SOAK_GATEWAY_WRAP": f"{sys.executable} -m tests.reliability.leaky_gateway",
           # The gateway on the loop this run tests (make test runs the folder on both).
           "GATEWAY_SERVER_EVENT_LOOP": TEST_EVENT_LOOP}
    done = subprocess.run(
        [sys.executable, "-m", "tests.reliability.soak", "--seconds", "4", "--warmup", "1.5",
         "--concurrency", "4", "--patience", "1"],
        env=env, capture_output=True, text=True, timeout=90, check=False)
    fails = [line for line in done.stdout.splitlines() if line.startswith("FAIL: ")]
    assert done.returncode == 1, done.stdout + done.stderr
    reasons = "\n".join(fails)
    for expected in ("upstream request(s) still in flight", "RSS grew", "native heap grew",
                     "file descriptors grew", "socket(s) to the upstream", "asyncio tasks grew"):
        assert expected in reasons, done.stdout
    assert done.stdout.splitlines()[-1] == "FAIL"
