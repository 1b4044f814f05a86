"""The C generators' output parsers and helpers (no h2load or wrk needed: recorded output)."""

from __future__ import annotations

import math

import pytest

from tests.bench import loadgen

H2LOAD = """starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Application protocol: h2c

finished in 2.00s, 3523.00 req/s, 2.80MB/s
requests: 7046 total, 7078 started, 7046 done, 7046 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 7046 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 5.61MB (5881317) total, 20.94KB (21438) headers (space savings 96.24%), 5.22MB (5474742) data
                     min         max         mean         sd        +/- sd
time for request:      272us     35.72ms      9.04ms      3.75ms    90.96%
"""
H2LOAD_ERRORS = """finished in 450.12ms, 11.11 req/s, 1.00KB/s
requests: 10 total, 10 started, 10 done, 7 succeeded, 3 failed, 0 errored, 0 timeout
status codes: 5 2xx, 0 3xx, 2 4xx, 0 5xx
traffic: 402B (402) total, 220B (220) headers (space savings 45.00%), 0B (0) data
"""
H2LOAD_LOG = "1796154806683594\t200\t3237\n1796154806683596\t200\t4083\n1796154806683597\t503\t99\n"
WRK = """Running 1s test @ http://127.0.0.1:41319/v1/threads/t/messages/m
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   259.96us    1.15ms  16.13ms   96.26%
    Req/Sec    26.61k     3.95k   33.09k    63.64%
  Latency Distribution
     50%   61.00us
     75%   77.00us
     90%  137.00us
     99%    5.09ms
  29038 requests in 1.10s, 34.56MB read
Requests/sec:  26416.60
Transfer/sec:     31.44MB
"""
WRK_ERRORS = """Running 1s test @ http://127.0.0.1:41319/v1/nothing
  1 threads and 2 connections
  Latency Distribution
     50%    1.50ms
     75%    2.00ms
     90%    3.00ms
     99%    1.20s
  38229 requests in 1.10s, 9.26MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 100
Requests/sec:  34775.45
"""


def test_h2load_summary_with_log_percentiles() -> None:
    durations = [1000 * i for i in range(1, 101)]  # 1..100 ms
    result = loadgen.parse_h2load(H2LOAD, durations)
    assert result.requests == 7046
    assert result.errors == 0
    assert result.seconds == 2.0
    assert result.rps == pytest.approx(3523.0)
    assert result.p50_ms == 50.0 and result.p99_ms == 99.0
    assert result.data_bytes == 5474742
    assert result.abandoned == 32  # started - done: calls cut when the time was up


def test_h2load_failures_and_non_2xx_are_errors() -> None:
    result = loadgen.parse_h2load(H2LOAD_ERRORS, [])
    assert result.seconds == pytest.approx(0.45012)
    assert result.errors == 3 + 2
    assert result.requests == 5
    assert result.data_bytes == 0
    assert "3 failed" in result.first_error
    assert math.isnan(result.p50_ms)


def test_h2load_log_keeps_2xx_durations() -> None:
    assert loadgen.parse_h2load_log(H2LOAD_LOG) == [3237, 4083]
    assert loadgen.parse_h2load_log("") == []


def test_wrk_latency_report() -> None:
    result = loadgen.parse_wrk(WRK)
    assert result.requests == 29038
    assert result.errors == 0
    assert result.seconds == pytest.approx(1.10)
    assert result.p50_ms == pytest.approx(0.061)
    assert result.p99_ms == pytest.approx(5.09)
    assert result.data_bytes == int(34.56 * 1024 * 1024)


def test_wrk_non_2xx_and_socket_errors_count() -> None:
    result = loadgen.parse_wrk(WRK_ERRORS)
    assert result.errors == 100 + 5
    assert result.requests == 38229 - 100
    assert result.p99_ms == pytest.approx(1200.0)
    assert "100 non-2xx" in result.first_error


@pytest.mark.parametrize("text", ["", "Usage: wrk <options> <url>", "garbage\n"])
def test_parsers_refuse_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        loadgen.parse_wrk(text)
    with pytest.raises(ValueError):
        loadgen.parse_h2load(text, [])


def test_grpc_frame_and_connection_split() -> None:
    assert loadgen.grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert loadgen.connections(1) == (1, 1)
    assert loadgen.connections(32) == (4, 8)
    with pytest.raises(ValueError):
        loadgen.connections(30)


def test_require_tool_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loadgen, "find_tool", lambda name: None)
    monkeypatch.setattr(loadgen.os, "geteuid", lambda: 1000)  # not root: never installs
    with pytest.raises(RuntimeError, match="apt-get install -y nghttp2-client"):
        loadgen.require_tool("h2load")


def test_unique_script_gets_a_fresh_nonce_and_lua_strings_escape() -> None:
    assert loadgen.NONCE in loadgen.LUA_UNIQUE.format(sep="?")
    assert loadgen.lua_string('a"b\\c\n') == '"a\\"b\\\\c\\n"'
