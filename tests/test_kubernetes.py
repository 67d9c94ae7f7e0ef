"""The Kubernetes manifests (deploy/kubernetes): each overlay renders with kustomize (kubectl's),
every object is valid against the Kubernetes API schemas (kubernetes-validate, strict) and the
KEDA ones against KEDA's (deploy/kubernetes/check, Node.js), and they say what the docs promise:
workers scaled on their queue and drained in their grace period, gateways ready only with their
dependencies, a three-node broker with the stream at three replicas, secrets only from Secrets,
and network policies that mirror the broker's users.

These machines have no Kubernetes cluster; these checks are what can be proven without one.
"""

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = {"dev": "tokenwire-dev", "production": "tokenwire"}
"""Each overlay and its namespace."""
KUBERNETES_VERSION = "1.33.0"
Object = dict[str, Any]


@cache
def rendered(overlay: str) -> tuple[Object, ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is needed: make k8s-tools installs it"
    out = subprocess.run(
        [kubectl, "kustomize", str(KUBE / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def of_kind(overlay: str, kind: str) -> dict[str, Object]:
    return {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == kind}


def pod_specs(overlay: str) -> dict[str, Object]:
    workloads = of_kind(overlay, "Deployment") | of_kind(overlay, "StatefulSet")
    return {name: w["spec"]["template"] for name, w in workloads.items()}


def env_of(template: Object) -> dict[str, Object]:
    return {e["name"]: e for e in template["spec"]["containers"][0].get("env", [])}


def config(overlay: str) -> dict[str, str]:
    return dict(next(iter(of_kind(overlay, "ConfigMap").values()))["data"]) | {
        k: v
        for name, cm in of_kind(overlay, "ConfigMap").items()
        if name.startswith("tokenwire-config")
        for k, v in cm["data"].items()
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_kubernetes_schemas(overlay: str) -> None:
    builtin = [o for o in rendered(overlay) if not o["apiVersion"].startswith("keda.sh/")]
    assert len(builtin) >= 15
    for obj in builtin:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        assert obj["metadata"]["namespace"] == OVERLAYS[overlay]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_objects_are_valid_against_kedas_schema(overlay: str) -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed to check KEDA objects"
    check = KUBE / "check"
    assert (check / "node_modules").exists(), "run: npm ci --prefix deploy/kubernetes/check"
    result = subprocess.run(
        [node, str(check / "validate.mjs")],
        input=json.dumps(list(rendered(overlay))),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "1 KEDA objects valid"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_scale_on_their_queue_and_drain_within_their_grace_period(overlay: str) -> None:
    scaled = of_kind(overlay, "ScaledObject")["tokenwire-llm-worker"]["spec"]
    assert scaled["scaleTargetRef"]["name"] in of_kind(overlay, "Deployment")
    [trigger] = scaled["triggers"]
    meta = trigger["metadata"]
    assert (trigger["type"], meta["stream"], meta["consumer"], meta["account"]) == (
        "nats-jetstream",
        "CHAT",
        "llm-workers",
        "$G",
    )
    host, port = meta["natsServerMonitoringEndpoint"].rsplit(":", 1)
    assert host == f"tokenwire-nats.{OVERLAYS[overlay]}.svc.cluster.local"
    monitor = {
        p["name"]: p["port"] for p in of_kind(overlay, "Service")["tokenwire-nats"]["spec"]["ports"]
    }
    assert monitor["monitor"] == int(port)
    worker = pod_specs(overlay)["tokenwire-llm-worker"]
    drain_s = float(config(overlay)["TOKENWIRE_DRAIN_TIMEOUT_S"])
    assert worker["spec"]["terminationGracePeriodSeconds"] >= drain_s + 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateways_take_traffic_when_ready_and_scale_on_cpu_and_connections(overlay: str) -> None:
    gateway = pod_specs(overlay)["tokenwire-gateway"]["spec"]
    container = gateway["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The preStop pause and uvicorn's 10 s to close sockets (1012) fit in the grace period.
    assert (
        gateway["terminationGracePeriodSeconds"]
        >= container["lifecycle"]["preStop"]["sleep"]["seconds"] + 10
    )
    hpa = of_kind(overlay, "HorizontalPodAutoscaler")["tokenwire-gateway"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "tokenwire-gateway"
    metrics = {m["type"]: m for m in hpa["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "tokenwire_gateway_connections"
    budgets = of_kind(overlay, "PodDisruptionBudget")
    assert budgets["tokenwire-gateway"]["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "gateway"
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_is_a_three_node_cluster_with_the_stream_at_three_replicas(overlay: str) -> None:
    nats = of_kind(overlay, "StatefulSet")["tokenwire-nats"]["spec"]
    assert nats["replicas"] == 3
    args = nats["template"]["spec"]["containers"][0]["args"]
    routes = args[args.index("--routes") + 1].split(",")
    headless = nats["serviceName"]
    assert routes == [f"nats://tokenwire-nats-{i}.{headless}:6222" for i in range(3)]
    assert of_kind(overlay, "Service")[headless]["spec"]["clusterIP"] == "None"
    assert config(overlay)["TOKENWIRE_STREAM_REPLICAS"] == "3"
    [nats_config] = [c for n, c in of_kind(overlay, "ConfigMap").items() if "nats-config" in n]
    assert nats_config["data"]["auth.conf"] == (ROOT / "deploy/nats/auth.conf").read_text()
    assert of_kind(overlay, "PodDisruptionBudget")["tokenwire-nats"]["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_only_from_the_secret_and_settings_are_real(overlay: str) -> None:
    documented = {
        line.split("=", 1)[0]
        for line in (KUBE / "base" / "secrets.example.env").read_text().splitlines()
        if line and not line.startswith("#")
    }
    settings = set(re.findall(r"^# (\w+)=", (ROOT / ".env.example").read_text(), re.M))
    for name, template in pod_specs(overlay).items():
        for var, entry in env_of(template).items():
            if ref := entry.get("valueFrom", {}).get("secretKeyRef"):
                assert (ref["name"], ref["key"] in documented) == ("tokenwire-secrets", True)
            else:
                assert not re.search(r"PASSWORD|SECRET|KEY", var) or "$(" in entry["value"], (
                    f"{name}: {var} set in the manifest"
                )
    known = settings | {"OPENAI_BASE_URL", "OPENAI_API_KEY"}
    assert set(config(overlay)) - known == set()
    assert not [o for o in rendered(overlay) if o["kind"] == "Secret"]


def test_network_policies_admit_to_the_broker_only_the_services_with_a_broker_user() -> None:
    users = set(re.findall(r"^\s+user: (\w+)", (ROOT / "deploy/nats/auth.conf").read_text(), re.M))
    assert users == {"gateway", "worker", "persistence", "ops"}
    policies = of_kind("production", "NetworkPolicy")
    assert policies["tokenwire-default-deny"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
    }
    [client] = [
        rule
        for rule in policies["tokenwire-nats"]["spec"]["ingress"]
        if rule["ports"] == [{"port": 4222}]
    ]
    [allowed] = client["from"][0]["podSelector"]["matchExpressions"]
    assert set(allowed["values"]) == users - {"ops"}  # ops reads the monitoring port only
    labelled = {
        t["metadata"]["labels"].get("tokenwire.io/nats-user")
        for t in pod_specs("production").values()
    }
    assert labelled - {None} == users - {"ops"}
    selected = {
        name: any(
            _selects(p["spec"]["podSelector"], t["metadata"]["labels"])
            for p in policies.values()
            if p["spec"].get("ingress")
        )
        for name, t in pod_specs("production").items()
    }
    assert all(selected.values()), selected  # every pod takes only what a policy admits


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_unprivileged_on_a_read_only_root(overlay: str) -> None:
    for name, template in pod_specs(overlay).items():
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True, name
        for container in template["spec"]["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert "memory" in container["resources"]["limits"], name


def _selects(selector: Object, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    return all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", []))
