"""The same servers from testcontainers (`TOKENWIRE_TEST_DOCKER=1`, needs a Docker engine).

Install with `uv sync --group docker`.
"""

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def nats_url() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    container: Any = (
        DockerContainer("nats:2.12-alpine").with_command("-js").with_exposed_ports(4222)
    )
    with container:
        wait_for_logs(container, "Server is ready")
        yield f"nats://{container.get_container_host_ip()}:{container.get_exposed_port(4222)}"


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    from testcontainers.redis import RedisContainer

    with RedisContainer("valkey/valkey:8-alpine") as container:
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        yield f"redis://{host}:{port}/0"


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:17-alpine", driver="asyncpg") as container:
        yield container.get_connection_url()
