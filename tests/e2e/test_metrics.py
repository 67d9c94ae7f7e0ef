"""Metrics move as real traffic flows: time to first token observed, tokens counted, replies
by outcome, events recorded, and the broker's queue depth rising while no worker runs."""

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.client import connect, dev_user, frames_until_end, new_session, next_frame
from support.system import System, system_with_own_nats

pytestmark = [pytest.mark.real, pytest.mark.e2e]
QUEUE, DEFAULT = "tokenwire_broker_queue_pending", "tokenwire-fake"
"""The queue gauge, and the one model's id (no catalogue: `TOKENWIRE_LLM_MODEL`)."""


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[System]:
    with system_with_own_nats(
        tmp_path_factory.mktemp("metrics"),
        redis_url=redis_url,
        workers=1,
        gateway_env={"TOKENWIRE_BROKER_VIEW_EVERY_S": "0.3"},
    ) as running:
        yield running


async def scrape(
    http: httpx.AsyncClient, url: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = (await http.get(url)).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_traffic_moves_the_metrics_of_every_service(
    system: System, http: httpx.AsyncClient
) -> None:
    alice = await dev_user(http)
    sid = await new_session(http, alice)
    worker = system.named("worker-1")
    async with await connect(system.ws_url, sid, alice) as ws:
        await next_frame(ws)
        for i in range(3):
            await ws.send(
                json.dumps(
                    {
                        "type": "message",
                        "message_id": f"m{i}",
                        "content": "[fake tokens=10 delay_ms=1]",
                    }
                )
            )
            await frames_until_end(ws)
        gateway = await scrape(http, system.admin_url + "/metrics")
        assert value(gateway, "tokenwire_gateway_connections") == 1
    assert value(gateway, "tokenwire_gateway_ttft_seconds_count") == 3
    assert value(gateway, "tokenwire_broker_workers_connected") == 1
    assert value(gateway, "tokenwire_gateway_tokens_total") == 30
    assert value(gateway, "tokenwire_gateway_replies_total", outcome="stop") == 3
    assert value(gateway, "tokenwire_gateway_frames_in_total", type="message") == 3
    assert value(gateway, "tokenwire_gateway_frames_out_total") >= 3 * 3
    workers = await scrape(http, worker.metrics_url)
    assert value(workers, "tokenwire_worker_tokens_total") == 30
    assert any(name.startswith("tokenwire_faststream_") for name, _ in workers)  # FastStream's
    # ... labelled by subject family: a series per session would grow without end.
    destinations = {
        dict(labels).get("handler") or dict(labels).get("destination")
        for name, labels in workers
        if name.startswith("tokenwire_faststream_")
    }
    assert not any(sid in str(d) for d in destinations), destinations
    assert "chat.*.in" in destinations, destinations
    assert value(workers, "tokenwire_worker_upstream_ttft_seconds_count") == 3
    assert value(workers, "tokenwire_worker_inter_token_seconds_count") == 27
    assert value(workers, "tokenwire_worker_replies_total", outcome="stop") == 3
    assert (
        value(
            workers,
            "tokenwire_worker_usage_tokens_total",
            model="tokenwire-fake",
            kind="completion",
        )
        == 30
    )
    for _ in range(50):
        records = await scrape(http, system.named("persistence").metrics_url)
        if value(records, "tokenwire_persistence_events_total", type="reply_end") == 3:
            break
        await asyncio.sleep(0.1)
    assert value(records, "tokenwire_persistence_events_total", type="user_message") == 3
    assert value(records, "tokenwire_persistence_lag_seconds_count") == 6


async def gauge(
    system: System, http: httpx.AsyncClient, name: str, wanted: float, **labels: str
) -> float:
    """The gauge's value once it equals `wanted` (or its last value after 5 s)."""
    current = -1.0
    for _ in range(50):
        current = value(await scrape(http, system.admin_url + "/metrics"), name, **labels)
        if current == wanted:
            return current
        await asyncio.sleep(0.1)
    return current


async def test_queue_depth_rises_without_workers_and_falls_when_they_return(
    system: System, http: httpx.AsyncClient
) -> None:
    worker = system.named("worker-1")
    worker.stop()
    alice = await dev_user(http)
    sessions = [await new_session(http, alice) for _ in range(3)]
    sockets = [await connect(system.ws_url, sid, alice) for sid in sessions]
    try:
        for i, ws in enumerate(sockets):
            await next_frame(ws)
            await ws.send(
                json.dumps({"type": "message", "message_id": f"q{i}", "content": "[fake tokens=2]"})
            )
        assert await gauge(system, http, QUEUE, 3, model=DEFAULT) == 3
        assert await gauge(system, http, "tokenwire_broker_workers_connected", 0) == 0
        system.add_worker()
        for ws in sockets:
            assert (await frames_until_end(ws, timeout_s=30))[-1]["type"] == "stream_end"
        assert await gauge(system, http, QUEUE, 0, model=DEFAULT) == 0
        assert await gauge(system, http, "tokenwire_broker_workers_connected", 1) == 1
    finally:
        for ws in sockets:
            await ws.close()


DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
EXPORTER_METRICS = {  # prometheus-nats-exporter's names (-varz): no exporter runs here
    "gnatsd_varz_connections",
    "gnatsd_varz_in_msgs",
    "gnatsd_varz_out_msgs",
    "gnatsd_varz_slow_consumers",
    "gnatsd_varz_mem",
    "gnatsd_varz_cpu",
}


def exported_names(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, []))
    return names


async def test_every_dashboard_query_uses_metrics_the_services_export(
    system: System, http: httpx.AsyncClient
) -> None:
    exported: set[str] = set()
    for url in (
        system.admin_url + "/metrics",
        system.named("persistence").metrics_url,
        next(
            p for p in system.processes if p.name.startswith("worker-") and p.popen.poll() is None
        ).metrics_url,
    ):
        exported |= exported_names((await http.get(url)).text)
    dashboards = list(DASHBOARD.glob("*.json"))
    assert dashboards
    used: set[str] = set()
    for path in dashboards:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                used |= set(re.findall(r"\b(?:tokenwire|gnatsd)_[a-z_]+", target["expr"]))
    assert used - exported - EXPORTER_METRICS == set()
    assert any(name.startswith("gnatsd_") for name in used)  # the broker has its panels
