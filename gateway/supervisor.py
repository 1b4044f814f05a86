"""``server.workers = N``: one supervisor process and N full gateways sharing the ports.

Each worker is ``python -m gateway serve`` with the same arguments and environment, plus
``MESSAGES_GATEWAY_WORKER=<index>`` (not a ``GATEWAY_*`` name: those are settings). Workers bind
the same gRPC and HTTP ports with SO_REUSEPORT (grpc core sets it on its ports; the REST face sets
it when ``server.workers`` > 1), so the kernel spreads new connections over them. They are
spawned, never forked: grpc.aio and the event loop do not survive ``fork``.

* **Signals.** SIGTERM / SIGINT go to every worker at once, so every worker turns NOT_SERVING
  together, keeps accepting for ``drain_delay_seconds``, ends streams resumably and gives unary
  calls ``grace_seconds``; workers still running after drain + grace + ``KILL_MARGIN_SECONDS``
  are killed. SIGHUP (reload the credentials store) goes to every worker.
* **Crashes.** A worker that exits while the supervisor is not stopping is logged and started
  again after a backoff (``RESTART_FIRST_SECONDS`` doubling to ``RESTART_MAX_SECONDS``, back to
  the first after ``RESTART_RESET_SECONDS`` of uptime). A worker exiting 2 (its start was refused:
  configuration, a missing store) stops the supervisor with 2: restarting cannot fix it.
* **Metrics.** prometheus-client's multiprocess mode: workers write their series to files in
  ``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory per supervisor), and the supervisor serves
  ``server.metrics_listen`` once, summing them (``MultiProcessCollector``); a dead worker's live
  gauges are dropped, its counters kept (counters never go back).
* **Logs.** Workers inherit the supervisor's stdout and stderr: one stream, each line whole (one
  write per line), each carrying ``worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from gateway.config import Settings, parse_listen
from gateway.config_checks import worker_count

log = structlog.get_logger("gateway.supervisor")

#: Set in a worker's environment: its index (0..N-1).
WORKER_ENV = "MESSAGES_GATEWAY_WORKER"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
RESTART_FIRST_SECONDS = 0.5
RESTART_MAX_SECONDS = 30.0
RESTART_RESET_SECONDS = 60.0
KILL_MARGIN_SECONDS = 5.0
#: Exit status of a worker whose start was refused (``gateway.app.serve``).
START_REFUSED = 2


def worker_index() -> int | None:
    """This process' worker index, or None outside a supervisor."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value is not None and value.isdigit() else None


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    backoff: float = RESTART_FIRST_SECONDS
    restarts: int = 0
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    """Starts, watches and stops the workers; see the module docstring."""

    def __init__(self, settings: Settings, argv: Sequence[str]) -> None:
        self.settings = settings
        self.count = worker_count(settings.server.workers)
        self._argv = [sys.executable, "-m", "gateway", "serve", *argv]
        self._dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        self._workers = [_Worker(i) for i in range(self.count)]
        self._stopping = asyncio.Event()
        self._refused = False
        self._metrics: object | None = None

    def _environment(self, index: int) -> dict[str, str]:
        return {**os.environ, WORKER_ENV: str(index), MULTIPROC_ENV: self._dir}

    async def _spawn(self, worker: _Worker) -> None:
        worker.process = await asyncio.create_subprocess_exec(
            *self._argv, env=self._environment(worker.index), preexec_fn=_die_with_parent)
        worker.started = time.monotonic()
        log.info("worker_started", worker=worker.index, pid=worker.process.pid,
                 restarts=worker.restarts)

    async def _watch(self, worker: _Worker) -> None:
        """Wait for the worker to exit; start it again (after the backoff) unless stopping."""
        while True:
            assert worker.process is not None
            code = await worker.process.wait()
            self._forget(worker.process.pid)
            if self._stopping.is_set():
                log.info("worker_stopped", worker=worker.index, exit_code=code)
                return
            if code == START_REFUSED:
                log.error("worker_start_refused", worker=worker.index,
                          detail="a worker's start was refused; stopping every worker")
                self._refused = True
                self._stopping.set()
                return
            uptime = time.monotonic() - worker.started
            if uptime >= RESTART_RESET_SECONDS:
                worker.backoff = RESTART_FIRST_SECONDS
            log.warning("worker_exited", worker=worker.index, exit_code=code,
                        uptime_seconds=round(uptime, 1), restart_in_seconds=worker.backoff)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(worker.backoff):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            worker.backoff = min(RESTART_MAX_SECONDS, worker.backoff * 2)
            worker.restarts += 1
            while not self._stopping.is_set():
                try:
                    await self._spawn(worker)
                    break
                except OSError as exc:  # no process could be made (EAGAIN, EMFILE): later
                    log.error("worker_spawn_failed", worker=worker.index, error=str(exc),
                              retry_in_seconds=worker.backoff)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(worker.backoff):
                            await self._stopping.wait()
            if self._stopping.is_set() and (worker.process is None
                                            or worker.process.returncode is not None):
                return

    def _forget(self, pid: int) -> None:
        """Drop a dead worker's live gauges from the shared metrics."""
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, self._dir)

    def _signal(self, sig: int) -> None:
        for worker in self._workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)

    def _start_metrics(self) -> None:
        listen = self.settings.server.metrics_listen
        if not listen:
            return
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._dir)
        host, port = parse_listen(listen, "server.metrics_listen")
        self._metrics, _ = start_http_server(port, addr=host, registry=registry)

    async def run(self) -> int:
        """Until SIGTERM / SIGINT (or a refused start); the exit status."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._signal, signal.SIGHUP)
        try:
            self._start_metrics()
            for worker in self._workers:
                await self._spawn(worker)
                worker.watcher = asyncio.create_task(self._watch(worker))
            log.info("supervisor_started", workers=self.count, pid=os.getpid(),
                     grpc_listen=self.settings.server.grpc_listen,
                     http_listen=self.settings.server.http_listen or None,
                     metrics_listen=self.settings.server.metrics_listen or None)
            await self._stopping.wait()
        finally:
            await self._stop()  # also when start-up failed half-way: no worker is left behind
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if self._metrics is not None:
                self._metrics.shutdown()  # type: ignore[attr-defined]
                self._metrics.server_close()  # type: ignore[attr-defined]
            shutil.rmtree(self._dir, ignore_errors=True)
        log.info("supervisor_stopped")
        return START_REFUSED if self._refused else 0

    async def _stop(self) -> None:
        """SIGTERM to every worker together, then wait for the drain; kill what is left."""
        server = self.settings.server
        limit = server.drain_delay_seconds + server.grace_seconds + KILL_MARGIN_SECONDS
        log.info("supervisor_draining", workers=self.count, kill_after_seconds=limit)
        self._signal(signal.SIGTERM)
        watchers = [w.watcher for w in self._workers if w.watcher is not None]
        done, _ = await asyncio.wait(watchers, timeout=limit) if watchers else (set(), set())
        if len(done) < len(watchers):
            log.error("workers_killed", detail="still running after drain + grace")
            self._signal(signal.SIGKILL)
            await asyncio.wait(watchers, timeout=KILL_MARGIN_SECONDS)
        for task in watchers:
            task.cancel()


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the supervisor dies, even by SIGKILL, so
    no orphaned worker keeps the ports."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def run(settings: Settings, argv: Sequence[str]) -> int:
    """The supervisor's process: its own loop (the standard library's; it serves no calls)."""
    return asyncio.run(Supervisor(settings, argv).run())
