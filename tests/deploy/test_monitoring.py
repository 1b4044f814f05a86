"""deploy/monitoring/: the alert rules pass ``promtool check rules`` and ``promtool test rules``
(each alert fires under its condition, with its labels and annotations, and not on healthy or
consumer-caused traffic), and a real Prometheus
(Debian's ``prometheus``; ``.ci/run`` installs it) on loopback, scraping a gateway and the
emulator under a short bounded load every second, loads the rules and answers every dashboard
query with data. Faults are part of the load (upstream 500s and 503s, a rate-limited consumer, a
bad key), so the error, retry and limit panels have series too. Without the binary the test is
skipped, except under CI (``CI=true``), where it fails."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2 as pb
from messages_gateway_client.generated.messages_gateway.v1 import messages_pb2_grpc as pb_grpc
from gateway.app import start_gateway
from gateway.emulator.server import EmulatorServer
from tests.credentials.helpers import add_consumer, auth_settings, bearer
from tests.rest.conftest import BETA

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
#: The dashboard's one Grafana variable in queries, as Grafana would set it for a 1 s scrape.
RATE_INTERVAL = "30s"
pytestmark = pytest.mark.slow


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (.ci/run installs Debian's prometheus)")
        pytest.skip(f"{name} is not installed (apt-get install prometheus)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's groups: a plain Prometheus rules file."""
    resource = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert resource["kind"] == "PrometheusRule"
    return {"groups": resource["spec"]["groups"]}


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    return [(f"{panel['title']} / {target['refId']}", target["expr"])
            for panel in dashboard["panels"] for target in panel.get("targets", ())]


def test_the_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = _binary("promtool")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in rule_groups()["groups"] for r in g["rules"]}
    assert alerts == {"GatewayErrorRatioHigh", "GatewayUpstreamCircuitOpen",
                      "GatewayLatencyP99High", "GatewayRateLimitSaturation",
                      "GatewayCredentialsReloadErrors", "GatewayNoUpstreamKey",
                      "GatewayUpstreamKeyRejected", "GatewayEventLoopLagHigh"}


def test_the_service_monitor_selects_the_metrics_service() -> None:
    monitor = yaml.safe_load((MONITORING / "servicemonitor.yaml").read_text())
    services = [d for d in yaml.safe_load_all(
        (MONITORING.parent / "kubernetes" / "service.yaml").read_text()) if d]
    wanted = monitor["spec"]["selector"]["matchLabels"]
    selected = [s for s in services
                if wanted.items() <= s["metadata"].get("labels", {}).items()]
    assert [s["metadata"]["name"] for s in selected] == ["messages-gateway-metrics"]
    ports = {p["name"] for p in selected[0]["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


@contextlib.contextmanager
def prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    binary = _binary("prometheus")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "messages-gateway",
                            "static_configs": [{"targets": [target]}]}],
    }))
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


async def _query(http: httpx.AsyncClient, base: str, expr: str) -> list[Any]:
    response = await http.get(f"{base}/api/v1/query", params={"query": expr})
    body = response.json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


async def _wait_ready(http: httpx.AsyncClient, base: str) -> None:
    for _ in range(100):  # 10 s at most
        with contextlib.suppress(httpx.TransportError):
            if (await http.get(f"{base}/-/ready")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise AssertionError("prometheus did not become ready")


async def _load(emulator: EmulatorServer, grpc_port: int, http_port: int, key: str,
                limited_key: str) -> None:
    """Bounded mixed traffic: reads (misses then hits), creates, streams on both faces, a
    NOT_FOUND, upstream failures retried and not, a consumer over its limit, a bad key."""
    thread_id = str(emulator.store.create_thread()["id"])
    ids = emulator.store.seed_messages(thread_id, 5)
    headers = {**BETA, "authorization": f"Bearer {key}"}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}/v1", headers=headers,
                              timeout=10.0) as rest:
        stub = pb_grpc.MessagesServiceStub(channel)
        for round_ in range(6):
            for message_id in ids:
                await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id,
                                                           message_id=message_id),
                                      metadata=bearer(key))
                await rest.get(f"/threads/{thread_id}/messages/{message_id}")
            await rest.post(f"/threads/{thread_id}/messages",
                            json={"role": "user", "content": f"r{round_}"})
            [p async for p in stub.StreamMessages(
                pb.StreamMessagesRequest(thread_id=thread_id, limit=2), metadata=bearer(key))]
            await rest.get(f"/threads/{thread_id}/messages:stream", params={"limit": 3})
            await rest.get(f"/threads/{thread_id}/messages/msg_missing")
            # A retried 503, and 500s outlasting the retries (UNAVAILABLE).
            emulator.faults.add("listMessages", "status", times=1, status=503)
            await rest.get(f"/threads/{thread_id}/messages", headers={"cache-control": "no-cache"})
            emulator.faults.add("getMessage", "status", times=3, status=500)
            await rest.get(f"/threads/{thread_id}/messages/{ids[0]}",
                           headers={"cache-control": "no-cache"})
            for _ in range(3):  # burst 1: the later ones are refused
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id,
                                                               message_id=ids[1]),
                                          metadata=bearer(limited_key))
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.GetMessage(pb.GetMessageRequest(thread_id=thread_id, message_id="m"),
                                      metadata=bearer("mgw_not-a-key"))
            await asyncio.sleep(1.0)  # a scrape between rounds: rates over several samples


async def test_every_dashboard_query_returns_data_from_a_real_prometheus(
        emulator: EmulatorServer, tmp_path: Path) -> None:
    started = time.monotonic()
    path = tmp_path / "store.json"
    key = add_consumer(path, "svc-dashboard", {"read", "write"})
    limited = add_consumer(path, "svc-limited", {"read"}, rate_per_second=0.01, burst=1)
    settings = auth_settings(emulator, path).replace(
        "server", http_listen="127.0.0.1:0", metrics_listen="127.0.0.1:0")
    gw = await start_gateway(settings)
    try:
        assert gw.metrics is not None
        with prometheus(tmp_path, f"127.0.0.1:{gw.metrics.port}") as base:
            async with httpx.AsyncClient(timeout=10.0) as http:
                await _wait_ready(http, base)
                await _load(emulator, gw.grpc_port, gw.http_port, key, limited)
                for _ in range(50):  # the last round's scrape and rule evaluation
                    up = await _query(http, base, 'up{job="messages-gateway"}')
                    if up and up[0]["value"][1] == "1":
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.5)
                empty = []
                for where, expr in dashboard_queries():
                    result = await _query(http, base, expr.replace("$__rate_interval",
                                                                   RATE_INTERVAL))
                    if not result:
                        empty.append(f"{where}: {expr}")
                assert empty == []
                # The consumer label is there, bounded to the store's names.
                consumers = {r["metric"]["consumer"] for r in await _query(
                    http, base, "sum by (consumer) (gateway_calls_total)")}
                assert {"svc-dashboard", "svc-limited", "anonymous"} <= consumers
                # Every rule loaded and evaluates without error.
                rules = (await http.get(f"{base}/api/v1/rules")).json()["data"]["groups"]
                health = {r["name"]: r["health"] for g in rules for r in g["rules"]}
                assert len(health) == 8 and set(health.values()) == {"ok"}, health
    finally:
        await gw.stop(grace=0.5)
    assert time.monotonic() - started < 60


#: promtool unit tests: each alert fires under its condition (and not on healthy traffic).
#: Counters rise per minute; `interval: 1m`.
ALERT_CASES: list[dict[str, Any]] = [
    {"series": {'gateway_calls_total{code="OK"}': "0+60x30",
                'gateway_calls_total{code="UNAVAILABLE"}': "0+10x30"},
     "alert": "GatewayErrorRatioHigh", "at": "15m", "labels": [{"severity": "page"}],
     "value": "14.29%"},
    {"series": {'gateway_calls_total{code="OK"}': "0+60x30",
                'gateway_calls_total{code="NOT_FOUND"}': "0+60x30"},  # the consumer's fault
     "alert": "GatewayErrorRatioHigh", "at": "15m", "labels": []},
    {"series": {'gateway_circuit_open{profile="default"}': "1x10"},
     "alert": "GatewayUpstreamCircuitOpen", "at": "5m",
     "labels": [{"severity": "page", "profile": "default"}]},
    {"series": {f'gateway_call_duration_seconds_bucket{{method="GetMessage",le="{le}"}}': v
                for le, v in (("1.0", "0x30"), ("2.5", "0x30"), ("5.0", "0+10x30"),
                              ("+Inf", "0+10x30"))},
     "alert": "GatewayLatencyP99High", "at": "20m", "labels": [{"severity": "warn"}],
     "value": "4.975s"},
    {"series": {f'gateway_call_duration_seconds_bucket{{method="StreamMessages",le="{le}"}}': v
                for le, v in (("1.0", "0x30"), ("5.0", "0+10x30"), ("+Inf", "0+10x30"))},
     "alert": "GatewayLatencyP99High", "at": "20m", "labels": []},  # streams are long
    {"series": {'gateway_rate_limited_total{consumer="svc-a",limit="rate",profile="default"}':
                "0+20x30",
                'gateway_calls_total{consumer="svc-a",code="RESOURCE_EXHAUSTED"}': "0+20x30",
                'gateway_calls_total{consumer="svc-a",code="OK"}': "0+80x30"},
     "alert": "GatewayRateLimitSaturation", "at": "20m",
     "labels": [{"severity": "warn", "consumer": "svc-a"}]},
    {"series": {"gateway_credentials_reload_errors_total": "0 0 1 1 1 1 1 1"},
     "alert": "GatewayCredentialsReloadErrors", "at": "5m", "labels": [{"severity": "warn"}]},
    {"series": {'gateway_upstream_key_missing{profile="eu"}': "1x10"},
     "alert": "GatewayNoUpstreamKey", "at": "5m",
     "labels": [{"severity": "page", "profile": "eu"}]},
    {"series": {'gateway_upstream_key_rejected_total{profile="eu"}': "0 0 0 2 4 4 4 4 4 4"},
     "alert": "GatewayUpstreamKeyRejected", "at": "5m",
     "labels": [{"severity": "page", "profile": "eu"}]},
    {"series": {'gateway_upstream_key_rejected_total{profile="eu"}': "4x20"},  # long ago
     "alert": "GatewayUpstreamKeyRejected", "at": "15m", "labels": []},
    {"series": {f'gateway_event_loop_lag_seconds_bucket{{le="{le}"}}': v
                for le, v in (("0.05", "0+500x30"), ("0.1", "0+600x30"),
                              ("+Inf", "0+600x30"))},
     "alert": "GatewayEventLoopLagHigh", "at": "20m", "labels": [{"severity": "warn"}],
     "value": "97ms"},
    {"series": {f'gateway_event_loop_lag_seconds_bucket{{le="{le}"}}': v
                for le, v in (("0.005", "0+599x30"), ("0.05", "0+600x30"),
                              ("+Inf", "0+600x30"))},  # healthy: p99 under 5 ms
     "alert": "GatewayEventLoopLagHigh", "at": "20m", "labels": []},
]


def _render(template: str, labels: dict[str, str], value: str) -> str:
    """The annotation as Prometheus renders it: ``$labels.X`` from the labels, ``$value`` (with
    its humanize function) as the case states it."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    return re.sub(r"\{\{ \$value[^}]*\}\}", value, text)


def test_each_alert_fires_under_its_condition_only(tmp_path: Path) -> None:
    promtool = _binary("promtool")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_groups()))
    annotations = {r["alert"]: r["annotations"] for g in rule_groups()["groups"]
                   for r in g["rules"]}
    tests = []
    for case in ALERT_CASES:
        expected = []
        for labels in case["labels"]:
            expected.append({"exp_labels": labels, "exp_annotations": {
                k: _render(v, labels, case.get("value", "")) for k, v in
                annotations[case["alert"]].items()}})
        tests.append({"interval": "1m",
                      "input_series": [{"series": s, "values": v}
                                       for s, v in case["series"].items()],
                      "alert_rule_test": [{"eval_time": case["at"], "alertname": case["alert"],
                                           "exp_alerts": expected}]})
    unit = tmp_path / "rules_test.yaml"
    unit.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m",
                                    "tests": tests}))
    result = subprocess.run([promtool, "test", "rules", str(unit)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {c["alert"] for c in ALERT_CASES} == set(annotations)


def test_the_dashboard_is_importable_as_it_is() -> None:
    """Unique panel ids and refIds, every query on the one datasource variable, and the panels
    the issue names."""
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in panels:
        refs = [t["refId"] for t in panel.get("targets", ())]
        assert len(set(refs)) == len(refs)
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and refs
    titles = " | ".join(p["title"] for p in panels).lower()
    for wanted in ("calls per second", "by code", "by consumer", "latency quantiles",
                   "cache hit ratio", "upstream", "circuit", "limit", "open streams"):
        assert wanted in titles
