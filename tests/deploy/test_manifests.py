"""deploy/: every Kubernetes manifest validated against the 1.37 schemas (kubernetes-validate,
strict: unknown fields fail), and the relations between them and the gateway's own settings."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.config import load_settings, parse_listen

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_VERSION = "1.37.0"


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    # deploy/monitoring/ holds prometheus-operator resources, checked by test_monitoring.py;
    # deploy/examples/ what is never applied as it is (the Secrets' shape, optional policies).
    paths = [*(DEPLOY / "kubernetes").rglob("*.yaml"), *(DEPLOY / "examples").rglob("*.yaml")]
    for path in sorted(paths):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                found.append((f"{path.relative_to(DEPLOY)}:{doc['kind']}/"
                              f"{doc['metadata']['name']}", doc))
    return found


DOCS = documents()


def one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    toml = one("ConfigMap", "messages-gateway-config")["data"]["gateway.toml"]
    path = tmp_path_factory.mktemp("cfg") / "gateway.toml"
    path.write_text(toml, encoding="utf-8")
    return load_settings(path, environ={})  # the gateway's own validation, unknown keys fail


@pytest.fixture(scope="module")
def pod() -> dict[str, Any]:
    return one("Deployment", "messages-gateway")["spec"]["template"]


def container_ports(pod_template: dict[str, Any]) -> dict[str, int]:
    (container,) = pod_template["spec"]["containers"]
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def test_deploy_has_every_required_manifest() -> None:
    kinds = sorted({d["kind"] for _, d in DOCS})
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy",
                     "PodDisruptionBudget", "Secret", "Service"]
    one("Deployment", "messages-gateway-redis")
    one("Service", "messages-gateway-redis")


@pytest.mark.parametrize(("where", "doc"), DOCS, ids=[w for w, _ in DOCS])
def test_manifest_validates_against_kubernetes_schema(where: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_validation_rejects_an_unknown_field() -> None:
    broken = yaml.safe_load((DEPLOY / "kubernetes/autoscaling.yaml").read_text().split("---")[0])
    broken["spec"]["minReplica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_termination_grace_outlasts_the_gateway_drain(settings, pod) -> None:
    server = settings.server
    drain = server.drain_delay_seconds + server.grace_seconds
    assert pod["spec"]["terminationGracePeriodSeconds"] > drain
    (container,) = pod["spec"]["containers"]
    liveness = container["livenessProbe"]
    # Liveness must not restart a pod that is draining (health is NOT_SERVING meanwhile).
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > drain


def test_workers_fit_the_pod(settings, pod) -> None:
    """One requested CPU per worker; the supervisor's kill comes before the kubelet's."""
    from gateway.config_checks import worker_count
    from gateway.supervisor import KILL_MARGIN_SECONDS

    workers = worker_count(settings.server.workers)
    (container,) = pod["spec"]["containers"]
    cpu = str(container["resources"]["requests"]["cpu"])
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    assert cores >= workers
    server = settings.server
    assert pod["spec"]["terminationGracePeriodSeconds"] > (
        server.drain_delay_seconds + server.grace_seconds + KILL_MARGIN_SECONDS)
    if workers > 1:  # per-worker state would not hold across the pod's workers
        assert settings.cache.backend == "redis" and settings.auth.limits_backend == "redis"


def test_probes_are_native_grpc_on_the_grpc_port(settings, pod) -> None:
    (container,) = pod["spec"]["containers"]
    ports = container_ports(pod)
    assert parse_listen(settings.server.grpc_listen, "grpc")[1] == ports["grpc"]
    assert parse_listen(settings.server.http_listen, "http")[1] == ports["http"]
    assert parse_listen(settings.server.metrics_listen, "metrics")[1] == ports["metrics"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])


def test_services_expose_named_grpc_and_http_ports_of_the_pods(pod) -> None:
    labels = pod["metadata"]["labels"]
    ports = container_ports(pod)
    service = one("Service", "messages-gateway")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {
        "grpc": "grpc", "http": "http"}
    headless = one("Service", "messages-gateway-headless")
    assert headless["spec"]["clusterIP"] == "None"
    for svc in (service, headless):
        assert svc["spec"]["selector"].items() <= labels.items()
        assert all(p["targetPort"] in ports for p in svc["spec"]["ports"])


def test_secret_is_mounted_as_a_directory_where_the_config_reads_the_key(settings, pod) -> None:
    key_file = settings.upstream.api_key_file
    (container,) = pod["spec"]["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    secret_volume = next(n for n, v in volumes.items() if "secret" in v)
    mount = mounts[secret_volume]
    assert "subPath" not in mount  # subPath mounts never see a rotated Secret
    assert mount["mountPath"] == posixpath.dirname(key_file)
    secret = one("Secret", volumes[secret_volume]["secret"]["secretName"])
    assert posixpath.basename(key_file) in secret["stringData"]
    assert secret["stringData"][posixpath.basename(key_file)] == ""  # no key committed
    config_volume = next(n for n, v in volumes.items() if "configMap" in v)
    assert volumes[config_volume]["configMap"]["name"] == "messages-gateway-config"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert posixpath.dirname(env["GATEWAY_CONFIG"]) == mounts[config_volume]["mountPath"]


def test_pods_run_as_non_root_with_a_read_only_root(pod) -> None:
    for name in ("messages-gateway", "messages-gateway-redis"):
        spec = one("Deployment", name)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_autoscaler_budget_and_policies_target_the_gateway(pod) -> None:
    labels = pod["metadata"]["labels"]
    hpa = one("HorizontalPodAutoscaler", "messages-gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "messages-gateway"
    assert hpa["spec"]["minReplicas"] >= 2  # so the PDB below can let one go
    pdb = one("PodDisruptionBudget", "messages-gateway")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]
    policy = one("NetworkPolicy", "messages-gateway")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert allowed == set(container_ports(pod))
    redis_port = one("Service", "messages-gateway-redis")["spec"]["ports"][0]["port"]
    egress = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert redis_port in egress and 443 in egress


def test_credentials_store_is_a_mounted_secret_and_redis_urls_name_the_redis_service(
    settings, pod
) -> None:
    store = settings.auth.store_path
    assert settings.auth.enabled
    (container,) = pod["spec"]["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts[posixpath.dirname(store)]
    assert "subPath" not in mount
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
    secret = one("Secret", volume["secret"]["secretName"])
    from gateway.credentials import store as credentials_store

    empty = credentials_store.parse(secret["stringData"][posixpath.basename(store)])
    assert empty.consumers == {}  # a valid store, with no consumer committed
    service = one("Service", "messages-gateway-redis")
    for url in (settings.cache.redis_url, settings.auth.redis_url):
        assert url.startswith(f"redis://{service['metadata']['name']}:")


def test_redis_service_selects_the_redis_pods() -> None:
    pod_labels = one("Deployment", "messages-gateway-redis")["spec"]["template"]["metadata"][
        "labels"]
    service = one("Service", "messages-gateway-redis")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    policy = one("NetworkPolicy", "messages-gateway-redis")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_dockerfile_is_multi_stage_non_root_and_holds_no_secret() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    instructions = [line.strip() for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    stages = [line for line in instructions if line.upper().startswith("FROM ")]
    assert len(stages) >= 2
    final = instructions[instructions.index(stages[-1]):]
    (user,) = [line for line in final if line.upper().startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert 'ENTRYPOINT ["gateway", "serve"]' in final
    assert not re.search(r"(?i)(api_key|secret|token|password)\s*=", text)
    assert "COPY --from=build /opt/venv /opt/venv" in final


def config_checksum(configmap: dict[str, Any]) -> str:
    """What the pod template's ``checksum/config`` must say: SHA-256 of the data, canonical."""
    import hashlib
    import json

    canonical = json.dumps(configmap["data"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def test_the_manifests_applied_whole_hold_no_secret() -> None:
    """`kubectl apply -f deploy/kubernetes/` replaced the real upstream key and credentials
    store with the committed empty ones."""
    applied = [w for w, d in DOCS if w.startswith("kubernetes/") and d["kind"] == "Secret"]
    assert applied == []
    assert {d["metadata"]["name"] for w, d in DOCS if d["kind"] == "Secret"} == {
        "messages-gateway-upstream", "messages-gateway-consumers"}  # the examples'


def test_the_pod_template_rolls_when_the_configmap_changes(pod) -> None:
    configmap = one("ConfigMap", "messages-gateway-config")
    expected = config_checksum(configmap)
    assert pod["metadata"]["annotations"].get("checksum/config") == expected, (
        f"deploy/kubernetes/deployment.yaml: set checksum/config to {expected}")


def test_readiness_does_not_flap_on_one_slow_answer(pod) -> None:
    (container,) = pod["spec"]["containers"]
    probe = container["readinessProbe"]
    assert probe["failureThreshold"] >= 3
    assert probe["timeoutSeconds"] >= 2
    # Still out of rotation within ~15 s when the consumer service turns NOT_SERVING.
    assert probe["periodSeconds"] * probe["failureThreshold"] <= 15


def test_the_private_upstream_example_opens_one_destination_for_the_gateway_pods(pod) -> None:
    labels = pod["metadata"]["labels"]
    policy = one("NetworkPolicy", "messages-gateway-private-upstream")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["spec"]["policyTypes"] == ["Egress"]
    (rule,) = policy["spec"]["egress"]
    (target,) = rule["to"]
    assert target["ipBlock"]["cidr"].endswith("/32")


def test_the_pods_resource_attributes_pass_the_gateways_validation(pod, tmp_path) -> None:
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    template = env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
    for name in re.findall(r"\$\((\w+)\)", template):  # the kubelet's $(VAR) expansion
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"].startswith("metadata.")
        template = template.replace(f"$({name})", "gw-7d9f-abcde")
    toml = one("ConfigMap", "messages-gateway-config")["data"]["gateway.toml"]
    (tmp_path / "gateway.toml").write_text(toml, encoding="utf-8")
    settings = load_settings(tmp_path / "gateway.toml",
                             environ={"OTEL_RESOURCE_ATTRIBUTES": template})
    assert "k8s.pod.name=gw-7d9f-abcde" in settings.tracing.resource_attributes
    assert settings.tracing.enabled is False  # until a collector is there
