"""C load generators for the server-side suites: h2load (gRPC over h2c) and wrk (HTTP/1.1).

A Python load generator on a 2-core machine spends as much CPU as the server it measures, so its
own cost hides the server's. h2load and wrk cost a fraction of that. This module finds (or
installs) them, builds what they send, runs them bounded in time or count and parses their text
output into :class:`GenResult`. It also reads a process's CPU time and RSS from ``/proc``.

Tools: ``h2load`` is Debian's ``nghttp2-client``, ``wrk`` Debian's ``wrk``. When a binary is not
on the machine and this process runs as root with ``apt-get``, they are installed (``apt-get
update`` once, then ``apt-get install -y``); otherwise :func:`require_tool` fails naming the exact
command to run.

The parsers take plain text and import nothing beyond the standard library, so their unit tests
(``tests/bench/test_loadgen.py``) run where neither tool is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Tool -> Debian package providing it.
PACKAGES = {"h2load": "nghttp2-client", "wrk": "wrk", "valgrind": "valgrind"}
#: Seconds a generator may run beyond its own bound before it is killed.
GRACE_SECONDS = 30.0
_apt_updated = False


def find_tool(name: str) -> str | None:
    for candidate in (shutil.which(name), f"/usr/bin/{name}", f"/usr/local/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def install_command(name: str) -> str:
    return f"apt-get update && apt-get install -y {PACKAGES[name]}"


def require_tool(name: str) -> str:
    """The tool's path; installs it with apt-get when root, else fails naming the command."""
    global _apt_updated
    found = find_tool(name)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            if not _apt_updated:
                subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=300,
                               env=env)
                _apt_updated = True
            subprocess.run(["apt-get", "install", "-y", "-q", PACKAGES[name]],
                           capture_output=True, timeout=300, env=env)
        except (OSError, subprocess.SubprocessError):
            pass
        found = find_tool(name)
        if found:
            return found
    raise RuntimeError(f"{name} is not installed and could not be installed here; "
                       f"run as root: {install_command(name)}")


# --------------------------------------------------------------------------- results

@dataclass(frozen=True, slots=True)
class GenResult:
    """One generator run: counts, wall time, latency percentiles (ms), bytes of response data."""

    requests: int  # responses counted as successes by the generator
    errors: int  # failed, errored, timed out, or (wrk) non-2xx/3xx
    seconds: float
    p50_ms: float
    p99_ms: float
    data_bytes: int = 0  # h2load: DATA frame payload received; wrk: total bytes read
    first_error: str = ""
    #: Calls still in flight when a timed run ended (h2load resets them: the server sees them
    #: cancelled). wrk does not report them; at most one per connection.
    abandoned: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


_H2_REQUESTS = re.compile(
    r"requests:\s*(\d+) total,\s*(\d+) started,\s*(\d+) done,\s*(\d+) succeeded,"
    r"\s*(\d+) failed,\s*(\d+) errored,\s*(\d+) timeout")
_H2_FINISHED = re.compile(r"finished in ([0-9.]+)(us|ms|s),")
_H2_TRAFFIC = re.compile(r"traffic:.*?\((\d+)\) total,.*?\((\d+)\) headers.*?\((\d+)\) data")
_H2_STATUS = re.compile(r"status codes:\s*(\d+) 2xx,\s*(\d+) 3xx,\s*(\d+) 4xx,\s*(\d+) 5xx")
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_h2load(text: str, durations_us: Sequence[int]) -> GenResult:
    """h2load's summary, with percentiles from its ``--log-file`` durations (microseconds).

    HTTP 200 is success to h2load even when the gRPC status in the trailers is an error: callers
    check correctness separately (the server's metrics, the data bytes per response).
    """
    req = _H2_REQUESTS.search(text)
    fin = _H2_FINISHED.search(text)
    if req is None or fin is None:
        raise ValueError(f"not h2load output: {text[-500:]!r}")
    _, started, done, succeeded, failed, errored, timeout = (int(x) for x in req.groups())
    status = _H2_STATUS.search(text)
    non_2xx = sum(int(x) for x in status.groups()[1:]) if status else 0
    traffic = _H2_TRAFFIC.search(text)
    seconds = float(fin.group(1)) * _UNIT[fin.group(2)]
    ordered = sorted(durations_us)
    errors = failed + errored + timeout + non_2xx
    first = ""
    if errors:
        first = (f"h2load: {failed} failed, {errored} errored, {timeout} timeout, "
                 f"{non_2xx} non-2xx")
    return GenResult(
        requests=succeeded - non_2xx if succeeded >= non_2xx else 0,
        errors=errors, seconds=seconds,
        p50_ms=_percentile(ordered, 50) / 1000, p99_ms=_percentile(ordered, 99) / 1000,
        data_bytes=int(traffic.group(3)) if traffic else 0, first_error=first,
        abandoned=max(0, started - done),
    )


def parse_h2load_log(text: str) -> list[int]:
    """Durations (µs) of the 2xx rows of an h2load ``--log-file`` (start, status, duration)."""
    out: list[int] = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1].startswith("2"):
            out.append(int(parts[2]))
    return out


_WRK_SUMMARY = re.compile(r"(\d+) requests in ([0-9.]+)(us|ms|s|m), ([0-9.]+)([KMGT]?B) read")
_WRK_PCT = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([0-9.]+)(us|ms|s|m)\s*$", re.M)
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_wrk(text: str) -> GenResult:
    """wrk's ``--latency`` report; non-2xx/3xx responses and socket errors are errors."""
    summary = _WRK_SUMMARY.search(text)
    if summary is None:
        raise ValueError(f"not wrk output: {text[-500:]!r}")
    total = int(summary.group(1))
    seconds = float(summary.group(2)) * _WRK_UNIT[summary.group(3)]
    pct = {int(m.group(1)): float(m.group(2)) * _WRK_UNIT[m.group(3)] * 1000
           for m in _WRK_PCT.finditer(text)}
    non_2xx = int(m.group(1)) if (m := _WRK_NON2XX.search(text)) else 0
    sock = sum(int(x) for x in m.groups()) if (m := _WRK_SOCKET.search(text)) else 0
    errors = non_2xx + sock
    first = f"wrk: {non_2xx} non-2xx/3xx, {sock} socket errors" if errors else ""
    return GenResult(
        requests=max(0, total - non_2xx), errors=errors, seconds=seconds,
        p50_ms=pct.get(50, float("nan")), p99_ms=pct.get(99, float("nan")),
        data_bytes=int(float(summary.group(4)) * _BYTES[summary.group(5)]), first_error=first,
    )


def _percentile(ordered: Sequence[int], q: float) -> float:
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))
    return float(ordered[int(min(rank, len(ordered))) - 1])


# --------------------------------------------------------------------------- running them

def grpc_frame(serialized: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message."""
    return b"\x00" + len(serialized).to_bytes(4, "big") + serialized


GRPC_HEADERS = {"content-type": "application/grpc", "te": "trailers"}


def connections(concurrency: int) -> tuple[int, int]:
    """(h2load clients, streams per client) for ``concurrency`` calls in flight."""
    if concurrency <= 4:
        return concurrency, 1
    if concurrency % 4:
        raise ValueError("concurrency above 4 must be a multiple of 4")
    return 4, concurrency // 4


def run_h2load(url: str, frame_file: Path | None, *, concurrency: int,
               seconds: float | None = None, requests: int | None = None,
               headers: Mapping[str, str] | None = None) -> GenResult:
    """gRPC: POST ``frame_file`` to ``url`` with ``concurrency`` calls in flight, for ``seconds``
    (timing mode) or ``requests`` calls; exactly one bound must be given. Without a frame file:
    plain HTTP/1.1 GETs (``--h1``, one connection per call in flight)."""
    if (seconds is None) == (requests is None):
        raise ValueError("give seconds or requests")
    clients, streams = connections(concurrency) if frame_file else (concurrency, 1)
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        log = Path(tmp) / "requests.tsv"
        args = [require_tool("h2load"), "-c", str(clients), "-m", str(streams), "-t", "1",
                f"--log-file={log}"]
        args += ["-d", str(frame_file)] if frame_file else ["--h1"]
        for name, value in {**(GRPC_HEADERS if frame_file else {}), **(headers or {})}.items():
            args += ["-H", f"{name}: {value}"]
        if seconds is not None:
            args += ["-D", f"{round(seconds * 1000)}ms"]
            limit = seconds + GRACE_SECONDS
        else:
            args += ["-n", str(requests)]
            limit = 600.0
        done = subprocess.run([*args, url], capture_output=True, text=True, timeout=limit)
        if done.returncode != 0 and "requests:" not in done.stdout:
            raise RuntimeError(f"h2load failed ({done.returncode}): {done.stderr[-1000:]}")
        durations = parse_h2load_log(log.read_text()) if log.exists() else []
    return parse_h2load(done.stdout, durations)


#: wrk scripts: a fixed method, body and headers (creates); a query string never sent before per
#: request (``NONCE`` is replaced by a fresh value on every run, see :func:`run_wrk`).
NONCE = "@NONCE@"
LUA_POST = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
"""
LUA_UNIQUE = """
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, wrk.path .. "{sep}bench_n=@NONCE@-" .. n)
end
"""


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def run_wrk(url: str, *, concurrency: int, seconds: float, headers: Mapping[str, str] | None = None,
            script: str = "") -> GenResult:
    """wrk with ``concurrency`` connections (one thread) for ``seconds`` (rounded to whole
    seconds, at least 1), ``--latency``."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        # wrk takes whole seconds only.
        args = [require_tool("wrk"), "-t", "1", "-c", str(concurrency), "-d",
                f"{max(1, round(seconds))}s", "--latency", "--timeout", "10s"]
        for name, value in (headers or {}).items():
            args += ["-H", f"{name}: {value}"]
        if script:
            path = Path(tmp) / "script.lua"
            path.write_text(script.replace(NONCE, uuid.uuid4().hex[:16]))
            args += ["-s", str(path)]
        done = subprocess.run([*args, url], capture_output=True, text=True,
                              timeout=seconds + GRACE_SECONDS)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-1000:]}")
    return parse_wrk(done.stdout)


# --------------------------------------------------------------------------- /proc

def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (children read from /proc/*/stat)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo and len(out) < 10_000:
        current = todo.pop()
        out.append(current)
        todo.extend(parents.get(current, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants, in seconds (from /proc/<pid>/stat)."""
    ticks = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")
