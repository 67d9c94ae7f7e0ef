"""A three-node NATS cluster with the `CHAT` stream on three replicas: one node killed during
traffic, then restarted. Nothing lost, the service goes on, the node rejoins."""

import asyncio
import random
from collections.abc import Iterator

import httpx
import pytest

from faults.conftest import FAST_FAILOVER, MODEL, scaled
from faults.ledger import Counts, count
from faults.traffic import converse, open_chats, with_faults
from support import servers
from support.system import System, start_system

pytestmark = [pytest.mark.real, pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[servers.Server]]:
    nodes = servers.start_nats_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="module")
def system(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, cluster: list[servers.Server]
) -> Iterator[System]:
    running = start_system(
        tmp_path_factory.mktemp("on-cluster"),
        nats_url=",".join(node.url for node in cluster),
        redis_url=redis_url,
        workers=2,
        gateway_env={"TOKENWIRE_MESSAGE_RATE_PER_MIN": "100000"},
        common_env={**FAST_FAILOVER, "TOKENWIRE_STREAM_REPLICAS": "3"},
        fake_llm_env=MODEL,
    )
    try:
        yield running
    finally:
        running.stop()


async def test_one_node_of_three_killed_and_rejoining(
    system: System, http: httpx.AsyncClient, cluster: list[servers.Server], record: list[Counts]
) -> None:
    chats = await open_chats(system, http, scaled(8))
    victim = random.choice(cluster)

    async def faults() -> None:
        await asyncio.sleep(1.5)
        victim.process.kill()
        victim.process.wait()
        await asyncio.sleep(5)  # service goes on with two of three
        victim.resume()

    await with_faults(converse(chats, 3), faults)
    await asyncio.to_thread(servers.wait_for_jetstream, cluster)  # the node rejoined
    name = "NATS cluster: 1 of 3 nodes SIGKILLed"
    counts = await count(name, chats, system.gateway_url, system.llm_url)
    record.append(counts)
    counts.must_be_clean(broker_failed=True)
