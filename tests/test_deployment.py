"""The deployment files are valid: compose against the Compose spec, Dockerfiles by hadolint.

These machines have no Docker engine; these checks are what can be proven without one.
"""

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.prefix) / "bin"
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILES = sorted(ROOT.glob("services/*/Dockerfile"))


@pytest.mark.parametrize("compose", ["docker-compose.yml", "docker-compose.cluster.yml"])
def test_compose_file_follows_the_compose_specification(compose: str) -> None:
    result = subprocess.run(
        [
            BIN / "check-jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            ROOT / compose,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    result = subprocess.run([BIN / "hadolint", dockerfile], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_has_its_own_dockerfile() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {
        "gateway",
        "llm-worker",
        "persistence",
        "fake-llm",
    }


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfiles_copy_every_workspace_manifest(dockerfile: Path) -> None:
    """`uv sync --locked` needs every member's pyproject.toml to check the lock."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = [
        p
        for pattern in root["tool"]["uv"]["workspace"]["members"]
        for p in ROOT.glob(pattern)
        if (p / "pyproject.toml").exists()
    ]
    text = dockerfile.read_text()
    for member in members:
        assert f"COPY {member.relative_to(ROOT)}/pyproject.toml" in text


def test_stateful_services_have_healthchecks_and_dependants_wait() -> None:
    services = COMPOSE["services"]
    for name in ("nats", "redis", "postgres"):
        assert "healthcheck" in services[name], name
    assert services["gateway"]["depends_on"]["nats"]["condition"] == "service_healthy"
    assert services["persistence"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_workers_scale_and_the_fake_model_is_a_demo() -> None:
    worker = COMPOSE["services"]["llm-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert COMPOSE["services"]["fake-llm"]["profiles"] == ["demo"]


def test_compose_has_no_secret_defaults() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${TOKENWIRE_JWT_SECRET:?" in text
    assert "${POSTGRES_PASSWORD:?" in text


def test_compose_uses_the_least_privilege_broker_config_and_redis_acls() -> None:
    services = COMPOSE["services"]
    assert "/etc/nats/tokenwire.conf" in services["nats"]["command"]
    assert any("deploy/nats/nats.conf" in v for v in services["nats"]["volumes"])
    for name, user in (
        ("gateway", "gateway"),
        ("llm-worker", "worker"),
        ("persistence", "persistence"),
    ):
        assert services[name]["environment"]["TOKENWIRE_NATS_URL"].startswith(f"nats://{user}:")
    redis = services["redis"]["command"]
    assert redis[redis.index("default") + 1] == "off"
    for name in ("gateway", "llm-worker"):
        assert "@redis:6379" in services[name]["environment"]["TOKENWIRE_REDIS_URL"]


def test_compose_runs_prometheus_grafana_and_the_nats_exporter() -> None:
    services = COMPOSE["services"]
    assert {"prometheus", "grafana", "nats-exporter"} <= set(services)
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    assert jobs == {"gateway", "llm-worker", "persistence", "nats"}
    assert services["llm-worker"]["environment"]["TOKENWIRE_METRICS_PORT"] == "9100"
    assert "${GRAFANA_ADMIN_PASSWORD:?" in (ROOT / "docker-compose.yml").read_text()


def test_prometheus_scrapes_the_gateway_on_its_unpublished_admin_listener() -> None:
    gateway = COMPOSE["services"]["gateway"]
    admin_port = gateway["environment"]["TOKENWIRE_ADMIN_PORT"]
    assert gateway["environment"]["TOKENWIRE_ADMIN_HOST"] == "0.0.0.0"
    assert not any(str(p).endswith(f":{admin_port}") for p in gateway.get("ports", []))
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == "gateway")
    assert job["static_configs"][0]["targets"] == [f"gateway:{admin_port}"]


def test_the_cluster_profile_runs_three_nodes_and_asks_for_three_replicas() -> None:
    cluster: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())
    services = cluster["services"]
    names = []
    for node in ("nats", "nats-2", "nats-3"):
        command = services[node]["command"]
        names.append(command[command.index("--name") + 1])
        routes = command[command.index("--routes") + 1].split(",")
        assert len(routes) == 2  # the two other nodes
    assert names == ["nats-1", "nats-2", "nats-3"]
    for node in ("nats-2", "nats-3"):
        assert any("deploy/nats/auth.conf" in v for v in services[node]["volumes"])
    for service in ("gateway", "llm-worker", "persistence"):
        assert services[service]["environment"]["TOKENWIRE_STREAM_REPLICAS"] == "3"
    assert any("deploy/nats/auth.conf" in v for v in COMPOSE["services"]["nats"]["volumes"])
