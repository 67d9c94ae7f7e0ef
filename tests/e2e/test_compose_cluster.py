"""The broker of `docker-compose.cluster.yml`, for real: its three nodes' commands, run as
nats-servers on loopback with tokenwire's config (a user per service), form one JetStream
cluster; the `CHAT` stream is made at three replicas by the gateway's user, and a message
published while a node is down is stored and read back."""

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import nats
import nats.errors
import pytest
import yaml

from shared import subjects
from shared.stream import chat_stream_config
from support.ports import free_port
from support.servers import (
    NATS_CONFIG,
    NATS_USERS,
    Server,
    _spawn,
    _wait,
    nats_server_binary,
    wait_for_jetstream,
)

pytestmark = [pytest.mark.real, pytest.mark.e2e]
T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
CLUSTER = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())
NODES = ("nats", "nats-2", "nats-3")


def on_loopback(
    command: list[str], ports: dict[str, tuple[int, int, int]], data: Path
) -> list[str]:
    """A node's compose command with its hosts and ports mapped to this machine's."""
    client, route, monitor = ports[command[command.index("--name") + 1]]
    mapped = {
        "/etc/nats/tokenwire.conf": str(NATS_CONFIG),
        "/data": str(data),
        "8222": str(monitor),
    }
    args = [mapped.get(arg, arg) for arg in command]
    args[args.index("--cluster") + 1] = f"nats://127.0.0.1:{route}"
    at = args.index("--routes") + 1
    for name, host in zip(("nats-1", "nats-2", "nats-3"), NODES, strict=True):
        args[at] = args[at].replace(f"nats://{host}:6222", f"nats://127.0.0.1:{ports[name][1]}")
    return [nats_server_binary(), *args, "-a", "127.0.0.1", "-p", str(client)]


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[Server], dict[str, str]]]:
    workdir = tmp_path_factory.mktemp("compose-cluster")
    passwords = {u: "p" + secrets.token_hex(20) for u in NATS_USERS}
    env = {
        **os.environ,
        **{f"TOKENWIRE_NATS_{u.upper()}_PASSWORD": p for u, p in passwords.items()},
    }
    ports = {f"nats-{i + 1}": (free_port(), free_port(), free_port()) for i in range(3)}
    servers = []
    for node in NODES:
        command = CLUSTER["services"][node]["command"]
        name = command[command.index("--name") + 1]
        args = on_loopback(command, ports, workdir / name)
        log = workdir / f"{name}.log"
        process = _spawn(args, log, env=env)
        _wait(process, ports[name][0], log)
        server = Server(f"nats://127.0.0.1:{ports[name][0]}", ports[name][0], process, log)
        server.monitor_url = f"http://127.0.0.1:{ports[name][2]}"
        servers.append(server)
    wait_for_jetstream(servers)
    yield servers, passwords
    for server in servers:
        server.process.kill()
        server.process.wait()


async def retried(call: Callable[[], Awaitable[T]], attempts: int = 60) -> T:
    """`call`'s answer, asked again while the cluster elects a leader (as the services do)."""
    for _ in range(attempts - 1):
        try:
            return await call()
        except (nats.errors.Error, TimeoutError):
            await asyncio.sleep(0.5)
    return await call()


async def test_the_compose_cluster_stores_the_stream_at_three_replicas_and_survives_a_node(
    cluster: tuple[list[Server], dict[str, str]],
) -> None:
    servers, passwords = cluster
    # The client holds the nodes that stay up: killing the first never leaves a reconnection
    # attempt (and its socket) behind the test.
    urls = [
        s.url.replace("nats://", f"nats://gateway:{passwords['gateway']}@") for s in servers[1:]
    ]
    replicas = int(CLUSTER["services"]["gateway"]["environment"]["TOKENWIRE_STREAM_REPLICAS"])
    nc = await nats.connect(servers=urls, inbox_prefix=subjects.inbox("gateway").encode())
    try:
        js = nc.jetstream()
        # The meta leader is elected a moment after the nodes are up.
        info = await retried(lambda: js.add_stream(chat_stream_config(replicas=replicas)))
        assert info.config.num_replicas == 3
        servers[0].process.kill()  # one node of three down: a quorum remains
        servers[0].process.wait()
        ack = await retried(lambda: js.publish("chat.s1.in", b'{"hello": 1}', timeout=2))
        stored = await retried(lambda: js.get_last_msg(subjects.STREAM, "chat.s1.in", direct=True))
        assert (stored.seq, stored.data) == (ack.seq, b'{"hello": 1}')
    finally:
        await nc.close()
    for node in ("persistence", "llm-worker", "gateway"):
        url = CLUSTER["services"][node]["environment"]["TOKENWIRE_NATS_URL"]
        assert [u.rsplit("@", 1)[1] for u in url.split(",")] == [f"{n}:4222" for n in NODES]
